//! Process creation: a fork-like `clone3` that puts the sandbox's child into
//! new namespaces, the tracer's fork of a child that stops itself before
//! exec, `execve` from argument arrays prepared before the clone or fork, and
//! the signal and file-descriptor hygiene a freshly exec'd program expects.
//!
//! Everything here that runs in a cloned child is async-signal-safe: the child
//! of a multi-threaded parent owns a copy of the parent's memory in which
//! another thread may have held the allocator's lock at the moment of the
//! clone, so the child must not allocate (see [`clone_into`]).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::raw::c_char;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{raise, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// `struct clone_args` of `clone3(2)` (linux/sched.h), version 2 layout.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Clone the calling process like `fork(2)` (a copy of the address space, the
/// parent notified with SIGCHLD), with the namespace `flags` given, and run
/// `child` in the new process, which exits with the code `child` returns.
/// Returns the child's pid (as seen from the caller's pid namespace) and a
/// pidfd for it (readable once it has exited; close-on-exec).
///
/// `child` must only do async-signal-safe work: no allocation, no locks, no
/// stdio. Everything it needs must be prepared before the call. Unlike
/// `fork(3)`, no `pthread_atfork` handler runs, so glibc's allocator is not
/// made usable in the child; the contract above is what keeps the child from
/// deadlocking on a lock a vanished thread held.
///
/// # Safety (crate-private contract)
///
/// Crate-private because its soundness rests on `child` being
/// async-signal-safe, which the type cannot say: the only callers are the
/// sandbox's init and payload closures, reviewed against that contract.
/// Code outside the crate passes work into a child through [`ChildHook`],
/// whose constructor is `unsafe`.
pub(crate) fn clone_into(
    flags: CloneFlags,
    child: impl FnOnce() -> i32,
) -> nix::Result<(Pid, OwnedFd)> {
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: flags.bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no stack (stack = 0, stack_size = 0) and without
    // CLONE_VM/CLONE_THREAD has fork semantics: the child resumes here, on a
    // private copy of this thread's stack, so returning from `syscall` and
    // continuing in Rust is sound in both processes. `args` outlives the call
    // and its size is passed exactly; the kernel writes the pidfd into
    // `pidfd`, which also outlives the call.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == -1 && Errno::last() == Errno::ENOSYS {
        // Some seccomp profiles hide clone3 (Docker's answers ENOSYS); the
        // classic clone does the same. Its arguments on x86_64 and aarch64:
        // flags with the exit signal, stack, parent_tid (where CLONE_PIDFD
        // stores the pidfd), then child_tid and tls in either order, unused.
        let flags = args.flags as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
        // SAFETY: as for clone3: no stack and no CLONE_VM give fork
        // semantics; `pidfd` outlives the call.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        -1 => Err(Errno::last()),
        0 => {
            let code = child();
            // SAFETY: _exit ends the process without running atexit handlers
            // or destructors, which belong to the parent's copy of the state.
            unsafe { libc::_exit(code) }
        }
        pid => {
            // SAFETY: with CLONE_PIDFD a successful clone stored a new
            // descriptor in `pidfd` that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok((Pid::from_raw(pid as libc::pid_t), fd))
        }
    }
}

