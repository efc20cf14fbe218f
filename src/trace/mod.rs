//! The tracer: run a command and record every file it and its children touch.
//!
//! [`trace`] starts the command under the chosen backend and returns an
//! [`AccessLog`]. The ptrace backend lives in [`ptrace`] (the event loop) and
//! [`syscalls`] (what each path syscall means); [`record`] turns accesses
//! into log entries for every backend.

mod btf;
mod ebpf;
pub mod exec;
mod fanotify;
pub mod log;
mod ptrace;
pub mod record;
pub mod syscalls;

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};

pub use log::{AccessKind, AccessLog, ExitStatus, FileAccess};

use crate::resolve::Root;
use record::Access;

/// Why a trace could not be made. The variants carry the path or pid they
/// are about.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("command not found: {name:?} (searched PATH={path:?}); give a path or fix PATH")]
    CommandNotFound { name: OsString, path: String },
    #[error("cannot execute {}: {errno}; check that it is an executable for this machine", program.display())]
    Exec {
        program: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("{0}")]
    BadArgument(String),
    #[error("cannot start {}", program.display())]
    Spawn {
        program: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("cannot {what}")]
    Setup {
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("{op} on pid {pid} failed (is another tracer, strace or gdb, attached, or ptrace restricted by kernel.yama.ptrace_scope?)")]
    Ptrace {
        pid: i32,
        op: &'static str,
        source: nix::errno::Errno,
    },
    #[error("waiting for traced processes failed: {0}")]
    Wait(nix::errno::Errno),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Sandbox(Box<crate::sandbox::SandboxError>),
    #[error("the fanotify event queue overflowed: events were lost and the jail would be incomplete; trace as root (unlimited queue) or with --backend ptrace")]
    Overflow,
    #[error("--backend ebpf: cannot {what}: {cause}; use --backend ptrace")]
    Ebpf { what: &'static str, cause: String },
    #[error("--backend ebpf is unavailable here: {0}; use --backend ptrace")]
    EbpfUnavailable(String),
    #[error("--backend ebpf lost events ({0}): the jail would be incomplete; trace again, or with --backend ptrace")]
    Lost(String),
}

impl TraceError {
    /// Bad usage or input (exit 2) rather than a failed run (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TraceError::CommandNotFound { .. }
                | TraceError::Exec { .. }
                | TraceError::BadArgument(_)
                | TraceError::Unsupported(_)
        )
    }
}

impl crate::error::ExitCode for TraceError {
    fn is_bad_input(&self) -> bool {
        self.is_usage()
    }
}

/// Which tracer to use (also the value of the CLI's `--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// ebpf where this machine allows it (root, the kernel's BTF, raw
    /// tracepoints), else ptrace, with a warning saying why; ptrace for
    /// the options only ptrace has (`--syscalls`, `--one-cpu`).
    #[default]
    Auto,
    Ptrace,
    Fanotify,
    Ebpf,
}

/// What to trace and how.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// The command and its arguments; `argv[0]` is looked up in the `PATH`
    /// of `env` when it has no slash.
    pub argv: Vec<OsString>,
    /// The command's environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory (host path); the current one when `None`.
    pub cwd: Option<PathBuf>,
    pub backend: Backend,
    /// Record every syscall's count (slower: every syscall stops).
    pub all_syscalls: bool,
    /// The command's stdout (e.g. a pipe to compare outputs); jail's own
    /// when `None`.
    pub stdout: Option<Arc<std::os::fd::OwnedFd>>,
    /// The command's stderr inside a sandbox (jail's own when `None`; on
    /// this machine the command always shares jail's stderr).
    pub sandbox_stderr: Option<Arc<std::os::fd::OwnedFd>>,
    /// Run chrooted in this root in private namespaces (`jail slim`) instead
    /// of on this machine; `cwd` is then in-root and required.
    pub sandbox: Option<SandboxRun>,
    /// ptrace backend: run the tracer and the command on one CPU (the
    /// command inherits a one-CPU affinity mask; see [`OneCpu`]).
    pub one_cpu: bool,
}

/// Where and as whom a command runs when traced inside an image's root.
#[derive(Clone, Debug)]
pub struct SandboxRun {
    /// The unpacked root (host path).
    pub root: PathBuf,
    pub user: Option<crate::sandbox::User>,
    pub network: crate::sandbox::Network,
    /// Receives the pid of the sandbox's init once the command runs.
    pub started: Option<std::sync::mpsc::Sender<i32>>,
}

