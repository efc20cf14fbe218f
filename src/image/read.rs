//! Reading images without a daemon: a docker-archive tar, an OCI archive
//! tar, an OCI layout directory (`DIR`, `DIR:TAG`, `DIR@sha256:…`), or an
//! image in a registry (`HOST[:PORT]/NAME[:TAG|@sha256:…]`, pulled into the
//! blob cache first, see `crate::registry`), with gzip, zstd or
//! uncompressed layers.
//!
//! Archives are indexed once (headers only) and blobs are streamed from
//! their offsets: nothing is buffered whole but the JSON documents. Every
//! blob digest and size named by a descriptor, and every diff_id, is
//! verified while streaming; a mismatch fails the unpack. Layers are applied
//! in order by [`extract::Extractor`] into a private temporary root that is
//! removed on any error or interruption.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use super::extract::{self, ExtractError, Extractor};
use super::{Compression, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::digest::Digest;
use crate::registry::{self, RegistryError, RegistryOptions, RegistryRef};
use crate::sys::interrupt::{self, Interrupted};

/// The largest JSON document read (manifests, configs, indexes).
const MAX_JSON: u64 = 16 << 20;

/// Why an image could not be read. Each names the image (and the layer and
/// entry when there is one).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{image}: {what}")]
    NotFound { image: String, what: String },
    #[error("{image} is not an image: {what}")]
    NotAnImage { image: String, what: String },
    #[error("{image}: {what}")]
    Corrupt { image: String, what: String },
    /// The entry's problem is part of the message (not a `source`), so
    /// the library's callers see it in `to_string()`; said once either way.
    #[error("{image}: layer {layer}: {reason}; refusing to unpack this image")]
    Unsafe {
        image: String,
        layer: String,
        reason: ExtractError,
    },
    #[error("{image}: cannot read")]
    Io { image: String, source: io::Error },
    #[error("cannot unpack into {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl ReadError {
    /// True when the image is at fault (exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ReadError::Registry(e) => e.is_bad_input(),
            _ => matches!(
                self,
                ReadError::NotFound { .. }
                    | ReadError::NotAnImage { .. }
                    | ReadError::Corrupt { .. }
                    | ReadError::Unsafe { .. }
            ),
        }
    }

    /// The signal, when the work was interrupted.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            ReadError::Interrupted(i) => Some(*i),
            ReadError::Registry(e) => e.interrupted(),
            _ => None,
        }
    }
}

impl crate::error::ExitCode for ReadError {
    fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        ReadError::interrupted(self)
    }

    fn is_bad_input(&self) -> bool {
        ReadError::is_bad_input(self)
    }
}

/// Which image of an OCI layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Select {
    /// The only one.
    Only,
    /// By `org.opencontainers.image.ref.name` (or a `io.containerd.image.name` ending in `:TAG`).
    Tag(String),
    /// By manifest digest.
    Digest(Digest),
}

/// Where an image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// A docker-archive or OCI archive tar (told apart by content).
    Archive(PathBuf),
    /// An OCI image layout directory.
    Layout { dir: PathBuf, select: Select },
    /// An image in a registry.
    Registry(RegistryRef),
}

impl ImageSource {
    /// `FILE`, `DIR`, `DIR:TAG`, `DIR@sha256:…`, or a registry reference
    /// `HOST[:PORT]/NAME[:TAG|@sha256:…]`. A local path that exists wins
    /// (also the `DIR` of `DIR:TAG` and `DIR@…`); otherwise a string whose
    /// first component is a host (it has a `.` or a `:`, or is `localhost`)
    /// followed by a `/` is a registry reference (docs/registry.md).
    pub fn parse(s: &str) -> Result<ImageSource, ReadError> {
        let p = Path::new(s);
        if p.is_file() {
            return Ok(ImageSource::Archive(p.to_path_buf()));
        }
        if p.is_dir() {
            return Ok(ImageSource::Layout {
                dir: p.to_path_buf(),
                select: Select::Only,
            });
        }
        if let Some((dir, d)) = s.rsplit_once('@') {
            if Path::new(dir).is_dir() {
                let digest = Digest::from_str(d).map_err(|e| ReadError::NotFound {
                    image: s.into(),
                    what: e.to_string(),
                })?;
                return Ok(ImageSource::Layout {
                    dir: dir.into(),
                    select: Select::Digest(digest),
                });
            }
        }
        if let Some((dir, tag)) = s.rsplit_once(':') {
            if Path::new(dir).is_dir() && !tag.is_empty() && !tag.contains('/') {
                return Ok(ImageSource::Layout {
                    dir: dir.into(),
                    select: Select::Tag(tag.into()),
                });
            }
        }
        if RegistryRef::looks_like(s) {
            return Ok(ImageSource::Registry(
                RegistryRef::parse(s).map_err(RegistryError::from)?,
            ));
        }
        Err(ReadError::NotFound {
            image: s.into(),
            what: "no such file or directory: name an image archive (.tar), an OCI layout directory, DIR:TAG, DIR@sha256:… or a registry reference HOST[:PORT]/NAME[:TAG]".into(),
        })
    }

