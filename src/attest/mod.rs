//! Verifiable images: the evidence every image carries about itself, and
//! the checks and documents made from it (docs/verify.md).
//!
//! * [`embed`]: the embedded manifest at [`MANIFEST_PATH`], the
//!   `status.d` package database for the packages with kept files, and
//!   `/etc/os-release`, added to a file set before it is packed.
//! * [`rebuild`]: `jail verify`: rebuild the image from its embedded
//!   manifest and a root, compare bit for bit; check files against their
//!   packages' own checksums.
//! * [`sbom`]: SPDX 2.3 and CycloneDX 1.6 JSON from the embedded manifest.
//! * [`provenance`]: an in-toto Statement v1 with a SLSA Provenance v1
//!   predicate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fileset::{Entry, Reason};
use crate::image::{Compression, ImageSpec, Platform, Reference, WriteOptions};
use crate::paths::ImagePath;

pub mod embed;
pub mod fetch;
pub mod packages;
pub mod provenance;
pub mod rebuild;
pub mod sbom;

/// Where the embedded manifest lives inside every image jail writes.
pub const MANIFEST_PATH: &str = "/var/lib/jail/manifest.json";
/// The schema name written in the manifest's `schema` field.
pub const SCHEMA: &str = "jail-manifest/1";
/// Where the per-package dpkg stanzas go (the distroless convention).
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// Why evidence could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a jail manifest ({msg}): was the image built by jail 0.2 or later?", path.display())]
    Parse { path: PathBuf, msg: String },
    #[error("{image} has no embedded manifest at {MANIFEST_PATH}: only images written by `jail trace` or `jail slim` carry one (`jail pack` packs a tree as it is)")]
    NoManifest { image: String },
    #[error(transparent)]
    Dpkg(#[from] crate::dpkg::DpkgError),
    #[error("cannot serialize {what}: {msg}")]
    Json { what: &'static str, msg: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot run {tool}: {hint}")]
    Tool {
        tool: &'static str,
        hint: &'static str,
        source: std::io::Error,
    },
    #[error("--base {base}: package {package} is version {in_base} in the base, {here} here: its status.d stanza would contradict this image's files; rebuild the base from the same root, or drop --base")]
    BaseVersion {
        base: String,
        package: String,
        in_base: String,
        here: String,
    },
    #[error("this image was made on a base{}: {why}; pass --base IMAGE with that image (an archive, an OCI layout or a registry reference) to verify it", digest.map_or(String::new(), |d| format!(" ({d})")))]
    BaseNeeded {
        digest: Option<crate::digest::Digest>,
        why: String,
    },
    #[error(transparent)]
    Interrupted(#[from] crate::sys::signals::Interrupted),
}

impl AttestError {
    /// Bad input (exit 2) rather than a failure while working (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AttestError::Parse { .. }
                | AttestError::NoManifest { .. }
                | AttestError::Usage(_)
                | AttestError::BaseVersion { .. }
                | AttestError::BaseNeeded { .. }
        )
    }
}

impl crate::error::ExitCode for AttestError {
    fn interrupted(&self) -> Option<crate::sys::signals::Interrupted> {
        match self {
            AttestError::Interrupted(i) => Some(*i),
            _ => None,
        }
    }

    fn is_bad_input(&self) -> bool {
        AttestError::is_bad_input(self)
    }
}

/// How the image was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildKind {
    Trace,
    Slim,
    Pack,
}

impl BuildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildKind::Trace => "trace",
            BuildKind::Slim => "slim",
            BuildKind::Pack => "pack",
        }
    }
}

/// The build: what ran, with which options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub kind: BuildKind,
    /// The traced command(s), argv as given (the config's extra runs after
    /// the first); empty for `pack`.
    pub commands: Vec<Vec<String>>,
    /// The jail config's name, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Whether the package database was written (`--no-package-db`).
    pub package_db: bool,
}

/// The root the files came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// `/etc/os-release` of the root, field by field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub os_release: BTreeMap<String, String>,
    /// The dpkg architecture (`amd64`), when the root has dpkg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpkg_architecture: Option<String>,
    /// For `slim`: the manifest digest of the first image in the chain that
    /// jail did not write (slimming a jail image keeps its origin, so the
    /// result is a fixed point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
}

