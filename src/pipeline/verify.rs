//! The verify job (`jail verify`): rebuild an image from its embedded
//! manifest and a root and compare bit for bit, or check its files against
//! their packages' own checksums (docs/verify.md); and the sbom job
//! (`jail sbom`): an image's SBOM from its embedded manifest, or from its
//! files and its own dpkg database.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attest::embed::{embed, EmbedOptions};
use crate::attest::rebuild::{self, ImageFacts, PackageCheck, Rebuilt};
use crate::attest::sbom::{sbom as sbom_document, DirContent, SbomFormat};
use crate::attest::{AttestError, BaseRecord, Build, BuildKind, Evidence, ImageRecord};
use crate::fileset::FileSet;
use crate::image::read::{self, ImageSource, LocalImage, Unpacked};
use crate::image::{Base, ImageSpec, Reference, WriteOptions};
use crate::registry::RegistryOptions;
use crate::resolve::Root;

use super::evidence::attest_failure;
use super::{Failure, RegistryRequest};

/// `jail verify`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    pub image: String,
    /// A directory or an image [default: /].
    pub root: Option<String>,
    /// Check against the packages instead of rebuilding.
    pub packages: bool,
    /// With `packages`: also against the `.deb`s from the archive.
    pub fetch: bool,
    /// The base an image made on `--base` was built on [default: the
    /// reference its embedded manifest records].
    pub base: Option<String>,
    pub registry: RegistryRequest,
}

/// A refused `jail verify` flag.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("--root {root}")]
    Root {
        root: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--base {base}: {image} was not made on a base (its embedded manifest records none); drop --base")]
    NoBase { base: String, image: String },
}

/// What `jail verify` found; as JSON, the check or the rebuild's outcome.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Verified {
    /// `--packages`.
    Packages(PackageCheck),
    /// The rebuild from `root`.
    Rebuild {
        #[serde(flatten)]
        outcome: Rebuilt,
        #[serde(skip)]
        root: PathBuf,
    },
}

impl Verified {
    /// Every file verified, or the rebuild identical.
    pub fn ok(&self) -> bool {
        match self {
            Verified::Packages(check) => check.ok(),
            Verified::Rebuild { outcome, .. } => outcome.identical,
        }
    }

    /// For people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Verified::Packages(check) => {
                writeln!(
                    out,
                    "verified: {}\nderived: {} (compiled from a verified source)\nnot from a package: {}\nmismatched: {}\n(jail's evidence files, checked by the rebuild: {})",
                    check.verified, check.derived, check.not_from_a_package, check.mismatched, check.evidence
                )?;
                for p in &check.not_from_a_package_files {
                    writeln!(out, "  not from a package: {p}")?;
                }
                for d in &check.mismatched_files {
                    writeln!(out, "  MISMATCHED: {}: {}", d.path.display(), d.why)?;
                }
                if let Some(f) = &check.fetched {
                    writeln!(
                        out,
                        "fetched: {} package(s) from the archive: {} file(s) verified, {} mismatched, {} package(s) not fetched",
                        f.packages,
                        f.verified,
                        f.mismatched,
                        f.unfetched.len()
                    )?;
                    for d in &f.mismatched_files {
                        writeln!(
                            out,
                            "  MISMATCHED (archive): {}: {}",
                            d.path.display(),
                            d.why
                        )?;
                    }
                    for u in &f.unfetched {
                        writeln!(out, "  NOT FETCHED: {}_{}: {}", u.package, u.version, u.why)?;
                    }
                }
            }
            Verified::Rebuild { outcome, .. } if outcome.identical => {
                if let Some(d) = &outcome.rebuilt {
                    writeln!(out, "identical: {d}")?;
                }
            }
            Verified::Rebuild { outcome, root } => {
                writeln!(
                    out,
                    "DIFFERENT: {} path(s) differ from a rebuild from {}",
                    outcome.differences.len(),
                    root.display()
                )?;
                for d in &outcome.differences {
                    writeln!(out, "  {}: {}", d.path.display(), d.why)?;
                }
            }
        }
        Ok(())
    }
}

fn unpack(
    s: &str,
    scratch: &Path,
    registry: &RegistryOptions,
) -> Result<(ImageSource, Unpacked), Failure> {
    let source = ImageSource::parse(s).map_err(Failure::usage)?;
    let image = read::unpack_with(&source, scratch, registry).map_err(Failure::of)?;
    Ok((source, image))
}

