//! OCI images: writing a file set as a deterministic `FROM scratch` image
//! (an OCI layout plus docker's manifest.json, as one tar or a directory),
//! for `jail pack`, `jail trace` and `jail slim`: layered by package
//! ([`layers`]), optionally on a base image's layers ([`base`]).
//!
//! The bytes depend only on the file set, the [`ImageSpec`], the
//! compression, `SOURCE_DATE_EPOCH` and the layering (docs/formats.md,
//! "Image").
//!
//! ```no_run
//! # use jail::{fileset::FileSet, image::*};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fs = FileSet::from_dir("tree".as_ref())?;
//! let spec = ImageSpec { reference: Reference::parse("jail/x:latest")?, command: "jail pack".into(), ..ImageSpec::default() };
//! let summary = write(&fs, &spec, &WriteOptions::default(), "x.tar".as_ref())?;
//! println!("{} {}", summary.reference, summary.image_id);
//! # Ok(()) }
//! ```

pub mod base;
pub mod extract;
mod json;
pub mod layers;
mod output;
pub mod read;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use self::base::{Base, BaseError, BaseSummary};
pub use self::json::{
    rfc3339, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, LABEL_COMMAND, LABEL_FILESET,
    LABEL_VERSION,
};
pub use self::layers::{LayerKind, Layering};
use crate::digest::Digest;
use crate::fileset::FileSet;
pub use crate::oci::{BadPlatform, BadReference, Platform, Reference};
pub use crate::pack::compress::Compression;
use crate::pack::{self, LayerOptions, PackError};
use crate::paths::serde_path;
use crate::sys::interrupt::{self, Interrupted};

/// Media type of the config blob.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an image index (`--attest` pushes one).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("cannot write {path}: {what}")]
    Destination { path: PathBuf, what: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the image JSON")]
    Json(#[source] serde_json::Error),
    #[error("cannot build the image's OCI metadata")]
    Spec(#[source] oci_spec::OciSpecError),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds since 1970-01-01 (a non-negative integer): fix or unset it")]
    SourceDateEpoch(String),
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl ImageError {
    /// True when the input or the request is at fault (exit 2), rather
    /// than the writing (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ImageError::Pack(PackError::Write(_) | PackError::Interrupted(_)) => false,
            ImageError::Base(e) => e.is_bad_input(),
            ImageError::Pack(_)
            | ImageError::Destination { .. }
            | ImageError::SourceDateEpoch(_) => true,
            ImageError::Write { .. }
            | ImageError::Json(_)
            | ImageError::Spec(_)
            | ImageError::Interrupted(_) => false,
        }
    }

    /// The signal, when the work was interrupted.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            ImageError::Interrupted(i) | ImageError::Pack(PackError::Interrupted(i)) => Some(*i),
            _ => None,
        }
    }
}

impl crate::error::ExitCode for ImageError {
    fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        ImageError::interrupted(self)
    }

    fn is_bad_input(&self) -> bool {
        ImageError::is_bad_input(self)
    }
}

/// What the image says besides its files.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// `name:tag`: index.json's `org.opencontainers.image.ref.name` (the
    /// tag) and docker's RepoTags.
    pub reference: Reference,
    /// From the entrypoint's ELF header ([`Platform::of_program`]).
    pub platform: Platform,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Config labels; the provenance labels are added (and win).
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// The jail command, for the `jail.command` label and the history
    /// (`jail pack`, `jail trace -- python3 app.py`). Must not contain
    /// anything that varies between runs (temp paths, times).
    pub command: String,
    /// Manifest annotations (e.g. `org.opencontainers.image.base.name`).
    pub annotations: BTreeMap<String, String>,
}

