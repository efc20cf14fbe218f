//! Catching the signals `jail` forwards to the command it runs.
//!
//! The handler only records the signal; the main loop (blocked in waitpid,
//! which the signal interrupts: no SA_RESTART) forwards it. A signal sent by
//! the kernel for a terminal (Ctrl-C reaches the whole foreground process
//! group, the command included) is noted but not forwarded again.

use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Signals forwarded to the traced command.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Bit N set: signal N arrived from a process (kill), to forward.
static PENDING_USER: AtomicU64 = AtomicU64::new(0);
/// Bit N set: signal N arrived from the kernel (a terminal).
static PENDING_KERNEL: AtomicU64 = AtomicU64::new(0);
/// Bit N set: signal N arrived at all since the handler was installed
/// (never cleared): whether the command died of a signal jail got too.
static SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let code = if info.is_null() {
        libc::SI_USER
    } else {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers,
        // and it is not null here.
        unsafe { (*info).si_code }
    };
    let bit = 1u64 << (sig as u64 & 63);
    SEEN.fetch_or(bit, Ordering::SeqCst);
    if code == libc::SI_KERNEL {
        PENDING_KERNEL.fetch_or(bit, Ordering::SeqCst);
    } else {
        PENDING_USER.fetch_or(bit, Ordering::SeqCst);
    }
}

/// Install the recording handler for [`FORWARDED`].
pub fn install_forwarding() -> nix::Result<()> {
    let act = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for s in FORWARDED {
        // SAFETY: the handler only touches atomics (async-signal-safe).
        unsafe { sigaction(s, &act) }?;
    }
    Ok(())
}

/// Restore the default action of [`FORWARDED`].
pub fn restore_default() {
    let act = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in FORWARDED {
        // SAFETY: installing SIG_DFL has no handler code to be unsafe.
        let _ = unsafe { sigaction(s, &act) };
    }
}

/// Signals received since the last call: `(signal, sent by a process)`.
pub fn take_pending() -> Vec<(Signal, bool)> {
    let user = PENDING_USER.swap(0, Ordering::SeqCst);
    let kernel = PENDING_KERNEL.swap(0, Ordering::SeqCst);
    let mut out = Vec::new();
    for s in FORWARDED {
        let bit = 1u64 << (s as u64);
        if user & bit != 0 {
            out.push((s, true));
        } else if kernel & bit != 0 {
            out.push((s, false));
        }
    }
    out
}

/// Whether signal `sig` (one of [`FORWARDED`]) reached jail while it was
/// forwarding: a command killed by it was interrupted (Ctrl-C, kill), not
/// failing on its own.
pub fn seen(sig: i32) -> bool {
    (0..64).contains(&sig) && SEEN.load(Ordering::SeqCst) & (1u64 << sig) != 0
}
