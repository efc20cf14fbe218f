//! The thin syscall layer: every `unsafe` block of the crate lives here, each
//! with a `// SAFETY:` note, behind small safe wrappers.

pub mod bpf;
pub mod caps;
pub mod kernel_btf;
pub mod netdev;
pub mod process;
pub mod ptrace;
pub mod seccomp;
pub mod signals;
/// The interrupt flag's former name: `signals` holds both modes.
pub use signals as interrupt;
pub mod tempdir;
pub mod xattr;