    fn name(&self) -> String {
        match self {
            ImageSource::Archive(p) => p.display().to_string(),
            ImageSource::Layout {
                dir,
                select: Select::Only,
            } => dir.display().to_string(),
            ImageSource::Layout {
                dir,
                select: Select::Tag(t),
            } => format!("{}:{t}", dir.display()),
            ImageSource::Layout {
                dir,
                select: Select::Digest(d),
            } => format!("{}@{d}", dir.display()),
            ImageSource::Registry(r) => r.to_string(),
        }
    }
}

/// One layer as read and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Where it was in the image (blob path).
    pub name: String,
    /// The blob digest (`None` for a docker-archive layer not named by its
    /// digest, whose compressed bytes nothing vouches for; its diff_id is
    /// still verified).
    pub digest: Option<Digest>,
    pub diff_id: Digest,
    pub compression: Compression,
    /// Bytes of the blob as stored.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub applied: extract::Applied,
}

/// An unpacked image: its root (removed when this is dropped, unless kept),
/// config and digests.
#[derive(Debug)]
pub struct Unpacked {
    /// The private (0700) directory that holds the root; removed on drop.
    pub root: tempfile::TempDir,
    /// The image's root file system, `root/rootfs`.
    pub rootfs: PathBuf,
    pub config: ImageConfiguration,
    /// The config digest (image ID).
    pub config_digest: Digest,
    /// The manifest digest (OCI images; `None` for a docker-archive).
    pub manifest_digest: Option<Digest>,
    /// The name the image had in the archive or layout, if any.
    pub reference: Option<String>,
    pub layers: Vec<LayerInfo>,
}

impl Unpacked {
    pub fn root(&self) -> &Path {
        &self.rootfs
    }
}

impl Drop for Unpacked {
    /// The root holds what the image (and anything traced in it) put there,
    /// at any depth: removed without recursion before the `TempDir` tries.
    fn drop(&mut self) {
        let _ = extract::remove_tree(self.root.path());
    }
}

/// Where blobs come from: a directory or an indexed tar.
enum Store {
    /// An OCI layout (or the blob cache): names resolve beneath `fd`.
    Dir { path: PathBuf, fd: OwnedFd },
    Tar {
        file: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

/// Why a member could not be opened.
enum OpenError {
    Missing,
    /// The name or what it resolves to is not a file of the image (bad input).
    Refused(String),
    Io(io::Error),
}

/// The layout-relative name `name` as given by a manifest, index or
/// archive, or why it is refused: absolute names, `..` components, NUL
/// bytes and empty names could only point outside the image.
fn confined(name: &str) -> Result<&str, String> {
    let rel = name.strip_prefix("./").unwrap_or(name);
    if rel.is_empty() || rel.contains('\0') {
        return Err(format!("{name:?} is not a file name"));
    }
    if rel.starts_with('/') {
        return Err(format!(
            "{name:?} is an absolute path: an image names its files relative to itself"
        ));
    }
    if rel.split('/').any(|c| c == "..") {
        return Err(format!(
            "{name:?} has a `..` component: it could name a file outside the image"
        ));
    }
    Ok(rel)
}

/// Open a file of the image for reading without blocking (a FIFO or a
/// device must not hang or feed us forever) and check it is a regular file.
fn regular(fd: OwnedFd, name: &str) -> Result<(File, u64), OpenError> {
    let f = File::from(fd);
    let meta = f.metadata().map_err(OpenError::Io)?;
    if !meta.file_type().is_file() {
        return Err(OpenError::Refused(format!(
            "{name} is not a regular file (a device, FIFO, socket or directory cannot be part of an image)"
        )));
    }
    Ok((f, meta.len()))
}

/// Open the file at `path` given by the user (an image archive): a regular
/// file, opened without blocking.
fn open_regular(path: &Path) -> Result<(File, u64), OpenError> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => OpenError::Missing,
        e => OpenError::Io(e.into()),
    })?;
    regular(fd, &path.display().to_string())
}