/// Wait until one of `fds` is readable (or hung up), retrying on EINTR;
/// returns which ones are.
pub fn poll_readable(fds: &[BorrowedFd<'_>]) -> nix::Result<Vec<bool>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `polls` is an array of exactly `polls.len()` initialised
        // pollfd structures that the kernel may write `revents` into.
        let ret = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
        if ret >= 0 {
            return Ok(polls.iter().map(|p| p.revents != 0).collect());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// A NULL-terminated array of C strings (argv or envp), built before a clone
/// so that the child can exec without allocating.
pub struct CStringArray {
    strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into the heap buffers of `strings`, which the
// array owns and never mutates; moving the array to another thread moves the
// owner of those buffers with it.
unsafe impl Send for CStringArray {}
// SAFETY: shared access only reads the pointers and the strings they point to.
unsafe impl Sync for CStringArray {}

impl CStringArray {
    pub fn new(strings: Vec<CString>) -> CStringArray {
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray { strings, ptrs }
    }

    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

/// `execve(2)` with prepared arrays; returns only on failure, with its errno.
/// Does not allocate.
pub fn execve(path: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno {
    // SAFETY: `path` is a valid C string; `argv.ptrs` and `envp.ptrs` are
    // NULL-terminated arrays of pointers to C strings owned by the arrays,
    // which outlive the call (on success the process image is replaced).
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    Errno::last()
}

/// Give every signal its default disposition, as a new program expects
/// (ignored signals, e.g. Rust's SIGPIPE, survive `execve` otherwise).
/// Async-signal-safe.
pub fn reset_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context;
        // numbers that are invalid or reserved by libc fail with EINVAL, which
        // is ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Ignore each of `sigs` (`SIG_IGN`). Async-signal-safe.
pub fn ignore_signals(sigs: &[libc::c_int]) {
    for &sig in sigs {
        // SAFETY: SIG_IGN runs no code of ours in signal context; an invalid
        // number fails with EINVAL, which is ignored.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// Run this process under `SCHED_FIFO` at the lowest real-time priority, so
/// that it runs as soon as it is woken, before the normal processes (root
/// only). Async-signal-safe.
pub fn realtime() -> nix::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0
    // is the calling process.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    Errno::result(r).map(drop)
}

/// Close every file descriptor but the two of `keep`. Async-signal-safe.
pub fn close_all_except(keep: [std::os::fd::RawFd; 2]) -> nix::Result<()> {
    let (a, b) = (keep[0].min(keep[1]) as u32, keep[0].max(keep[1]) as u32);
    for (first, last) in [
        (0, a.checked_sub(1)),
        (a + 1, b.checked_sub(1)),
        (b + 1, Some(u32::MAX)),
    ] {
        let Some(last) = last else { continue };
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors; the caller owns the
        // process's descriptor table (a freshly forked child) and keeps
        // using only `keep`.
        let ret = unsafe { libc::close_range(first, last, 0) };
        Errno::result(ret)?;
    }
    Ok(())
}

/// `dup2(fd, target)`: install `fd` as descriptor `target` (without
/// close-on-exec). Async-signal-safe.
pub fn dup_onto(fd: std::os::fd::RawFd, target: std::os::fd::RawFd) -> nix::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; an invalid `fd`
    // fails with EBADF.
    let r = unsafe { libc::dup2(fd, target) };
    Errno::result(r).map(drop)
}

/// Drop to `uid`/`gid` with supplementary `groups` (left alone when `None`),
/// for this thread only, by raw syscalls. Async-signal-safe.
///
/// glibc's setuid/setgid/setgroups apply the change to every thread of the
/// process it believes exists; in a child cloned from a multi-threaded
/// parent that list still names the parent's threads, and the wrappers wait
/// forever for threads that are not there. The child has one thread, so the
/// raw per-thread syscalls are exactly what is needed.
pub fn drop_credentials(
    uid: u32,
    gid: u32,
    groups: Option<&[u32]>,
) -> Result<(), (Errno, CredStep)> {
    if let Some(groups) = groups {
        // SAFETY: setgroups reads `groups.len()` gid_t values from the
        // slice's pointer, which is valid for that many elements.
        let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
        Errno::result(r).map_err(|e| (e, CredStep::Groups))?;
    }
    // SAFETY: setresgid/setresuid take integers only.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
    Errno::result(r).map_err(|e| (e, CredStep::Gid))?;
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
    Errno::result(r).map_err(|e| (e, CredStep::Uid))?;
    Ok(())
}

/// Which credential change [`drop_credentials`] failed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredStep {
    Groups,
    Gid,
    Uid,
}

/// Make `cmd` run in the network namespace of process `pid` (a probe
/// against a service in a sandbox with no network of its own).
pub fn in_network_of(cmd: &mut std::process::Command, pid: i32) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let ns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net"))?.into();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setns(2), which is async-signal-safe; `ns` is owned by the
    // closure and outlives it.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    Ok(())
}

/// Mark every file descriptor from `first` up close-on-exec, so that nothing
/// the caller left open leaks into the program. Async-signal-safe.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let ret =
        unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    Errno::result(ret).map(drop)
}

/// A child stopped by its own SIGSTOP, not yet exec'd.
pub struct Stopped {
    pub pid: Pid,
    /// Read end of a close-on-exec pipe: EOF when the exec succeeded, or the
    /// errno of the failed step (4 bytes) followed by a step byte.
    status: OwnedFd,
}

/// Which step failed in the child, as reported through the status pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    PreExec,
    Exec,
}

impl Stopped {
    /// After the child has run past exec (or died): `None` when the exec
    /// succeeded, else the failed step and its errno.
    pub fn exec_result(&self) -> Option<(ChildStep, Errno)> {
        let mut b = [0u8; 5];
        let n = nix::unistd::read(&self.status, &mut b).ok()?;
        if n < 5 {
            return None;
        }
        let errno = Errno::from_raw(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let step = if b[4] == 0 {
            ChildStep::PreExec
        } else {
            ChildStep::Exec
        };
        Some((step, errno))
    }
}

/// Fork; in the child stop with SIGSTOP, then run `pre_exec` (after the
/// parent has attached and sent SIGCONT) and `execve(prog, argv, envp)`.
/// Returns once the child is stopped.
///
/// Everything the child needs is allocated before the fork: the child only
/// makes syscalls.
///
/// # Safety (crate-private contract)
///
/// `pre_exec` runs in the forked child of a possibly multi-threaded
/// process, so it must be async-signal-safe (syscalls only: no allocation,
/// no locks, no stdio). Crate-private for that reason: the tracer's launch
/// is the only caller.
pub(crate) fn spawn_stopped(
    prog: &CStr,
    argv: &CStringArray,
    envp: &CStringArray,
    stdout: Option<std::os::fd::RawFd>,
    pre_exec: &dyn Fn() -> nix::Result<()>,
) -> nix::Result<Stopped> {
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC)?;
    let parent = nix::unistd::getpid();

    // SAFETY: the child only calls async-signal-safe functions (prctl,
    // getppid, raise, the caller's pre_exec which installs a filter,
    // execve, write, _exit) on data prepared before the fork.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(rd);
            let report = |step: u8, e: Errno| -> ! {
                let mut b = [0u8; 5];
                b[..4].copy_from_slice(&(e as i32).to_ne_bytes());
                b[4] = step;
                let _ = nix::unistd::write(&wr, &b);
                // SAFETY: _exit is always safe to call; it skips destructors
                // that belong to the parent's state.
                unsafe { libc::_exit(127) }
            };
            // Ignored signals survive execve (Rust ignores SIGPIPE): give
            // the program the dispositions it would get from a shell.
            reset_signal_dispositions();
            if let Some(fd) = stdout {
                if let Err(e) = dup_onto(fd, 1) {
                    report(0, e);
                }
            }
            // While it waits stopped for the tracer, the child holds copies
            // of every descriptor of jail (close-on-exec ones too, until
            // the exec): killed then, jail would leave it stopped forever,
            // and with it the ebpf backend's programs attached. Die with
            // the parent until it has let the child run on to its exec.
            if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
                report(0, Errno::last());
            }
            if nix::unistd::getppid() != parent {
                // The parent died before the line above took effect.
                // SAFETY: as in `report`.
                unsafe { libc::_exit(127) }
            }
            if raise(Signal::SIGSTOP).is_err() {
                report(0, Errno::last());
            }
            // Continued by an attached tracer: the exec follows at once,
            // and the program must not die with jail's tracing thread.
            if nix::sys::prctl::set_pdeathsig(None).is_err() {
                report(0, Errno::last());
            }
            if let Err(e) = pre_exec() {
                report(0, e);
            }
            let e = execve(prog, argv, envp);
            report(1, e);
        }
        ForkResult::Parent { child } => {
            drop(wr);
            loop {
                match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
                    Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => break,
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                        return Err(Errno::ECHILD)
                    }
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                }
            }
            let _ = rd.as_raw_fd();
            Ok(Stopped {
                pid: child,
                status: rd,
            })
        }
    }
}

