//! The sandbox: run a command chrooted in a tree, inside private namespaces,
//! without changing the tree. `jail run` uses it to check a jail works, and
//! the tracer (`jail slim`) to run a command inside an unpacked image.
//!
//! How it works (docs/sandbox.md has the full picture):
//!
//! - [`spawn`] clones a process into new mount, pid, UTS and IPC namespaces,
//!   plus a network namespace for [`Network::None`] and a user namespace when
//!   the caller is not root. That process is **init**, pid 1 of the new pid
//!   namespace. It builds the root file system (an overlay over the tree so
//!   that writes vanish, or the tree itself for [`Spec::writable`], plus
//!   `/proc`, a minimal `/dev`, `/sys` and `/tmp`), pivots into it, reports
//!   that it is ready and waits.
//! - [`Child::start`] lets init go on: it runs [`Hooks::before_payload`],
//!   then forks the **payload**, which runs [`Hooks::pre_exec`], changes to
//!   the working directory, drops to [`Spec::user`] and execs the command.
//! - Init forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
//!   the payload, reaps orphans, and exits when the payload does, with its
//!   exit code, or 128+N when signal N killed it. [`Child::wait`] returns the
//!   payload's exact [`ExitStatus`] (sent over a pipe, so "killed by SIGKILL"
//!   and "exited with 137" stay distinct).
//!
//! A tracer uses the gap between `spawn` and `start`: it `PTRACE_SEIZE`s
//! init with `PTRACE_O_TRACEFORK`, then starts it, and the payload is traced
//! from birth. (Init cannot stop itself with SIGSTOP: the kernel ignores
//! signals that pid 1 of a namespace sends itself.)
//!
//! Errors of init and of the payload before `execve` come back over a
//! close-on-exec pipe and become the [`SandboxError`] variant of the step
//! that failed.

pub mod boundary;
mod error;
mod init;
mod setup;
mod user;

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

pub use error::SandboxError;
pub use user::{add_runtime_home, home_of, User};

use crate::sys::process::{clone_into, poll_readable, CStringArray};
use init::{Record, RECORD_SIZE};
use setup::{Action, Step};

/// `PATH` of the default environment, and the search path when the given
/// environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Signals that init (and [`run`]) forward to the payload.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Device nodes of the sandbox's `/dev`, bind-mounted from the host's.
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Paths of /proc hidden from the command (as runc's default spec does).
pub const MASKED_PROC: [&str; 9] = [
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];

/// Paths of /proc the command may read but not write.
pub const READ_ONLY_PROC: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// Paths of /sys hidden from the command.
pub const MASKED_SYS: [&str; 2] = ["firmware", "devices/virtual/powercap"];

/// The flags of the mount `path` is on that a bind remount must keep (in a
/// user namespace they are locked): read-only, nosuid, nodev, noexec and the
/// atime mode.
fn mount_flags_of(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (have, want) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(have) {
            out |= want;
        }
    }
    out
}

/// Network access of the sandbox (also the value of the CLI's
/// `--network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// A network namespace of its own with only `lo` (up): nothing outside,
    /// not even the host's loopback, is reachable.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The tree to use as `/` (a directory on the host).
    pub root: PathBuf,
    /// The command and its arguments; `argv[0]` without a `/` is looked up
    /// along the `PATH` of [`Spec::env`], inside the root.
    pub argv: Vec<OsString>,
    /// The command's whole environment: nothing of the caller's leaks in.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, absolute, inside the root.
    pub cwd: PathBuf,
    /// Run as this user; `None` runs as root (uid 0 inside).
    pub user: Option<User>,
    pub network: Network,
    /// `false` (default): the command sees a throwaway writable view of the
    /// tree (an overlay), and the tree is never modified. `true`: writes go
    /// to the tree itself.
    pub writable: bool,
    /// Hostname inside; `None` keeps the host's name (in a UTS namespace of
    /// its own, so the command cannot change the host's).
    pub hostname: Option<OsString>,
    /// The command's stdin, stdout and stderr; `None` inherits jail's own.
    pub stdin: Option<Arc<OwnedFd>>,
    pub stdout: Option<Arc<OwnedFd>>,
    pub stderr: Option<Arc<OwnedFd>>,
    /// `false` (default): setuid/setgid bits and file capabilities do
    /// nothing (`no_new_privs`, the root mounted nosuid). `true`: they work
    /// at `execve` as under podman's and docker's defaults (`ping` with
    /// `cap_net_raw`, `su` run by a non-root user), within the bounding set
    /// the sandbox keeps; `--verify` runs this way (docs/fidelity.md).
    /// Without effect in a user namespace (no caller that is not root).
    pub setuid: bool,
}

