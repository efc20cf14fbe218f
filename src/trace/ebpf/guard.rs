//! The guard of the ebpf backend: "jail dies ⇒ the command dies", which
//! ptrace gets from `PTRACE_O_EXITKILL`.
//!
//! jail forks the guard after loading the BPF objects and **before** arming
//! the launcher, so the guard is never traced. The guard keeps only two
//! descriptors: the read end of a pipe whose write end only jail holds
//! (close-on-exec, closed in the guard), and its copy of the `traced` map's
//! fd (the command's live thread groups, kept by the kernel side). It waits
//! on the pipe:
//! - a byte: the trace ended normally ([`Guard::release`]); it exits;
//! - EOF without a byte: jail died (SIGKILL, the OOM killer, a crash). It
//!   SIGKILLs every thread group of the map at once, then takes the map's
//!   first key, SIGKILLs that group again (unless its pid was reused),
//!   deletes the key, and repeats until the map is empty; then it exits,
//!   and with its fd the map goes away.
//!
//! The guard is a forked child of a multi-threaded process that does not
//! exec: it makes raw syscalls only (`sys::bpf`, `sys::process`), no
//! allocation, no locks. It leaves the terminal's signals to the command
//! (its own session, SIGINT/SIGQUIT/SIGTSTP… ignored) so that it survives
//! what kills jail short of SIGKILL of its own pid, and runs `SCHED_FIFO` so
//! that, woken, it outruns a forking command. docs/tracing.md ("No
//! leftovers") has the remaining windows.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::sys::{bpf, process};

use super::TraceError;

/// Signals the guard ignores: a terminal's, and a signal jail forwards.
const IGNORED: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGPIPE,
];

/// jail's side of a running guard. Dropping it reaps the guard; dropped
/// without [`Guard::release`] (an error path), the guard sees EOF and first
/// kills what the map holds.
pub(super) struct Guard {
    /// Waited on instead of the pid: jail's other waits may reap the guard
    /// first, and a pid could then name another child.
    pidfd: OwnedFd,
    done: Option<OwnedFd>,
}

impl Guard {
    /// Fork the guard over `traced` (the map's fd). Call before arming.
    pub fn start(traced: BorrowedFd<'_>) -> Result<Guard, TraceError> {
        let setup = |what| move |source| TraceError::Setup { what, source };
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(setup("create the guard's pipe"))?;
        // The child runs on a copy of this memory: the borrows stay valid.
        let read_end = rd.as_fd();
        // USER_HZ, for /proc's start times (sysconf before the fork).
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100, |v| v as u64);
        let (_, pidfd) = process::clone_into(nix::sched::CloneFlags::empty(), || {
            guard_main(read_end, traced, hz)
        })
        .map_err(setup("fork the guard process"))?;
        drop(rd);
        Ok(Guard {
            pidfd,
            done: Some(wr),
        })
    }

    /// The trace ended normally (nothing of the command is left): tell the
    /// guard to exit without killing. Does not wait for it (the drop does).
    pub fn release(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = nix::unistd::write(&done, b"x");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Close the write end first: without the byte, the guard sees EOF.
        self.done = None;
        // ECHILD: already reaped (jail reaps the orphans it adopts).
        while let Err(Errno::EINTR) = waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED) {}
    }
}

/// The guard process (async-signal-safe code only). Returns its exit code.
fn guard_main(done: BorrowedFd<'_>, traced: BorrowedFd<'_>, hz: u64) -> i32 {
    let _ = nix::unistd::setsid();
    process::ignore_signals(&IGNORED);
    // Woken by jail's death, it must outrun a command that forks.
    let _ = process::realtime();
    if process::close_all_except([done.as_raw_fd(), traced.as_raw_fd()]).is_err() {
        return 2;
    }
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(done, &mut byte) {
            Err(Errno::EINTR) => continue,
            // jail ended the trace itself.
            Ok(1) => return 0,
            // EOF: jail is gone without a word.
            _ => break,
        }
    }
    kill_traced(traced, hz)
}

