//! jail's signal handling, in two modes (one module: both take over
//! SIGINT and SIGTERM, and whichever is installed last wins).
//!
//! **Forwarding**, while a traced command runs ([`install_forwarding`]):
//! the handler only records the signal; the main loop (blocked in waitpid,
//! which the signal interrupts: no SA_RESTART) forwards it. A signal sent by
//! the kernel for a terminal (Ctrl-C reaches the whole foreground process
//! group, the command included) is noted but not forwarded again.
//!
//! **Interruption**, during jail's own work ([`install`]): SIGINT/SIGTERM
//! become a flag that long work checks, so that it unwinds normally and
//! destructors remove temporary files (a signal's default action would kill
//! the process without running them). Long loops call [`check`] between
//! units of work; an `Err` travels up like any error, temp files and dirs
//! are dropped on the way, and the CLI exits 130. A second signal while the
//! first is being handled restores the default action and re-raises it, so
//! a stuck process can still be killed with a second Ctrl-C.
//! (`sys::interrupt` is this module under its former name.)

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::sys::signal::{self, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

// ------------------------------------------------------------ forwarding ---

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

// ---------------------------------------------------------- interruption ---

/// The signal received, 0 when none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Work stopped because SIGINT or SIGTERM arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

impl Interrupted {
    /// The conventional exit status: 128 + signal number.
    pub fn exit_code(self) -> i32 {
        128 + self.0 as i32
    }
}

extern "C" fn on_interrupt(sig: libc::c_int) {
    if RECEIVED.swap(sig, Ordering::SeqCst) != 0 {
        // Second signal: give up on a clean unwind. Both calls are
        // async-signal-safe.
        // SAFETY: resetting a disposition to SIG_DFL and raising a signal
        // touch no Rust state.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Turn SIGINT and SIGTERM into the flag [`check`] reads. Idempotent.
pub fn install() {
    // Set every time, not once: another stage (the tracer's signal
    // forwarding) may have installed its own handler in between.
    // No SA_RESTART: a blocking read returns EINTR, std retries it, and the
    // next `check` sees the flag.
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls
        // async-signal-safe libc functions.
        let _ = unsafe { signal::sigaction(sig, &action) };
    }
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// `Err` once SIGINT or SIGTERM has arrived.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}
