//! `--base IMAGE`: an image whose layers the output reuses byte for byte
//! (same digests), adding layers only for the files the command needs
//! beyond it (docs/formats.md, "Layers on a base").

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::read::{self, ImageSource, LocalImage};
use crate::digest::Digest;
use crate::fileset::{Entry, FileSet, Reason};
use crate::paths::ImagePath;
use crate::registry::{BlobCache, BlobSource, RegistryOptions};
use crate::resolve::FileType;

/// Why a base cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("--base {image}")]
    Read {
        image: String,
        #[source]
        source: read::ReadError,
    },
    #[error("--base {image}: {what}")]
    Unusable { image: String, what: String },
    #[error("--base {image}: {path} differs from the base's copy ({what}): the command needs its own version, which the base would hide; rebuild the base from the same root, or drop --base")]
    Conflict {
        image: String,
        path: PathBuf,
        what: String,
    },
    #[error("--base {image}: cannot read the blob {digest}")]
    Blob {
        image: String,
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::ExitCode for BaseError {
    fn interrupted(&self) -> Option<crate::sys::signals::Interrupted> {
        match self {
            BaseError::Read { source, .. } => crate::error::ExitCode::interrupted(source),
            _ => None,
        }
    }

    fn is_bad_input(&self) -> bool {
        BaseError::is_bad_input(self)
    }
}

impl BaseError {
    /// True when the base or the request is at fault (exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            BaseError::Read { source, .. } => source.is_bad_input(),
            BaseError::Unusable { .. } | BaseError::Conflict { .. } => true,
            BaseError::Blob { .. } => false,
        }
    }
}

/// One layer of the base, as its manifest and config name it.
#[derive(Clone, Debug)]
pub struct BaseLayer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// The config's history entry for it (none when the config has none).
    pub history: Option<oci_spec::image::History>,
}

/// Where the base's blobs are read from.
enum Blobs {
    Local(Box<LocalImage>),
    Cache(BlobCache),
}

/// A base image, read once before any work.
pub struct Base {
    /// The base as the user named it.
    pub name: String,
    pub manifest_digest: Option<Digest>,
    pub layers: Vec<BaseLayer>,
    /// Every path of the base's root file system, as unpacked.
    pub files: BTreeMap<ImagePath, Entry>,
    /// The unpacked base (its files' content), kept for the base's life.
    unpacked: read::Unpacked,
    blobs: Blobs,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("name", &self.name)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// What the base brings that the command does not use (the price of
/// sharing it), for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaseSummary {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<Digest>,
    /// Layers reused from the base.
    pub layers: usize,
    /// Paths of the command's file set the base provides.
    pub provided_files: u64,
    /// Regular files and symlinks of the base the command does not use,
    /// and the bytes of those files.
    pub unused_files: u64,
    pub unused_bytes: u64,
}

