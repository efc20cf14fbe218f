//! The eBPF backend: the command's path syscalls recorded in the kernel and
//! streamed to jail through a ring buffer; the command never stops at a
//! path syscall.
//!
//! The kernel side is `bpf/trace.bpf.c` (compiled into `bpf/trace.bpf.o`,
//! embedded here). It keeps the set of traced thread groups in a map,
//! maintained by the sched fork/exit tracepoints, and at `sys_exit` of a
//! path syscall of a traced group sends the arguments, the result, the
//! names as written and — for a relative or dirfd-relative name — the
//! dentry chain of the directory it was resolved against, walked in the
//! kernel up to the task's root. A successful exec is reported by
//! `sched_process_exec` (with the kernel's copy of the name, and the chain
//! of the file loaded). Which syscalls are paths, and which argument is
//! which, comes from [`super::syscalls::TABLE`], written into the `descs`
//! map at load: one table for the seccomp filter, the ptrace decoder and
//! this backend.
//!
//! The process tree comes from the kernel too: the sched tracepoints send a
//! fork event for every process and thread a traced group starts, the argv
//! and credentials of every exec, the credentials after every setuid-family
//! call, and the wait status when a group's last thread exits.
//!
//! Here one thread copies the events out of the ring into memory while the
//! command runs, and another decodes them: it feeds a [`Recorder`], as the
//! ptrace backend does at each stop, and builds the [`Process`] list (with
//! the ELF and `#!` interpreters each exec loads). A relative name's
//! directory comes either as a chain or as a slot of the kernel side's
//! per-CPU chain cache ([`Chains`]).
//! [`run`] starts the command with the launch pieces the ptrace backend uses
//! (a self-stopped child, or the sandbox's gate), never stops it, waits for
//! its first process through a pidfd, forwards signals, and handles what it
//! left running with the `traced` map (jail is a child subreaper for the
//! trace, so orphans stay its children). docs/tracing.md ("The ebpf
//! backend") has the choices and the differences from ptrace.
//!
//! Nothing is pinned: programs, links and maps live in file descriptors of
//! this process and go away with it, SIGKILL included. A jail that dies
//! without ending the trace takes the command with it through the guard
//! process (`ebpf/guard.rs`), which holds the `traced` map until then.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::RawTracePoint;
use aya::Ebpf;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::resolve::{Follow, Root};
use crate::sys::{process, signals};

use super::exec;
use super::log::{Exec, ExitStatus, Process};
use super::ptrace::{self, Launch, Launched, Outcome, Start, Started, LEFT_GRACE};
use super::record::{Access, Recorder};
use super::syscalls::{self, Op, OpenFlags};
use super::TraceError;

mod guard;

/// The compiled kernel side (bpf/build.sh rebuilds it from the source).
static OBJECT: &[u8] = include_bytes!("../../bpf/trace.bpf.o");

// Keep in step with bpf/trace.bpf.c.
const MAX_NR: u32 = 512;
/// How often the reader looks at the ring between wake-ups (ms).
const POLL_MS: u8 = 5;
const KIND_SYSCALL: u32 = 1;
const KIND_EXEC: u32 = 2;
const KIND_FORK: u32 = 3;
const KIND_EXIT: u32 = 4;
const KIND_ARGV: u32 = 5;
const KIND_CREDS: u32 = 6;
const KIND_ABI: u32 = 7;
const F_X32: u32 = 1 << 11;
const F_NO_BASE1: u32 = 1 << 0;
const F_NO_BASE2: u32 = 1 << 1;
const F_OUTSIDE1: u32 = 1 << 2;
const F_OUTSIDE2: u32 = 1 << 3;
const F_NULL1: u32 = 1 << 4;
const F_BASE1: u32 = 1 << 6;
const F_BASE2: u32 = 1 << 7;
const F_CREATED: u32 = 1 << 8;
const F_THREAD: u32 = 1 << 9;
const F_TRUNCATED: u32 = 1 << 10;
const F_SAME1: u32 = 1 << 12;
const F_SAME2: u32 = 1 << 13;
const F_CACHED1: u32 = 1 << 14;
const F_CACHED2: u32 = 1 << 15;
const D_PATHS: u8 = 1;
const D_FD: u8 = 2;
const D_SOCKADDR: u8 = 3;
const D_MARK: u8 = 4;
const D_EXEC: u8 = 5;
const D_CREDS: u8 = 6;
const D_GEN: u8 = 7;
/// `struct desc`'s fd_result bit: a success may rename directories.
const R_GEN: u8 = 4;
/// Header size of `struct event` before `data`.
const HEADER: usize = 4 * 4 + 8 * 2 + 8 * 6 + 2 * 4 + 4 * 2;
const LOST_REASONS: [&str; 4] = [
    "the ring buffer was full",
    "a path name could not be read from the program's memory",
    "a directory chain could not be read (too deep or too long)",
    "the map of traced processes was full",
];

/// mount, umount2, pivot_root, move_mount (D_GEN).
const MOUNT_TREE: [i64; 4] = [
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
];

const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_SYMLINK_FOLLOW: u64 = 0x400;

