//! `jail pack DIR -o IMAGE`: pack an existing tree as a deterministic image
//! (`jail::pipeline::pack`).

use std::path::PathBuf;

use jail::pipeline::pack::{PackJob, PackRequest};

use super::build_opts::EvidenceOpts;
use super::image_opts::ImageOpts;
use super::registry_opts::RegistryOpts;
use super::{print_json, CmdResult, Stderr};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to pack (its contents become the image's /).
    dir: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    #[command(flatten)]
    image: ImageOpts,
    #[command(flatten)]
    registry: RegistryOpts,
    #[command(flatten)]
    evidence: EvidenceOpts,
    /// Print a JSON summary on stdout (docs/formats.md).
    #[arg(long)]
    json: bool,
    /// Replace a non-empty directory that is not an OCI layout at -o
    /// (--format oci-dir).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> CmdResult {
    let request = PackRequest {
        dir: a.dir,
        output: a.output,
        image: a.image.request(),
        registry: a.registry.request(),
        evidence: a.evidence.request(),
        force: a.force,
    };
    let summary = PackJob::resolve(request, &Stderr)?.run(&Stderr)?;
    if a.json {
        print_json(&summary)?;
    }
    Ok(())
}