/// A pidfd for process `pid` (close-on-exec): readable once it has exited,
/// for a loop that waits for it and for signals at once.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (none) and passes no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(fd)?;
    // SAFETY: on success pidfd_open returned a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) })
}

/// Send `sig` to the process of `pidfd` (which, unlike a pid, cannot name
/// a newer process). Async-signal-safe.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> nix::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags passes no
    // memory; the descriptor is borrowed for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Whether this process has CAP_SYS_ADMIN in its effective set (it may then
/// install a seccomp filter without no_new_privs, which would break setuid
/// programs in the traced run).
pub fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Work run in a child created by [`clone_into`] (the sandbox's hooks): a
/// closure that must be async-signal-safe, a contract carried by the
/// `unsafe` constructor.
pub struct ChildHook(Box<dyn Fn() -> nix::Result<()> + Send + Sync>);

impl ChildHook {
    /// Wrap `f` as work for a cloned child.
    ///
    /// # Safety
    ///
    /// `f` runs in a child cloned from a possibly multi-threaded process,
    /// where another thread may have held the allocator's or stdio's lock at
    /// the clone: it must only do async-signal-safe work (raw syscalls on
    /// data prepared before the clone; no allocation, no locks, no stdio, no
    /// panics that unwind).
    pub unsafe fn new(f: impl Fn() -> nix::Result<()> + Send + Sync + 'static) -> ChildHook {
        ChildHook(Box::new(f))
    }

    /// A hook that installs the seccomp filter `prog` (the tracer's filter,
    /// installed in the payload just before its exec).
    pub fn seccomp(prog: Vec<super::seccomp::Insn>) -> ChildHook {
        // SAFETY: `seccomp::install` makes one prctl/seccomp syscall on the
        // program prepared here, before the clone; it neither allocates nor
        // locks.
        unsafe { ChildHook::new(move || super::seccomp::install(&prog)) }
    }
}

impl std::ops::Deref for ChildHook {
    type Target = dyn Fn() -> nix::Result<()> + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// The state letter of `/proc/PID/stat` (`T` stopped, `Z` zombie), or
    /// None once the process is gone.
    fn state(pid: Pid) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    /// A child waiting stopped for its tracer dies with the process that
    /// forked it: killed in that window, jail would otherwise leave it
    /// stopped forever, holding copies of jail's descriptors (the ebpf
    /// backend's programs stay attached while any copy is open).
    #[test]
    fn a_stopped_child_dies_with_its_parent() {
        let prog = CString::new("/bin/true").unwrap();
        let argv = CStringArray::new(vec![prog.clone()]);
        let envp = CStringArray::new(Vec::new());
        let (rd, wr) = pipe2(OFlag::O_CLOEXEC).unwrap();
        // SAFETY: the child makes syscalls only (spawn_stopped's fork,
        // waitpid, write, pause) on data allocated before this fork.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = match spawn_stopped(&prog, &argv, &envp, None, &|| Ok(())) {
                    Ok(s) => {
                        let _ = nix::unistd::write(&wr, &s.pid.as_raw().to_ne_bytes());
                        loop {
                            nix::unistd::pause();
                        }
                    }
                    Err(_) => 1,
                };
                // SAFETY: _exit skips the test harness's state.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(wr);
                let mut b = [0u8; 4];
                assert_eq!(nix::unistd::read(&rd, &mut b).unwrap(), 4);
                let stopped = Pid::from_raw(i32::from_ne_bytes(b));
                assert_eq!(state(stopped), Some('T'), "the child waits stopped");
                nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
                waitpid(child, None).unwrap();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while matches!(state(stopped), Some(s) if s != 'Z') {
                    if std::time::Instant::now() > deadline {
                        let _ = nix::sys::signal::kill(stopped, Signal::SIGKILL);
                        panic!("the stopped child {stopped} outlived its parent");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}
