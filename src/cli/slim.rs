//! `jail slim IMAGE -o OUT [-- CMD]`: unpack an image (no daemon), run the
//! command inside it under the tracer, keep only what it used
//! (`jail::pipeline::slim`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use jail::pipeline::slim::{SlimJob, SlimRequest};

use super::build_opts::{EvidenceOpts, FilesOpts};
use super::image_opts::ImageOpts;
use super::registry_opts::PullOpts;
use jail::sandbox::Network;

use super::{print_json, CmdResult, Stderr};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: a docker-archive or OCI-archive tar, an OCI layout
    /// directory (`DIR`, `DIR:TAG`, `DIR@sha256:…`), or a registry
    /// reference (`HOST[:PORT]/NAME[:TAG|@sha256:…]`).
    image: String,
    /// Where to write the slim image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// A jail config: its include/exclude globs and image metadata apply,
    /// its tests run in the slim jail.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The command is a service: wait until this command (run on the host,
    /// inside the service's network namespace, with `sh -c`) succeeds, run
    /// the other probes, then stop the service with its StopSignal.
    /// Repeatable; the first is the readiness check.
    #[arg(long, value_name = "SHELL-CMD")]
    probe: Vec<String>,
    /// How long to wait for the first probe to succeed.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    probe_timeout: u64,
    /// Network of the traced command: none (default; probes still reach it
    /// on loopback) or host.
    #[arg(long, value_enum, default_value = "none")]
    network: Network,
    /// Write the manifest (access log and file set) here.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Also write the slim jail as a tree in DIR.
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Replace a non-empty --tree directory, or a non-empty directory
    /// that is not an OCI layout at -o with --format oci-dir.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    files: FilesOpts,
    /// Re-run the command in the slim jail and compare exit status and
    /// stdout with the traced run.
    #[arg(long)]
    verify: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    image_opts: ImageOpts,
    #[command(flatten)]
    pull: PullOpts,
    #[command(flatten)]
    evidence: EvidenceOpts,
    /// The command to run [default: the image's Entrypoint + Cmd].
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(a: Args) -> CmdResult {
    let job = SlimJob::resolve(SlimRequest {
        image: a.image,
        output: a.output,
        config: a.config,
        probe: a.probe,
        probe_timeout: Duration::from_secs(a.probe_timeout),
        network: a.network,
        manifest: a.manifest,
        tree: a.tree,
        force: a.force,
        files: a.files.request(),
        verify: a.verify,
        json: a.json,
        image_opts: a.image_opts.request(),
        registry: a.pull.request(),
        evidence: a.evidence.request(),
        command: a.command,
    })?;
    let summary = job.run(&Stderr)?;
    if a.json {
        print_json(&summary)?;
    }
    summary.checks.passed()
}
