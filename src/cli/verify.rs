//! `jail verify IMAGE [--root DIR] [--packages [--fetch]] [--json]`: rebuild an image
//! from its embedded manifest and a root and compare bit for bit, or check
//! its files against their packages' own checksums (docs/verify.md,
//! `jail::pipeline::verify`).

use jail::pipeline::verify::{verify, VerifyRequest};

use super::registry_opts::PullOpts;
use super::{print_json, CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: an archive, an OCI layout DIR, DIR:TAG, or a registry reference.
    image: String,
    /// The root to rebuild from: a directory, or an image [default: /].
    #[arg(long, value_name = "DIR|IMAGE")]
    root: Option<String>,
    /// Check every regular file against its package's checksums in the root's
    /// dpkg database instead of rebuilding.
    #[arg(long)]
    packages: bool,
    /// With --packages: also compare with the .deb of each exact version, from apt.
    #[arg(long, requires = "packages")]
    fetch: bool,
    /// The base an image made with `--base` was built on [default: the one it names].
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pull: PullOpts,
}

pub fn run(a: Args) -> CmdResult {
    let request = VerifyRequest {
        image: a.image,
        root: a.root,
        packages: a.packages,
        fetch: a.fetch,
        base: a.base,
        registry: a.pull.request(),
    };
    let verified = verify(&request)?;
    if a.json {
        print_json(&verified)?;
    } else {
        // A closed stdout drops the rest, as the print macros do.
        let _ = verified.write_text(&mut std::io::stdout().lock());
    }
    if verified.ok() {
        Ok(())
    } else {
        Err(Failure::silent(1))
    }
}