/// Rebuild and compare, or check the packages.
pub fn verify(req: &VerifyRequest) -> Result<Verified, Failure> {
    crate::sys::signals::install();
    let scratch = tempfile::Builder::new()
        .prefix("jail-verify-")
        .tempdir()
        .map_err(Failure::failed)?;
    let registry = req.registry.options()?;
    let (source, image) = unpack(&req.image, scratch.path(), &registry)?;

    // The root: `/`, a directory, or an image.
    let _root_image;
    let root = match &req.root {
        None => Root::host(),
        Some(r) if Path::new(r).is_dir() && !Path::new(r).join("oci-layout").exists() => {
            Root::new(Path::new(r)).map_err(|source| {
                Failure::usage(VerifyError::Root {
                    root: r.clone(),
                    source,
                })
            })?
        }
        Some(r) => {
            let (_, unpacked) = unpack(r, scratch.path(), &registry)?;
            let root = Root::new(unpacked.root()).map_err(Failure::failed)?;
            _root_image = unpacked;
            root
        }
    };

    if req.packages {
        let fetch = req.fetch.then(|| scratch.path().join("fetch"));
        let check = rebuild::check_packages(image.root(), &root, fetch.as_deref())
            .map_err(attest_failure)?;
        return Ok(Verified::Packages(check));
    }
    let evidence = Evidence::read_from_root(image.root())
        .map_err(attest_failure)?
        .ok_or_else(|| {
            attest_failure(AttestError::NoManifest {
                image: req.image.clone(),
            })
        })?;
    let facts = ImageFacts {
        root: image.root(),
        manifest_digest: image.manifest_digest,
        annotations: annotations(&source),
        reference: image
            .reference
            .as_deref()
            .and_then(|r| Reference::parse(r).ok())
            .unwrap_or_else(|| Reference::default_for("image")),
    };
    let base = match (&evidence.base, &req.base) {
        (None, None) => None,
        (None, Some(b)) => {
            return Err(Failure::usage(VerifyError::NoBase {
                base: b.clone(),
                image: req.image.clone(),
            }))
        }
        (Some(rec), given) => Some(open_base(
            rec,
            given.as_deref(),
            &facts.annotations,
            &registry,
        )?),
    };
    let outcome =
        rebuild::rebuild(&evidence, &facts, &root, base, scratch.path()).map_err(attest_failure)?;
    Ok(Verified::Rebuild {
        outcome,
        root: root.dir().to_path_buf(),
    })
}

/// The base an image was made on: `given` (`--base`), else the one the
/// image's OCI manifest names (`org.opencontainers.image.base.name`).
/// Not named, not readable, or not the recorded one (by manifest digest),
/// it is an error saying what to pass.
fn open_base(
    rec: &BaseRecord,
    given: Option<&str>,
    annotations: &BTreeMap<String, String>,
    registry: &RegistryOptions,
) -> Result<Arc<Base>, Failure> {
    let needed = |why: String| {
        attest_failure(AttestError::BaseNeeded {
            digest: rec.manifest_digest,
            why,
        })
    };
    let name = match given.or(annotations
        .get(crate::image::BASE_NAME_ANNOTATION)
        .map(String::as_str))
    {
        Some(n) => n,
        None => {
            return Err(needed(
                "the image does not name it (the org.opencontainers.image.base.name annotation of a local image's manifest)".into(),
            ))
        }
    };
    let base = match Base::open(name, registry, &std::env::temp_dir()) {
        Ok(b) => b,
        // A base given explicitly that cannot be read is its own error.
        Err(e) if given.is_some() => return Err(Failure::of(e)),
        Err(e) => {
            return Err(needed(format!(
                "the base it names, {name}, cannot be read ({})",
                crate::error::Chain(&e)
            )))
        }
    };
    if let (Some(want), Some(have)) = (rec.manifest_digest, base.manifest_digest) {
        if want != have {
            return Err(needed(format!("{name} is another image ({have})")));
        }
    }
    Ok(Arc::new(base))
}

/// The OCI manifest's annotations of a local image (a registry image's
/// are not read: the rebuild then compares files, and says so).
fn annotations(source: &ImageSource) -> BTreeMap<String, String> {
    let Ok(local) = LocalImage::open(source) else {
        return BTreeMap::new();
    };
    serde_json::from_slice::<serde_json::Value>(&local.manifest)
        .ok()
        .and_then(|v| v.get("annotations").cloned())
        .and_then(|a| serde_json::from_value(a).ok())
        .unwrap_or_default()
}

/// The SBOM of `image` in `format`.
pub fn sbom(
    image_name: &str,
    format: SbomFormat,
    registry: &RegistryRequest,
) -> Result<Vec<u8>, Failure> {
    crate::sys::signals::install();
    let scratch = tempfile::Builder::new()
        .prefix("jail-sbom-")
        .tempdir()
        .map_err(Failure::failed)?;
    let registry = registry.options()?;
    let (_, image) = unpack(image_name, scratch.path(), &registry)?;
    let root = Root::new(image.root()).map_err(Failure::failed)?;
    let files = FileSet::from_dir(image.root()).map_err(Failure::failed)?;
    let evidence = match Evidence::read_from_root(image.root()).map_err(attest_failure)? {
        Some(e) => e,
        None => {
            // Not a jail image: describe its files with its own database.
            let mut spec = ImageSpec::from_image_config(&image.config);
            spec.reference = image
                .reference
                .as_deref()
                .and_then(|r| Reference::parse(r).ok())
                .unwrap_or_else(|| Reference::default_for("image"));
            let mut copy = files.clone();
            let build = Build {
                kind: BuildKind::Pack,
                commands: Vec::new(),
                config: None,
                package_db: true,
            };
            let opts = EmbedOptions {
                build,
                base_image: None,
                base: None,
            };
            let record = ImageRecord::new(&spec, &WriteOptions::default());
            embed(&mut copy, &root, &record, &opts).map_err(attest_failure)?
        }
    };
    let digest = files.digest();
    let name = image
        .reference
        .clone()
        .unwrap_or_else(|| image_name.to_string());
    sbom_document(&evidence, format, &name, &digest, &DirContent(image.root()))
        .map_err(attest_failure)
}