/// The image config and write options: what `jail verify` packs with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    // No reference: `jail slim` names its output after its input, and the
    // name is not part of the image's manifest digest (only of index.json).
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The environment the image keeps.
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Config labels other than jail's own (`jail.*`, added when packing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The jail command line recorded in the `jail.command` label.
    pub command: String,
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// The layer budget (`--layers`, docs/formats.md "Layers"); absent
    /// means 1, as in images from before layering.
    #[serde(default = "one_layer", skip_serializing_if = "is_one_layer")]
    pub layers: usize,
}

fn one_layer() -> usize {
    1
}

fn is_one_layer(n: &usize) -> bool {
    *n == 1
}

impl ImageRecord {
    pub fn new(spec: &ImageSpec, opts: &WriteOptions) -> ImageRecord {
        ImageRecord {
            platform: spec.platform.display(),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            labels: spec
                .labels
                .iter()
                .filter(|(k, _)| !k.starts_with("jail."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            exposed_ports: spec.exposed_ports.clone(),
            volumes: spec.volumes.clone(),
            stop_signal: spec.stop_signal.clone(),
            command: spec.command.clone(),
            compression: opts.compression,
            source_date_epoch: opts.source_date_epoch,
            layers: opts.layering.budget,
        }
    }

    /// The spec to pack with, named `reference` (the name and the
    /// annotations are the caller's: they live outside the layer).
    pub fn spec(&self, reference: Reference) -> Result<ImageSpec, AttestError> {
        let bad = |what: String| AttestError::Usage(format!("the embedded manifest's {what}"));
        Ok(ImageSpec {
            reference,
            platform: Platform::parse(&self.platform).map_err(|e| bad(format!("platform: {e}")))?,
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            labels: self.labels.clone(),
            exposed_ports: self.exposed_ports.clone(),
            volumes: self.volumes.clone(),
            stop_signal: self.stop_signal.clone(),
            command: self.command.clone(),
            annotations: BTreeMap::new(),
        })
    }

    /// The options to pack with; the layers' package attribution is the
    /// caller's (`crate::image::layers::owners` of the embedded manifest).
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            compression: self.compression,
            source_date_epoch: self.source_date_epoch,
            layering: crate::image::Layering {
                budget: self.layers,
                ..Default::default()
            },
            ..WriteOptions::default()
        }
    }
}

/// A package, as the root's database describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

/// A package with at least one kept file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The source package and its version (when it differs).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Which database: `dpkg` (apk and rpm would be added here).
    pub manager: String,
    /// The licenses its copyright file names (DEP-5 `License:` fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Non-directory paths of the package kept in the image.
    pub files_kept: u64,
    /// Non-directory paths the package installed in the root.
    pub files_total: u64,
}

impl PackageRecord {
    /// Whether only some of its files were kept.
    pub fn partial(&self) -> bool {
        self.files_kept < self.files_total
    }

    pub fn reference(&self) -> PackageRef {
        PackageRef {
            name: self.name.clone(),
            version: self.version.clone(),
            architecture: self.architecture.clone(),
        }
    }

    /// The package URL (`pkg:deb/debian/NAME@VERSION?arch=…&distro=…`).
    pub fn purl(&self, origin: &Origin) -> String {
        let namespace = origin
            .os_release
            .get("ID")
            .cloned()
            .unwrap_or_else(|| "debian".into());
        let mut q = Vec::new();
        if let Some(a) = &self.architecture {
            q.push(format!("arch={}", purl_escape(a)));
        }
        if let Some(v) = origin.os_release.get("VERSION_ID") {
            q.push(format!("distro={namespace}-{}", purl_escape(v)));
        }
        let mut s = format!(
            "pkg:deb/{}/{}@{}",
            purl_escape(&namespace),
            purl_escape(&self.name),
            purl_escape(&self.version)
        );
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }
}

