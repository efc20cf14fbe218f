//! `jail diff A B`: the file-level difference of two images, trees or
//! manifests (`jail::pipeline::diff`). Exit status as diff(1): 0
//! identical, 1 different, 2 trouble.

use jail::pipeline::diff::diff;

use super::registry_opts::PullOpts;
use super::{print_json, CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An image (archive, OCI layout, or registry reference
    /// `HOST[:PORT]/NAME[:TAG|@sha256:…]`), a tree, or a manifest.
    a: String,
    /// The same kinds of input as A.
    b: String,
    /// Also report files whose only difference is their mtime.
    #[arg(long)]
    mtime: bool,
    /// Print the difference as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pull: PullOpts,
}

pub fn run(a: Args) -> CmdResult {
    let d = diff(&a.a, &a.b, a.mtime, &a.pull.request())?;
    if a.json {
        print_json(&d)?;
    } else {
        // A closed stdout drops the rest, as the print macros do.
        let _ = d.write_text(&mut std::io::stdout().lock());
    }
    eprintln!(
        "jail: {} added, {} removed, {} changed",
        d.added.len(),
        d.removed.len(),
        d.changed.len()
    );
    if d.is_empty() {
        Ok(())
    } else {
        Err(Failure::silent(1))
    }
}