impl Base {
    /// Read the base `image` (a file, a layout, or a registry reference,
    /// pulled with `opts`), unpacking it under `scratch` to learn its files.
    pub fn open(image: &str, opts: &RegistryOptions, scratch: &Path) -> Result<Base, BaseError> {
        let read_err = |source| BaseError::Read {
            image: image.to_string(),
            source,
        };
        let unusable = |what: String| BaseError::Unusable {
            image: image.to_string(),
            what,
        };
        let source = ImageSource::parse(image).map_err(read_err)?;
        let unpacked = read::unpack_with(&source, scratch, opts).map_err(read_err)?;
        let history: Vec<oci_spec::image::History> = unpacked
            .config
            .history()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.empty_layer() != Some(true))
            .collect();
        let keep_history = history.len() == unpacked.layers.len();
        let mut layers = Vec::new();
        for (i, l) in unpacked.layers.iter().enumerate() {
            let digest = l.digest.ok_or_else(|| {
                unusable(format!(
                    "layer {} is not named by its digest (a docker archive): use an OCI archive or layout, or the image in a registry",
                    l.name
                ))
            })?;
            layers.push(BaseLayer {
                media_type: l.compression.media_type().to_string(),
                digest,
                size: l.size,
                diff_id: l.diff_id,
                uncompressed_size: l.uncompressed_size,
                history: keep_history.then(|| history[i].clone()),
            });
        }
        let files = FileSet::from_dir(unpacked.root())
            .map_err(|e| unusable(format!("cannot read its unpacked files: {e}")))?
            .entries;
        let blobs = match &source {
            ImageSource::Registry(_) => Blobs::Cache(
                match &opts.cache {
                    Some(c) => BlobCache::at(c.clone()),
                    None => BlobCache::user(),
                }
                .map_err(|e| unusable(format!("its blob cache: {e}")))?,
            ),
            local => Blobs::Local(Box::new(LocalImage::open(local).map_err(read_err)?)),
        };
        Ok(Base {
            name: image.to_string(),
            manifest_digest: unpacked.manifest_digest,
            layers,
            files,
            unpacked,
            blobs,
        })
    }

    /// The unpacked base's root file system.
    pub fn dir(&self) -> &Path {
        self.unpacked.root()
    }

    /// Where the base's copy of `path` is on this machine.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.dir().join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The bytes of one of the base's blobs.
    pub fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send>, BaseError> {
        let err = |source| BaseError::Blob {
            image: self.name.clone(),
            digest: *d,
            source,
        };
        match &self.blobs {
            Blobs::Local(l) => l.open_blob(d).map_err(err),
            Blobs::Cache(c) => Ok(Box::new(File::open(c.path(d)).map_err(err)?)),
        }
    }

    /// The part of `fs` the base does not provide, and what the base
    /// brings unused. A path the base has is provided when it is the same
    /// file (type, mode, owner, content or target, capabilities; mtimes
    /// aside); a directory when the base has a directory there. Files jail
    /// generates for this image (its evidence, its package database, the
    /// reduced passwd) are written again above the base; any other path
    /// the base has differently is an error naming it.
    pub fn beyond(&self, fs: &FileSet) -> Result<(FileSet, BaseSummary), BaseError> {
        let mut rest = FileSet::new(fs.root.clone());
        let mut provided = 0u64;
        for (path, e) in &fs.entries {
            let Some(b) = self.files.get(path) else {
                rest.entries.insert(path.clone(), e.clone());
                continue;
            };
            if e.is_dir() && b.is_dir() {
                provided += 1;
                continue;
            }
            match difference(e, b) {
                None => provided += 1,
                Some(_) if jail_generated(e) => {
                    rest.entries.insert(path.clone(), e.clone());
                }
                Some(what) => {
                    return Err(BaseError::Conflict {
                        image: self.name.clone(),
                        path: path.as_path().to_path_buf(),
                        what,
                    })
                }
            }
        }
        // The directories above what goes on top keep the file set's
        // metadata: a layer adds the parents it lacks as plain 0755
        // directories, which would hide the base's (a sticky /tmp).
        let above: Vec<ImagePath> = rest
            .entries
            .keys()
            .flat_map(|p| p.as_path().ancestors().skip(1))
            .filter(|a| *a != Path::new("/"))
            .map(|a| ImagePath(a.to_path_buf()))
            .filter(|a| !rest.entries.contains_key(a))
            .collect();
        for a in above {
            if let Some(e) = fs.entries.get(&a).filter(|e| e.is_dir()) {
                rest.entries.insert(a, e.clone());
            }
        }
        let (mut unused_files, mut unused_bytes) = (0, 0);
        for (path, b) in &self.files {
            if !b.is_dir() && !fs.entries.contains_key(path) && !is_base_evidence(path) {
                unused_files += 1;
                unused_bytes += b.size;
            }
        }
        Ok((
            rest,
            BaseSummary {
                image: self.name.clone(),
                manifest_digest: self.manifest_digest,
                layers: self.layers.len(),
                provided_files: provided,
                unused_files,
                unused_bytes,
            },
        ))
    }
}

/// How the command's entry differs from the base's, if it does.
fn difference(e: &Entry, b: &Entry) -> Option<String> {
    if e.file_type != b.file_type {
        return Some(format!(
            "a {:?} here, a {:?} in the base",
            e.file_type, b.file_type
        ))
        .map(|s| s.to_lowercase());
    }
    if e.file_type == FileType::File && e.sha256 != b.sha256 {
        let show = |d: &Option<Digest>| d.map_or("unknown".into(), |d| d.to_string());
        return Some(format!(
            "content {} here, {} in the base",
            show(&e.sha256),
            show(&b.sha256)
        ));
    }
    if e.target != b.target {
        return Some("another symlink target".into());
    }
    if e.mode != b.mode || e.uid != b.uid || e.gid != b.gid {
        return Some(format!(
            "mode {:04o} {}:{} here, {:04o} {}:{} in the base",
            e.mode, e.uid, e.gid, b.mode, b.uid, b.gid
        ));
    }
    if e.capability != b.capability {
        return Some("other file capabilities".into());
    }
    None
}

/// Files jail writes for each image (evidence, package database, reduced
/// accounts): the image's own version goes above the base's.
fn jail_generated(e: &Entry) -> bool {
    e.content.is_some()
        || e.reasons.iter().any(|r| {
            matches!(
                r,
                Reason::Evidence | Reason::PackageDatabase | Reason::Generated
            )
        })
}

/// The base's own evidence (its embedded manifest and package database):
/// not counted as files the command does not use.
fn is_base_evidence(p: &ImagePath) -> bool {
    let p = p.as_path();
    p == Path::new("/var/lib/jail/manifest.json")
        || p.starts_with("/var/lib/dpkg/status.d")
        || p == Path::new("/etc/os-release")
}
