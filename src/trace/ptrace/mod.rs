//! The ptrace backend.
//!
//! The command starts stopped, is seized with PTRACE_O_EXITKILL and the
//! fork/clone/exec/seccomp options, installs a seccomp filter that returns
//! SECCOMP_RET_TRACE for the path syscalls of [`super::syscalls::TABLE`] only
//! (every other syscall runs at full speed), then execs. Each path syscall
//! costs one stop, at entry: the tracer resolves the path itself while the
//! tracee waits, so the outcome (exists, missing) is known without a second
//! stop at syscall exit (docs/tracing.md explains the trade-off).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::resolve::{Follow, Root};
use crate::sandbox;
use crate::sys::ptrace::{self as sp, SyscallInfo};
use crate::sys::{process, seccomp, signals};

use super::exec;
use super::log::{Exec, ExitStatus, Process};
use super::record::{Access, Recorder};
use super::syscalls::{self, Op, OpenFlags};
use super::TraceError;

mod decode;
mod launch;
mod stop;

use decode::{ids_of_status, proc_argv};
use launch::filter;
pub(super) use launch::{exit_of, Launched, Started};
use stop::{CloneKind, Stop};

/// What the loop hands back to [`super::trace`].
pub(super) struct Outcome {
    pub recorder: Recorder,
    pub exit: ExitStatus,
    pub processes: Vec<Process>,
    pub warnings: Vec<String>,
    pub syscall_stops: u64,
    pub syscall_counts: Option<BTreeMap<String, u64>>,
    /// From the command's release to its first process's exit.
    pub command: std::time::Duration,
}

/// How to start the command.
pub(super) struct Launch<'a> {
    pub start: Start<'a>,
    /// Told the pid of the first traced process once it runs (the
    /// sandbox's init: probes enter its network namespace and stop it).
    pub started: Option<std::sync::mpsc::Sender<i32>>,
    /// The command's working directory, in-root.
    pub cwd: PathBuf,
    pub mode: Mode,
}

/// Where the command runs.
pub(super) enum Start<'a> {
    /// On this machine, as a child of jail.
    Host {
        /// The executable, as a host path.
        program: &'a Path,
        argv: &'a [OsString],
        env: &'a [(OsString, OsString)],
        /// The command's stdout; jail's own when `None`.
        stdout: Option<std::os::fd::RawFd>,
    },
    /// Chrooted in a root, in private namespaces (`jail slim`).
    Sandbox(&'a sandbox::Spec),
}

/// What the ptrace backend stops on.
#[derive(Clone)]
pub(super) enum Mode {
    /// Path syscalls (the ptrace backend).
    PathSyscalls,
    /// Every syscall, to count them (`--syscalls`).
    AllSyscalls,
    /// Only fork/clone/exec/exit: no seccomp filter. Keeps `pids` (the
    /// command's processes) current for the fanotify backend, which sees the
    /// file accesses; a new process is added before it runs.
    ProcessesOnly { pids: Arc<Mutex<HashSet<i32>>> },
}

const AT_FDCWD: i32 = libc::AT_FDCWD;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
const AT_SYMLINK_FOLLOW: u64 = libc::AT_SYMLINK_FOLLOW as u64;

/// Work a task must do at its next stop, once the syscall it was stopped in
/// has completed (its effect is not visible at the entry stop).
#[derive(Default)]
struct Pending {
    cwd_changed: bool,
    invalidate: Vec<PathBuf>,
}

/// The exec a thread asked for, kept until the kernel reports it done.
struct PendingExec {
    path: PathBuf,
    argv: Vec<OsString>,
}

/// The working directory shared by the threads of one fs group.
#[derive(Clone, Default)]
struct FsGroup {
    /// In-root cwd; `None` = read /proc/TID/cwd next time.
    cwd: Option<PathBuf>,
    /// Threads stopped in (or just past) a chdir whose effect is not settled:
    /// while any is, /proc is read every time and nothing is cached.
    changing: u32,
}

/// One traced thread.
struct Task {
    tgid: Pid,
    /// Index into `Tracer::cwds`: threads created with CLONE_FS share one.
    fs: usize,
    exec: Option<PendingExec>,
    pending: Pending,
}