impl Store {
    fn dir(path: &Path, image: &str) -> Result<Store, ReadError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ReadError::Io {
            image: image.into(),
            source: e.into(),
        })?;
        Ok(Store::Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    fn open_archive(path: &Path, image: &str) -> Result<Store, ReadError> {
        let f = match open_regular(path) {
            Ok((f, _)) => f,
            Err(OpenError::Refused(what)) => {
                return Err(ReadError::NotAnImage {
                    image: image.into(),
                    what,
                })
            }
            Err(OpenError::Missing) => {
                return Err(ReadError::NotFound {
                    image: image.into(),
                    what: "no such file".into(),
                })
            }
            Err(OpenError::Io(source)) => {
                return Err(ReadError::Io {
                    image: image.into(),
                    source,
                })
            }
        };
        let mut a = tar::Archive::new(f);
        let mut members = HashMap::new();
        let not_image = |what: String| ReadError::NotAnImage {
            image: image.into(),
            what,
        };
        let entries = a
            .entries_with_seek()
            .map_err(|e| not_image(format!("not a tar archive ({e})")))?;
        for e in entries {
            interrupt::check()?;
            let e = e.map_err(|e| not_image(format!("not a readable tar archive ({e})")))?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .to_string();
            let size = e.size();
            members.insert(name, (e.raw_file_position(), size));
        }
        if members.is_empty() {
            return Err(not_image("an empty or non-tar file".into()));
        }
        Ok(Store::Tar {
            file: path.to_path_buf(),
            members,
        })
    }

    /// Whether the image has an entry `name` (a top-level name: `index.json`,
    /// `manifest.json`), whatever it is; [`Store::open`] says if it is usable.
    fn has(&self, name: &str) -> bool {
        match self {
            Store::Dir { fd, .. } => {
                nix::sys::stat::fstatat(fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
            }
            Store::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// A reader over a member and its size. In a directory the name is
    /// resolved beneath it (`RESOLVE_BENEATH`: no absolute symlink, no `..`
    /// out of it, no magic link) and must be a regular file.
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), OpenError> {
        let rel = confined(name).map_err(OpenError::Refused)?;
        match self {
            Store::Dir { path, fd } => {
                let how = OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
                let member = openat2(fd, rel, how).map_err(|e| match e {
                    Errno::ENOENT => OpenError::Missing,
                    Errno::EXDEV | Errno::ELOOP => OpenError::Refused(format!(
                        "{name} resolves outside {} (a symlink leaving the image)",
                        path.display()
                    )),
                    e => OpenError::Io(e.into()),
                })?;
                let (f, len) = regular(member, name)?;
                Ok((Box::new(f), len))
            }
            Store::Tar { file, members } => {
                let &(off, len) = members.get(rel).ok_or(OpenError::Missing)?;
                let (mut f, _) = open_regular(file)?;
                f.seek(SeekFrom::Start(off)).map_err(OpenError::Io)?;
                Ok((Box::new(f.take(len)), len))
            }
        }
    }
}

/// Read and unpack `source` into a new temporary directory under `parent`
/// (a registry image with the default [`RegistryOptions`]).
pub fn unpack(source: &ImageSource, parent: &Path) -> Result<Unpacked, ReadError> {
    unpack_with(source, parent, &RegistryOptions::default())
}

/// [`unpack`], pulling a registry image with `opts` (TLS, credentials,
/// platform, cache).
pub fn unpack_with(
    source: &ImageSource,
    parent: &Path,
    opts: &RegistryOptions,
) -> Result<Unpacked, ReadError> {
    interrupt::install();
    let image = source.name();
    let (store, select) = match source {
        ImageSource::Archive(p) => (Store::open_archive(p, &image)?, Select::Only),
        ImageSource::Layout { dir, select } => (Store::dir(dir, &image)?, select.clone()),
        ImageSource::Registry(reference) => {
            // Pulled into the cache, which is laid out as a layout's blobs.
            let pulled = registry::pull(reference, opts)?;
            let r = Reader {
                store: Store::dir(pulled.cache.root(), &image)?,
                image: image.clone(),
            };
            let name = match &reference.tag {
                Some(t) => format!("{}:{t}", reference.name()),
                None => reference.name(),
            };
            let plan = r.manifest_plan(
                "the manifest",
                &pulled.manifest,
                pulled.manifest_digest,
                Some(name),
            )?;
            return apply(&r, plan, parent);
        }
    };
    let r = Reader {
        store,
        image: image.clone(),
    };
    let plan = if r.store.has("index.json") {
        r.oci_plan(&select)?
    } else if r.store.has("manifest.json") {
        r.docker_plan()?
    } else {
        return Err(ReadError::NotAnImage {
            image,
            what: "it has neither index.json (OCI) nor manifest.json (docker)".into(),
        });
    };
    apply(&r, plan, parent)
}

/// Apply a plan's layers into a new temporary root under `parent`.
fn apply(r: &Reader, plan: Plan, parent: &Path) -> Result<Unpacked, ReadError> {
    let diff_ids = plan.config.rootfs().diff_ids().clone();
    if diff_ids.len() != plan.layers.len() {
        return Err(r.corrupt(format!(
            "the config lists {} diff_ids for {} layers",
            diff_ids.len(),
            plan.layers.len()
        )));
    }
    // The root goes in a private (0700) parent: local users must not reach
    // the image's setuid files or world-writable directories.
    let root = crate::sys::tempdir::private(parent, "jail-unpack-").map_err(|source| {
        ReadError::Write {
            path: parent.to_path_buf(),
            source,
        }
    })?;
    let rootfs = root.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|source| ReadError::Write {
        path: rootfs.clone(),
        source,
    })?;
    let layers = match fill(r, &plan, &diff_ids, &rootfs) {
        Ok(layers) => layers,
        Err(e) => {
            // tempfile's removal recurses and holds a directory fd a
            // level: an image nested deeply enough would outlive it.
            let _ = extract::remove_tree(root.path());
            return Err(e);
        }
    };
    Ok(Unpacked {
        root,
        rootfs,
        config: plan.config,
        config_digest: plan.config_digest,
        manifest_digest: plan.manifest_digest,
        reference: plan.reference,
        layers,
    })
}

/// Apply every layer of `plan` to the empty directory `root`.
fn fill(
    r: &Reader,
    plan: &Plan,
    diff_ids: &[String],
    root: &Path,
) -> Result<Vec<LayerInfo>, ReadError> {
    let mut ex = Extractor::new(root).map_err(|source| ReadError::Write {
        path: root.to_path_buf(),
        source,
    })?;
    let mut layers = Vec::new();
    for (i, (layer, diff_id)) in plan.layers.iter().zip(diff_ids).enumerate() {
        let want_diff = Digest::from_str(diff_id)
            .map_err(|e| r.corrupt(format!("layer {i}: bad diff_id: {e}")))?;
        layers.push(r.apply_layer(&mut ex, layer, want_diff)?);
    }
    ex.finish()
        .map_err(|e| r.extract_err("(directory times)", e))?;
    // The root of a container is 0755 whatever the temp dir was created as.
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(
        |source| ReadError::Write {
            path: root.to_path_buf(),
            source,
        },
    )?;
    Ok(layers)
}

/// A layer to read: blob name, what its bytes must hash to (if known), size,
/// and how it is compressed (if the media type says).
struct LayerRef {
    name: String,
    digest: Option<Digest>,
    size: Option<u64>,
    compression: Option<Compression>,
}

struct Plan {
    config: ImageConfiguration,
    config_digest: Digest,
    manifest_digest: Option<Digest>,
    reference: Option<String>,
    layers: Vec<LayerRef>,
}

struct Reader {
    store: Store,
    image: String,
}

impl Reader {
    fn corrupt(&self, what: String) -> ReadError {
        ReadError::Corrupt {
            image: self.image.clone(),
            what,
        }
    }

    fn extract_err(&self, layer: &str, e: ExtractError) -> ReadError {
        match e {
            ExtractError::Unsafe { .. } => ReadError::Unsafe {
                image: self.image.clone(),
                layer: layer.into(),
                reason: e,
            },
            ExtractError::Corrupt(what) => self.corrupt(format!("layer {layer}: {what}")),
            ExtractError::Write { path, source } => ReadError::Write { path, source },
            ExtractError::Interrupted(i) => ReadError::Interrupted(i),
        }
    }

    /// A whole small member; its digest checked when one is expected.
    fn read_json(
        &self,
        name: &str,
        want: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Vec<u8>, Digest), ReadError> {
        let (r, len) = self.store.open(name).map_err(|e| self.missing(name, e))?;
        if len > MAX_JSON {
            return Err(self.corrupt(format!(
                "{name} is {len} bytes, too large for a JSON document"
            )));
        }
        let mut bytes = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(|source| ReadError::Io {
                image: self.image.clone(),
                source,
            })?;
        let got = Digest::of(&bytes);
        if let Some((d, size)) = want {
            if got != *d {
                return Err(
                    self.corrupt(format!("{name}: digest is {got}, the descriptor says {d}"))
                );
            }
            if let Some(s) = size.filter(|s| *s != bytes.len() as u64) {
                return Err(self.corrupt(format!(
                    "{name}: {} bytes, the descriptor says {s}",
                    bytes.len()
                )));
            }
        }
        Ok((bytes, got))
    }

    fn missing(&self, name: &str, e: OpenError) -> ReadError {
        match e {
            OpenError::Missing => self.corrupt(format!("missing blob {name}")),
            OpenError::Refused(what) => self.corrupt(format!("refusing to read {what}")),
            OpenError::Io(source) => ReadError::Io {
                image: self.image.clone(),
                source,
            },
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<T, ReadError> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("{name} is not valid JSON for its kind: {e}")))
    }

    fn blob_name(d: &str) -> Result<String, String> {
        let digest = Digest::from_str(d).map_err(|e| e.to_string())?;
        Ok(format!("blobs/sha256/{}", digest.hex()))
    }

    fn oci_plan(&self, select: &Select) -> Result<Plan, ReadError> {
        let (name, bytes, digest, reference) = self.oci_manifest(select)?;
        self.manifest_plan(&name, &bytes, digest, reference)
    }

    /// The manifest `select` names in index.json, following nested indexes
    /// to the host's platform: its blob name, bytes, digest, and the image
    /// name the index gives it.
    fn oci_manifest(
        &self,
        select: &Select,
    ) -> Result<(String, Vec<u8>, Digest, Option<String>), ReadError> {
        let (bytes, _) = self.read_json("index.json", None)?;
        let mut index: ImageIndex = self.parse("index.json", &bytes)?;
        let mut chosen = None;
        let mut reference = None;
        // Follow nested indexes (docker save 25+ and multi-platform images)
        // down to one manifest.
        for depth in 0..4 {
            let cands: Vec<_> = index
                .manifests()
                .iter()
                // An attestation manifest (`--attest`, BuildKit) is no
                // image: only its digest names it.
                .filter(|m| matches!(select, Select::Digest(_)) && depth == 0 || !is_attestation(m))
                .filter(|m| match (select, depth) {
                    (Select::Tag(t), 0) => m.annotations().as_ref().is_some_and(|a| {
                        a.get(ANNOTATION_REF_NAME) == Some(t)
                            || a.get(ANNOTATION_IMAGE_NAME)
                                .is_some_and(|n| n == t || n.ends_with(&format!(":{t}")))
                    }),
                    (Select::Digest(d), 0) => m.digest().to_string() == d.to_string(),
                    _ => true,
                })
                .cloned()
                .collect();
            let desc = match cands.len() {
                1 => cands.into_iter().next().expect("one"),
                0 => return Err(self.corrupt(format!("no image matches {select:?} in index.json"))),
                n if depth > 0 => {
                    // Several platforms: the host's.
                    let host = super::Platform::host();
                    cands
                        .into_iter()
                        .find(|m| {
                            m.platform()
                                .as_ref()
                                .is_some_and(|p| p.architecture().to_string() == host.architecture)
                        })
                        .ok_or_else(|| {
                            self.corrupt(format!(
                                "{n} manifests and none for {}",
                                host.architecture
                            ))
                        })?
                }
                n => {
                    return Err(self.corrupt(format!(
                        "{n} images in index.json: name one as DIR:TAG or DIR@sha256:…"
                    )))
                }
            };
            if depth == 0 {
                reference = desc.annotations().as_ref().and_then(|a| {
                    a.get(ANNOTATION_IMAGE_NAME)
                        .or(a.get(ANNOTATION_REF_NAME))
                        .cloned()
                });
            }
            let name = Self::blob_name(desc.digest().as_ref()).map_err(|e| self.corrupt(e))?;
            let want = Digest::from_str(desc.digest().as_ref())
                .map_err(|e| self.corrupt(e.to_string()))?;
            let (bytes, got) = self.read_json(&name, Some((&want, Some(desc.size()))))?;
            let v: serde_json::Value = self.parse(&name, &bytes)?;
            if v.get("manifests").is_some() {
                index = self.parse(&name, &bytes)?;
                continue;
            }
            chosen = Some((name, bytes, got));
            break;
        }
        let (name, bytes, digest) =
            chosen.ok_or_else(|| self.corrupt("image indexes nested too deep".into()))?;
        Ok((name, bytes, digest, reference))
    }

    /// The plan an image manifest describes: its config read and verified,
    /// its layers listed.
    fn manifest_plan(
        &self,
        name: &str,
        bytes: &[u8],
        manifest_digest: Digest,
        reference: Option<String>,
    ) -> Result<Plan, ReadError> {
        let manifest: ImageManifest = self.parse(name, bytes)?;
        let cdesc = manifest.config();
        let cname = Self::blob_name(cdesc.digest().as_ref()).map_err(|e| self.corrupt(e))?;
        let cwant =
            Digest::from_str(cdesc.digest().as_ref()).map_err(|e| self.corrupt(e.to_string()))?;
        let (cbytes, config_digest) = self.read_json(&cname, Some((&cwant, Some(cdesc.size()))))?;
        let config: ImageConfiguration = self.parse(&cname, &cbytes)?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let mt = l.media_type().to_string();
            let compression = if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
                Compression::Gzip
            } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
                Compression::Zstd
            } else if mt.ends_with(".tar") || mt.ends_with("layer.v1.tar") {
                Compression::None
            } else {
                return Err(
                    self.corrupt(format!("layer {}: unsupported media type {mt}", l.digest()))
                );
            };
            layers.push(LayerRef {
                name: Self::blob_name(l.digest().as_ref()).map_err(|e| self.corrupt(e))?,
                digest: Some(
                    Digest::from_str(l.digest().as_ref())
                        .map_err(|e| self.corrupt(e.to_string()))?,
                ),
                size: Some(l.size()),
                compression: Some(compression),
            });
        }
        Ok(Plan {
            config,
            config_digest,
            manifest_digest: Some(manifest_digest),
            reference,
            layers,
        })
    }

    fn docker_plan(&self) -> Result<Plan, ReadError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Item {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let (bytes, _) = self.read_json("manifest.json", None)?;
        let items: Vec<Item> = self.parse("manifest.json", &bytes)?;
        let item = match items.len() {
            1 => items.into_iter().next().expect("one"),
            n => {
                return Err(self.corrupt(format!(
                    "manifest.json lists {n} images; jail reads archives of exactly one"
                )))
            }
        };
        let hex_of = |name: &str| -> Option<Digest> {
            let base = name
                .strip_prefix("blobs/sha256/")
                .or_else(|| name.strip_suffix(".json"))?;
            Digest::from_str(&format!("sha256:{base}")).ok()
        };
        let cwant = hex_of(&item.config);
        let (cbytes, config_digest) =
            self.read_json(&item.config, cwant.as_ref().map(|d| (d, None)))?;
        let config: ImageConfiguration = self.parse(&item.config, &cbytes)?;
        let layers = item
            .layers
            .iter()
            .map(|l| LayerRef {
                name: l.clone(),
                digest: l
                    .strip_prefix("blobs/sha256/")
                    .and_then(|h| Digest::from_str(&format!("sha256:{h}")).ok()),
                size: None,
                compression: None,
            })
            .collect();
        Ok(Plan {
            config,
            config_digest,
            manifest_digest: None,
            reference: item.repo_tags.and_then(|t| t.into_iter().next()),
            layers,
        })
    }

    /// Verify a layer, then apply it. Nothing from a layer lands on disk
    /// before its blob has been read once in full and its size, digest and
    /// diff_id checked (the first pass decompresses into a sink). The
    /// extracting pass checks them again, so a blob changed in between
    /// fails too, and its half-written content goes with the private
    /// unpack root, which is removed on any error.
    fn apply_layer(
        &self,
        ex: &mut Extractor,
        layer: &LayerRef,
        want_diff: Digest,
    ) -> Result<LayerInfo, ReadError> {
        let ((), checked) = self.read_layer(layer, |r| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                interrupt::check()?;
                match r.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(
                            self.corrupt(format!("layer {}: cannot decompress: {e}", layer.name))
                        )
                    }
                }
            }
        })?;
        self.check_layer(layer, &want_diff, &checked)?;
        let (applied, checked) = self.read_layer(layer, |r| {
            ex.apply(r)
                .map(|(a, _)| a)
                .map_err(|e| self.extract_err(&layer.name, e))
        })?;
        self.check_layer(layer, &want_diff, &checked)?;
        Ok(LayerInfo {
            name: layer.name.clone(),
            digest: layer.digest.map(|_| checked.digest),
            diff_id: checked.diff_id,
            compression: checked.compression,
            size: checked.size,
            uncompressed_size: checked.uncompressed_size,
            applied,
        })
    }

    /// Stream a layer's blob through its decompressor into `consume`,
    /// hashing both sides. The stored size is checked against the
    /// descriptor's before anything is read.
    fn read_layer<T>(
        &self,
        layer: &LayerRef,
        consume: impl FnOnce(&mut dyn Read) -> Result<T, ReadError>,
    ) -> Result<(T, Checked), ReadError> {
        let io_err = |source| ReadError::Io {
            image: self.image.clone(),
            source,
        };
        let (raw, len) = self
            .store
            .open(&layer.name)
            .map_err(|e| self.missing(&layer.name, e))?;
        if let Some(want) = layer.size.filter(|w| *w != len) {
            return Err(self.corrupt(format!(
                "layer {}: {len} bytes, the manifest says {want}",
                layer.name
            )));
        }
        let mut blob = BufReader::with_capacity(1 << 20, Hashing::new(raw));
        let head = blob.fill_buf().map_err(io_err)?;
        let sniffed = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let compression = layer.compression.unwrap_or(sniffed);
        if compression != sniffed {
            return Err(self.corrupt(format!(
                "layer {}: the media type says {compression:?} but the data is {sniffed:?}",
                layer.name
            )));
        }
        let (out, diff_id, uncompressed_size, mut blob) = match compression {
            Compression::Gzip => {
                let mut h = Hashing::new(flate2::bufread::MultiGzDecoder::new(blob));
                let out = consume(&mut h)?;
                let (d, n, dec) = h.finish();
                (out, d, n, dec.into_inner())
            }
            Compression::Zstd => {
                let dec = zstd::stream::read::Decoder::with_buffer(blob).map_err(io_err)?;
                let mut h = Hashing::new(dec);
                let out = consume(&mut h)?;
                let (d, n, dec) = h.finish();
                (out, d, n, dec.finish())
            }
            Compression::None => {
                let mut h = Hashing::new(blob);
                let out = consume(&mut h)?;
                let (d, n, b) = h.finish();
                (out, d, n, b)
            }
        };
        // Anything after the compressed stream still belongs to the blob.
        io::copy(&mut blob, &mut io::sink()).map_err(io_err)?;
        let (digest, size, _) = blob.into_inner().finish();
        Ok((
            out,
            Checked {
                compression,
                digest,
                size,
                diff_id,
                uncompressed_size,
            },
        ))
    }

    fn check_layer(
        &self,
        layer: &LayerRef,
        want_diff: &Digest,
        got: &Checked,
    ) -> Result<(), ReadError> {
        if got.diff_id != *want_diff {
            return Err(self.corrupt(format!(
                "layer {}: diff_id is {}, the config says {want_diff}",
                layer.name, got.diff_id
            )));
        }
        if let Some(want) = layer.digest.filter(|w| *w != got.digest) {
            return Err(self.corrupt(format!(
                "layer {}: digest is {}, the manifest says {want}",
                layer.name, got.digest
            )));
        }
        if let Some(want) = layer.size.filter(|w| *w != got.size) {
            return Err(self.corrupt(format!(
                "layer {}: {} bytes, the manifest says {want}",
                layer.name, got.size
            )));
        }
        Ok(())
    }
}