impl Spec {
    /// Run `argv` in `root` as root, in `/`, with the default environment,
    /// no network, the tree left untouched.
    pub fn new<I, S>(root: impl Into<PathBuf>, argv: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spec {
            root: root.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            env: Spec::default_env(),
            cwd: PathBuf::from("/"),
            user: None,
            network: Network::None,
            writable: false,
            hostname: None,
            stdin: None,
            stdout: None,
            stderr: None,
            setuid: false,
        }
    }

    /// The default environment: only `PATH` ([`DEFAULT_PATH`]).
    pub fn default_env() -> Vec<(OsString, OsString)> {
        vec![(OsString::from("PATH"), OsString::from(DEFAULT_PATH))]
    }

    /// The `PATH` the command is searched along.
    pub fn path_var(&self) -> OsString {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_PATH.into())
    }
}

/// A callback run inside the sandbox, after the clone. The caller may be
/// multi-threaded, so a hook must only do async-signal-safe work: no
/// allocation, no locks, no stdio (prepare everything before [`spawn`]);
/// its `unsafe` constructor ([`ChildHook::new`](crate::sys::process::ChildHook::new)) carries that contract.
pub type Hook = crate::sys::process::ChildHook;

/// Callbacks for a tracer. An error aborts the run and is reported as
/// [`SandboxError::Hook`].
#[derive(Default)]
pub struct Hooks {
    /// Runs in init, inside the finished root, after [`Child::start`] and
    /// just before init forks the payload.
    pub before_payload: Option<Hook>,
    /// Runs in the payload, still as root and before the working directory
    /// and the user change, just before `execve` (e.g. to install a seccomp
    /// filter).
    pub pre_exec: Option<Hook>,
}

/// What the payload needs, prepared before the clone.
pub(crate) struct Payload {
    argv: CStringArray,
    envp: CStringArray,
    /// Paths to try `execve` on, in order (the PATH search).
    candidates: Vec<CString>,
    cwd: CString,
    ids: Option<Ids>,
    umask: Mode,
    /// Descriptors to install as stdout and stderr (valid in the child: it
    /// gets a copy of the descriptor table at the clone).
    /// stdin, stdout, stderr.
    stdio: [Option<RawFd>; 3],
    /// The boundary's seccomp deny-list ([`boundary::filter`]).
    filter: Vec<crate::sys::seccomp::Insn>,
    /// Set `no_new_privs` (setuid bits and file capabilities do nothing);
    /// when `false` the filter is installed while still root, as runc does
    /// without `noNewPrivileges` (the kernel wants one or CAP_SYS_ADMIN).
    no_new_privs: bool,
}

pub(crate) struct Ids {
    uid: u32,
    gid: u32,
    /// `None` in a user namespace, where setgroups(2) is denied.
    groups: Option<Vec<u32>>,
}

/// Everything init and the payload do, prepared by the caller.
pub(crate) struct Plan {
    steps: Vec<Step>,
    payload: Payload,
    /// For messages: the tree, the command, the PATH searched, the workdir.
    root: PathBuf,
    command: OsString,
    path_var: OsString,
    cwd: PathBuf,
    /// Mount points created in the tree by a writable run, removed after it.
    created: Vec<PathBuf>,
}