struct Tracer {
    rec: Recorder,
    tasks: HashMap<Pid, Task>,
    /// Working directory per fs group (threads created with CLONE_FS).
    cwds: Vec<FsGroup>,
    /// Stops of threads whose creation event has not been seen yet.
    held: HashMap<Pid, Stop>,
    procs: BTreeMap<i32, Process>,
    main: Pid,
    main_exit: Option<ExitStatus>,
    /// When the command was released, and how long its first process ran.
    released: Option<std::time::Instant>,
    main_ran: Option<std::time::Duration>,
    /// The first process's raw wait status (the sandbox decodes its init's).
    main_wait: Option<WaitStatus>,
    buf: Vec<u8>,
    stops: u64,
    counts: Option<HashMap<u64, u64>>,
    warnings: Vec<String>,
    warned_uring: bool,
    warned_chroot: bool,
    fatal: Option<TraceError>,
    /// The command's processes, shared with the fanotify reader.
    pids: Option<Arc<Mutex<HashSet<i32>>>>,
    /// The command runs in the sandbox: /proc links are in-root paths.
    sandboxed: bool,
}

/// How long the processes a command left running are still traced after it
/// exited, before they are killed (docs/tracing.md).
pub(super) const LEFT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The seccomp program: trace the table's syscalls, allow the rest. 32-bit
/// and x32 syscalls are always traced, so the tracer sees and refuses them.
/// fstat-like calls (`newfstatat`/`statx` with AT_EMPTY_PATH) are allowed:
/// they name an fd whose open was already recorded, and glibc issues one for
/// every fstat.
/// (syscall, flags argument) pairs for which AT_EMPTY_PATH means "an fd":
/// glibc's `fstat`. The filter lets them run without a stop; in
/// `--syscalls` mode, where they do stop, they are only counted.
const FD_STATS: [(i64, usize); 2] = [(libc::SYS_newfstatat, 3), (libc::SYS_statx, 2)];

/// An fstat-like call: it names an fd whose open was already recorded (or
/// one inherited from outside, like a redirected stdout, which is no part
/// of the jail).
fn is_fd_stat(nr: u64, args: &[u64; 6]) -> bool {
    FD_STATS
        .iter()
        .any(|&(n, arg)| nr == n as u64 && args[arg] & AT_EMPTY_PATH != 0)
}