impl TraceOptions {
    /// Trace `argv` with this process's environment and directory.
    pub fn new(argv: Vec<OsString>) -> TraceOptions {
        TraceOptions {
            argv,
            env: std::env::vars_os().collect(),
            cwd: None,
            backend: Backend::Auto,
            all_syscalls: false,
            stdout: None,
            sandbox_stderr: None,
            sandbox: None,
            one_cpu: false,
        }
    }

    fn env_var(&self, key: &str) -> Option<&OsStr> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }
}

/// Run the command under the tracer and return what it touched. The
/// command's own exit status is in the log; it is not an error here.
pub fn trace(opts: &TraceOptions) -> Result<AccessLog, TraceError> {
    let name = opts
        .argv
        .first()
        .ok_or_else(|| TraceError::BadArgument("no command given".into()))?;
    // The working directory is a host path, or in-root inside a sandbox
    // (where the sandbox checks it and names it in its error).
    let is_dir = |c: &Path| match &opts.sandbox {
        None => c.is_dir(),
        Some(sb) => Root::new(&sb.root)
            .is_ok_and(|r| r.canonicalize(c).is_some_and(|p| r.host_path(&p).is_dir())),
    };
    let cwd = match &opts.cwd {
        Some(c) if c.is_absolute() && is_dir(c) => c.clone(),
        Some(c) => {
            return Err(TraceError::BadArgument(format!(
                "working directory {}: not an absolute path to a directory",
                c.display()
            )))
        }
        None => std::env::current_dir().map_err(|e| {
            TraceError::BadArgument(format!("cannot read the current directory: {e}"))
        })?,
    };
    let mode = if opts.all_syscalls {
        ptrace::Mode::AllSyscalls
    } else {
        ptrace::Mode::PathSyscalls
    };
    let start = Instant::now();
    // On this machine, or chrooted in an image's root in the sandbox.
    let program;
    let spec;
    let (root, mut launch) = match &opts.sandbox {
        None => {
            program = find_program(name, opts.env_var("PATH"), &cwd)?;
            let stdout = opts
                .stdout
                .as_ref()
                .map(|f| std::os::fd::AsRawFd::as_raw_fd(&**f));
            let start = ptrace::Start::Host {
                program: &program,
                argv: &opts.argv,
                env: &opts.env,
                stdout,
            };
            (
                Root::host(),
                ptrace::Launch {
                    start,
                    started: None,
                    cwd: cwd.clone(),
                    mode,
                },
            )
        }
        Some(sb) => {
            if opts.backend == Backend::Fanotify {
                return Err(TraceError::BadArgument("--backend fanotify cannot trace inside an image's sandbox (its overlay root hides the paths); use --backend ptrace".into()));
            }
            let root = Root::new(&sb.root)
                .map_err(|e| TraceError::BadArgument(format!("{}: {e}", sb.root.display())))?;
            let mut s = crate::sandbox::Spec::new(root.dir(), opts.argv.iter().cloned());
            s.env = opts.env.clone();
            s.cwd = cwd.clone();
            s.user = sb.user.clone();
            s.network = sb.network;
            s.stdout = opts.stdout.clone();
            s.stderr = opts.sandbox_stderr.clone();
            spec = s;
            (
                root,
                ptrace::Launch {
                    start: ptrace::Start::Sandbox(&spec),
                    started: sb.started.clone(),
                    cwd: cwd.clone(),
                    mode,
                },
            )
        }
    };
    let root_dir = root.dir().to_path_buf();
    let mut setup_ms = 0;
    // What `auto` means here: ptrace for what only ptrace does, else ebpf
    // if this machine lets it load (else ptrace, below).
    let mut used = match opts.backend {
        Backend::Auto if opts.all_syscalls || opts.one_cpu => Backend::Ptrace,
        Backend::Auto => Backend::Ebpf,
        b => b,
    };
    let mut out = match used {
        Backend::Auto | Backend::Ptrace => {
            let _pinned = opts.one_cpu.then(OneCpu::pin).transpose()?;
            ptrace::run(root, &launch)?
        }
        Backend::Fanotify => {
            if opts.all_syscalls {
                return Err(TraceError::BadArgument(
                    "--syscalls needs --backend ptrace: fanotify does not see syscalls".into(),
                ));
            }
            let pids = Arc::new(Mutex::new(HashSet::new()));
            let watcher = fanotify::start(&root, pids.clone(), fanotify::tick_boundary())?;
            let unmarked = watcher.unmarked.clone();
            launch.mode = ptrace::Mode::ProcessesOnly { pids };
            let traced = ptrace::run(root, &launch);
            let events = watcher.finish()?;
            let mut out = traced?;
            for m in unmarked {
                out.warnings.push(format!(
                    "cannot watch {m} with fanotify: opens there are not seen"
                ));
            }
            for ev in events {
                let Some(path) = out.recorder.root().inner_path(&ev.path) else {
                    continue;
                };
                let access = match ev.what {
                    fanotify::What::Exec => Access::Exec,
                    fanotify::What::CloseWrite => Access::Write,
                    fanotify::What::Open if ev.is_dir => Access::List,
                    fanotify::What::Open => Access::Read,
                };
                out.recorder.observe(ev.pid, &path, access, ev.created);
            }
            out
        }
        Backend::Ebpf => {
            if opts.all_syscalls {
                return Err(TraceError::BadArgument(
                    "--syscalls needs --backend ptrace: the ebpf backend records path syscalls only".into(),
                ));
            }
            match ebpf::run(root.clone(), &launch) {
                Ok((out, setup)) => {
                    setup_ms = setup.as_millis() as u64;
                    out
                }
                // Nothing was started yet: the same run under ptrace.
                Err(TraceError::EbpfUnavailable(why)) if opts.backend == Backend::Auto => {
                    used = Backend::Ptrace;
                    let mut out = ptrace::run(root, &launch)?;
                    out.warnings.push(format!(
                        "traced with ptrace: the ebpf backend is unavailable here ({why})"
                    ));
                    out
                }
                Err(e) => return Err(e),
            }
        }
    };
    out.warnings.sort();
    out.warnings.dedup();
    let duration_ms = start.elapsed().as_millis() as u64;
    let (files, names) = out.recorder.finish();
    let env: BTreeMap<String, String> = log::LOOKUP_ENV
        .iter()
        .filter_map(|k| {
            opts.env_var(k)
                .map(|v| (k.to_string(), v.to_string_lossy().into_owned()))
        })
        .collect();
    Ok(AccessLog {
        command: opts.argv.clone(),
        root: root_dir,
        cwd,
        backend: match used {
            Backend::Auto | Backend::Ptrace => "ptrace",
            Backend::Fanotify => "fanotify",
            Backend::Ebpf => "ebpf",
        }
        .into(),
        env,
        exit: out.exit,
        processes: out.processes,
        files,
        names,
        syscalls: out.syscall_counts,
        warnings: out.warnings,
        stats: log::TraceStats {
            syscall_stops: out.syscall_stops,
            duration_ms,
            setup_ms,
            command_us: out.command.as_micros() as u64,
        },
    })
}