/// The descriptor of one syscall for the kernel side (`struct desc`):
/// kind, path1, dirfd1, path2, dirfd2, fd, empty_flags, fd_result (-1:
/// none).
fn descriptor(op: &Op) -> [u8; 8] {
    let a = |o: Option<u8>| o.map_or(-1i8, |v| v as i8) as u8;
    let none = -1i8 as u8;
    let mut d = [0, none, none, none, none, none, none, 0];
    match *op {
        Op::Open { dirfd, path, flags } => {
            d[0] = D_PATHS;
            d[1] = path;
            d[2] = a(dirfd);
            d[7] = 1;
            // openat2's struct open_how (at args[2], the only one there is):
            // the kernel side copies its flags into the event's args[5].
            // Else the argument with the flags, if any: the kernel side
            // looks for FMODE_CREATED only when they have O_CREAT.
            match flags {
                OpenFlags::OpenHow(2) => d[7] |= 2,
                OpenFlags::Arg(i) => d[7] |= (i + 1) << 3,
                _ => {}
            }
        }
        Op::Exec { dirfd, path, .. } => {
            d[0] = D_EXEC;
            d[1] = path;
            d[2] = a(dirfd);
        }
        Op::Stat {
            dirfd, path, flags, ..
        } => {
            d[0] = D_PATHS;
            d[1] = path;
            d[2] = a(dirfd);
            d[6] = a(flags);
        }
        Op::Readlink { dirfd, path } | Op::Create { dirfd, path } | Op::Delete { dirfd, path } => {
            d[0] = D_PATHS;
            d[1] = path;
            d[2] = a(dirfd);
        }
        Op::Chdir { path } | Op::Chroot { path } | Op::Uselib { path } => {
            d[0] = D_PATHS;
            d[1] = path;
        }
        Op::Fchdir { fd } | Op::Getdents { fd } => {
            d[0] = D_FD;
            d[5] = fd;
        }
        Op::Rename {
            olddir,
            old,
            newdir,
            new,
        }
        | Op::Link {
            olddir,
            old,
            newdir,
            new,
            ..
        } => {
            d[0] = D_PATHS;
            d[1] = old;
            d[2] = a(olddir);
            d[3] = new;
            d[4] = a(newdir);
            if matches!(op, Op::Rename { .. }) {
                d[7] |= R_GEN;
            }
        }
        Op::Symlink { newdir, new } => {
            d[0] = D_PATHS;
            d[1] = new;
            d[2] = a(newdir);
        }
        Op::Modify { dirfd, path, .. } => {
            d[0] = D_PATHS;
            d[1] = path;
            d[2] = a(dirfd);
            // utimensat(fd, NULL, …) names the dirfd itself.
            d[5] = a(dirfd);
        }
        Op::Sockaddr { .. } => d[0] = D_SOCKADDR,
        Op::IoUring => d[0] = D_MARK,
        // The credentials after the call (the kernel's, not the arguments).
        Op::SetIds { .. } | Op::SetGroups => d[0] = D_CREDS,
    }
    d
}

/// The loaded and attached programs. Dropping it detaches everything.
pub(super) struct Tracer {
    bpf: Ebpf,
    stop: OwnedFd,
    /// Copies the events out of the ring (`read_loop`).
    thread: JoinHandle<Result<(), TraceError>>,
    /// Decodes them (`decode_loop`).
    decoder: JoinHandle<Decoded>,
    /// Load and attach time, for the summary and the benchmarks.
    pub setup: std::time::Duration,
    /// Set by the reader when it refused the run (a 32-bit exec).
    refused: Arc<AtomicBool>,
    /// Why the loader used the kernel's whole BTF instead of the minimal
    /// one (trace/btf.rs), for a warning.
    btf_fallback: Option<String>,
    /// Kills the command if jail dies (ebpf/guard.rs).
    guard: guard::Guard,
}

/// What the reader thread made of the events.
pub(super) struct Decoded {
    pub recorder: Recorder,
    pub warnings: Vec<String>,
    /// The process tree, by pid (ppids as the kernel saw them).
    pub processes: BTreeMap<i32, Process>,
    /// Why the run was refused, if it was.
    pub refused: Option<String>,
    /// Events that named a cached directory chain the reader never got.
    pub chains_missed: u64,
}

fn failed(what: &'static str) -> impl Fn(String) -> TraceError {
    move |cause| TraceError::Ebpf { what, cause }
}