/// Percent-encode what a purl component must not hold raw.
fn purl_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if b == b':' {
            out.push_str("%3A");
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One path of the image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    #[serde(flatten)]
    pub entry: Entry,
    /// The package that installed it, when the root's database knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageRef>,
}

/// The embedded manifest (docs/verify.md has the schema).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub schema: String,
    /// The jail version that wrote it.
    pub jail: String,
    pub build: Build,
    pub origin: Origin,
    pub image: ImageRecord,
    pub packages: Vec<PackageRecord>,
    /// Every path of the image but the manifest itself (the parent
    /// directories the layer adds are not listed). On a base, the base's
    /// paths the command does not use too, with reason `base`.
    pub files: BTreeMap<ImagePath, FileRecord>,
    /// The base image whose layers are below this image's (`--base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRecord>,
}

/// The base an image was made on (`--base`): what `jail verify` needs
/// again to rebuild it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseRecord {
    // No name: the same command on the same base gives the same layers
    // however the base was named. The name is in the OCI manifest's
    // `org.opencontainers.image.base.name` annotation.
    /// The base's manifest digest (none for a docker-archive base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<crate::digest::Digest>,
    /// The blob digests of the base's layers, bottom to top: the image's
    /// first layers.
    pub layers: Vec<crate::digest::Digest>,
}

impl BaseRecord {
    pub fn of(base: &crate::image::Base) -> BaseRecord {
        BaseRecord {
            manifest_digest: base.manifest_digest,
            layers: base.layers.iter().map(|l| l.digest).collect(),
        }
    }
}

impl Evidence {
    /// The bytes as embedded: pretty JSON, a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, AttestError> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| AttestError::Json {
            what: "the embedded manifest",
            msg: e.to_string(),
        })?;
        v.push(b'\n');
        Ok(v)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Evidence, AttestError> {
        let e: Evidence = serde_json::from_slice(bytes).map_err(|e| AttestError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        if e.schema != SCHEMA {
            return Err(AttestError::Parse {
                path: path.to_path_buf(),
                msg: format!("schema {:?}, expected {SCHEMA:?}", e.schema),
            });
        }
        Ok(e)
    }

    /// The embedded manifest of an unpacked image or tree at `root`, if
    /// it has one.
    pub fn read_from_root(root: &Path) -> Result<Option<Evidence>, AttestError> {
        let path = root.join(MANIFEST_PATH.trim_start_matches('/'));
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AttestError::Read { path, source }),
        }
        let bytes = std::fs::read(&path).map_err(|source| AttestError::Read {
            path: path.clone(),
            source,
        })?;
        Evidence::from_bytes(&bytes, &path).map(Some)
    }

    /// The package name of each attributed path: how the image writer
    /// groups files into layers (`crate::image::layers`).
    pub fn owners(&self) -> BTreeMap<ImagePath, String> {
        self.files
            .iter()
            .filter_map(|(p, r)| r.package.as_ref().map(|k| (p.clone(), k.name.clone())))
            .collect()
    }

    pub fn package(&self, r: &PackageRef) -> Option<&PackageRecord> {
        self.packages
            .iter()
            .find(|p| p.name == r.name && p.architecture == r.architecture)
    }
}

/// Whether an entry exists only as jail's evidence (regenerated on every
/// build, so `jail verify` regenerates it rather than reading it).
pub fn is_evidence_only(e: &Entry) -> bool {
    !e.reasons.is_empty()
        && e.reasons
            .iter()
            .all(|r| matches!(r, Reason::Evidence | Reason::PackageDatabase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_escape_epochs_and_plus() {
        let p = PackageRecord {
            name: "libstdc++6".into(),
            version: "1:12.2.0-14".into(),
            architecture: Some("amd64".into()),
            source: "gcc-12".into(),
            source_version: None,
            manager: "dpkg".into(),
            licenses: vec![],
            files_kept: 1,
            files_total: 3,
        };
        let origin = Origin {
            os_release: [
                ("ID".to_string(), "debian".to_string()),
                ("VERSION_ID".into(), "12".into()),
            ]
            .into(),
            ..Origin::default()
        };
        assert_eq!(
            p.purl(&origin),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64&distro=debian-12"
        );
        assert!(p.partial());
    }
}