fn cstring(bytes: impl Into<Vec<u8>>, what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::BadSpec(format!("{what} contains a NUL byte")))
}

fn cpath(path: &Path) -> Result<CString, SandboxError> {
    cstring(
        path.as_os_str().as_bytes(),
        &format!("path {}", path.display()),
    )
}

/// Escape a path for an overlayfs option (`,`, `:` and `\` are special).
fn overlay_escape(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b',' | b':' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

impl Plan {
    fn new(spec: &Spec, root: &Path, scratch: &Path, userns: bool) -> Result<Plan, SandboxError> {
        let mut steps = Vec::new();
        let mut step = |action: Action, about: &str, from: &Path| {
            steps.push(Step {
                action,
                about: PathBuf::from(about),
                from: from.to_path_buf(),
            })
        };
        let none = Path::new("");
        let new_root = scratch.join("root");
        let inside = |rel: &str| cpath(&new_root.join(rel));

        if userns {
            // Map the caller's ids to the user the command runs as (root by
            // default). A user namespace may map its creator's own ids
            // without privileges, so init writes the maps itself.
            let (uid, gid) = spec.user.as_ref().map(|u| (u.uid, u.gid)).unwrap_or((0, 0));
            let maps = [
                ("/proc/self/setgroups", "deny".to_string()),
                (
                    "/proc/self/uid_map",
                    format!("{uid} {} 1\n", Uid::current()),
                ),
                (
                    "/proc/self/gid_map",
                    format!("{gid} {} 1\n", Gid::current()),
                ),
            ];
            for (file, data) in maps {
                step(
                    Action::WriteFile {
                        path: cpath(Path::new(file))?,
                        data: cstring(data, file)?,
                    },
                    file,
                    none,
                );
            }
        }
        step(Action::MakePrivate, "/", none);
        let scratch_c = cpath(scratch)?;
        let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        // The tree's own mount: nosuid too unless setuid programs must work.
        let root_flags = if spec.setuid && !userns {
            MsFlags::MS_NODEV
        } else {
            nodev
        };
        step(
            Action::Mount {
                source: c"jail-scratch".into(),
                target: scratch_c,
                fstype: Some(c"tmpfs".into()),
                flags: nodev,
                data: Some(c"mode=0700".into()),
            },
            &scratch.to_string_lossy(),
            Path::new("tmpfs"),
        );
        let new_root_c = cpath(&new_root)?;
        if spec.writable {
            step(
                Action::Mkdir {
                    path: new_root_c.clone(),
                    mode: 0o755,
                    owner: None,
                },
                &new_root.to_string_lossy(),
                none,
            );
            let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
            step(
                Action::Mount {
                    source: cpath(root)?,
                    target: new_root_c.clone(),
                    fstype: None,
                    flags,
                    data: None,
                },
                "/",
                root,
            );
            // The boundary: no device node and no setuid bit of the tree
            // works in the sandbox. A remount must repeat the flags the
            // tree's own mount has (a user namespace may not clear them).
            step(
                Action::Mount {
                    source: c"none".into(),
                    target: new_root_c.clone(),
                    fstype: None,
                    flags: MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | root_flags
                        | mount_flags_of(root),
                    data: None,
                },
                "/",
                root,
            );
        } else {
            let meta = std::fs::metadata(root).map_err(|e| SandboxError::BadRoot {
                root: root.to_path_buf(),
                reason: e.to_string(),
            })?;
            // The overlay's root directory takes the upper directory's mode
            // and owner: give it the tree's.
            let owner = (!userns).then(|| (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid())));
            let (upper, work) = (scratch.join("upper"), scratch.join("work"));
            step(
                Action::Mkdir {
                    path: cpath(&upper)?,
                    mode: meta.mode() & 0o7777,
                    owner,
                },
                &upper.to_string_lossy(),
                none,
            );
            step(
                Action::Mkdir {
                    path: cpath(&work)?,
                    mode: 0o700,
                    owner: None,
                },
                &work.to_string_lossy(),
                none,
            );
            step(
                Action::Mkdir {
                    path: new_root_c.clone(),
                    mode: 0o755,
                    owner: None,
                },
                &new_root.to_string_lossy(),
                none,
            );
            let mut data = b"lowerdir=".to_vec();
            data.extend(overlay_escape(root));
            data.extend(b",upperdir=");
            data.extend(overlay_escape(&upper));
            data.extend(b",workdir=");
            data.extend(overlay_escape(&work));
            let data = cstring(data, "overlay options")?;
            step(
                Action::Mount {
                    source: c"jail".into(),
                    target: new_root_c.clone(),
                    fstype: Some(c"overlay".into()),
                    // The boundary: device nodes of the tree do nothing in
                    // the sandbox, nor setuid bits unless `spec.setuid`.
                    flags: root_flags,
                    data: Some(data),
                },
                "/",
                root,
            );
        }

        let noexec = nodev | MsFlags::MS_NOEXEC;
        step(
            Action::EnsureDir {
                path: inside("proc")?,
                mode: 0o555,
            },
            "/proc",
            none,
        );
        step(
            Action::Mount {
                source: c"proc".into(),
                target: inside("proc")?,
                fstype: Some(c"proc".into()),
                flags: noexec,
                data: None,
            },
            "/proc",
            Path::new("proc"),
        );
        // What runtimes hide or freeze in /proc: kernel memory, keys, timer
        // and scheduler internals; the sysctls, sysrq, irq affinity.
        let devnull = cpath(Path::new("/dev/null"))?;
        for name in MASKED_PROC {
            step(
                Action::Mask {
                    path: inside(&format!("proc/{name}"))?,
                    devnull: devnull.clone(),
                },
                &format!("/proc/{name}"),
                Path::new("/dev/null"),
            );
        }
        for name in READ_ONLY_PROC {
            step(
                Action::ReadOnly {
                    path: inside(&format!("proc/{name}"))?,
                    flags: noexec,
                },
                &format!("/proc/{name}"),
                Path::new("proc"),
            );
        }
        step(
            Action::EnsureDir {
                path: inside("dev")?,
                mode: 0o755,
            },
            "/dev",
            none,
        );
        let dev_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        step(
            Action::Mount {
                source: c"jail-dev".into(),
                target: inside("dev")?,
                fstype: Some(c"tmpfs".into()),
                flags: dev_flags,
                data: Some(c"mode=0755".into()),
            },
            "/dev",
            Path::new("tmpfs"),
        );
        for node in DEV_NODES {
            let host = PathBuf::from("/dev").join(node);
            step(
                Action::BindFile {
                    source: cpath(&host)?,
                    target: inside(&format!("dev/{node}"))?,
                },
                &format!("/dev/{node}"),
                &host,
            );
        }
        let links = [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ];
        for (name, target) in links {
            step(
                Action::Symlink {
                    target: cpath(Path::new(target))?,
                    path: inside(&format!("dev/{name}"))?,
                },
                &format!("/dev/{name}"),
                none,
            );
        }
        step(
            Action::Mkdir {
                path: inside("dev/pts")?,
                mode: 0o755,
                owner: None,
            },
            "/dev/pts",
            none,
        );
        step(
            Action::Mount {
                source: c"devpts".into(),
                target: inside("dev/pts")?,
                fstype: Some(c"devpts".into()),
                flags: dev_flags,
                data: Some(c"newinstance,ptmxmode=0666,mode=0620".into()),
            },
            "/dev/pts",
            Path::new("devpts"),
        );
        step(
            Action::Mkdir {
                path: inside("dev/shm")?,
                mode: 0o1777,
                owner: None,
            },
            "/dev/shm",
            none,
        );
        step(
            Action::Mount {
                source: c"shm".into(),
                target: inside("dev/shm")?,
                fstype: Some(c"tmpfs".into()),
                flags: nodev,
                data: Some(c"mode=1777".into()),
            },
            "/dev/shm",
            Path::new("tmpfs"),
        );
        step(
            Action::EnsureDir {
                path: inside("sys")?,
                mode: 0o555,
            },
            "/sys",
            none,
        );
        step(
            Action::Sysfs {
                target: inside("sys")?,
            },
            "/sys",
            Path::new("sysfs"),
        );
        for name in MASKED_SYS {
            step(
                Action::Mask {
                    path: inside(&format!("sys/{name}"))?,
                    devnull: devnull.clone(),
                },
                &format!("/sys/{name}"),
                Path::new("tmpfs"),
            );
        }
        step(
            Action::TmpIfMissing {
                path: inside("tmp")?,
            },
            "/tmp",
            Path::new("tmpfs"),
        );
        if let Some(name) = &spec.hostname {
            step(Action::Hostname(name.clone()), "hostname", none);
        }
        if spec.network == Network::None {
            step(Action::LoopbackUp, "lo", none);
        }
        step(Action::PivotRoot { path: new_root_c }, "/", root);

        let created = if spec.writable {
            ["proc", "dev", "sys", "tmp"]
                .iter()
                .map(|n| root.join(n))
                .filter(|p| std::fs::symlink_metadata(p).is_err())
                .collect()
        } else {
            Vec::new()
        };

        Ok(Plan {
            steps,
            payload: Payload::new(spec, userns)?,
            root: root.to_path_buf(),
            command: spec.argv[0].clone(),
            path_var: spec.path_var(),
            cwd: spec.cwd.clone(),
            created,
        })
    }

    /// The error for a record init or the payload sent.
    fn error(&self, r: Record) -> SandboxError {
        let errno = Errno::from_raw(r.value);
        match r.kind {
            init::SETUP => match self.steps.get(r.index as usize) {
                Some(step) => step.error(r.sub, errno),
                None => SandboxError::Init {
                    step: "setup",
                    errno,
                },
            },
            _ => self.payload_error(r.index as usize, r.sub, errno),
        }
    }

    fn payload_error(&self, index: usize, sub: u32, errno: Errno) -> SandboxError {
        let file = || {
            self.payload
                .candidates
                .get(index)
                .map(|c| OsStr::from_bytes(c.as_bytes()).to_os_string())
                .unwrap_or_default()
        };
        let ids = self.payload.ids.as_ref();
        match sub {
            init::P_BEFORE_HOOK => SandboxError::Hook {
                hook: "before_payload",
                errno,
            },
            init::P_PRE_EXEC_HOOK => SandboxError::Hook {
                hook: "pre_exec",
                errno,
            },
            init::P_GATE => SandboxError::Init {
                step: "waiting for start",
                errno,
            },
            init::P_SIGNALS => SandboxError::Init {
                step: "setting up signals",
                errno,
            },
            init::P_FORK => SandboxError::Init {
                step: "fork",
                errno,
            },
            init::P_CHDIR => SandboxError::Workdir {
                path: self.cwd.clone(),
                root: self.root.clone(),
                errno,
            },
            init::P_SETGROUPS => SandboxError::SetId {
                what: "supplementary groups of gid",
                id: ids.map_or(0, |i| i.gid),
                errno,
            },
            init::P_SETGID => SandboxError::SetId {
                what: "gid",
                id: ids.map_or(0, |i| i.gid),
                errno,
            },
            init::P_SETUID => SandboxError::SetId {
                what: "uid",
                id: ids.map_or(0, |i| i.uid),
                errno,
            },
            init::P_BOUNDING | init::P_SEAL => SandboxError::Boundary {
                step: if sub == init::P_BOUNDING {
                    "shrinking the capability bounding set"
                } else {
                    "dropping capabilities, setting no_new_privs and installing the seccomp deny-list"
                },
                root: self.root.clone(),
                errno,
            },
            init::P_NOT_FOUND => SandboxError::CommandNotFound {
                command: self.command.clone(),
                root: self.root.clone(),
                path: self.path_var.clone(),
            },
            init::P_NO_INTERPRETER => SandboxError::InterpreterMissing {
                command: self.command.clone(),
                root: self.root.clone(),
                file: file(),
            },
            _ => SandboxError::Exec {
                command: self.command.clone(),
                root: self.root.clone(),
                file: file(),
                errno,
            },
        }
    }
}

