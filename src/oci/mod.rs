//! The OCI vocabulary shared by the image writer/reader and the registry
//! client: image references (`NAME:TAG`) and platforms (`OS/ARCH`). A leaf
//! module (it uses only `resolve`), so `image` and `registry` can both
//! depend on it without depending on each other both ways.

mod platform;
mod reference;

pub use self::platform::{BadPlatform, Platform};
pub use self::reference::{BadReference, Reference};