/// Load the programs, arm the launcher (the next process this one forks
/// — or, with `hops` = 1, that process's first child — is the command),
/// attach, and start decoding into a recorder over `root`.
pub(super) fn start(root: Root, hops: u64) -> Result<Tracer, TraceError> {
    let t0 = std::time::Instant::now();
    if !nix::unistd::geteuid().is_root() {
        return Err(TraceError::EbpfUnavailable(
            "loading BPF programs needs root".into(),
        ));
    }
    // The object parser wants the ELF aligned: copy it to the heap.
    let object = OBJECT.to_vec();
    // A testing aid, not a user option (docs/tracing.md): a one-page ring
    // drained only after the run, so that a real run overflows it.
    let tiny = std::env::var_os("JAIL_EBPF_TINY_RING").is_some();
    // The kernel's BTF projected onto the object's structs (trace/btf.rs),
    // for a loader that has not parsed the whole of it.
    let target = super::btf::target(OBJECT, std::path::Path::new(super::btf::VMLINUX));
    let mut loader = super::btf::loader();
    let btf_fallback = match &target {
        super::btf::Target::Minimal(btf) => {
            loader.btf(Some(btf));
            None
        }
        super::btf::Target::Full(btf, why) => {
            loader.btf(Some(btf));
            Some(format!("loaded the kernel's whole BTF (slower): {why}"))
        }
        super::btf::Target::None(why) => {
            return Err(TraceError::EbpfUnavailable(format!(
                "no usable kernel BTF: {why}"
            )))
        }
    };
    if tiny {
        loader.set_max_entries("events", 4096);
    }
    let mut bpf = loader
        .load(&object)
        .map_err(|e| failed("load bpf/trace.bpf.o")(chain(&e)))?;
    {
        let map = bpf
            .map_mut("descs")
            .ok_or_else(|| failed("find the descs map")("missing".into()))?;
        let mut descs: Array<&mut MapData, [u8; 8]> =
            Array::try_from(map).map_err(|e| failed("open the descs map")(chain(&e)))?;
        for s in syscalls::TABLE {
            let nr = s.nr as u32;
            if nr < MAX_NR {
                descs
                    .set(nr, descriptor(&s.op), 0)
                    .map_err(|e| failed("fill the descs map")(chain(&e)))?;
            }
        }
        // Calls that change the mount tree, whoever makes them: the
        // directory chains the kernel side cached may be stale after them.
        let none = -1i8 as u8;
        for nr in MOUNT_TREE {
            descs
                .set(
                    nr as u32,
                    [D_GEN, none, none, none, none, none, none, R_GEN],
                    0,
                )
                .map_err(|e| failed("fill the descs map")(chain(&e)))?;
        }
    }
    // Forked before arming, so never traced (ebpf/guard.rs).
    let guard = match bpf.map("traced") {
        Some(aya::maps::Map::HashMap(m)) => guard::Guard::start(m.fd().as_fd())?,
        _ => return Err(failed("find the traced map")("missing".into())),
    };
    {
        let map = bpf
            .map_mut("config")
            .ok_or_else(|| failed("find the config map")("missing".into()))?;
        let mut config: Array<&mut MapData, [u64; 3]> =
            Array::try_from(map).map_err(|e| failed("open the config map")(chain(&e)))?;
        // This thread forks the command (or the sandbox's init): the kernel
        // side claims only its fork, not one of another thread of jail.
        let me = nix::unistd::gettid().as_raw() as u64;
        config
            .set(0, [me, 1, hops], 0)
            .map_err(|e| failed("arm the launcher")(chain(&e)))?;
    }
    for (prog, tp) in [
        ("jail_fork", "sched_process_fork"),
        ("jail_exit", "sched_process_exit"),
        ("jail_exec", "sched_process_exec"),
        ("jail_sys_exit", "sys_exit"),
    ] {
        let p: &mut RawTracePoint = bpf
            .program_mut(prog)
            .ok_or_else(|| failed("find a program")(prog.into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| failed("open a program")(chain(&e)))?;
        // The verifier gives up with EAGAIN when a signal arrives while it
        // works (a SIGCHLD, a library user's timer): load again, as libbpf
        // does, a few times.
        let mut tries = 0;
        loop {
            match p.load() {
                Err(aya::programs::ProgramError::LoadError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < 5 =>
                {
                    tries += 1
                }
                r => {
                    r.map_err(|e| {
                        failed("load a program (is the kernel built with BTF and raw tracepoints?)")(
                            chain(&e),
                        )
                    })?;
                    break;
                }
            }
        }
        p.attach(tp)
            .map_err(|e| failed("attach to a tracepoint")(format!("{tp}: {}", chain(&e))))?;
    }
    let events = bpf
        .take_map("events")
        .ok_or_else(|| failed("find the events map")("missing".into()))?;
    // A duplicate of the ring's fd to poll on (the same open map).
    let ring_fd = match &events {
        aya::maps::Map::RingBuf(m) => m.fd().as_fd().try_clone_to_owned(),
        _ => {
            return Err(failed("open the ring buffer")(
                "events is not a ring buffer".into(),
            ))
        }
    }
    .map_err(|e| failed("duplicate the ring buffer's fd")(e.to_string()))?;
    let ring = RingBuf::try_from(events).map_err(|e| failed("open the ring buffer")(chain(&e)))?;
    let (stop_rd, stop_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| TraceError::Setup {
            what: "create a pipe",
            source: e,
        })?;
    let setup = t0.elapsed();
    let start = super::fanotify::tick_boundary();
    let refused = Arc::new(AtomicBool::new(false));
    let decoder = Decoder {
        rec: Recorder::new(root),
        start,
        warnings: Vec::new(),
        warned_uring: false,
        warned_chroot: false,
        warned_argv: false,
        warned_groups: false,
        procs: BTreeMap::new(),
        script_prefix: Default::default(),
        refused: None,
        refused_flag: refused.clone(),
        chains: Chains::default(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let decoder = std::thread::Builder::new()
        .name("jail-ebpf-dec".into())
        .spawn(move || decode_loop(rx, decoder))
        .map_err(|e| failed("start the event decoder")(e.to_string()))?;
    let thread = std::thread::Builder::new()
        .name("jail-ebpf".into())
        .spawn(move || read_loop(ring, ring_fd, stop_rd, tx, tiny))
        .map_err(|e| failed("start the ring buffer reader")(e.to_string()))?;
    Ok(Tracer {
        bpf,
        stop: stop_wr,
        thread,
        decoder,
        setup,
        refused,
        btf_fallback,
        guard,
    })
}

/// Clears the child-subreaper attribute at the end of a trace.
struct Subreaper;

impl Subreaper {
    fn on() -> Result<Subreaper, TraceError> {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| TraceError::Setup {
            what: "become a child subreaper (PR_SET_CHILD_SUBREAPER)",
            source: e,
        })?;
        Ok(Subreaper)
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}

/// Run the command with the kernel side recording it, never stopping it,
/// until it and what it left running are gone. Returns what ptrace's loop
/// returns, and the load and attach time.
pub(super) fn run(root: Root, launch: &Launch<'_>) -> Result<(Outcome, Duration), TraceError> {
    signals::install_forwarding().map_err(|e| TraceError::Setup {
        what: "install signal handlers",
        source: e,
    })?;
    let r = run_forwarding(root, launch);
    signals::restore_default();
    r
}

fn run_forwarding(root: Root, launch: &Launch<'_>) -> Result<(Outcome, Duration), TraceError> {
    let sandboxed = matches!(launch.start, Start::Sandbox(_));
    // On the host, orphans of the command become jail's children (not
    // init's): they stay visible, and their pids are not reused while they
    // are unreaped. In the sandbox its own init is their reaper.
    let _reaper = if sandboxed {
        None
    } else {
        Some(Subreaper::on()?)
    };
    // In the sandbox jail forks its init, which forks the command.
    // Any failure to load or attach comes before the command exists: it
    // says the backend is unavailable (`auto` then falls back to ptrace).
    let tracer = start(root, u64::from(sandboxed)).map_err(|e| match e {
        TraceError::Ebpf { what, cause } => {
            TraceError::EbpfUnavailable(format!("cannot {what}: {cause}"))
        }
        e => e,
    })?;
    let setup = tracer.setup;
    let started = launch.begin(None, None)?;
    let pid = started.pid();
    let setup_err = |what| move |source| TraceError::Setup { what, source };
    let host_pidfd;
    let released = Instant::now();
    let launched = match started {
        Started::Host(stopped) => {
            host_pidfd = Some(process::pidfd_open(pid).map_err(setup_err("open a pidfd"))?);
            kill(pid, Signal::SIGCONT).map_err(setup_err("release the command (SIGCONT)"))?;
            Launched::Host(stopped)
        }
        Started::Sandbox(mut child) => {
            host_pidfd = None;
            child
                .start()
                .map_err(|e| TraceError::Sandbox(Box::new(e)))?;
            if let Some(tx) = &launch.started {
                let _ = tx.send(pid.as_raw());
            }
            Launched::Sandbox(child)
        }
    };
    let main_wait = match (&launched, &host_pidfd) {
        (Launched::Sandbox(child), _) => wait_main(pid, child.pidfd())?,
        (Launched::Host(_), Some(fd)) => wait_main(pid, fd.as_fd())?,
        (Launched::Host(_), None) => return Err(TraceError::Wait(Errno::EBADF)),
    };
    let command = released.elapsed();
    let mut warnings = Vec::new();
    end_left_running(&tracer, &mut warnings)?;
    let mut decoded = tracer.finish()?;
    if let Some(why) = decoded.refused.take() {
        return Err(TraceError::Unsupported(why));
    }
    let main_exit = status_of(main_wait);
    let exit = ptrace::exit_of(launched, &launch.start, main_exit, Some(main_wait))?;
    let mut processes = decoded.processes;
    if sandboxed {
        // The sandbox's init, as the ptrace backend lists it: jail's child,
        // the command's parent.
        processes.insert(
            pid.as_raw(),
            Process {
                pid: pid.as_raw(),
                ppid: 0,
                execs: Vec::new(),
                threads: 0,
                exit: main_exit.map(|s| s.to_string()),
                uids: Default::default(),
                gids: Default::default(),
            },
        );
    } else if let Some(p) = processes.get_mut(&pid.as_raw()) {
        p.ppid = 0;
    }
    warnings.extend(decoded.warnings);
    Ok((
        Outcome {
            recorder: decoded.recorder,
            exit,
            processes: processes.into_values().collect(),
            warnings,
            syscall_stops: 0,
            syscall_counts: None,
            command,
        },
        setup,
    ))
}

/// The wait status as the log's exit status (`None` for a stop).
fn status_of(w: WaitStatus) -> Option<ExitStatus> {
    match w {
        WaitStatus::Exited(_, code) => Some(ExitStatus::Code { code }),
        WaitStatus::Signaled(_, sig, _) => Some(ExitStatus::Signal { signal: sig as i32 }),
        _ => None,
    }
}

/// A raw wait status (as the kernel keeps it) as the log's exit status.
fn status_of_raw(raw: i64) -> ExitStatus {
    let raw = raw as i32;
    if raw & 0x7f == 0 {
        ExitStatus::Code {
            code: (raw >> 8) & 0xff,
        }
    } else {
        ExitStatus::Signal { signal: raw & 0x7f }
    }
}

/// Wait for the command's first process (host) or the sandbox's init,
/// forwarding the signals jail receives meanwhile; returns its wait status.
fn wait_main(pid: Pid, pidfd: std::os::fd::BorrowedFd<'_>) -> Result<WaitStatus, TraceError> {
    loop {
        for (sig, from_process) in signals::take_pending() {
            // A terminal's signal already reached the command's process
            // group; only a signal sent to jail itself is forwarded.
            if from_process {
                let _ = kill(pid, sig);
            }
        }
        // A signal interrupts the poll (EINTR); the timeout covers one that
        // arrived between the check above and the poll.
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(TraceError::Wait(e)),
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(s),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(TraceError::Wait(e)),
        }
    }
}

/// Reap every child that has ended (orphans the command left, reparented
/// to jail), without waiting.
fn reap_ended() {
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// `pid (argv…)` for each process, as the ptrace backend lists them.
fn describe(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if argv.is_empty() {
                format!("{pid}")
            } else {
                format!("{pid} ({})", argv.join(" "))
            }
        })
        .collect()
}

/// After the command's first process exited: the processes it left running
/// (the `traced` map) are reported, watched for [`LEFT_GRACE`] more, then
/// killed; the first SIGINT/SIGTERM/SIGHUP/SIGQUIT kills them at once, and
/// a refused run kills them without delay. Returns once none is left.
fn end_left_running(tracer: &Tracer, warnings: &mut Vec<String>) -> Result<(), TraceError> {
    let mut since: Option<Instant> = None;
    let mut killed = false;
    let mut killing = false;
    loop {
        let left = tracer.left()?;
        if left.is_empty() {
            reap_ended();
            return Ok(());
        }
        let refused = tracer.refused.load(Ordering::SeqCst);
        if since.is_none() && !refused {
            since = Some(Instant::now());
            let list = describe(&left);
            warnings.push(format!(
                "the command exited and left {} process(es) running: {}; they are traced for {} s more, then killed",
                list.len(),
                list.join(", "),
                LEFT_GRACE.as_secs()
            ));
        }
        if !signals::take_pending().is_empty()
            || refused
            || since.is_some_and(|t| t.elapsed() >= LEFT_GRACE)
        {
            killing = true;
        }
        if killing {
            if !killed && !refused {
                warnings.push(format!(
                    "killed what the command left running: {}",
                    describe(&left).join(", ")
                ));
            }
            killed = true;
            for p in &left {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
        }
        reap_ended();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Tracer {
    /// The thread groups of the command still alive (the `traced` map).
    fn left(&self) -> Result<Vec<i32>, TraceError> {
        let map = self
            .bpf
            .map("traced")
            .ok_or_else(|| failed("find the traced map")("missing".into()))?;
        let traced: BpfHashMap<&MapData, u32, u32> =
            BpfHashMap::try_from(map).map_err(|e| failed("open the traced map")(chain(&e)))?;
        // A key deleted while the walk passes it restarts the walk (a
        // pid may come twice; bounded): the caller asks again until the
        // map is empty.
        let mut keys = traced
            .keys()
            .take(1 << 17)
            .map(|k| k.map(|k| k as i32))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| failed("read the traced map")(chain(&e)))?;
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Call once every traced process has exited: their events are all in
    /// the ring by then. Drains it, detaches, and fails when any event was
    /// lost.
    pub fn finish(mut self) -> Result<Decoded, TraceError> {
        // Every traced process has exited: the guard has nothing to kill.
        self.guard.release();
        let _ = nix::unistd::write(&self.stop, b"x");
        match self.thread.join() {
            Ok(r) => r?,
            Err(_) => {
                return Err(failed("read the ring buffer")(
                    "the reader thread panicked".into(),
                ))
            }
        }
        // The reader has dropped its end of the channel: the decoder ends
        // once it has decoded everything.
        let decoded = self.decoder.join().map_err(|_| {
            failed("decode the ring buffer's events")("the decoder thread panicked".into())
        })?;
        let map = self
            .bpf
            .map_mut("lost")
            .ok_or_else(|| failed("find the lost map")("missing".into()))?;
        let lost: Array<&mut MapData, u64> =
            Array::try_from(map).map_err(|e| failed("open the lost map")(chain(&e)))?;
        let mut why = Vec::new();
        for (i, reason) in LOST_REASONS.iter().enumerate() {
            let n = lost
                .get(&(i as u32), 0)
                .map_err(|e| failed("read the lost map")(chain(&e)))?;
            if n > 0 {
                why.push(format!("{n} × {reason}"));
            }
        }
        if decoded.chains_missed > 0 {
            why.push(format!(
                "{} × a directory chain named by the chain cache was never received",
                decoded.chains_missed
            ));
        }
        // Detaching waits for the kernel's tracepoint synchronization: let
        // a thread do it while jail goes on (exiting closes the fds anyway).
        let (bpf, guard) = (self.bpf, self.guard);
        let _ = std::thread::Builder::new()
            .name("jail-ebpf-detach".into())
            .spawn(move || {
                drop(bpf);
                // Reaps the guard, which exits on the byte.
                drop(guard);
            });
        if !why.is_empty() {
            return Err(TraceError::Lost(why.join(", ")));
        }
        let mut decoded = decoded;
        decoded
            .warnings
            .extend(self.btf_fallback.map(|w| format!("ebpf backend: {w}")));
        Ok(decoded)
    }
}

/// Blocks the forwarded signals in this thread: they go to the thread
/// that waits for the command.
fn block_forwarded() {
    let mut mask = nix::sys::signal::SigSet::empty();
    for s in signals::FORWARDED {
        mask.add(s);
    }
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&mask),
        None,
    );
}

/// Bytes of events the reader hands the decoder at once.
const CHUNK: usize = 1 << 20;

/// Copies the events out of the ring as fast as the kernel side sends them
/// and hands them to the decoder in chunks (each event: its length as a
/// u32, then its bytes). Decoding is slower than the kernel side (a path
/// is resolved in the root), and the ring is bounded, so a burst of new
/// paths would fill it and fail the trace: the decoder catches up from
/// memory instead, after the command if need be.
fn read_loop(
    mut ring: RingBuf<MapData>,
    ring_fd: OwnedFd,
    stop: OwnedFd,
    tx: std::sync::mpsc::Sender<Vec<u8>>,
    only_at_stop: bool,
) -> Result<(), TraceError> {
    block_forwarded();
    let mut stopping = false;
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        if stopping || !only_at_stop {
            while let Some(item) = ring.next() {
                chunk.extend_from_slice(&(item.len() as u32).to_ne_bytes());
                chunk.extend_from_slice(&item);
                if chunk.len() >= CHUNK {
                    // The decoder only goes away with a panic, reported
                    // by `finish`.
                    let _ = tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(std::mem::take(&mut chunk));
            }
        }
        if stopping {
            return Ok(());
        }
        // The kernel side wakes the reader only when the ring fills up: poll
        // with a short timeout to keep the copy close behind the run.
        let mut fds = [
            PollFd::new(ring_fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(POLL_MS)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(TraceError::Setup {
                    what: "poll the BPF ring buffer",
                    source: e,
                })
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            // One more drain after the stop: everything is queued by now.
            stopping = true;
        }
    }
}

/// Decodes the chunks `read_loop` sends, until it is done.
fn decode_loop(rx: std::sync::mpsc::Receiver<Vec<u8>>, mut d: Decoder) -> Decoded {
    block_forwarded();
    // A testing aid, not a user option (docs/tracing.md): a decoder far
    // slower than the kernel side, 1 ms per 100 events.
    let slow = std::env::var_os("JAIL_EBPF_SLOW_DECODE").is_some();
    let mut n = 0u64;
    for chunk in rx {
        let mut at = 0;
        while at + 4 <= chunk.len() {
            let len = u32_at(&chunk, at) as usize;
            let Some(event) = chunk.get(at + 4..at + 4 + len) else {
                break;
            };
            d.event(event);
            at += 4 + len;
            n += 1;
            if slow && n % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    Decoded {
        recorder: d.rec,
        warnings: d.warnings,
        processes: d.procs,
        refused: d.refused,
        chains_missed: d.chains.missed,
    }
}

/// One event from the kernel, borrowed from the ring.
struct Event<'a> {
    kind: u32,
    tgid: i32,
    tid: i32,
    flags: u32,
    nr: i64,
    ret: i64,
    args: [u64; 6],
    name1: Option<&'a [u8]>,
    name2: Option<&'a [u8]>,
    /// Name 1's bytes, NULs included (argv, groups).
    raw1: &'a [u8],
    base1: Option<PathBuf>,
    base2: Option<PathBuf>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_ne_bytes(a)
    })
}

fn u16_at(b: &[u8], at: usize) -> usize {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]) as usize)
}

