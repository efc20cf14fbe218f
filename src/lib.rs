//! jail: build the smallest container image that still runs a program, by
//! watching the program run.
//!
//! The pipeline, one module a stage (see docs/ARCHITECTURE.md):
//!
//! ```text
//! trace ─► access log ─► fileset (resolve, elf closure) ─┬─► tree ─► sandbox (run/verify)
//!                                                         ├─► pack ─► image ◄─► registry
//!                                                         └─► report
//! ```
//!
//! `sys` is the only module with `unsafe`: thin wrappers over the syscalls the
//! tracer and the sandbox need.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod attest;
pub mod config;
pub mod digest;
pub mod elf;
pub mod fileset;
pub mod image;
pub mod manifest;
pub mod pack;
pub mod paths;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod sandbox;
pub mod sys;
pub mod trace;
pub mod tree;
pub mod verify;