/// Run the command under the tracer until every traced process has exited.
pub(super) fn run(root: Root, launch: &Launch<'_>) -> Result<Outcome, TraceError> {
    let prog_filter = match &launch.mode {
        Mode::PathSyscalls => Some(filter(false)),
        Mode::AllSyscalls => Some(filter(true)),
        Mode::ProcessesOnly { .. } => None,
    };
    let opts = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_EXITKILL;
    signals::install_forwarding().map_err(|e| TraceError::Setup {
        what: "install signal handlers",
        source: e,
    })?;

    let started = launch.begin(prog_filter, Some(opts))?;
    let pid = started.pid();
    if let Mode::ProcessesOnly { pids } = &launch.mode {
        pids.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid.as_raw());
    }

    let mut t = Tracer {
        rec: Recorder::new(root),
        tasks: HashMap::new(),
        cwds: vec![FsGroup {
            cwd: Some(launch.cwd.clone()),
            changing: 0,
        }],
        held: HashMap::new(),
        procs: BTreeMap::new(),
        main: pid,
        main_exit: None,
        released: None,
        main_ran: None,
        main_wait: None,
        buf: Vec::with_capacity(sp::MAX_STR),
        stops: 0,
        counts: matches!(launch.mode, Mode::AllSyscalls).then(HashMap::new),
        pids: match &launch.mode {
            Mode::ProcessesOnly { pids } => Some(pids.clone()),
            _ => None,
        },
        warnings: Vec::new(),
        warned_uring: false,
        warned_chroot: false,
        fatal: None,
        sandboxed: matches!(launch.start, Start::Sandbox(_)),
    };
    t.tasks.insert(
        pid,
        Task {
            tgid: pid,
            fs: 0,
            exec: None,
            pending: Pending::default(),
        },
    );
    t.procs.insert(
        pid.as_raw(),
        Process {
            pid: pid.as_raw(),
            ppid: 0,
            execs: Vec::new(),
            threads: 0,
            exit: None,
            uids: Default::default(),
            gids: Default::default(),
        },
    );

    let result = match started {
        Started::Host(stopped) => {
            // Wake it from its SIGSTOP; it now installs the filter and execs.
            t.released = Some(std::time::Instant::now());
            let r = kill(pid, Signal::SIGCONT)
                .map_err(|e| TraceError::Ptrace {
                    pid: pid.as_raw(),
                    op: "SIGCONT",
                    source: e,
                })
                .and_then(|()| t.event_loop());
            r.map(|()| Launched::Host(stopped))
        }
        Started::Sandbox(mut child) => {
            // Open the gate: init forks the payload, traced from birth.
            t.released = Some(std::time::Instant::now());
            let r = child
                .start()
                .map_err(|e| TraceError::Sandbox(Box::new(e)))
                .and_then(|()| {
                    if let Some(tx) = &launch.started {
                        let _ = tx.send(pid.as_raw());
                    }
                    t.event_loop()
                });
            r.map(|()| Launched::Sandbox(child))
        }
    };
    signals::restore_default();
    let launched = result?;
    if let Some(e) = t.fatal.take() {
        return Err(e);
    }
    let exit = exit_of(launched, &launch.start, t.main_exit, t.main_wait)?;
    let counts = t.counts.take().map(|c| {
        c.into_iter()
            .map(|(nr, n)| {
                (
                    syscalls::name(nr)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("syscall_{nr}")),
                    n,
                )
            })
            .collect()
    });
    Ok(Outcome {
        recorder: t.rec,
        exit,
        processes: t.procs.into_values().collect(),
        warnings: t.warnings,
        syscall_stops: t.stops,
        syscall_counts: counts,
        command: t.main_ran.unwrap_or_default(),
    })
}

