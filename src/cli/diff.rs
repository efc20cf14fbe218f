//! `jail diff A B`: the file-level difference of two images, trees or
//! manifests. Exit status as diff(1): 0 identical, 1 different, 2 trouble.

use std::collections::BTreeSet;

use serde_json::json;

use jail::fileset::Entry;
use jail::input::open_with;
use jail::paths::ImagePath;

use super::registry_opts::PullOpts;
use super::{CmdResult, Failure};

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

pub fn run(args: Args) -> CmdResult {
    // Ctrl-C while an image is unpacked: unwind, remove the temporary
    // root, exit 128+N.
    jail::sys::interrupt::install();
    let scratch = std::env::temp_dir();
    let registry = args.pull.options()?;
    let a = open_with(&args.a, &scratch, &registry).map_err(Failure::of)?;
    let b = open_with(&args.b, &scratch, &registry).map_err(Failure::of)?;
    let paths: BTreeSet<&ImagePath> = a
        .fileset
        .entries
        .keys()
        .chain(b.fileset.entries.keys())
        .collect();
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for p in paths {
        match (a.fileset.entries.get(p), b.fileset.entries.get(p)) {
            (Some(_), None) => removed.push(p),
            (None, Some(_)) => added.push(p),
            (Some(x), Some(y)) => {
                let what = changes(x, y, args.mtime);
                if !what.is_empty() {
                    changed.push((p, what));
                }
            }
            (None, None) => {}
        }
    }
    if args.json {
        let v = json!({
            "added": added,
            "removed": removed,
            "changed": changed.iter().map(|(p, w)| json!({"path": p, "changes": w})).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        for p in &removed {
            println!("- {}", p.0.display());
        }
        for p in &added {
            println!("+ {}", p.0.display());
        }
        for (p, w) in &changed {
            println!("~ {} ({})", p.0.display(), w.join(", "));
        }
    }
    eprintln!(
        "jail: {} added, {} removed, {} changed",
        added.len(),
        removed.len(),
        changed.len()
    );
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        Ok(())
    } else {
        Err(Failure::silent(1))
    }
}

/// What differs between two entries of the same path, in words.
fn changes(a: &Entry, b: &Entry, mtime: bool) -> Vec<String> {
    let mut w = Vec::new();
    if a.file_type != b.file_type {
        w.push(format!("type {:?} → {:?}", a.file_type, b.file_type).to_lowercase());
        return w;
    }
    if a.mode != b.mode {
        w.push(format!("mode {:04o} → {:04o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        w.push(format!("owner {}:{} → {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.sha256 != b.sha256 || a.size != b.size {
        w.push(format!("content ({} → {} bytes)", a.size, b.size));
    }
    if a.target != b.target {
        let t = |e: &Entry| {
            e.target
                .as_ref()
                .map(|t| t.display().to_string())
                .unwrap_or_default()
        };
        w.push(format!("target {} → {}", t(a), t(b)));
    }
    if a.capability != b.capability {
        w.push("capabilities".into());
    }
    if mtime && a.mtime != b.mtime {
        w.push(format!("mtime {} → {}", a.mtime, b.mtime));
    }
    w
}
