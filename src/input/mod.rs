//! Opening "an image, a tree or a manifest" as a file set: what `jail diff`
//! and `jail report` take. An image (a local one, or one in a registry) is
//! unpacked (no daemon) into a temporary root that lives as long as the
//! [`Opened`] value.

use std::path::{Path, PathBuf};

use crate::image::read::{self, ImageSource, Unpacked};
use crate::manifest::Manifest;
use crate::registry::{RegistryOptions, RegistryRef};

use crate::fileset::FileSet;

/// What the input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Image,
    Tree,
    Manifest,
}

/// An opened input.
pub struct Opened {
    pub kind: Kind,
    pub fileset: FileSet,
    /// The manifest, when the input was one (reasons, the access log).
    pub manifest: Option<Manifest>,
    /// The unpacked image, when the input was one (its root holds the files).
    pub image: Option<Unpacked>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}: no such file or directory")]
    Missing(PathBuf),
    #[error("{0} has no file set: write the manifest with `jail trace --manifest` (it holds one)")]
    NoFileSet(PathBuf),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Image(#[from] read::ReadError),
    #[error("cannot read the tree {}", path.display())]
    Tree {
        path: PathBuf,
        source: crate::fileset::DirError,
    },
}

impl crate::error::ExitCode for OpenError {
    fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        match self {
            OpenError::Image(e) => e.interrupted(),
            _ => None,
        }
    }

    /// Bad input (exit 2) rather than a failure while reading (exit 1).
    fn is_bad_input(&self) -> bool {
        match self {
            OpenError::Image(e) => e.is_bad_input(),
            OpenError::Tree { .. } => false,
            _ => true,
        }
    }
}

fn is_manifest_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| {
        ["json", "yaml", "yml"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Open `input`: a manifest (`.json`, `.yaml`), a tree (a directory that is
/// not an OCI layout), or an image (an archive, an OCI layout `DIR`,
/// `DIR:TAG`, `DIR@sha256:…`, or a registry reference), unpacked under
/// `scratch`. A registry image is pulled with the default options.
pub fn open(input: &str, scratch: &Path) -> Result<Opened, OpenError> {
    open_with(input, scratch, &RegistryOptions::default())
}

/// [`open`], pulling a registry image with `registry` (TLS, credentials,
/// platform).
pub fn open_with(
    input: &str,
    scratch: &Path,
    registry: &RegistryOptions,
) -> Result<Opened, OpenError> {
    let path = Path::new(input);
    if path.is_file() && is_manifest_name(path) {
        let manifest = Manifest::read(path)?;
        let fileset = manifest
            .fileset
            .clone()
            .ok_or_else(|| OpenError::NoFileSet(path.to_path_buf()))?;
        return Ok(Opened {
            kind: Kind::Manifest,
            fileset,
            manifest: Some(manifest),
            image: None,
        });
    }
    if path.is_dir() && !path.join("oci-layout").exists() {
        let fileset = FileSet::from_dir(path).map_err(|source| OpenError::Tree {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Opened {
            kind: Kind::Tree,
            fileset,
            manifest: None,
            image: None,
        });
    }
    let looks_like_ref =
        input.contains(':') || input.contains('@') || RegistryRef::looks_like(input);
    if !path.exists() && !looks_like_ref {
        return Err(OpenError::Missing(path.to_path_buf()));
    }
    let source = ImageSource::parse(input)?;
    let image = read::unpack_with(&source, scratch, registry)?;
    let fileset = FileSet::from_dir(image.root()).map_err(|source| OpenError::Tree {
        path: image.root().to_path_buf(),
        source,
    })?;
    Ok(Opened {
        kind: Kind::Image,
        fileset,
        manifest: None,
        image: Some(image),
    })
}
