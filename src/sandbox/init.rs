//! The sandbox's side of the clone: init (pid 1 of the new pid namespace) and
//! the payload it forks. Nothing here allocates: the caller may be
//! multi-threaded, and the clone copied its allocator's locks in whatever
//! state they were (see `sys::process::clone_into`). Every input was prepared
//! in a [`Plan`]; every outcome goes back over the report pipe as fixed-size
//! [`Record`]s.

use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{boundary, Hooks, Plan, FORWARDED};
use crate::sys::process::{
    cloexec_from, clone_into, drop_credentials, dup_onto, execve, reset_signal_dispositions,
    CredStep,
};

/// Exit code of init or the payload when the sandbox itself failed (the
/// reason went over the report pipe).
pub(crate) const SETUP_FAILED: i32 = 125;

/// One message from the sandbox to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub kind: u32,
    pub index: u32,
    pub sub: u32,
    pub value: i32,
}

/// Setup is done; init waits for [`Child::start`](super::Child::start).
pub(crate) const READY: u32 = 1;
/// Setup step `index` failed at sub-step `sub` with errno `value`.
pub(crate) const SETUP: u32 = 2;
/// Starting the payload failed at step `sub` (a `P_*` code), about exec
/// candidate `index`, with errno `value`.
pub(crate) const PAYLOAD: u32 = 3;
/// The payload ended: `sub` is `EXITED` (value = code) or `SIGNALED` /
/// `DUMPED` (value = signal number).
pub(crate) const STATUS: u32 = 4;

pub(crate) const EXITED: u32 = 0;
pub(crate) const SIGNALED: u32 = 1;
pub(crate) const DUMPED: u32 = 2;

// Payload steps.
pub(crate) const P_GATE: u32 = 1;
pub(crate) const P_BEFORE_HOOK: u32 = 2;
pub(crate) const P_SIGNALS: u32 = 3;
pub(crate) const P_FORK: u32 = 4;
pub(crate) const P_PRE_EXEC_HOOK: u32 = 5;
pub(crate) const P_CHDIR: u32 = 6;
pub(crate) const P_SETGROUPS: u32 = 7;
pub(crate) const P_SETGID: u32 = 8;
pub(crate) const P_SETUID: u32 = 9;
pub(crate) const P_EXEC: u32 = 10;
pub(crate) const P_NOT_FOUND: u32 = 11;
pub(crate) const P_NO_INTERPRETER: u32 = 12;
pub(crate) const P_BOUNDING: u32 = 13;
pub(crate) const P_SEAL: u32 = 14;

pub(crate) const RECORD_SIZE: usize = 16;

impl Record {
    pub(crate) fn new(kind: u32, index: u32, sub: u32, value: i32) -> Record {
        Record {
            kind,
            index,
            sub,
            value,
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.sub.to_ne_bytes());
        b[12..16].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    pub(crate) fn from_bytes(b: &[u8; RECORD_SIZE]) -> Record {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Record {
            kind: u32::from_ne_bytes(word(0)),
            index: u32::from_ne_bytes(word(4)),
            sub: u32::from_ne_bytes(word(8)),
            value: i32::from_ne_bytes(word(12)),
        }
    }
}

/// Send a record. A pipe write of 16 bytes is atomic; if the caller has gone
/// away there is nobody to tell, so errors are ignored.
fn send(report: BorrowedFd, record: Record) {
    let bytes = record.to_bytes();
    loop {
        match nix::unistd::write(report, &bytes) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

fn fail(report: BorrowedFd, sub: u32, index: u32, errno: Errno, code: i32) -> i32 {
    send(report, Record::new(PAYLOAD, index, sub, errno as i32));
    code
}

/// The descriptors init works with.
pub(crate) struct Fds<'a> {
    /// Write end of the report pipe (close-on-exec).
    pub report: BorrowedFd<'a>,
    /// Read end of the start gate.
    pub gate: BorrowedFd<'a>,
    /// The caller's ends of both pipes, which init must not keep open.
    pub callers: [RawFd; 2],
}

/// The signals init waits for: those it forwards, and SIGCHLD.
fn init_mask() -> SigSet {
    let mut mask = SigSet::empty();
    for sig in FORWARDED {
        mask.add(sig);
    }
    mask.add(Signal::SIGCHLD);
    mask
}

/// Init: build the root, report READY, wait at the gate, fork the payload,
/// then forward signals and reap until the payload ends. Returns init's exit
/// code: the payload's code, 128+N when a signal N killed it, or
/// [`SETUP_FAILED`].
pub(crate) fn init_main(plan: &Plan, hooks: &Hooks, fds: &Fds) -> i32 {
    // The sandbox must not outlive its caller. (If the caller died before
    // this line, the report write below fails and the gate read sees EOF.)
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    for fd in fds.callers {
        let _ = nix::unistd::close(fd);
    }
    // Modes of the directories we create are exactly the ones asked for.
    nix::sys::stat::umask(Mode::empty());
    let mask = init_mask();
    if let Err(e) = mask.thread_block() {
        return fail(fds.report, P_SIGNALS, 0, e, SETUP_FAILED);
    }

    for (i, step) in plan.steps.iter().enumerate() {
        if let Err((sub, errno)) = step.action.perform() {
            send(fds.report, Record::new(SETUP, i as u32, sub, errno as i32));
            return SETUP_FAILED;
        }
    }
    send(fds.report, Record::new(READY, 0, 0, 0));

    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fds.gate, &mut byte) {
            Ok(1) => break,
            // The caller dropped its Child without starting it.
            Ok(_) => return SETUP_FAILED,
            Err(Errno::EINTR) => continue,
            Err(e) => return fail(fds.report, P_GATE, 0, e, SETUP_FAILED),
        }
    }
    if let Some(hook) = &hooks.before_payload {
        if let Err(e) = hook() {
            return fail(fds.report, P_BEFORE_HOOK, 0, e, SETUP_FAILED);
        }
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => return fail(fds.report, P_SIGNALS, 0, e, SETUP_FAILED),
    };
    let payload = match clone_into(CloneFlags::empty(), || {
        payload_main(plan, hooks, fds.report)
    }) {
        Ok((pid, _pidfd)) => pid,
        Err(e) => return fail(fds.report, P_FORK, 0, e, SETUP_FAILED),
    };
    supervise(payload, &signals, fds.report)
}