/// What a pass over a layer measured.
struct Checked {
    compression: Compression,
    digest: Digest,
    size: u64,
    diff_id: Digest,
    uncompressed_size: u64,
}

/// A local OCI image (archive or layout) opened for its blobs: what
/// `--push` uploads. The manifest is chosen as [`unpack`] chooses it.
pub struct LocalImage {
    reader: Reader,
    /// The manifest's bytes, as stored.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub media_type: String,
    /// The config, then the layers.
    pub blobs: Vec<registry::PushBlob>,
}

impl LocalImage {
    /// Open `source`: an OCI archive or layout (a docker archive has no
    /// manifest to push).
    pub fn open(source: &ImageSource) -> Result<LocalImage, ReadError> {
        let image = source.name();
        let (store, select) = match source {
            ImageSource::Archive(p) => (Store::open_archive(p, &image)?, Select::Only),
            ImageSource::Layout { dir, select } => (Store::dir(dir, &image)?, select.clone()),
            ImageSource::Registry(_) => {
                return Err(ReadError::NotAnImage {
                    image,
                    what: "a registry image is not a local image".into(),
                })
            }
        };
        let reader = Reader { store, image };
        if !reader.store.has("index.json") {
            return Err(reader.corrupt(
                "no index.json: only OCI images (archives or layouts) can be pushed".into(),
            ));
        }
        let (name, bytes, digest, _) = reader.oci_manifest(&select)?;
        let manifest: ImageManifest = reader.parse(&name, &bytes)?;
        let blobs = push_blobs(&reader, &manifest)?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| super::MEDIA_TYPE_MANIFEST.to_string());
        Ok(LocalImage {
            reader,
            manifest: bytes,
            manifest_digest: digest,
            media_type,
            blobs,
        })
    }
}

