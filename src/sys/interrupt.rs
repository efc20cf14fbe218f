//! SIGINT/SIGTERM as a flag that long work checks, so that it unwinds
//! normally and destructors remove temporary files (a signal's default
//! action would kill the process without running them).
//!
//! [`install`] (idempotent) takes over both signals. Long loops call [`check`] between units of
//! work; an `Err` travels up like any error, temp files and dirs are dropped
//! on the way, and the CLI exits 130. A second signal while the first is
//! being handled restores the default action and re-raises it, so a stuck
//! process can still be killed with a second Ctrl-C.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

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

extern "C" fn on_signal(sig: libc::c_int) {
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
        SigHandler::Handler(on_signal),
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
