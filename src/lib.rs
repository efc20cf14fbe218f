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

// Only `sys` may write `unsafe` (Cargo.toml's [lints] make every block
// need a `// SAFETY:` note and every unsafe fn a `# Safety` section).
#![deny(unsafe_code)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "jail supports only x86_64 Linux: the tracer reads x86_64 registers (orig_rax, the syscall \
     argument registers) and its seccomp filter checks AUDIT_ARCH_X86_64; build it for \
     x86_64-unknown-linux-gnu (or -musl)"
);

pub mod atomic;
pub mod attest;
pub mod config;
pub mod digest;
pub mod dpkg;
pub mod elf;
pub mod environment;
pub mod error;
pub mod fileset;
pub mod image;
pub mod input;
pub mod manifest;
pub mod oci;
pub mod pack;
pub mod paths;
pub mod pipeline;
pub mod probe;
pub mod progress;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod sandbox;
#[allow(unsafe_code)]
pub mod sys;
pub mod trace;
pub mod tree;
pub mod verify;