/// A chain of NUL-terminated components, leaf first, as an absolute path.
fn chain_path(b: &[u8]) -> PathBuf {
    let mut comps: Vec<&[u8]> = b.split(|&c| c == 0).filter(|c| !c.is_empty()).collect();
    comps.reverse();
    let mut p = PathBuf::from("/");
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// Chains cached per CPU by the kernel side (`CACHED`).
const CACHED: usize = 4;

/// The directory chains each CPU's kernel side keeps (sent whole with
/// F_CACHED and a slot), which later events of that CPU name with F_SAME
/// and the slot instead of walking and sending them again
/// (bpf/trace.bpf.c, `cached_walk`). Events of one CPU reach the ring in
/// the order they were sent, so the slots here are the kernel's as of the
/// event being read.
#[derive(Default)]
struct Chains {
    by_cpu: Vec<[Option<PathBuf>; CACHED]>,
    /// F_SAME events naming an empty slot (never expected: counted as lost
    /// events, so that the trace fails rather than miss a path).
    missed: u64,
}

/// Chain `k`'s flags: present, none, outside, same, cached.
const CHAIN_FLAGS: [[u32; 5]; 2] = [
    [F_BASE1, F_NO_BASE1, F_OUTSIDE1, F_SAME1, F_CACHED1],
    [F_BASE2, F_NO_BASE2, F_OUTSIDE2, F_SAME2, F_CACHED2],
];

impl Chains {
    /// The two base directories of an event from `cpu` (`raw`: each
    /// chain's components, leaf first), as its flags say: sent whole,
    /// cached before, or absent. Then the event's own chains are cached.
    fn bases(
        &mut self,
        flags: u32,
        cpu: usize,
        slots: [u8; 2],
        raw: [&[u8]; 2],
    ) -> [Option<PathBuf>; 2] {
        if self.by_cpu.len() <= cpu {
            self.by_cpu.resize(cpu + 1, Default::default());
        }
        let mut out: [Option<PathBuf>; 2] = [None, None];
        for k in 0..2 {
            let [present, none, outside, same, _] = CHAIN_FLAGS[k];
            if flags & present == 0 || flags & (none | outside) != 0 {
                continue;
            }
            out[k] = if flags & same != 0 {
                let p = self.by_cpu[cpu][slots[k] as usize % CACHED].clone();
                if p.is_none() {
                    self.missed += 1;
                }
                p
            } else {
                Some(chain_path(raw[k]))
            };
        }
        for k in 0..2 {
            if flags & CHAIN_FLAGS[k][4] != 0 {
                self.by_cpu[cpu][slots[k] as usize % CACHED] = out[k].clone();
            }
        }
        out
    }
}

impl<'a> Event<'a> {
    fn parse(b: &'a [u8], chains: &mut Chains) -> Option<Event<'a>> {
        if b.len() < HEADER {
            return None;
        }
        let kind = u32_at(b, 0);
        let tgid = u32_at(b, 4) as i32;
        let tid = u32_at(b, 8) as i32;
        let flags = u32_at(b, 12);
        let nr = u64_at(b, 16) as i64;
        let ret = u64_at(b, 24) as i64;
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = u64_at(b, 32 + 8 * i);
        }
        let lens = [u16_at(b, 80), u16_at(b, 82), u16_at(b, 84), u16_at(b, 86)];
        let cpu = u32_at(b, 88) as usize;
        let slots = [
            b.get(92).copied().unwrap_or(0),
            b.get(93).copied().unwrap_or(0),
        ];
        let data = &b[HEADER..];
        let mut off = 0;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let s = data.get(off..off + n)?;
            off += n;
            Some(s)
        };
        let strip = |s: &'a [u8]| s.split(|&c| c == 0).next().unwrap_or(s);
        let n1 = take(lens[0])?;
        let n2 = take(lens[1])?;
        let c1 = take(lens[2])?;
        let c2 = take(lens[3])?;
        let [base1, base2] = chains.bases(flags, cpu, slots, [c1, c2]);
        Some(Event {
            kind,
            tgid,
            tid,
            flags,
            nr,
            ret,
            args,
            name1: (lens[0] > 0).then(|| strip(n1)),
            name2: (lens[1] > 0).then(|| strip(n2)),
            raw1: n1,
            base1,
            base2,
        })
    }

    /// The absolute in-root path a (name, base) pair names; `empty_is_base`:
    /// an empty name means the base itself (AT_EMPTY_PATH).
    fn path(name: Option<&[u8]>, base: &Option<PathBuf>, empty_is_base: bool) -> Option<PathBuf> {
        let name = name?;
        if name.first() == Some(&b'/') {
            return Some(PathBuf::from(OsStr::from_bytes(name)));
        }
        let base = base.as_ref()?;
        if name.is_empty() {
            return empty_is_base.then(|| base.clone());
        }
        Some(base.join(OsStr::from_bytes(name)))
    }

    fn first(&self, empty_is_base: bool) -> Option<PathBuf> {
        Self::path(self.name1, &self.base1, empty_is_base)
    }

    fn second(&self, empty_is_base: bool) -> Option<PathBuf> {
        Self::path(self.name2, &self.base2, empty_is_base)
    }
}

