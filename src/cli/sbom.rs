//! `jail sbom IMAGE [-o FILE] [--format spdx|cyclonedx]`: the SBOM of an
//! image, from its embedded manifest (or, for an image jail did not write,
//! from its files and its own dpkg database; `jail::pipeline::verify`).

use std::io::Write;
use std::path::PathBuf;

use jail::atomic::write_atomic;
use jail::attest::sbom::SbomFormat;
use jail::pipeline::JobError;

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
    let format = a
        .format
        .or_else(|| a.output.as_deref().and_then(SbomFormat::of_name))
        .unwrap_or(SbomFormat::Spdx);
    let bytes = jail::pipeline::verify::sbom(&a.image, format, &a.pull.request())?;
    match &a.output {
        Some(p) => write_atomic(p, &bytes)
            .map_err(|e| Failure::failed(JobError::WriteFile(p.clone(), e)))?,
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(Failure::failed)?,
    }
    Ok(())
}
