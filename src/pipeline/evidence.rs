//! The evidence a job adds (`--sbom`, `--sbom-format`, `--provenance`,
//! `--attest`, `--no-package-db`; issue 15): the embedded manifest before
//! packing, the attestations before the image is put in place, the
//! documents after.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::attest::embed::{embed, EmbedOptions};
use crate::attest::sbom::{sbom, OnBase, SbomFormat};
use crate::attest::{provenance, AttestError, Build, BuildKind, Evidence, ImageRecord};
use crate::fileset::FileSet;
use crate::image::{Attestation, ImageSpec, ImageSummary, WriteOptions};
use crate::registry::RegistryRef;
use crate::resolve::Root;

use super::{Failure, JobError, Notes};

/// The evidence flags.
#[derive(Debug, Clone, Default)]
pub struct EvidenceRequest {
    /// Leave the package database out of the image.
    pub no_package_db: bool,
    /// Write an SBOM here.
    pub sbom: Option<PathBuf>,
    /// The SBOM format, whatever the file name.
    pub sbom_format: Option<SbomFormat>,
    /// Write the provenance here.
    pub provenance: Option<PathBuf>,
    /// Attach the SBOM (SPDX) and the provenance to the image as an
    /// attestation manifest.
    pub attest: bool,
}

impl EvidenceRequest {
    /// The SBOM format asked for; checked before any work starts.
    pub fn format(&self) -> Result<Option<SbomFormat>, Failure> {
        let Some(path) = &self.sbom else {
            if self.sbom_format.is_some() {
                return Err(JobError::SbomFormatWithoutSbom.into());
            }
            return Ok(None);
        };
        match self.sbom_format.or_else(|| SbomFormat::of_name(path)) {
            Some(f) => Ok(Some(f)),
            None => Err(JobError::SbomName(path.clone()).into()),
        }
    }

    /// `--attest --push REF@sha256:…` is refused before any work: the tag
    /// must name the index pushed last, whose digest nobody knows ahead.
    pub fn check_push(&self, target: Option<&RegistryRef>) -> Result<(), Failure> {
        match target {
            Some(t) if self.attest && t.digest.is_some() => {
                Err(JobError::AttestPushDigest(t.to_string()).into())
            }
            _ => Ok(()),
        }
    }

