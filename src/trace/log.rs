//! The access log: what a traced run touched, as the tracer saw it.
//!
//! It is backend-independent (ptrace, fanotify and ebpf write the same
//! schema) and is the input of the file-set stage. Schema: docs/formats.md.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::{serde_argv, serde_opt_path, serde_path, ImagePath};
use crate::resolve::FileType;

/// What a run did to a path. One path collects every kind it was seen with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessKind {
    /// Opened for reading (or mapped, or its content otherwise used).
    Read,
    /// Executed: named by execve/execveat, or loaded by the kernel as the
    /// ELF interpreter or a `#!` interpreter.
    Exec,
    /// Opened for writing, truncated, chmod/chown'ed, utimens'ed.
    Write,
    /// Did not exist when the run first named it, and the run created it.
    Create,
    /// Removed or renamed away by the run.
    Delete,
    /// Only looked at: stat family, access, readlink, statfs, xattrs, chdir.
    Stat,
    /// A directory whose entries were read (getdents64).
    List,
    /// A symlink met while resolving some path (its target is recorded).
    Symlink,
    /// Named but absent (ENOENT, ENOTDIR, ELOOP).
    Missing,
}

/// Everything known about one path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileAccess {
    /// The kinds, sorted.
    pub kinds: BTreeSet<AccessKind>,
    /// Type when first seen, if it existed.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub file_type: Option<FileType>,
    /// Whether the path existed when the run first named it.
    pub existed: bool,
    /// A symlink's target, as stored in the link.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_opt_path"
    )]
    pub target: Option<PathBuf>,
    /// The errno name of the first failed access (e.g. `ENOENT`), when no
    /// access succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// The first process that touched the path.
    pub first_pid: i32,
}

impl FileAccess {
    /// The run made this path (it was not there before): an output.
    pub fn created(&self) -> bool {
        !self.existed && self.kinds.contains(&AccessKind::Create)
    }
}

/// One exec seen in a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The path as resolved in the root.
    #[serde(with = "serde_path")]
    pub path: PathBuf,
    #[serde(with = "serde_argv")]
    pub argv: Vec<OsString>,
}

/// One process (thread group) of the traced tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    /// The parent process (0 for the command itself).
    pub ppid: i32,
    /// The execs it made, in order (empty for a fork that never exec'd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub execs: Vec<Exec>,
    /// Threads it started (besides its leader).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub threads: u32,
    /// `exited N` or `killed SIGNAME`, when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// The user ids it ran as: at each exec, and each one a setuid-family
    /// call switched to.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub uids: BTreeSet<u32>,
    /// The group ids likewise (incl. supplementary groups).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub gids: BTreeSet<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How the traced command ended. Serialized as `{code: N}` or
/// `{signal: N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExitStatus {
    /// Exited with this code.
    Code { code: i32 },
    /// Killed by this signal number.
    Signal { signal: i32 },
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code { code: 0 }
    }

    /// The exit code a shell would report (128+N for a signal).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code { code } => code,
            ExitStatus::Signal { signal } => 128 + signal,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code { code } => write!(f, "exit status {code}"),
            ExitStatus::Signal { signal } => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name}")
            }
        }
    }
}

/// Counters for the summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceStats {
    /// Syscall stops handled.
    pub syscall_stops: u64,
    /// Wall time of the traced run, in milliseconds.
    pub duration_ms: u64,
    /// Of that, the time spent loading and attaching the tracer's kernel
    /// programs (`ebpf`), in milliseconds.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub setup_ms: u64,
    /// Of that, the command's own run: from its release (after the tracer
    /// is ready) until its first process exited, in microseconds. This is
    /// what tracing costs the program itself, and what the benchmarks
    /// compare with a native run.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub command_us: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The whole log of one traced run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessLog {
    /// The command as given.
    #[serde(with = "serde_argv")]
    pub command: Vec<OsString>,
    /// The root the command ran in (`/` for this machine).
    #[serde(with = "serde_path")]
    pub root: PathBuf,
    /// The working directory it started in (in-root).
    #[serde(with = "serde_path")]
    pub cwd: PathBuf,
    /// `ptrace`, `fanotify` or `ebpf`.
    pub backend: String,
    /// The environment variables that steer file lookup (PATH,
    /// LD_LIBRARY_PATH, LD_PRELOAD, …) as the command saw them. The rest of
    /// the environment is never recorded: it may hold secrets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub exit: ExitStatus,
    pub processes: Vec<Process>,
    /// Every path touched, by physical in-root path.
    pub files: BTreeMap<ImagePath, FileAccess>,
    /// Paths as programs named them, where that differs from the physical
    /// path, e.g. `/lib64/ld-linux-x86-64.so.2`.
    #[serde(default)]
    pub names: BTreeMap<ImagePath, ImagePath>,
    /// Syscall counts by name, when recorded (`--syscalls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<BTreeMap<String, u64>>,
    /// Things the tracer could not see or decided to skip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub stats: TraceStats,
}

/// Fold the entries of a later run (or another backend's view of the same
/// run) into `mine`. A path one side created counts as created overall.
pub fn merge_files(
    mine: &mut BTreeMap<ImagePath, FileAccess>,
    theirs: BTreeMap<ImagePath, FileAccess>,
) {
    for (path, a) in theirs {
        match mine.entry(path) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(a);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.existed &= a.existed;
                e.kinds.extend(a.kinds);
                e.file_type = e.file_type.or(a.file_type);
                e.target = e.target.take().or(a.target);
                if e.kinds
                    .iter()
                    .any(|k| *k != AccessKind::Missing && *k != AccessKind::Symlink)
                {
                    e.errno = None;
                }
            }
        }
    }
}

/// The environment variables kept in [`AccessLog::env`].
pub const LOOKUP_ENV: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "PYTHONPATH",
    "PERL5LIB",
    "GCONV_PATH",
    "TZ",
    "TZDIR",
    "HOME",
];

impl AccessLog {
    /// Fold a later run of the same jail into this log. A path one run
    /// created counts as created overall, even if a later run found it.
    pub fn merge(&mut self, other: AccessLog) {
        merge_files(&mut self.files, other.files);
        for (n, p) in other.names {
            self.names.entry(n).or_insert(p);
        }
        self.processes.extend(other.processes);
        self.warnings.extend(other.warnings);
        if let (Some(mine), Some(theirs)) = (self.syscalls.as_mut(), other.syscalls) {
            for (k, n) in theirs {
                *mine.entry(k).or_insert(0) += n;
            }
        }
        self.stats.syscall_stops += other.stats.syscall_stops;
        self.stats.duration_ms += other.stats.duration_ms;
        self.stats.setup_ms += other.stats.setup_ms;
        self.stats.command_us += other.stats.command_us;
        if self.exit.success() {
            self.exit = other.exit;
        }
    }

    /// Paths with a kind, in path order.
    pub fn with_kind(&self, kind: AccessKind) -> impl Iterator<Item = (&Path, &FileAccess)> {
        self.files
            .iter()
            .filter(move |(_, a)| a.kinds.contains(&kind))
            .map(|(p, a)| (p.as_path(), a))
    }

    /// Count of paths per kind, for the summary.
    pub fn counts(&self) -> BTreeMap<AccessKind, usize> {
        let mut m = BTreeMap::new();
        for a in self.files.values() {
            for k in &a.kinds {
                *m.entry(*k).or_insert(0) += 1;
            }
        }
        m
    }
}
