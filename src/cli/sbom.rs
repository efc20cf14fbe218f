//! `jail sbom IMAGE [-o FILE] [--format spdx|cyclonedx]`: the SBOM of an
//! image, from its embedded manifest (or, for an image jail did not write,
//! from its files and its own dpkg database).

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use jail::attest::embed::{embed, EmbedOptions};
use jail::attest::sbom::{sbom, DirContent, SbomFormat};
use jail::attest::{Build, BuildKind, Evidence, ImageRecord};
use jail::fileset::FileSet;
use jail::image::read::{self, ImageSource};
use jail::image::{ImageSpec, Reference, WriteOptions};
use jail::manifest::write_atomic;
use jail::resolve::Root;

use super::registry_opts::PullOpts;
use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: an archive, an OCI layout DIR, DIR:TAG, or a registry
    /// reference.
    image: String,
    /// Write the SBOM here [default: stdout].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.6 JSON) [default: by
    /// the output's name, `*.spdx.json` or `*.cdx.json`; else spdx].
    #[arg(long, value_enum)]
    format: Option<SbomFormat>,
    #[command(flatten)]
    pull: PullOpts,
}

pub fn run(a: Args) -> CmdResult {
    jail::sys::interrupt::install();
    let format = a
        .format
        .or_else(|| a.output.as_deref().and_then(SbomFormat::of_name))
        .unwrap_or(SbomFormat::Spdx);
    let scratch = tempfile::Builder::new()
        .prefix("jail-sbom-")
        .tempdir()
        .map_err(Failure::failed)?;
    let registry = a.pull.options()?;
    let source = ImageSource::parse(&a.image).map_err(Failure::usage)?;
    let image = read::unpack_with(&source, scratch.path(), &registry).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    let root = Root::new(image.root()).map_err(Failure::failed)?;
    let fail = |e: jail::attest::AttestError| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    };
    let files = FileSet::from_dir(image.root()).map_err(Failure::failed)?;
    let evidence = match Evidence::read_from_root(image.root()).map_err(fail)? {
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
            embed(
                &mut copy,
                &root,
                &ImageRecord::new(&spec, &WriteOptions::default()),
                &EmbedOptions {
                    build: Build {
                        kind: BuildKind::Pack,
                        commands: Vec::new(),
                        config: None,
                        package_db: true,
                    },
                    base_image: None,
                },
            )
            .map_err(fail)?
        }
    };
    let digest = files.digest();
    let name = image.reference.clone().unwrap_or_else(|| a.image.clone());
    let bytes = sbom(&evidence, format, &name, &digest, &DirContent(image.root())).map_err(fail)?;
    match &a.output {
        Some(p) => write_atomic(p, &bytes)
            .map_err(|e| Failure::failed(anyhow!("cannot write {}: {e}", p.display())))?,
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(Failure::failed)?,
    }
    Ok(())
}