/// What a syscall's result says about the path it named, when it was
/// named: found (`Some(true)`), absent (`Some(false)`), or unknown.
fn found(ret: i64) -> Option<bool> {
    if ret >= 0 {
        return Some(true);
    }
    match i32::try_from(-ret).unwrap_or(0) {
        libc::ENOENT | libc::ENOTDIR | libc::ELOOP => Some(false),
        _ => None,
    }
}

/// The same for a call that creates the path on success.
fn made(ret: i64) -> Option<bool> {
    if ret >= 0 {
        return Some(false);
    }
    match i32::try_from(-ret).unwrap_or(0) {
        libc::EEXIST => Some(true),
        _ => found(ret),
    }
}

struct Decoder {
    rec: Recorder,
    /// The trace's start on the file timestamp clock (rename targets).
    start: std::time::SystemTime,
    warnings: Vec<String>,
    warned_uring: bool,
    warned_chroot: bool,
    warned_argv: bool,
    warned_groups: bool,
    /// The process tree so far.
    procs: BTreeMap<i32, Process>,
    /// Per process, the `#!` arguments in front of its last exec's argv.
    script_prefix: std::collections::HashMap<i32, usize>,
    /// Why the run is refused; its processes are being killed.
    refused: Option<String>,
    refused_flag: Arc<AtomicBool>,
    chains: Chains,
}

