//! The tracer: run a command and record every file it and its children touch.

pub mod log;

pub use log::{AccessKind, AccessLog, FileAccess};