impl Payload {
    fn new(spec: &Spec, userns: bool) -> Result<Payload, SandboxError> {
        let Some(command) = spec.argv.first() else {
            return Err(SandboxError::BadSpec("no command given".to_string()));
        };
        if command.is_empty() {
            return Err(SandboxError::BadSpec(
                "the command is an empty string".to_string(),
            ));
        }
        let argv = spec
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes(), "an argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envp = Vec::new();
        for (k, v) in &spec.env {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(SandboxError::BadSpec(format!(
                    "environment variable name {k:?} is empty or contains '='"
                )));
            }
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring(kv, "an environment variable")?);
        }
        let candidates = if command.as_bytes().contains(&b'/') {
            vec![cstring(command.as_bytes(), "the command")?]
        } else {
            let path = spec.path_var();
            let mut c = Vec::new();
            for dir in path.as_bytes().split(|&b| b == b':') {
                // An empty PATH entry means the working directory (execvp).
                let mut p = if dir.is_empty() {
                    b".".to_vec()
                } else {
                    dir.to_vec()
                };
                p.push(b'/');
                p.extend_from_slice(command.as_bytes());
                c.push(cstring(p, "PATH")?);
            }
            c
        };
        if !spec.cwd.is_absolute() {
            return Err(SandboxError::BadSpec(format!(
                "working directory {} must be absolute (it is inside the root)",
                spec.cwd.display()
            )));
        }
        let ids = match (&spec.user, userns) {
            // In a user namespace the maps already made init that user.
            (_, true) | (None, _) => None,
            (Some(u), false) => Some(Ids {
                uid: u.uid,
                gid: u.gid,
                groups: Some(u.groups.clone()),
            }),
        };
        Ok(Payload {
            argv: CStringArray::new(argv),
            envp: CStringArray::new(envp),
            candidates,
            cwd: cpath(&spec.cwd)?,
            ids,
            umask: Mode::from_bits_truncate(0o022),
            stdio: [
                spec.stdin.as_ref().map(|f| f.as_raw_fd()),
                spec.stdout.as_ref().map(|f| f.as_raw_fd()),
                spec.stderr.as_ref().map(|f| f.as_raw_fd()),
            ],
            filter: boundary::filter(),
            no_new_privs: !spec.setuid || userns,
        })
    }
}