    /// The build record of a job.
    pub fn build(
        &self,
        kind: BuildKind,
        commands: &[Vec<OsString>],
        config: Option<&Path>,
    ) -> Build {
        Build {
            kind,
            commands: commands
                .iter()
                .map(|argv| {
                    argv.iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect()
                })
                .collect(),
            config: config
                .and_then(|c| c.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            package_db: !self.no_package_db,
        }
    }
}

/// What `emit` needs to add the evidence.
pub struct Embedding {
    pub request: EvidenceRequest,
    pub build: Build,
    /// `slim`: the source image's manifest digest.
    pub base_image: Option<String>,
}

pub(crate) fn attest_failure(e: AttestError) -> Failure {
    Failure::of(e)
}

/// Add the evidence to `fs` (`trace`, `slim`): only when an image is
/// written, since the manifest describes the image.
pub(crate) fn add(
    req: Option<&Embedding>,
    fs: &mut FileSet,
    root: &Root,
    image: Option<&(ImageSpec, PathBuf, WriteOptions)>,
    notes: &dyn Notes,
) -> Result<Option<Evidence>, Failure> {
    let (Some(req), Some((spec, _, wopts))) = (req, image) else {
        return Ok(None);
    };
    let opts = EmbedOptions {
        build: req.build.clone(),
        base_image: req.base_image.clone(),
        base: wopts.base.clone(),
    };
    let ev = embed(fs, root, &ImageRecord::new(spec, wopts), &opts).map_err(attest_failure)?;
    notes.note(format_args!(
        "evidence: {} packages with kept files, manifest at {}",
        ev.packages.len(),
        crate::attest::MANIFEST_PATH
    ));
    Ok(Some(ev))
}

/// Write `--sbom` and `--provenance` for the image just written.
pub(crate) fn documents(
    req: &EvidenceRequest,
    ev: &Evidence,
    summary: &ImageSummary,
    fs: &FileSet,
    base: Option<&crate::image::Base>,
    notes: &dyn Notes,
) -> Result<(), Failure> {
    if let Some(format) = req.format()? {
        let path = req.sbom.as_deref().unwrap_or(Path::new("sbom.json"));
        let bytes = sbom(
            ev,
            format,
            &summary.reference,
            &summary.fileset_digest,
            &OnBase(fs, base.map(|b| b.dir())),
        )
        .map_err(Failure::failed)?;
        write_atomic(path, &bytes).map_err(|source| JobError::Write {
            what: "SBOM",
            path: path.to_path_buf(),
            source,
        })?;
        notes.note(format_args!("SBOM written to {}", path.display()));
    }
    if let Some(path) = &req.provenance {
        let bytes = provenance::statement(
            ev,
            &summary.reference,
            &summary.manifest_digest,
            &summary.fileset_digest,
        )
        .map_err(Failure::failed)?;
        write_atomic(path, &bytes).map_err(|source| JobError::Write {
            what: "provenance",
            path: path.clone(),
            source,
        })?;
        notes.note(format_args!("provenance written to {}", path.display()));
    }
    Ok(())
}

/// The predicate type of an SPDX document in an in-toto statement.
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// The predicate type of the SLSA provenance.
pub const PREDICATE_SLSA: &str = "https://slsa.dev/provenance/v1";

/// `--attest`: the SBOM (SPDX 2.3, as an in-toto Statement v1) and the
/// provenance statement for the image being written (`staged`: its
/// manifest digest is their subject). The provenance is byte for byte what
/// `--provenance` writes.
pub(crate) fn attestations(
    req: &EvidenceRequest,
    ev: &Evidence,
    staged: &ImageSummary,
    fs: &FileSet,
    base: Option<&crate::image::Base>,
) -> Result<Vec<Attestation>, Failure> {
    if !req.attest {
        return Ok(Vec::new());
    }
    let spdx = sbom(
        ev,
        SbomFormat::Spdx,
        &staged.reference,
        &staged.fileset_digest,
        &OnBase(fs, base.map(|b| b.dir())),
    )
    .map_err(Failure::failed)?;
    let predicate: serde_json::Value = serde_json::from_slice(&spdx).map_err(Failure::failed)?;
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": staged.reference,
            "digest": {"sha256": staged.manifest_digest.hex()},
        }],
        "predicateType": PREDICATE_SPDX,
        "predicate": predicate,
    });
    let mut sbom_statement = serde_json::to_vec_pretty(&statement).map_err(Failure::failed)?;
    sbom_statement.push(b'\n');
    let provenance = provenance::statement(
        ev,
        &staged.reference,
        &staged.manifest_digest,
        &staged.fileset_digest,
    )
    .map_err(Failure::failed)?;
    Ok(vec![
        Attestation {
            predicate_type: PREDICATE_SPDX.into(),
            statement: sbom_statement,
        },
        Attestation {
            predicate_type: PREDICATE_SLSA.into(),
            statement: provenance,
        },
    ])
}

/// Say where `--attest` put the statements.
pub(crate) fn note_attached(summary: &ImageSummary, notes: &dyn Notes) {
    if let Some(d) = &summary.attestation {
        notes.note(format_args!(
            "attached the SBOM (SPDX) and the provenance as attestation manifest {d} for {}",
            summary.manifest_digest
        ));
    }
}

/// The evidence of a tree or an unpacked image: its embedded manifest when
/// it has one that describes these files, else one made from the tree and
/// its own package database (for the documents; nothing is added to it).
pub(crate) fn for_tree(
    req: &EvidenceRequest,
    fs: &FileSet,
    root: &Root,
    spec: &ImageSpec,
    wopts: &WriteOptions,
) -> Result<Evidence, Failure> {
    if let Some(ev) = Evidence::read_from_root(root.dir()).map_err(attest_failure)? {
        return Ok(ev);
    }
    let mut copy = fs.clone();
    let build = req.build(BuildKind::Pack, &[], None);
    embed(
        &mut copy,
        root,
        &ImageRecord::new(spec, wopts),
        &EmbedOptions {
            build,
            base_image: None,
            base: None,
        },
    )
    .map_err(attest_failure)
}
