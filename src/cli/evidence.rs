//! The evidence flags shared by `trace`, `slim` and `pack` (`--sbom`,
//! `--sbom-format`, `--provenance`, `--no-package-db`), and the steps they
//! add: the embedded manifest before packing, the documents after.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use jail::attest::embed::{embed, EmbedOptions};
use jail::attest::sbom::{sbom, FileSetContent, SbomFormat};
use jail::attest::{provenance, Build, BuildKind, Evidence, ImageRecord};
use jail::fileset::FileSet;
use jail::image::{ImageSpec, ImageSummary, WriteOptions};
use jail::manifest::write_atomic;
use jail::resolve::Root;

use super::Failure;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EvidenceOpts {
    /// Do not write the package database (`/var/lib/dpkg/status.d`) of the
    /// packages with kept files into the image.
    #[arg(long)]
    pub no_package_db: bool,
    /// Write an SBOM of the image here: SPDX 2.3 JSON for `*.spdx.json`,
    /// CycloneDX 1.6 JSON for `*.cdx.json` (or see --sbom-format).
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// The SBOM format, whatever the file name.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub sbom_format: Option<SbomFormat>,
    /// Write the image's provenance here: an in-toto Statement v1 with a
    /// SLSA Provenance v1 predicate.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
}

impl EvidenceOpts {
    /// The SBOM format asked for; checked before any work starts.
    pub fn sbom_format(&self) -> Result<Option<SbomFormat>, Failure> {
        let Some(path) = &self.sbom else {
            if self.sbom_format.is_some() {
                return Err(Failure::usage(anyhow!("--sbom-format needs --sbom FILE")));
            }
            return Ok(None);
        };
        match self.sbom_format.or_else(|| SbomFormat::of_name(path)) {
            Some(f) => Ok(Some(f)),
            None => Err(Failure::usage(anyhow!(
                "--sbom {}: name it *.spdx.json (SPDX 2.3) or *.cdx.json (CycloneDX 1.6), or pass --sbom-format spdx|cyclonedx",
                path.display()
            ))),
        }
    }

    /// The build record of a command.
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
pub struct EvidenceRequest {
    pub opts: EvidenceOpts,
    pub build: Build,
    /// `slim`: the source image's manifest digest.
    pub base_image: Option<String>,
}

/// Add the evidence to `fs` (`trace`, `slim`): only when an image is
/// written, since the manifest describes the image.
pub fn add(
    req: Option<&EvidenceRequest>,
    fs: &mut FileSet,
    root: &Root,
    image: Option<&(ImageSpec, PathBuf, WriteOptions)>,
) -> Result<Option<Evidence>, Failure> {
    let (Some(req), Some((spec, _, wopts))) = (req, image) else {
        return Ok(None);
    };
    let opts = EmbedOptions {
        build: req.build.clone(),
        base_image: req.base_image.clone(),
    };
    let ev = embed(fs, root, &ImageRecord::new(spec, wopts), &opts).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    eprintln!(
        "jail: evidence: {} packages with kept files, manifest at {}",
        ev.packages.len(),
        jail::attest::MANIFEST_PATH
    );
    Ok(Some(ev))
}

/// Write `--sbom` and `--provenance` for the image just written.
pub fn documents(
    opts: &EvidenceOpts,
    ev: &Evidence,
    summary: &ImageSummary,
    fs: &FileSet,
) -> Result<(), Failure> {
    if let Some(format) = opts.sbom_format()? {
        let path = opts.sbom.as_deref().unwrap_or(Path::new("sbom.json"));
        let bytes = sbom(
            ev,
            format,
            &summary.reference,
            &summary.fileset_digest,
            &FileSetContent(fs),
        )
        .map_err(Failure::failed)?;
        write_atomic(path, &bytes).map_err(|e| {
            Failure::failed(anyhow!("cannot write the SBOM {}: {e}", path.display()))
        })?;
        eprintln!("jail: SBOM written to {}", path.display());
    }
    if let Some(path) = &opts.provenance {
        let bytes = provenance::statement(
            ev,
            &summary.reference,
            &summary.manifest_digest,
            &summary.fileset_digest,
        )
        .map_err(Failure::failed)?;
        write_atomic(path, &bytes).map_err(|e| {
            Failure::failed(anyhow!(
                "cannot write the provenance {}: {e}",
                path.display()
            ))
        })?;
        eprintln!("jail: provenance written to {}", path.display());
    }
    Ok(())
}

/// The evidence of a tree or an unpacked image: its embedded manifest when
/// it has one that describes these files, else one made from the tree and
/// its own package database (for the documents; nothing is added to it).
pub fn for_tree(
    opts: &EvidenceOpts,
    fs: &FileSet,
    root: &Root,
    spec: &ImageSpec,
    wopts: &WriteOptions,
) -> Result<Evidence, Failure> {
    let fail = |e: jail::attest::AttestError| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    };
    if let Some(ev) = Evidence::read_from_root(root.dir()).map_err(fail)? {
        return Ok(ev);
    }
    let mut copy = fs.clone();
    let build = opts.build(BuildKind::Pack, &[], None);
    embed(
        &mut copy,
        root,
        &ImageRecord::new(spec, wopts),
        &EmbedOptions {
            build,
            base_image: None,
        },
    )
    .map_err(fail)
}
