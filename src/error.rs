//! Errors across the crate: how one is printed and what exit code it maps
//! to. A leaf module (it uses only `sys::signals`).
//!
//! Every error type says its own context (which path, pid, image, what to
//! do) and returns its cause from `source()`; no message repeats its cause.
//! [`Chain`] prints an error with its causes once, as `context: cause:
//! cause`, the way the CLI's error printer does. [`ExitCode`] maps an error
//! to the CLI's exit codes (1 the work failed, 2 bad usage or input, 128+N
//! interrupted by signal N), so interruption is handled the same in every
//! command.

use std::error::Error;
use std::fmt;

use crate::sys::signals::Interrupted;

/// An error and its causes on one line, `context: cause: cause`: for the
/// places that must put a whole error into one message (warnings, findings,
/// JSON fields). An error whose message equals its cause's (a transparent
/// wrapper) is printed once.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let msg = e.to_string();
            if msg != last && !msg.is_empty() {
                write!(f, ": {msg}")?;
            }
            last = msg;
            next = e.source();
        }
        Ok(())
    }
}

/// The exit code an error maps to: 128+N when the work was interrupted by
/// signal N, 2 when the user's input or request is at fault, else 1.
pub trait ExitCode: Error {
    /// The signal, when the work stopped because SIGINT/SIGTERM arrived.
    fn interrupted(&self) -> Option<Interrupted> {
        None
    }

    /// The input or the request is at fault (exit 2), rather than the work
    /// (exit 1).
    fn is_bad_input(&self) -> bool {
        false
    }

    /// 128+N, 2 or 1, in that order of precedence.
    fn exit_code(&self) -> i32 {
        match self.interrupted() {
            Some(i) => i.exit_code(),
            None if self.is_bad_input() => 2,
            None => 1,
        }
    }
}

impl ExitCode for Interrupted {
    fn interrupted(&self) -> Option<Interrupted> {
        Some(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Same(#[from] std::io::Error);

    #[test]
    fn a_chain_says_each_cause_once() {
        let e = Outer("/x", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read /x: No such file or directory (os error 2)"
        );
        let e = Same(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            Chain(&e).to_string(),
            "No such file or directory (os error 2)"
        );
    }

    #[test]
    fn interruption_wins_over_bad_input() {
        let i = Interrupted(nix::sys::signal::Signal::SIGINT);
        assert_eq!(ExitCode::exit_code(&i), 130);
        let t = Interrupted(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(ExitCode::exit_code(&t), 143);
    }
}
