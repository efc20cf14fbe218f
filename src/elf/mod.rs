//! The ELF dependency closure, resolved statically inside a root exactly
//! as glibc's ld.so (or musl's loader) would resolve it at run time.
//!
//! - [`file`]: what the loader reads from one ELF file (class, machine,
//!   `PT_INTERP`, `DT_NEEDED`, `DT_RPATH`/`DT_RUNPATH`, `DT_SONAME`,
//!   set-user-ID bits) plus its hardening facts;
//! - [`ldcache`]: `/etc/ld.so.cache` in its old, new and compat layouts;
//! - [`dst`]: `$ORIGIN`, `$LIB`, `$PLATFORM`;
//! - [`platform`]: the CPU's hwcaps and the facts compiled into ld.so;
//! - [`resolver`]: the search itself, as [`Resolver::closure`].
//!
//! ```no_run
//! use jail::elf::{LoaderEnv, Outcome, Resolver};
//! use jail::resolve::Root;
//! let root = Root::host();
//! let resolver = Resolver::new(&root, LoaderEnv::host());
//! if let Outcome::Elf(c) = resolver.closure("/usr/bin/python3".as_ref())? {
//!     for path in c.paths() {
//!         println!("{}", path.display());
//!     }
//! }
//! # Ok::<(), jail::elf::ElfError>(())
//! ```
//!
//! docs/elf.md describes the search order, the cache formats and where ldd
//! itself differs from the loader.

use std::io;
use std::path::PathBuf;

pub mod dst;
pub mod file;
pub mod ldcache;
pub mod platform;
pub mod resolver;

pub use file::{ElfFile, Hardening, Linking, NotElf, Parsed, Relro};
pub use ldcache::LdCache;
pub use platform::{Cpu, GlibcBuild};
pub use resolver::{
    Closure, Flavor, FoundBy, LoaderEnv, Need, NeedKind, NeedResult, Object, Outcome, Resolver,
    Secure, Unresolved,
};

/// Why a file given to the resolver could not be examined. Problems of its
/// dependencies are not errors: they are reported in the [`Closure`].
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{}: no such file (inside the root)", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: malformed ELF file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}