impl ImageSpec {
    /// The files a container runtime reads from the image to start its
    /// command, whatever the command reads: `/etc/passwd` when the Env has
    /// no `HOME` (runc takes the user's home from it, else `/`) or the User
    /// is a name; `/etc/group` when the User names a group. Without them
    /// `podman run` sets another HOME, or refuses the user.
    pub fn runtime_reads(&self) -> Vec<PathBuf> {
        let user = self.user.as_deref().filter(|u| !u.is_empty());
        let (name, group) = match user.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((n, g)) => (n, g),
            None => ("0", ""),
        };
        let named = |s: &str| !s.is_empty() && s.parse::<u32>().is_err();
        let no_home = !self.env.iter().any(|kv| kv.starts_with("HOME="));
        let mut out = Vec::new();
        if no_home || named(name) {
            out.push(PathBuf::from("/etc/passwd"));
        }
        if named(group) {
            out.push(PathBuf::from("/etc/group"));
        }
        out
    }
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            reference: Reference::default_for("image"),
            platform: Platform::host(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
            stop_signal: None,
            command: String::new(),
            annotations: BTreeMap::new(),
        }
    }
}

impl ImageSpec {
    /// The spec an existing image's config describes (`jail slim` keeps
    /// it, then applies overrides): Entrypoint, Cmd, Env, WorkingDir, User,
    /// Labels, ExposedPorts, Volumes, StopSignal and the platform. The
    /// reference, command and annotations are the caller's.
    pub fn from_image_config(config: &oci_spec::image::ImageConfiguration) -> ImageSpec {
        let mut spec = ImageSpec {
            platform: Platform {
                os: config.os().to_string(),
                architecture: config.architecture().to_string(),
                variant: config.variant().clone(),
            },
            ..ImageSpec::default()
        };
        if let Some(c) = config.config() {
            spec.entrypoint = c.entrypoint().clone();
            spec.cmd = c.cmd().clone();
            spec.env = c.env().clone().unwrap_or_default();
            spec.working_dir = c.working_dir().clone();
            spec.user = c.user().clone();
            spec.labels = c.labels().clone().unwrap_or_default().into_iter().collect();
            spec.exposed_ports = c.exposed_ports().clone().unwrap_or_default();
            spec.exposed_ports.sort();
            spec.volumes = c.volumes().clone().unwrap_or_default();
            spec.volumes.sort();
            spec.stop_signal = c.stop_signal().clone();
        }
        spec
    }
}

/// The output's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One tar: the OCI layout plus docker's manifest.json and repositories.
    #[default]
    OciArchive,
    /// The OCI layout as a directory.
    OciDir,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oci-archive" => Ok(Format::OciArchive),
            "oci-dir" => Ok(Format::OciDir),
            _ => Err(format!(
                "unknown format {s:?}: expected oci-archive or oci-dir"
            )),
        }
    }
}

/// How the image is written (none of it changes the bytes but
/// `compression`, `source_date_epoch` and `layering`).
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub format: Format,
    pub compression: Compression,
    /// Clamp mtimes and set `created` (see [`source_date_epoch`]).
    pub source_date_epoch: Option<i64>,
    /// Compression threads; all cores when `None`.
    pub threads: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// `--format oci-dir`: replace an existing non-empty directory that is
    /// not an OCI layout (`--force`).
    pub replace: bool,
    /// How the file set is split into layers (`--layers`).
    pub layering: Layering,
    /// `--base`: the image whose layers go below, reused byte for byte.
    pub base: Option<std::sync::Arc<Base>>,
}

/// What was written: printed by the CLI, `--json` on stdout
/// (docs/formats.md, "The --json summary").
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    #[serde(with = "serde_path")]
    pub output: PathBuf,
    pub format: Format,
    pub reference: String,
    /// The config digest: what `podman images` / `docker images` show.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    /// The top layer's diff_id and blob digest (the only layer's, in a
    /// single-layer image).
    pub diff_id: Digest,
    pub layer_digest: Digest,
    pub compression: Compression,
    pub platform: String,
    /// Length of the layer tars, summed.
    pub uncompressed_size: u64,
    /// Length of the layer blobs as stored, summed.
    pub compressed_size: u64,
    /// Entries in the layers, summed (a parent directory counts once per
    /// layer that holds it).
    pub files: u64,
    /// Each layer, bottom to top (docs/formats.md, "Layers").
    pub layers: Vec<LayerSummary>,
    /// What `--base` provided and brings unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<base::BaseSummary>,
    /// sha256 of the file set (the `jail.fileset` label).
    pub fileset_digest: Digest,
    /// `--attest`: the attestation manifest's digest (docs/formats.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Digest>,
    /// Where `--push` put it (docs/registry.md), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<crate::registry::Pushed>,
}