/// Check the root and make it canonical (overlayfs and the bind mount want
/// a real path).
fn check_root(root: &Path) -> Result<PathBuf, SandboxError> {
    let bad = |reason: String| SandboxError::BadRoot {
        root: root.to_path_buf(),
        reason,
    };
    let canonical = std::fs::canonicalize(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("does not exist".to_string()),
        _ => bad(e.to_string()),
    })?;
    let meta = std::fs::metadata(&canonical).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad(
            "is not a directory (give the directory of a tree)".to_string()
        ));
    }
    if canonical == Path::new("/") {
        return Err(bad(
            "is the host's own root; give the directory of a tree".to_string()
        ));
    }
    Ok(canonical)
}

/// Create a sandbox for `spec` and wait until its root file system is ready.
/// The command does not run until [`Child::start`]: in between, a tracer can
/// attach to init ([`Child::pid`]). Setup errors (a mount, the pivot) are
/// returned here; errors starting the command come from [`Child::wait`].
///
/// The thread that calls `spawn` is the sandbox's parent: init is killed if
/// that thread exits (`PR_SET_PDEATHSIG`), so keep it until the end.
pub fn spawn(spec: &Spec, hooks: Hooks) -> Result<Child, SandboxError> {
    let root = check_root(&spec.root)?;
    let userns = !Uid::effective().is_root();
    let tmp = std::env::temp_dir();
    let scratch = crate::sys::tempdir::private(&tmp, "jail-sandbox.")
        .map_err(|source| SandboxError::Scratch { dir: tmp, source })?;
    let plan = Plan::new(spec, &root, scratch.path(), userns)?;

    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;
    let (gate_r, gate_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let fds = init::Fds {
        report: report_w.as_fd(),
        gate: gate_r.as_fd(),
        callers: [report_r.as_raw_fd(), gate_w.as_raw_fd()],
    };
    let (pid, pidfd) = clone_into(flags, || init::init_main(&plan, &hooks, &fds))
        .map_err(|errno| SandboxError::Clone { errno, userns })?;
    drop(report_w);
    drop(gate_r);

    let mut child = Child {
        pid,
        pidfd,
        plan,
        report: File::from(report_r),
        gate: Some(gate_w),
        reaped: false,
        _scratch: scratch,
    };
    match child.read_record() {
        Some(r) if r.kind == init::READY => Ok(child),
        Some(r) => {
            let _ = child.reap();
            Err(child.plan.error(r))
        }
        None => {
            let status = child.reap()?;
            Err(SandboxError::InitDied {
                pid,
                how: describe(status),
            })
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with code {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by {sig}"),
        other => format!("ended ({other:?})"),
    }
}

/// A running sandbox: its init process, set up and waiting for
/// [`Child::start`]. Dropping it kills the sandbox (every process in it) and
/// removes its scratch directory.
pub struct Child {
    pid: Pid,
    pidfd: OwnedFd,
    plan: Plan,
    report: File,
    gate: Option<OwnedFd>,
    reaped: bool,
    _scratch: tempfile::TempDir,
}

impl Child {
    /// Host pid of the sandbox's init (pid 1 inside).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// A pidfd for init: readable once init has exited, for event loops
    /// that wait for several things at once.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Let init start the command (run [`Hooks::before_payload`], fork the
    /// payload). Calling it again does nothing.
    pub fn start(&mut self) -> Result<(), SandboxError> {
        if let Some(gate) = self.gate.take() {
            loop {
                match nix::unistd::write(&gate, &[1]) {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    // Init is gone; wait() says why.
                    Err(_) => break,
                }
            }
        }
        Ok(())
    }

    /// Send `sig` to init, which forwards it to the command if it is one of
    /// [`FORWARDED`] (SIGKILL kills the whole sandbox).
    pub fn signal(&self, sig: Signal) -> Result<(), SandboxError> {
        kill(self.pid, sig).map_err(|errno| SandboxError::Wait {
            pid: self.pid,
            errno,
        })
    }

    /// Wait for the sandbox to end and return the command's exit status.
    pub fn wait(mut self) -> Result<ExitStatus, SandboxError> {
        let status = self.reap()?;
        self.outcome(status)
    }

    /// For a caller that reaped init itself (a tracer's wait loop): the
    /// command's exit status, given init's final wait status.
    pub fn finish(mut self, init_status: WaitStatus) -> Result<ExitStatus, SandboxError> {
        self.reaped = true;
        self.outcome(init_status)
    }

    /// Read what init and the payload reported, until every writer is gone
    /// (init is dead, so is every process of its pid namespace).
    fn outcome(&mut self, init_status: WaitStatus) -> Result<ExitStatus, SandboxError> {
        let mut error = None;
        let mut status = None;
        while let Some(r) = self.read_record() {
            match r.kind {
                init::STATUS => {
                    status = Some(match r.sub {
                        init::EXITED => ExitStatus::from_raw((r.value & 0xff) << 8),
                        init::DUMPED => ExitStatus::from_raw(r.value | 0x80),
                        _ => ExitStatus::from_raw(r.value),
                    })
                }
                init::READY => {}
                _ => {
                    error.get_or_insert(r);
                }
            }
        }
        if let Some(r) = error {
            return Err(self.plan.error(r));
        }
        if let Some(s) = status {
            return Ok(s);
        }
        // Init died without a word: killed from outside (SIGKILL, OOM).
        match init_status {
            WaitStatus::Signaled(_, sig, _) => Ok(ExitStatus::from_raw(sig as i32)),
            WaitStatus::Exited(_, code) if code != init::SETUP_FAILED => {
                Ok(ExitStatus::from_raw((code & 0xff) << 8))
            }
            other => Err(SandboxError::InitDied {
                pid: self.pid,
                how: describe(other),
            }),
        }
    }

    /// The next record, or `None` at end of file.
    fn read_record(&mut self) -> Option<Record> {
        let mut buf = [0u8; RECORD_SIZE];
        let mut got = 0;
        while got < RECORD_SIZE {
            match self.report.read(&mut buf[got..]) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(Record::from_bytes(&buf))
    }

    /// Wait for init to end.
    fn reap(&mut self) -> Result<WaitStatus, SandboxError> {
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(s);
                }
                // Stops (when traced) are the tracer's business.
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(SandboxError::Wait {
                        pid: self.pid,
                        errno,
                    })
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.reap();
        }
        // A writable run created missing mount points in the tree; the
        // mounts are gone with the namespace, the empty directories go now.
        for dir in &self.plan.created {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Run `spec` to completion: spawn, start, and wait, forwarding the
/// [`FORWARDED`] signals that this process receives from kill(2) to the
/// command (those a terminal sends to its foreground group reach the
/// command directly). Returns the command's exit status.
///
/// Blocks the forwarded signals in the calling thread while it runs. In a
/// multi-threaded process, a signal sent to the process may be taken by
/// another thread and is then not forwarded.
/// What a captured run printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// [`run`], collecting the command's stdout and stderr instead of passing
/// them through (stdin is still inherited).
pub fn run_captured(spec: &Spec) -> Result<Captured, SandboxError> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SandboxError::Signals);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let drain = |fd: OwnedFd| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut buf);
            buf
        })
    };
    let (out_t, err_t) = (drain(out_r), drain(err_r));
    let mut with_pipes = spec.clone();
    with_pipes.stdout = Some(Arc::new(out_w));
    with_pipes.stderr = Some(Arc::new(err_w));
    let status = run(&with_pipes);
    // Our write ends close here: the readers see EOF once the command's
    // copies are gone too.
    drop(with_pipes);
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Captured {
        status: status?,
        stdout,
        stderr,
    })
}

pub fn run(spec: &Spec) -> Result<ExitStatus, SandboxError> {
    let mut mask = SigSet::empty();
    for sig in FORWARDED {
        mask.add(sig);
    }
    let old = mask
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(SandboxError::Signals)?;
    let result = spawn(spec, Hooks::default()).and_then(|child| forward_until_exit(child, &mask));
    let _ = old.thread_set_mask();
    result
}

fn forward_until_exit(mut child: Child, mask: &SigSet) -> Result<ExitStatus, SandboxError> {
    let signals =
        SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(SandboxError::Signals)?;
    child.start()?;
    loop {
        let ready =
            poll_readable(&[child.pidfd(), signals.as_fd()]).map_err(SandboxError::Signals)?;
        if ready[1] {
            match signals.read_signal() {
                // Sent with kill(2); those from the terminal reached the
                // command already (same process group).
                Ok(Some(info)) if info.ssi_code <= 0 => {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        let _ = child.signal(sig);
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(SandboxError::Signals(errno)),
            }
        }
        if ready[0] {
            let status = child.reap()?;
            return child.finish(status);
        }
    }
}

/// The exit code a shell would show for `status`: the code, or 128+N when
/// signal N killed the command.
pub fn exit_code(status: &ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