impl Tracer {
    /// Wait for and handle stops until every traced process is gone. Once
    /// the command itself has exited, the processes it left running (`cmd
    /// &`, daemons) are reported and traced for [`LEFT_GRACE`] more, then
    /// killed; the first SIGINT/SIGTERM/SIGHUP/SIGQUIT after the command
    /// exited kills them at once (docs/tracing.md).
    fn event_loop(&mut self) -> Result<(), TraceError> {
        let mut left: Option<std::time::Instant> = None;
        let mut killing = false;
        let mut killed = false;
        loop {
            for (sig, from_process) in signals::take_pending() {
                if left.is_some() {
                    killing = true;
                } else if from_process {
                    // A terminal's signal already reached the command's
                    // process group; only a signal sent to jail itself is
                    // forwarded.
                    let _ = kill(self.main, sig);
                }
            }
            if left.is_none() && self.main_wait.is_some() && !self.tasks.is_empty() {
                left = Some(std::time::Instant::now());
                let list = self.left_running();
                self.warnings.push(format!(
                    "the command exited and left {} process(es) running: {}; they are traced for {} s more, then killed",
                    list.len(),
                    list.join(", "),
                    LEFT_GRACE.as_secs()
                ));
            }
            if !killing && left.is_some_and(|t| t.elapsed() >= LEFT_GRACE) {
                killing = true;
            }
            if killing && !self.tasks.is_empty() {
                if !killed {
                    killed = true;
                    let list = self.left_running();
                    self.warnings.push(format!(
                        "killed what the command left running: {}",
                        list.join(", ")
                    ));
                }
                let tgids: HashSet<Pid> = self.tasks.values().map(|t| t.tgid).collect();
                for tgid in tgids {
                    let _ = kill(tgid, Signal::SIGKILL);
                }
            }
            let mut flags = WaitPidFlag::__WALL;
            if left.is_some() && !killing {
                flags |= WaitPidFlag::WNOHANG;
            }
            let status = match waitpid(None, Some(flags)) {
                Ok(WaitStatus::StillAlive) => {
                    // The grace period: poll, so that its end is noticed.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                }
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Ok(()),
                Err(e) => return Err(TraceError::Wait(e)),
            };
            if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                && status.pid() == Some(self.main)
            {
                self.main_wait = Some(status);
            }
            if let Some(stop) = Stop::decode(status) {
                self.handle(stop);
            }
        }
    }

    /// The traced processes still running, as `pid (argv…)`.
    fn left_running(&self) -> Vec<String> {
        let tgids: std::collections::BTreeSet<i32> =
            self.tasks.values().map(|t| t.tgid.as_raw()).collect();
        tgids
            .into_iter()
            .map(|pid| {
                let argv = self.procs.get(&pid).and_then(|p| p.execs.last()).map(|e| {
                    e.argv
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                match argv {
                    Some(a) => format!("{pid} ({a})"),
                    None => format!("{pid}"),
                }
            })
            .collect()
    }

    fn handle(&mut self, stop: Stop) {
        let pid = stop.pid();
        match stop {
            Stop::Gone(_, status) => return self.gone(pid, status),
            Stop::Syscall(_) => {
                let _ = ptrace::cont(pid, None);
                return;
            }
            _ => {}
        }
        if self.hold(stop) {
            return;
        }
        self.settle(pid);
        match stop {
            // Signal-delivery-stop: deliver the signal as if untraced.
            Stop::Signal(_, sig) => {
                let _ = ptrace::cont(pid, sig);
                return;
            }
            Stop::Seccomp(_) => self.on_syscall(pid),
            Stop::Clone(_, kind) => self.on_clone(pid, kind),
            Stop::Exec(_) => self.on_exec(pid),
            // Stay stopped until SIGCONT, as without a tracer.
            Stop::Group(_) => {
                let _ = sp::listen(pid);
                return;
            }
            Stop::Resume(_) | Stop::Gone(..) | Stop::Syscall(_) => {}
        }
        let _ = ptrace::cont(pid, None);
    }

    /// A stop from a thread whose creation event has not arrived yet: keep it
    /// stopped until we know its process and fs group.
    fn hold(&mut self, stop: Stop) -> bool {
        let pid = stop.pid();
        if self.tasks.contains_key(&pid) {
            return false;
        }
        self.held.insert(pid, stop);
        true
    }

    /// Apply what the task's previous syscall changed, now that it is done.
    fn settle(&mut self, pid: Pid) {
        let Some(task) = self.tasks.get_mut(&pid) else {
            return;
        };
        if task.pending.cwd_changed {
            task.pending.cwd_changed = false;
            let g = &mut self.cwds[task.fs];
            g.changing = g.changing.saturating_sub(1);
            g.cwd = None;
        }
        for p in task.pending.invalidate.drain(..) {
            self.rec.invalidate(&p);
        }
    }

    fn gone(&mut self, pid: Pid, status: ExitStatus) {
        self.held.remove(&pid);
        self.settle(pid);
        let Some(task) = self.tasks.remove(&pid) else {
            return;
        };
        if pid == task.tgid {
            if let Some(p) = self.procs.get_mut(&pid.as_raw()) {
                p.exit = Some(status.to_string());
            }
        }
        if pid == self.main {
            self.main_exit = Some(status);
            self.main_ran = self.released.map(|r| r.elapsed());
        }
    }

    fn on_clone(&mut self, parent: Pid, kind: CloneKind) {
        let Ok(msg) = ptrace::getevent(parent) else {
            return;
        };
        let child = Pid::from_raw(msg as i32);
        let flags = self.clone_flags(parent, kind);
        let Some(ptask) = self.tasks.get(&parent) else {
            return;
        };
        let ptgid = ptask.tgid;
        let thread = flags & libc::CLONE_THREAD as u64 != 0;
        let fs = if flags & libc::CLONE_FS as u64 != 0 {
            ptask.fs
        } else {
            let cwd = self.cwds[ptask.fs].cwd.clone();
            self.cwds.push(FsGroup { cwd, changing: 0 });
            self.cwds.len() - 1
        };
        let tgid = if thread { ptgid } else { child };
        self.tasks.insert(
            child,
            Task {
                tgid,
                fs,
                exec: None,
                pending: Pending::default(),
            },
        );
        if thread {
            if let Some(p) = self.procs.get_mut(&ptgid.as_raw()) {
                p.threads += 1;
            }
        } else {
            if let Some(pids) = &self.pids {
                // Before the child runs: its first file event already counts.
                pids.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(child.as_raw());
            }
            self.procs.insert(
                child.as_raw(),
                Process {
                    pid: child.as_raw(),
                    ppid: ptgid.as_raw(),
                    execs: Vec::new(),
                    threads: 0,
                    exit: None,
                    uids: Default::default(),
                    gids: Default::default(),
                },
            );
        }
        if let Some(stop) = self.held.remove(&child) {
            self.handle(stop);
        }
    }

    /// The clone flags of the call the parent is stopped in.
    fn clone_flags(&self, parent: Pid, kind: CloneKind) -> u64 {
        let by_event = if kind == CloneKind::Clone {
            (libc::CLONE_THREAD | libc::CLONE_FS) as u64
        } else {
            0
        };
        let Ok(regs) = sp::regs(parent) else {
            return by_event;
        };
        match regs.orig_rax as i64 {
            libc::SYS_clone => regs.rdi,
            libc::SYS_clone3 => sp::read_u64(parent, regs.rdi).unwrap_or(by_event),
            libc::SYS_fork | libc::SYS_vfork => 0,
            _ => by_event,
        }
    }

    fn on_exec(&mut self, pid: Pid) {
        let former = ptrace::getevent(pid)
            .map(|m| Pid::from_raw(m as i32))
            .unwrap_or(pid);
        if former != pid {
            // A non-leader thread exec'd: the kernel gave it the leader's pid.
            if let Some(t) = self.tasks.remove(&former) {
                self.tasks.insert(pid, t);
            }
        }
        // Every other thread of the group is gone.
        self.tasks.retain(|tid, t| t.tgid != pid || *tid == pid);
        let Some(task) = self.tasks.get_mut(&pid) else {
            return;
        };
        let tgid = task.tgid;
        let pending = task.exec.take();
        // The file the kernel really loaded (for a script: its interpreter).
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|e| self.proc_path(e));
        let (path, argv) = match pending {
            Some(p) => (p.path, p.argv),
            None => {
                // No execve stop (fanotify mode): the new image tells.
                let argv = proc_argv(pid);
                self.record_argv0(tgid, pid, &argv);
                (exe.clone().unwrap_or_default(), argv)
            }
        };
        if let Some(exe) = &exe {
            let host = self.rec.root().host_path(exe);
            if let Err(why) = exec::check_abi(pid.as_raw(), exe, &host) {
                self.refuse(why);
                return;
            }
        }
        let _ = self.rec.interpreters(tgid.as_raw(), &path);
        if let Some(p) = self.procs.get_mut(&tgid.as_raw()) {
            p.execs.push(Exec { path, argv });
            // Who the new program runs as (setuid files, `su`, `setpriv`).
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let (uids, gids) = ids_of_status(&status);
                p.uids.extend(uids);
                p.gids.extend(gids);
            }
        }
    }

    /// Without an execve stop the name a program was started by (and its
    /// symlink chain, like `/usr/bin/python3 → python3.11`) is only in
    /// argv[0]: resolve it as execvp would, with the new image's PATH.
    fn record_argv0(&mut self, tgid: Pid, pid: Pid, argv: &[OsString]) {
        let Some(arg0) = argv.first() else { return };
        let named = if arg0.as_bytes().contains(&b'/') {
            match self.cwd(pid) {
                Some(cwd) => cwd.join(arg0),
                None => return,
            }
        } else {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let path = environ
                .split(|&b| b == 0)
                .find_map(|kv| kv.strip_prefix(b"PATH="))
                .unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
            match self.rec.root().find_in_path(arg0, path) {
                Some(p) => p,
                None => return,
            }
        };
        self.rec
            .access(tgid.as_raw(), &named, Follow::Yes, Access::Exec);
    }

    /// Stop the run: kill every traced process; the loop reaps them.
    fn refuse(&mut self, why: String) {
        if self.fatal.is_none() {
            self.fatal = Some(TraceError::Unsupported(why));
        }
        for tid in self.tasks.keys() {
            let _ = kill(*tid, Signal::SIGKILL);
        }
    }
}