/// The most keys a first pass visits: the map's size (bpf/trace.bpf.c)
/// twice, for walks restarted by keys the kernel side deletes meanwhile.
const FIRST_PASS: usize = 2 * 65536;

/// SIGKILL every thread group of the map, deleting each key once handled,
/// until the map is empty. `hz`: the clock ticks of /proc's start times.
///
/// A first pass signals every key at once, so that the command stops
/// forking untraced children as soon as possible (a fork storm's processes
/// would otherwise go on forking while the careful pass below reaches
/// them): jail died moments ago, and pids are allocated cyclically, so a
/// pid of the map names another process only after the whole pid space
/// has been used since. The second pass checks each process's start time
/// and deletes its key.
fn kill_traced(traced: BorrowedFd<'_>, hz: u64) -> i32 {
    let mut key = None;
    for _ in 0..FIRST_PASS {
        match bpf::next_key_u32(traced, key) {
            Ok(Some(tgid)) => {
                if let Ok(pid) = i32::try_from(tgid) {
                    if pid > 1 {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                key = Some(tgid);
            }
            _ => break,
        }
    }
    // Once jail's links are released (milliseconds after its death, from a
    // work queue), a group that exits leaves its key behind, and its pid
    // may come to name a newer process. Until then the fork tracepoint still
    // adds children: a process that started up to a second after jail's
    // death may be the command's; one that started later is not.
    let latest = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(|t| ticks(t.tv_sec() as u64, t.tv_nsec() as u64, hz) + hz);
    loop {
        match bpf::first_key_u32(traced) {
            Ok(None) => return 0,
            Ok(Some(tgid)) => {
                kill_group(tgid, latest);
                if bpf::delete_u32(traced, tgid).is_err() {
                    return 3;
                }
            }
            Err(_) => return 3,
        }
    }
}

fn ticks(secs: u64, nsecs: u64, hz: u64) -> u64 {
    secs * hz + nsecs * hz / 1_000_000_000
}

/// SIGKILL the group `tgid` through a pidfd, unless it started after
/// `latest` (clock ticks since boot: then its pid was reused, it is not the
/// command's).
fn kill_group(tgid: u32, latest: Option<u64>) {
    let Ok(pid) = i32::try_from(tgid) else { return };
    if pid <= 1 {
        return;
    }
    // Gone already: nothing to kill.
    let Ok(pidfd) = process::pidfd_open(Pid::from_raw(pid)) else {
        return;
    };
    let started = start_ticks(pid);
    // Still running after the read: /proc named the process of the pidfd.
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    if matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
        // Exited meanwhile.
        return;
    }
    if let (Some(started), Some(latest)) = (started, latest) {
        if started > latest {
            return;
        }
    }
    let _ = process::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// /proc/PID/stat), read without allocating.
fn start_ticks(pid: i32) -> Option<u64> {
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    let mut digits = [0u8; 12];
    let (mut d, mut v) = (0, pid as u32);
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[n] = digits[d];
        n += 1;
    }
    for &b in b"/stat" {
        path[n] = b;
        n += 1;
    }
    let path = CStr::from_bytes_until_nul(&path).ok()?;
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut buf = [0u8; 1024];
    let len = nix::unistd::read(&fd, &mut buf).ok()?;
    parse_start(&buf[..len])
}

/// Field 22 of a /proc/PID/stat line (the name, field 2, may hold spaces
/// and parentheses: count from the last ')').
fn parse_start(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    // Fields 3… follow ") ".
    let field = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(22 - 3)?;
    let mut v: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_a_stat_line() {
        let line =
            b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 0\n";
        assert_eq!(parse_start(line), Some(123456));
        assert_eq!(parse_start(b"42 (x) S 1"), None);
    }

    #[test]
    fn own_start_time_is_before_now() {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
        let me = start_ticks(std::process::id() as i32).expect("read /proc/self/stat");
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap();
        let now = ticks(t.tv_sec() as u64, t.tv_nsec() as u64, hz);
        assert!(me <= now && me > 0, "{me} {now}");
    }
}