/// This thread pinned to one CPU of its affinity mask while the value
/// lives; the mask it had comes back on drop. A tracee forked meanwhile
/// inherits the one-CPU mask, so tracer and tracee hand the CPU to each
/// other at every stop instead of waking each other across CPUs, which is
/// what a stop mostly costs on a VM (docs/benchmarks.md).
pub struct OneCpu {
    before: CpuSet,
}

impl OneCpu {
    pub fn pin() -> Result<OneCpu, TraceError> {
        let me = nix::unistd::Pid::from_raw(0);
        let failed = |e: nix::errno::Errno| {
            TraceError::BadArgument(format!("--one-cpu: cannot set the CPU affinity: {e}"))
        };
        let before = sched_getaffinity(me).map_err(failed)?;
        let cpu = (0..CpuSet::count())
            .find(|&c| before.is_set(c).unwrap_or(false))
            .ok_or_else(|| {
                TraceError::BadArgument("--one-cpu: no CPU in the affinity mask".into())
            })?;
        let mut one = CpuSet::new();
        one.set(cpu).map_err(failed)?;
        sched_setaffinity(me, &one).map_err(failed)?;
        Ok(OneCpu { before })
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.before);
    }
}

/// Find the executable as `execvp` would: a name with a slash is a path
/// (relative to `cwd`); otherwise the first executable regular file along
/// `PATH` (an empty entry means the current directory).
pub fn find_program(name: &OsStr, path: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, TraceError> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.as_bytes().contains(&b'/') {
        let p = cwd.join(name);
        return if p.exists() {
            Ok(p)
        } else {
            Err(TraceError::CommandNotFound {
                name: name.to_os_string(),
                path: String::new(),
            })
        };
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(OsStr::from_bytes(dir))
        };
        let cand = dir.join(name);
        if is_exec(&cand) {
            return Ok(cand);
        }
    }
    Err(TraceError::CommandNotFound {
        name: name.to_os_string(),
        path: path.to_string_lossy().into_owned(),
    })
}