/// One layer as written.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    /// What the layer holds.
    pub kind: LayerKind,
    /// The blob's digest and length as stored.
    pub digest: Digest,
    pub size: u64,
    /// The uncompressed tar's digest and length.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Tar entries (0 for a base layer: not counted).
    pub files: u64,
    pub media_type: String,
}

/// `SOURCE_DATE_EPOCH` from the environment: `None` when unset, an error
/// when it is not a non-negative integer.
pub fn source_date_epoch() -> Result<Option<i64>, ImageError> {
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) => parse_source_date_epoch(&v).map(Some),
    }
}

/// Parse a `SOURCE_DATE_EPOCH` value: ASCII digits only.
pub fn parse_source_date_epoch(v: &OsStr) -> Result<i64, ImageError> {
    let bad = || ImageError::SourceDateEpoch(v.to_string_lossy().into_owned());
    let s = v.to_str().ok_or_else(bad)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

/// The OCI manifest annotation naming the image's base.
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";
/// The OCI manifest annotation with the base's manifest digest.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// Write `fs` as an image at `dest`.
pub fn write(
    fs: &FileSet,
    spec: &ImageSpec,
    opts: &WriteOptions,
    dest: &Path,
) -> Result<ImageSummary, ImageError> {
    stage(fs, spec, opts, dest)?.finish(&[])
}

/// An in-toto statement to attach to the image (`--attest`).
#[derive(Clone, Debug)]
pub struct Attestation {
    /// The statement's `predicateType`.
    pub predicate_type: String,
    /// The statement's bytes.
    pub statement: Vec<u8>,
}

/// An image whose blobs and manifest are staged but not yet in place: its
/// attestations, which name the manifest digest, are added by
/// [`Staged::finish`].
pub struct Staged {
    staging: output::Staging,
    summary: ImageSummary,
    manifest_size: u64,
    platform: Platform,
    reference: Reference,
    /// docker's manifest.json and repositories, for an archive.
    docker: Option<(Vec<u8>, Vec<u8>)>,
}

impl Staged {
    /// What is being written (`attestation` and `pushed` still empty).
    pub fn summary(&self) -> &ImageSummary {
        &self.summary
    }

    /// Add `attestations` (none: a plain image) as one attestation manifest
    /// (docs/formats.md, "Attestations"), write index.json and put the
    /// image in place.
    pub fn finish(self, attestations: &[Attestation]) -> Result<ImageSummary, ImageError> {
        let Staged {
            staging,
            mut summary,
            manifest_size,
            platform,
            reference,
            docker,
        } = self;
        let manifest_desc = json::Desc {
            media_type: MEDIA_TYPE_MANIFEST,
            digest: summary.manifest_digest,
            size: manifest_size,
        };
        let mut attestation_desc = None;
        if !attestations.is_empty() {
            let mut layers = Vec::new();
            for a in attestations {
                let digest = staging.add_blob(&a.statement)?;
                layers.push((
                    json::Desc {
                        media_type: json::MEDIA_TYPE_IN_TOTO,
                        digest,
                        size: a.statement.len() as u64,
                    },
                    a.predicate_type.as_str(),
                ));
            }
            let config =
                json::attestation_config(&layers.iter().map(|l| l.0.digest).collect::<Vec<_>>())?;
            let config_desc = json::Desc {
                media_type: MEDIA_TYPE_CONFIG,
                digest: staging.add_blob(&config)?,
                size: config.len() as u64,
            };
            let manifest = json::attestation_manifest(&config_desc, &layers)?;
            let digest = staging.add_blob(&manifest)?;
            summary.attestation = Some(digest);
            attestation_desc = Some(json::Desc {
                media_type: MEDIA_TYPE_MANIFEST,
                digest,
                size: manifest.len() as u64,
            });
        }
        staging.add_file(
            "index.json",
            &json::index(
                &manifest_desc,
                &platform,
                &reference,
                attestation_desc.as_ref(),
            )?,
        )?;
        staging.add_file("oci-layout", &json::oci_layout()?)?;
        // docker's manifest.json lists the image only: docker and podman
        // load it from there, and never see the attestation manifest.
        if let Some((manifest, repositories)) = docker {
            staging.add_file("manifest.json", &manifest)?;
            staging.add_file("repositories", &repositories)?;
        }
        match summary.format {
            Format::OciArchive => staging.finish_archive()?,
            Format::OciDir => staging.finish_dir()?,
        }
        Ok(summary)
    }
}

/// Stage `fs` as an image for `dest`: layers, config and manifest.
pub fn stage(
    fs: &FileSet,
    spec: &ImageSpec,
    opts: &WriteOptions,
    dest: &Path,
) -> Result<Staged, ImageError> {
    interrupt::install();
    let staging = output::Staging::new(dest, opts.format == Format::OciDir, opts.replace)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("jail-deflate-{i}"))
        .build()
        .map_err(|e| ImageError::Write {
            path: dest.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    let werr = |e: std::io::Error| ImageError::Write {
        path: dest.to_path_buf(),
        source: e,
    };

    // The base's layers, as they are; the layers for the rest of the file
    // set above them.
    let mut written: Vec<LayerSummary> = Vec::new();
    let mut base_summary = None;
    let rest;
    let fs_to_layer = match &opts.base {
        None => fs,
        Some(base) => {
            let (r, summary) = base.beyond(fs)?;
            for l in &base.layers {
                interrupt::check()?;
                staging.copy_blob(base.open_blob(&l.digest)?, &l.digest, l.size)?;
                written.push(LayerSummary {
                    kind: LayerKind::Base,
                    digest: l.digest,
                    diff_id: l.diff_id,
                    size: l.size,
                    uncompressed_size: l.uncompressed_size,
                    files: 0,
                    media_type: l.media_type.clone(),
                });
            }
            base_summary = Some(summary);
            rest = r;
            &rest
        }
    };
    let planned: Vec<layers::PlannedLayer> = layers::plan(fs_to_layer, &opts.layering)
        .into_iter()
        .filter(|l| opts.base.is_none() || !l.paths.is_empty())
        .collect();
    let single = planned.len() == 1 && opts.base.is_none();
    let bar = crate::progress::bar(opts.progress, fs_to_layer.total_size(), "packing");
    let layer_opts = LayerOptions {
        source_date_epoch: opts.source_date_epoch,
    };
    let inc = |n: u64| bar.inc(n);
    for l in &planned {
        let part;
        let set = if single {
            fs
        } else {
            part = FileSet {
                root: fs.root.clone(),
                entries: l
                    .paths
                    .iter()
                    .filter_map(|p| fs_to_layer.entries.get(p).map(|e| (p.clone(), e.clone())))
                    .collect(),
            };
            &part
        };
        let (tmp, file) = staging.layer_file()?;
        let compressor = pack::compress::Compressor::new(
            opts.compression,
            BufWriter::with_capacity(1 << 20, file),
            &pool,
        )
        .map_err(werr)?;
        let (stats, compressor) = pack::write_layer(set, &layer_opts, compressor, &inc)?;
        let (digest, size, mut file) = compressor.finish().map_err(werr)?;
        file.flush().map_err(werr)?;
        drop(file);
        staging.seal_layer(&tmp, &digest)?;
        written.push(LayerSummary {
            kind: l.kind.clone(),
            digest,
            diff_id: stats.diff_id,
            size,
            uncompressed_size: stats.size,
            files: stats.entries,
            media_type: opts.compression.media_type().to_string(),
        });
    }
    bar.finish_and_clear();
    let top = written
        .last()
        .cloned()
        .ok_or_else(|| ImageError::Destination {
            path: dest.to_path_buf(),
            what: "no layer was planned".into(),
        })?;

    // The JSON documents.
    let created = rfc3339(opts.source_date_epoch.unwrap_or(0));
    let fileset_digest = fs.digest();
    let mut kept = opts.base.iter().flat_map(|b| b.layers.iter());
    let history: Vec<json::LayerHistory> = written
        .iter()
        .map(|l| match l.kind {
            LayerKind::Base => {
                json::LayerHistory::Kept(l.diff_id, kept.next().and_then(|b| b.history.clone()))
            }
            _ => json::LayerHistory::New(l.diff_id, (!single).then(|| l.kind.describe())),
        })
        .collect();
    let config = json::config_layers(spec, &history, &fileset_digest, &created)?;
    let config_digest = staging.add_blob(&config)?;
    let config_desc = json::Desc {
        media_type: MEDIA_TYPE_CONFIG,
        digest: config_digest,
        size: config.len() as u64,
    };
    let layer_descs: Vec<json::Desc<'_>> = written
        .iter()
        .map(|l| json::Desc {
            media_type: &l.media_type,
            digest: l.digest,
            size: l.size,
        })
        .collect();
    // On a base, the manifest names it (the OCI annotations; slim's own
    // are kept): outside the layers and the config, so the same command
    // on the same base gives the same blobs however the base was named,
    // and `jail verify` finds the base by it (docs/verify.md).
    let mut annotations = spec.annotations.clone();
    if let Some(b) = &opts.base {
        annotations
            .entry(BASE_NAME_ANNOTATION.to_string())
            .or_insert_with(|| b.name.clone());
        if let Some(d) = b.manifest_digest {
            annotations
                .entry(BASE_DIGEST_ANNOTATION.to_string())
                .or_insert_with(|| d.to_string());
        }
    }
    let manifest = json::manifest(&config_desc, &layer_descs, &annotations)?;
    let manifest_digest = staging.add_blob(&manifest)?;
    // docker-archive readers assume gzip or plain tar layers: a zstd image
    // is an OCI archive only (docs/formats.md).
    let zstd = written
        .iter()
        .any(|l| l.media_type == Compression::Zstd.media_type());
    let docker = if opts.format == Format::OciArchive && !zstd {
        Some((
            json::docker_manifest(
                &config_digest,
                &written.iter().map(|l| l.digest).collect::<Vec<_>>(),
                &spec.reference,
            )?,
            json::repositories(&top.digest, &spec.reference)?,
        ))
    } else {
        None
    };

    let p = &spec.platform;
    let summary = ImageSummary {
        output: dest.to_path_buf(),
        format: opts.format,
        reference: spec.reference.to_string(),
        image_id: config_digest,
        manifest_digest,
        diff_id: top.diff_id,
        layer_digest: top.digest,
        compression: opts.compression,
        platform: p.display(),
        uncompressed_size: written.iter().map(|l| l.uncompressed_size).sum(),
        compressed_size: written.iter().map(|l| l.size).sum(),
        files: written.iter().map(|l| l.files).sum(),
        layers: written,
        base: base_summary,
        fileset_digest,
        attestation: None,
        pushed: None,
    };
    Ok(Staged {
        staging,
        summary,
        manifest_size: manifest.len() as u64,
        platform: spec.platform.clone(),
        reference: spec.reference.clone(),
        docker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_a_config() {
        let spec = ImageSpec {
            entrypoint: Some(vec!["/bin/x".into()]),
            cmd: Some(vec!["-v".into()]),
            env: vec!["B=2".into(), "A=1".into()],
            working_dir: Some("/w".into()),
            user: Some("1000:1000".into()),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            exposed_ports: vec!["53/udp".into(), "80/tcp".into()],
            volumes: vec!["/data".into()],
            stop_signal: Some("SIGQUIT".into()),
            command: "jail pack".into(),
            ..ImageSpec::default()
        };
        let d = Digest::of(b"");
        let bytes = json::config(&spec, &d, &d, &rfc3339(0)).unwrap();
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&bytes).unwrap();
        let back = ImageSpec {
            command: "jail pack".into(),
            ..ImageSpec::from_image_config(&config)
        };
        // Same config bytes again: the fixed point `jail slim` relies on.
        assert_eq!(json::config(&back, &d, &d, &rfc3339(0)).unwrap(), bytes);
        assert_eq!(back.env, spec.env);
        assert_eq!(back.platform, spec.platform);
    }

    #[test]
    fn source_date_epoch_is_strict() {
        assert_eq!(
            parse_source_date_epoch(OsStr::new("1700000000")).unwrap(),
            1_700_000_000
        );
        for bad in ["", "-1", "1.5", " 1", "abc", "99999999999999999999"] {
            assert!(parse_source_date_epoch(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }
}
