//! `jail report SUBJECT [--json] [--seccomp FILE] [--against ORIGINAL]`:
//! security review of an image, tree or manifest (docs/report.md,
//! `jail::pipeline::report`).

use std::io::Write;
use std::path::PathBuf;

use jail::pipeline::report::{report, ReportRequest};

use super::registry_opts::PullOpts;
use super::{CmdResult, Failure, Stderr};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to review: an image (docker-archive or OCI archive .tar, an OCI
    /// layout DIR, DIR:TAG, a registry reference HOST[:PORT]/NAME[:TAG|@sha256:…]),
    /// a directory tree, or a manifest (.yaml/.json).
    subject: String,
    /// Print the report as JSON (schema: docs/report.md).
    #[arg(long)]
    json: bool,
    /// Write a Docker/OCI seccomp profile allowing the traced syscalls
    /// (needs a manifest traced with `jail trace --syscalls`).
    #[arg(long, value_name = "FILE")]
    seccomp: Option<PathBuf>,
    /// Say what slimming removed from and kept of ORIGINAL (an image,
    /// tree or manifest).
    #[arg(long, value_name = "ORIGINAL")]
    against: Option<String>,
    /// The manifest of an image or tree (`jail trace`/`jail slim
    /// --manifest`): why each file is there, the trace's syscalls and the
    /// secrets it left out.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Attribute files to Debian packages with DIR's dpkg database
    /// [default: the subject's own, the original's, or the root the
    /// manifest was traced in].
    #[arg(long, value_name = "DIR")]
    dpkg_root: Option<PathBuf>,
    #[command(flatten)]
    pull: PullOpts,
}

pub fn run(a: Args) -> CmdResult {
    let request = ReportRequest {
        subject: a.subject,
        seccomp: a.seccomp,
        against: a.against,
        manifest: a.manifest,
        dpkg_root: a.dpkg_root,
        registry: a.pull.request(),
    };
    let review = report(&request, &Stderr)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        out.write_all(&review.to_json()).map_err(Failure::failed)?;
    } else {
        jail::report::write_text(&review, &mut out).map_err(Failure::failed)?;
    }
    out.flush().map_err(Failure::failed)?;
    Ok(())
}
