//! A traced task's wait status, decoded once into what the event loop acts
//! on (as the `pete` crate's `Stop`): the loop matches on kinds of stop, not
//! on raw `PTRACE_EVENT_*` numbers.

use nix::sys::ptrace::Event;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::super::log::ExitStatus;

/// What a `waitpid` on the traced tasks reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The task is gone (exited, or killed by a signal).
    Gone(Pid, ExitStatus),
    /// Signal-delivery-stop: the signal is delivered as if untraced.
    Signal(Pid, Signal),
    /// A syscall the seccomp filter returned SECCOMP_RET_TRACE for.
    Seccomp(Pid),
    /// A fork, vfork or clone: the new task's id is the event message.
    Clone(Pid, CloneKind),
    /// A successful execve (the former thread id is the event message).
    Exec(Pid),
    /// Group-stop (kill -STOP, job control): stays stopped until SIGCONT.
    Group(Pid),
    /// Any other stop the tracer only resumes: a `PTRACE_EVENT_STOP` that is
    /// not a group-stop, an event jail did not ask for.
    Resume(Pid),
    /// A syscall-stop (none is asked for: resumed at once, even for a task
    /// whose creation event has not been seen).
    Syscall(Pid),
}

/// Which call created a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloneKind {
    Fork,
    Vfork,
    /// `clone`/`clone3`: a thread or a process, by its flags.
    Clone,
}

impl Stop {
    /// `None` for statuses that are no stop (`Continued`, `StillAlive`).
    pub(super) fn decode(status: WaitStatus) -> Option<Stop> {
        Some(match status {
            WaitStatus::Exited(pid, code) => Stop::Gone(pid, ExitStatus::Code { code }),
            WaitStatus::Signaled(pid, sig, _) => {
                Stop::Gone(pid, ExitStatus::Signal { signal: sig as i32 })
            }
            WaitStatus::Stopped(pid, sig) => Stop::Signal(pid, sig),
            WaitStatus::PtraceEvent(pid, sig, ev) => match ev {
                e if e == Event::PTRACE_EVENT_SECCOMP as i32 => Stop::Seccomp(pid),
                e if e == Event::PTRACE_EVENT_FORK as i32 => Stop::Clone(pid, CloneKind::Fork),
                e if e == Event::PTRACE_EVENT_VFORK as i32 => Stop::Clone(pid, CloneKind::Vfork),
                e if e == Event::PTRACE_EVENT_CLONE as i32 => Stop::Clone(pid, CloneKind::Clone),
                e if e == Event::PTRACE_EVENT_EXEC as i32 => Stop::Exec(pid),
                e if e == Event::PTRACE_EVENT_STOP as i32
                    && matches!(
                        sig,
                        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
                    ) =>
                {
                    Stop::Group(pid)
                }
                _ => Stop::Resume(pid),
            },
            WaitStatus::PtraceSyscall(pid) => Stop::Syscall(pid),
            WaitStatus::Continued(_) | WaitStatus::StillAlive => return None,
        })
    }

    /// The task it is about.
    pub(super) fn pid(&self) -> Pid {
        match *self {
            Stop::Gone(pid, _)
            | Stop::Signal(pid, _)
            | Stop::Seccomp(pid)
            | Stop::Clone(pid, _)
            | Stop::Exec(pid)
            | Stop::Group(pid)
            | Stop::Resume(pid)
            | Stop::Syscall(pid) => pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_to_stops() {
        let pid = Pid::from_raw(42);
        let event = |sig, ev: Event| Stop::decode(WaitStatus::PtraceEvent(pid, sig, ev as i32));
        assert_eq!(
            Stop::decode(WaitStatus::Exited(pid, 3)),
            Some(Stop::Gone(pid, ExitStatus::Code { code: 3 }))
        );
        assert_eq!(
            Stop::decode(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(Stop::Gone(pid, ExitStatus::Signal { signal: 9 }))
        );
        assert_eq!(
            Stop::decode(WaitStatus::Stopped(pid, Signal::SIGUSR1)),
            Some(Stop::Signal(pid, Signal::SIGUSR1))
        );
        assert_eq!(
            event(Signal::SIGTRAP, Event::PTRACE_EVENT_SECCOMP),
            Some(Stop::Seccomp(pid))
        );
        assert_eq!(
            event(Signal::SIGTRAP, Event::PTRACE_EVENT_VFORK),
            Some(Stop::Clone(pid, CloneKind::Vfork))
        );
        assert_eq!(
            event(Signal::SIGTRAP, Event::PTRACE_EVENT_EXEC),
            Some(Stop::Exec(pid))
        );
        // PTRACE_EVENT_STOP is a group-stop only with a stopping signal.
        assert_eq!(
            event(Signal::SIGTSTP, Event::PTRACE_EVENT_STOP),
            Some(Stop::Group(pid))
        );
        assert_eq!(
            event(Signal::SIGTRAP, Event::PTRACE_EVENT_STOP),
            Some(Stop::Resume(pid))
        );
        assert_eq!(Stop::decode(WaitStatus::StillAlive), None);
    }
}