/// Forward signals to the payload and reap every process that ends, until
/// the payload itself ends.
fn supervise(payload: Pid, signals: &SignalFd, report: BorrowedFd) -> i32 {
    loop {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) if pid == payload => {
                    send(report, Record::new(STATUS, 0, EXITED, code));
                    return code;
                }
                Ok(WaitStatus::Signaled(pid, sig, dumped)) if pid == payload => {
                    let how = if dumped { DUMPED } else { SIGNALED };
                    send(report, Record::new(STATUS, 0, how, sig as i32));
                    return 128 + sig as i32;
                }
                // An orphan reaped.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        match signals.read_signal() {
            Ok(Some(info)) => {
                // Only signals someone sent with kill(2) are forwarded: those
                // the kernel generated for the terminal's process group (^C)
                // reached the payload already, being in the same group.
                if info.ssi_code <= 0 {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        if FORWARDED.contains(&sig) {
                            let _ = kill(payload, sig);
                        }
                    }
                }
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(_) => {
                // Cannot wait for signals any more: wait for the payload alone.
                let status = loop {
                    match waitpid(payload, None) {
                        Err(Errno::EINTR) => continue,
                        other => break other,
                    }
                };
                return match status {
                    Ok(WaitStatus::Exited(_, code)) => {
                        send(report, Record::new(STATUS, 0, EXITED, code));
                        code
                    }
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        send(report, Record::new(STATUS, 0, SIGNALED, sig as i32));
                        128 + sig as i32
                    }
                    _ => SETUP_FAILED,
                };
            }
        }
    }
}

/// The payload: become the program. Returns only on failure, with the exit
/// code (127 not found, 126 cannot execute, 125 the sandbox failed).
fn payload_main(plan: &Plan, hooks: &Hooks, report: BorrowedFd) -> i32 {
    let p = &plan.payload;
    reset_signal_dispositions();
    if let Err(e) = SigSet::empty().thread_set_mask() {
        return fail(report, P_SIGNALS, 0, e, SETUP_FAILED);
    }
    for (target, fd) in p.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            if let Err(e) = dup_onto(*fd, target as i32) {
                return fail(report, P_SIGNALS, 0, e, SETUP_FAILED);
            }
        }
    }
    // Descriptors the caller left open without close-on-exec stay outside.
    let _ = cloexec_from(3);
    nix::sys::stat::umask(p.umask);
    // The boundary, step one: while still root (CAP_SETPCAP).
    if let Err(e) = boundary::drop_bounding() {
        return fail(report, P_BOUNDING, 0, e, SETUP_FAILED);
    }
    if let Some(hook) = &hooks.pre_exec {
        if let Err(e) = hook() {
            return fail(report, P_PRE_EXEC_HOOK, 0, e, SETUP_FAILED);
        }
    }
    if !p.no_new_privs {
        if let Err(e) = boundary::install_filter(&p.filter) {
            return fail(report, P_SEAL, 0, e, SETUP_FAILED);
        }
    }
    if let Err(e) = nix::unistd::chdir(p.cwd.as_c_str()) {
        return fail(report, P_CHDIR, 0, e, SETUP_FAILED);
    }
    if let Some(ids) = &p.ids {
        // Raw per-thread syscalls: glibc's wrappers would wait for the
        // parent's threads (see `drop_credentials`).
        if let Err((e, step)) = drop_credentials(ids.uid, ids.gid, ids.groups.as_deref()) {
            let code = match step {
                CredStep::Groups => P_SETGROUPS,
                CredStep::Gid => P_SETGID,
                CredStep::Uid => P_SETUID,
            };
            return fail(report, code, 0, e, SETUP_FAILED);
        }
    }
    // Step two: the rest of the capabilities, no_new_privs, the deny-list.
    let sealed = if p.no_new_privs {
        boundary::seal(&p.filter)
    } else {
        boundary::seal_keeping_setuid()
    };
    if let Err(e) = sealed {
        return fail(report, P_SEAL, 0, e, SETUP_FAILED);
    }

    // execvp's search, inside the root, along the program's own PATH.
    let mut denied: Option<(usize, Errno)> = None;
    for (i, candidate) in p.candidates.iter().enumerate() {
        match execve(candidate, &p.argv, &p.envp) {
            Errno::ENOENT => {
                if nix::unistd::access(candidate.as_c_str(), nix::unistd::AccessFlags::F_OK).is_ok()
                {
                    // The file is there: what is missing is its ELF
                    // interpreter or its `#!` program.
                    return fail(report, P_NO_INTERPRETER, i as u32, Errno::ENOENT, 127);
                }
            }
            Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {}
            e @ (Errno::EACCES | Errno::EPERM) => {
                denied.get_or_insert((i, e));
            }
            other => return fail(report, P_EXEC, i as u32, other, 126),
        }
    }
    match denied {
        Some((i, e)) => fail(report, P_EXEC, i as u32, e, 126),
        None => fail(report, P_NOT_FOUND, 0, Errno::ENOENT, 127),
    }
}