/// An image's attestation manifest (`--attest`) as `--push` sends it,
/// with the index that then names both (docs/registry.md).
pub struct Attached {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The config, then the statements.
    pub blobs: Vec<registry::PushBlob>,
    /// The image's and the attestation manifest's entries of index.json,
    /// without the tag annotations (the registry's tag names the index).
    pub index: Vec<u8>,
}

impl LocalImage {
    /// The attestation manifest index.json lists for this image, if any.
    pub fn attached(&self) -> Result<Option<Attached>, ReadError> {
        let r = &self.reader;
        let (bytes, _) = r.read_json("index.json", None)?;
        let mut index: ImageIndex = r.parse("index.json", &bytes)?;
        let image = self.manifest_digest.to_string();
        let Some(att) = index
            .manifests()
            .iter()
            .find(|m| {
                is_attestation(m)
                    && m.annotations().as_ref().is_some_and(|a| {
                        a.get(super::json::ANNOTATION_REFERENCE_DIGEST) == Some(&image)
                    })
            })
            .cloned()
        else {
            return Ok(None);
        };
        let name = Reader::blob_name(att.digest().as_ref()).map_err(|e| r.corrupt(e))?;
        let want = Digest::from_str(att.digest().as_ref()).map_err(|e| r.corrupt(e.to_string()))?;
        let (manifest, got) = r.read_json(&name, Some((&want, Some(att.size()))))?;
        let m: ImageManifest = r.parse(&name, &manifest)?;
        let blobs = push_blobs(r, &m)?;
        let entries: Vec<_> = index
            .manifests()
            .iter()
            .filter(|m| m.digest().to_string() == image)
            .take(1)
            .map(|m| {
                let mut m = m.clone();
                m.set_annotations(None);
                m
            })
            .chain(std::iter::once(att))
            .collect();
        index.set_manifests(entries);
        index.set_annotations(None);
        let index = super::json::canonical(&index).map_err(|e| r.corrupt(e.to_string()))?;
        Ok(Some(Attached {
            manifest,
            manifest_digest: got,
            blobs,
            index,
        }))
    }
}