impl Decoder {
    fn event(&mut self, bytes: &[u8]) {
        let Some(ev) = Event::parse(bytes, &mut self.chains) else {
            return;
        };
        match ev.kind {
            KIND_EXEC => self.on_exec(&ev),
            KIND_SYSCALL => self.on_syscall(&ev),
            KIND_FORK => self.on_fork(&ev),
            KIND_EXIT => self.on_exit(&ev),
            KIND_ARGV => self.on_argv(&ev),
            KIND_CREDS => self.on_creds(&ev),
            KIND_ABI => self.refuse(super::exec::abi_syscall_refusal(
                ev.tid,
                ev.flags & F_X32 != 0,
                ev.nr as u64,
            )),
            _ => {}
        }
    }

    /// A process or thread started by a traced group (or the command's
    /// first process, started by jail or the sandbox's init).
    fn on_fork(&mut self, ev: &Event<'_>) {
        let child = ev.args[0] as i32;
        if ev.flags & F_THREAD != 0 {
            if let Some(p) = self.procs.get_mut(&ev.tgid) {
                p.threads += 1;
            }
            return;
        }
        self.procs.insert(
            child,
            Process {
                pid: child,
                ppid: ev.tgid,
                execs: Vec::new(),
                threads: 0,
                exit: None,
                uids: Default::default(),
                gids: Default::default(),
            },
        );
        if self.refused.is_some() {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
    }

    /// A group's last thread exited.
    fn on_exit(&mut self, ev: &Event<'_>) {
        if let Some(p) = self.procs.get_mut(&ev.tgid) {
            p.exit = Some(status_of_raw(ev.ret).to_string());
        }
    }

    /// The argv of the process's last exec. For a `#!` script the kernel
    /// replaced the caller's argv[0] by the script's path and put each
    /// interpreter (and its argument) in front: those are dropped, so the
    /// log keeps the script's path and the caller's arguments.
    fn on_argv(&mut self, ev: &Event<'_>) {
        let mut args: Vec<&[u8]> = ev.raw1.split(|&b| b == 0).collect();
        // Each argument ends with a NUL: the split leaves one empty tail.
        if args.last().is_some_and(|a| a.is_empty()) {
            args.pop();
        }
        let prefix = self.script_prefix.remove(&ev.tgid).unwrap_or(0);
        let args: Vec<&[u8]> = args.into_iter().skip(prefix).collect();
        if ev.flags & F_TRUNCATED != 0 && !self.warned_argv {
            self.warned_argv = true;
            self.warnings.push(format!(
                "pid {}: its argv is longer than the kernel side reads ({} bytes): the log keeps its start",
                ev.tgid,
                ev.raw1.len()
            ));
        }
        let Some(last) = self
            .procs
            .get_mut(&ev.tgid)
            .and_then(|p| p.execs.last_mut())
        else {
            return;
        };
        last.argv = args
            .into_iter()
            .map(|a| OsString::from(OsStr::from_bytes(a)))
            .collect();
    }

    /// The credentials a process runs with after an exec or a setuid-family
    /// call.
    fn on_creds(&mut self, ev: &Event<'_>) {
        if ev.flags & F_TRUNCATED != 0 && !self.warned_groups {
            self.warned_groups = true;
            self.warnings.push(format!(
                "pid {} has more than {} supplementary groups: the log keeps the first ones",
                ev.tgid,
                ev.raw1.len() / 4
            ));
        }
        let Some(p) = self.procs.get_mut(&ev.tgid) else {
            return;
        };
        let split = |v: u64| [v as u32, (v >> 32) as u32];
        p.uids.extend(split(ev.args[0]));
        p.uids.extend(split(ev.args[1]));
        p.gids.extend(split(ev.args[2]));
        p.gids.extend(split(ev.args[3]));
        p.gids.extend(
            ev.raw1
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
        );
    }

    /// Stop the run: kill the command's processes (the main loop kills what
    /// the `traced` map still holds).
    fn refuse(&mut self, why: String) {
        if self.refused.is_none() {
            self.refused = Some(why);
        }
        self.refused_flag.store(true, Ordering::SeqCst);
        for p in self.procs.values().filter(|p| p.exit.is_none()) {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }

    /// Whether the file now at the in-root `path` was born after the trace
    /// started (statx birth time, else ctime); `None` when it is gone. A
    /// rename target's existence before the call is not in the result:
    /// this tells a file the run made and renamed into place.
    fn born_in_run(&self, path: &Path) -> Option<bool> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(self.rec.root().host_path(path)).ok()?;
        let born = meta.created().ok().or_else(|| {
            let secs = u64::try_from(meta.ctime()).ok()?;
            Some(
                std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::new(secs, meta.ctime_nsec() as u32),
            )
        })?;
        Some(born > self.start)
    }

    /// A successful exec: the name it was run by (a `/dev/fd/N` name of
    /// execveat by fd is the file loaded), the interpreters the kernel
    /// loaded, and a new entry in the process's execs (argv follows).
    fn on_exec(&mut self, ev: &Event<'_>) {
        let by_fd = ev.name1.is_some_and(|n| n.starts_with(b"/dev/fd/"));
        let named = if by_fd {
            ev.base2.clone()
        } else {
            ev.first(false)
        };
        let path = named.map(|p| self.rec.access(ev.tgid, &p, Follow::Yes, Access::Exec).path);
        // The file the kernel really loaded (for a script: its interpreter).
        if let Some(exe) = &ev.base2 {
            let host = self.rec.root().host_path(exe);
            if let Err(why) = exec::check_abi(ev.tid, exe, &host) {
                self.refuse(why);
                return;
            }
        }
        let prefix = path
            .as_ref()
            .map_or(0, |path| self.rec.interpreters(ev.tgid, path));
        if let Some(p) = self.procs.get_mut(&ev.tgid) {
            p.execs.push(Exec {
                path: path.unwrap_or_default(),
                argv: Vec::new(),
            });
        }
        self.script_prefix.insert(ev.tgid, prefix);
    }

    fn on_syscall(&mut self, ev: &Event<'_>) {
        let Some(sc) = syscalls::lookup(ev.nr as u64) else {
            return;
        };
        let pid = ev.tgid;
        let args = &ev.args;
        let arg = |i: Option<u8>| i.map_or(0, |i| args[i as usize]);
        match sc.op {
            Op::Open { flags, .. } => {
                let flags = match flags {
                    OpenFlags::Arg(i) => args[i as usize] as i32,
                    OpenFlags::Fixed(f) => f,
                    // openat2: the flags of its struct open_how, copied by
                    // the kernel side (`descriptor`).
                    OpenFlags::OpenHow(_) => args[5] as i32,
                };
                let Some(named) = ev.first(false) else { return };
                let creat = flags & libc::O_CREAT != 0;
                let follow =
                    if flags & libc::O_NOFOLLOW != 0 || (creat && flags & libc::O_EXCL != 0) {
                        Follow::No
                    } else {
                        Follow::Yes
                    };
                let acc = flags & libc::O_ACCMODE;
                // O_DIRECTORY: a directory, only looked at, even when it is
                // gone by the time the event is decoded.
                let access = if flags & (libc::O_PATH | libc::O_DIRECTORY) != 0 {
                    Access::Stat
                } else if creat {
                    Access::WriteCreate
                } else if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                let then = if ev.ret >= 0 {
                    Some(ev.flags & F_CREATED == 0)
                } else if ev.ret == -i64::from(libc::EEXIST) {
                    Some(true)
                } else {
                    found(ev.ret)
                };
                let seen = self.rec.access_at(pid, &named, follow, access, then);
                if acc == libc::O_RDWR && seen.file_type.is_some() {
                    self.rec.access_at(pid, &named, follow, Access::Read, then);
                }
            }
            Op::Exec { flags, .. } => {
                // Only failures reach here (a success is an exec event).
                let f = arg(flags);
                let Some(named) = ev.first(f & AT_EMPTY_PATH != 0) else {
                    return;
                };
                let follow = if f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                self.rec
                    .access_at(pid, &named, follow, Access::Exec, found(ev.ret));
            }
            Op::Stat { flags, follow, .. } => {
                let f = arg(flags);
                let Some(named) = ev.first(f & AT_EMPTY_PATH != 0) else {
                    return;
                };
                let follow = if !follow || f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                self.rec
                    .access_at(pid, &named, follow, Access::Stat, found(ev.ret));
            }
            Op::Readlink { .. } => {
                if let Some(named) = ev.first(true) {
                    self.rec.access_at(
                        pid,
                        &named,
                        Follow::No,
                        Access::Stat,
                        found(ev.ret).or((ev.ret == -i64::from(libc::EINVAL)).then_some(true)),
                    );
                }
            }
            Op::Chdir { .. } => {
                if let Some(named) = ev.first(false) {
                    self.rec
                        .access_at(pid, &named, Follow::Yes, Access::Stat, found(ev.ret));
                }
            }
            Op::Fchdir { .. } => {
                if let Some(p) = &ev.base1 {
                    self.rec
                        .access_at(pid, p, Follow::No, Access::Stat, found(ev.ret));
                }
            }
            Op::Getdents { .. } => {
                if let Some(p) = &ev.base1 {
                    self.rec
                        .access_at(pid, p, Follow::No, Access::List, found(ev.ret));
                }
            }
            Op::Create { .. } | Op::Symlink { .. } => {
                if let Some(named) = ev.first(false) {
                    self.rec
                        .access_at(pid, &named, Follow::No, Access::Create, made(ev.ret));
                }
            }
            Op::Delete { .. } => {
                if let Some(named) = ev.first(false) {
                    let seen =
                        self.rec
                            .access_at(pid, &named, Follow::No, Access::Delete, found(ev.ret));
                    self.rec.invalidate(&seen.path);
                }
            }
            Op::Rename { .. } => {
                if let Some(old) = ev.first(false) {
                    let seen =
                        self.rec
                            .access_at(pid, &old, Follow::No, Access::Delete, found(ev.ret));
                    self.rec.invalidate(&seen.path);
                }
                if let Some(new) = ev.second(false) {
                    let then = if ev.ret >= 0 {
                        self.born_in_run(&new).map(|b| !b)
                    } else {
                        None
                    };
                    let seen = self
                        .rec
                        .access_at(pid, &new, Follow::No, Access::Replace, then);
                    self.rec.invalidate(&seen.path);
                }
            }
            Op::Link { flags, .. } => {
                let f = arg(flags);
                if let Some(old) = ev.first(f & AT_EMPTY_PATH != 0) {
                    let follow = if f & AT_SYMLINK_FOLLOW != 0 {
                        Follow::Yes
                    } else {
                        Follow::No
                    };
                    self.rec
                        .access_at(pid, &old, follow, Access::Stat, found(ev.ret));
                }
                if let Some(new) = ev.second(false) {
                    self.rec
                        .access_at(pid, &new, Follow::No, Access::Create, made(ev.ret));
                }
            }
            Op::Modify { flags, follow, .. } => {
                let f = arg(flags);
                let named = if ev.flags & F_NULL1 != 0 {
                    // utimensat(fd, NULL, …): the fd itself.
                    ev.base1.clone()
                } else {
                    ev.first(f & AT_EMPTY_PATH != 0)
                };
                let Some(named) = named else { return };
                let follow = if !follow || f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                self.rec
                    .access_at(pid, &named, follow, Access::Write, found(ev.ret));
            }
            Op::Sockaddr { create } => {
                let Some(named) = ev.first(false) else { return };
                if create {
                    self.rec
                        .access_at(pid, &named, Follow::No, Access::Create, made(ev.ret));
                } else {
                    self.rec
                        .access_at(pid, &named, Follow::Yes, Access::Stat, found(ev.ret));
                }
            }
            // Sent as KIND_CREDS events.
            Op::SetIds { .. } | Op::SetGroups => {}
            Op::IoUring => {
                if !self.warned_uring && ev.ret >= 0 {
                    self.warned_uring = true;
                    self.warnings.push(format!(
                        "pid {pid} set up io_uring: files it opens through io_uring bypass the syscall tracepoints and may be missing from the jail; trace with --backend fanotify to see them"
                    ));
                }
            }
            Op::Chroot { .. } => {
                let Some(named) = ev.first(false) else { return };
                self.rec
                    .access_at(pid, &named, Follow::Yes, Access::Stat, found(ev.ret));
                if !self.warned_chroot {
                    self.warned_chroot = true;
                    self.warnings.push(format!(
                        "pid {pid} called chroot({}): paths it names afterwards are recorded relative to its new root",
                        named.display()
                    ));
                }
            }
            Op::Uselib { .. } => {
                if let Some(named) = ev.first(false) {
                    self.rec
                        .access_at(pid, &named, Follow::Yes, Access::Read, found(ev.ret));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_leaf_first() {
        assert_eq!(chain_path(b"c\0b\0a\0"), PathBuf::from("/a/b/c"));
        assert_eq!(chain_path(b""), PathBuf::from("/"));
    }

    /// The kernel side's cache protocol: an event's F_SAME slots are read
    /// before its own F_CACHED chains are stored; each CPU has its own.
    #[test]
    fn cached_chains_are_named_by_cpu_and_slot() {
        let mut c = Chains::default();
        let p = |s: &str| Some(PathBuf::from(s));
        // CPU 1 sends /a/b whole into slot 2.
        let got = c.bases(F_BASE1 | F_CACHED1, 1, [2, 0], [b"b\0a\0", b""]);
        assert_eq!(got, [p("/a/b"), None]);
        // Chain 1 names slot 2; chain 2 (/x) replaces slot 2 in the same event.
        let got = c.bases(
            F_BASE1 | F_SAME1 | F_BASE2 | F_CACHED2,
            1,
            [2, 2],
            [b"", b"x\0"],
        );
        assert_eq!(got, [p("/a/b"), p("/x")]);
        let got = c.bases(F_BASE1 | F_SAME1, 1, [2, 0], [b"", b""]);
        assert_eq!(got, [p("/x"), None]);
        // CPU 0 never cached anything: a lost chain, counted.
        let got = c.bases(F_BASE1 | F_SAME1, 0, [2, 0], [b"", b""]);
        assert_eq!(got, [None, None]);
        assert_eq!(c.missed, 1);
        // A chain outside the root is no base, cached or not.
        let got = c.bases(F_BASE1 | F_OUTSIDE1 | F_SAME1, 1, [2, 0], [b"", b""]);
        assert_eq!(got, [None, None]);
    }

    #[test]
    fn open_how_flags_are_copied_for_every_openat2() {
        for s in syscalls::TABLE {
            if let Op::Open {
                flags: OpenFlags::OpenHow(i),
                ..
            } = s.op
            {
                // The kernel side reads struct open_how at args[2] only.
                assert_eq!(i, 2, "{}", s.name);
                assert_eq!(descriptor(&s.op)[7], 3, "{}", s.name);
            }
        }
    }

    #[test]
    fn every_syscall_of_the_table_has_a_descriptor() {
        for s in syscalls::TABLE {
            let ids = matches!(s.op, Op::SetIds { .. } | Op::SetGroups);
            let kind = descriptor(&s.op)[0];
            assert_ne!(kind, 0, "{}", s.name);
            assert_eq!(kind == D_CREDS, ids, "{}", s.name);
        }
    }

    #[test]
    fn raw_wait_statuses() {
        assert_eq!(status_of_raw(3 << 8), ExitStatus::Code { code: 3 });
        assert_eq!(status_of_raw(9), ExitStatus::Signal { signal: 9 });
        // A core dump sets 0x80.
        assert_eq!(status_of_raw(0x80 | 11), ExitStatus::Signal { signal: 11 });
    }
}
