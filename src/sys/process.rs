//! Starting a traced command: fork a child that stops itself, so the tracer
//! can seize it before it runs anything, then lets it install its seccomp
//! filter and exec.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{raise, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

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
pub fn spawn_stopped(
    prog: &CStr,
    argv: &[CString],
    envp: &[CString],
    pre_exec: &dyn Fn() -> nix::Result<()>,
) -> nix::Result<Stopped> {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC)?;

    // SAFETY: the child only calls async-signal-safe functions (raise, the
    // caller's pre_exec which installs a filter, execve, write, _exit) on
    // data prepared before the fork.
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
            if raise(Signal::SIGSTOP).is_err() {
                report(0, Errno::last());
            }
            if let Err(e) = pre_exec() {
                report(0, e);
            }
            // SAFETY: both arrays are NULL-terminated and point into CStrings
            // that live until execve replaces the process image.
            unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
            report(1, Errno::last());
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