/// The config and layer blobs a manifest names.
fn push_blobs(r: &Reader, manifest: &ImageManifest) -> Result<Vec<registry::PushBlob>, ReadError> {
    let mut blobs = Vec::new();
    for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let digest = Digest::from_str(d.digest().as_ref()).map_err(|e| r.corrupt(e.to_string()))?;
        blobs.push(registry::PushBlob {
            digest,
            size: d.size(),
        });
    }
    Ok(blobs)
}

impl registry::BlobSource for LocalImage {
    fn open_blob(&self, d: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let name = format!("blobs/sha256/{}", d.hex());
        match self.reader.store.open(&name) {
            Ok((r, _)) => Ok(r),
            Err(OpenError::Missing) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not in the image"),
            )),
            Err(OpenError::Refused(what)) => Err(io::Error::new(io::ErrorKind::InvalidData, what)),
            Err(OpenError::Io(e)) => Err(e),
        }
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (Digest, u64, R) {
        (Digest(self.hasher.finalize().into()), self.len, self.inner)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}
/// Whether an index entry is an attestation manifest (BuildKit's
/// `vnd.docker.reference.type: attestation-manifest`).
pub fn is_attestation(m: &oci_spec::image::Descriptor) -> bool {
    m.annotations().as_ref().is_some_and(|a| {
        a.get(super::json::ANNOTATION_REFERENCE_TYPE)
            .is_some_and(|t| t == super::json::REFERENCE_TYPE_ATTESTATION)
    })
}
