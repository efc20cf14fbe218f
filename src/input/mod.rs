//! What `jail diff`, `jail report` and `jail slim` take as input: "an image,
//! a tree or a manifest", classified by one rule ([`Input::parse`]) and
//! opened as a file set ([`open`]). An image (a local one, or one in a
//! registry) is unpacked (no daemon) into a temporary root that lives as
//! long as the [`Opened`] value.
//!
//! The rule, in order:
//! 1. an existing file named `*.json`, `*.yaml` or `*.yml` is a manifest;
//! 2. an existing directory with `oci-layout` or `index.json` is an OCI
//!    layout (an image), any other directory a tree;
//! 3. any other existing file is an image archive (docker or OCI);
//! 4. otherwise `DIR:TAG` and `DIR@sha256:…` name an image of a layout and
//!    `HOST[:PORT]/NAME[:TAG|@sha256:…]` an image in a registry
//!    ([`ImageSource::parse`]); anything else does not exist.
//!
//! `jail slim` takes only images: it uses [`ImageSource::parse`], which
//! agrees with rules 2–4 for everything that is an image.

use std::path::{Path, PathBuf};

use crate::fileset::FileSet;
use crate::image::read::{self, ImageSource, Unpacked};
use crate::manifest::Manifest;
use crate::registry::{RegistryOptions, RegistryRef};

/// What the input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Image,
    Tree,
    Manifest,
}

/// A named input, classified but not read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Image(ImageSource),
    Tree(PathBuf),
    Manifest(PathBuf),
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
    #[error("{}: no such file or directory: name an image (an archive, an OCI layout DIR, DIR:TAG, DIR@sha256:…, or a registry reference HOST/NAME[:TAG]), a directory tree, or a manifest (.yaml, .yml, .json)", .0.display())]
    Missing(PathBuf),
    #[error("{}: the manifest has no file set (did the traced command fail?); re-run `jail trace --manifest FILE -- CMD`", .0.display())]
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

impl Input {
    /// Classify `arg` by the rule of the module documentation.
    pub fn parse(arg: &str) -> Result<Input, OpenError> {
        let path = Path::new(arg);
        if path.is_file() && is_manifest_name(path) {
            return Ok(Input::Manifest(path.to_path_buf()));
        }
        if path.is_dir() {
            if path.join("oci-layout").is_file() || path.join("index.json").is_file() {
                return Ok(Input::Image(ImageSource::parse(arg)?));
            }
            return Ok(Input::Tree(path.to_path_buf()));
        }
        if path.exists() {
            return Ok(Input::Image(ImageSource::parse(arg)?));
        }
        let looks_like_ref = arg.contains(':') || arg.contains('@') || RegistryRef::looks_like(arg);
        if !looks_like_ref {
            return Err(OpenError::Missing(path.to_path_buf()));
        }
        Ok(Input::Image(ImageSource::parse(arg)?))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Input::Image(_) => Kind::Image,
            Input::Tree(_) => Kind::Tree,
            Input::Manifest(_) => Kind::Manifest,
        }
    }
}

/// Open `input` (see [`Input::parse`]), unpacking an image under `scratch`.
/// A registry image is pulled with the default options.
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
    open_input(&Input::parse(input)?, scratch, registry)
}

/// Open a classified input.
pub fn open_input(
    input: &Input,
    scratch: &Path,
    registry: &RegistryOptions,
) -> Result<Opened, OpenError> {
    match input {
        Input::Manifest(path) => {
            let manifest = Manifest::read(path)?;
            let fileset = manifest
                .fileset
                .clone()
                .ok_or_else(|| OpenError::NoFileSet(path.to_path_buf()))?;
            Ok(Opened {
                kind: Kind::Manifest,
                fileset,
                manifest: Some(manifest),
                image: None,
            })
        }
        Input::Tree(path) => {
            let fileset = FileSet::from_dir(path).map_err(|source| OpenError::Tree {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Opened {
                kind: Kind::Tree,
                fileset,
                manifest: None,
                image: None,
            })
        }
        Input::Image(source) => {
            let image = read::unpack_with(source, scratch, registry)?;
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
    }
}
