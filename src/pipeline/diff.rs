//! The diff job (`jail diff A B`): the file-level difference of two
//! images, trees or manifests (each opened by `input::open_with`).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::fileset::Entry;
use crate::input::open_with;
use crate::paths::ImagePath;

use super::{Failure, RegistryRequest};

/// What differs (`jail diff --json`, docs/formats.md).
#[derive(Debug, Default, Serialize)]
pub struct Difference {
    /// In B only.
    pub added: Vec<ImagePath>,
    /// In A only.
    pub removed: Vec<ImagePath>,
    /// In both, different.
    pub changed: Vec<Changed>,
}

/// A path in both, and what differs, in words.
#[derive(Debug, Serialize)]
pub struct Changed {
    pub path: ImagePath,
    pub changes: Vec<String>,
}

impl Difference {
    /// For people: `- removed`, `+ added`, `~ changed (what)`.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for p in &self.removed {
            writeln!(out, "- {}", p.0.display())?;
        }
        for p in &self.added {
            writeln!(out, "+ {}", p.0.display())?;
        }
        for c in &self.changed {
            writeln!(out, "~ {} ({})", c.path.0.display(), c.changes.join(", "))?;
        }
        Ok(())
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Open `a` and `b` and compare them; `mtime`: an mtime alone is a change.
pub fn diff(
    a: &str,
    b: &str,
    mtime: bool,
    registry: &RegistryRequest,
) -> Result<Difference, Failure> {
    let registry = &registry.options()?;
    // Ctrl-C while an image is unpacked: unwind, remove the temporary
    // root, exit 128+N.
    crate::sys::signals::install();
    let scratch = std::env::temp_dir();
    let a = open_with(a, Path::new(&scratch), registry).map_err(Failure::of)?;
    let b = open_with(b, Path::new(&scratch), registry).map_err(Failure::of)?;
    let paths: BTreeSet<&ImagePath> = a
        .fileset
        .entries
        .keys()
        .chain(b.fileset.entries.keys())
        .collect();
    let mut d = Difference::default();
    for p in paths {
        match (a.fileset.entries.get(p), b.fileset.entries.get(p)) {
            (Some(_), None) => d.removed.push(p.clone()),
            (None, Some(_)) => d.added.push(p.clone()),
            (Some(x), Some(y)) => {
                let changes = changes(x, y, mtime);
                if !changes.is_empty() {
                    d.changed.push(Changed {
                        path: p.clone(),
                        changes,
                    });
                }
            }
            (None, None) => {}
        }
    }
    Ok(d)
}

/// What differs between two entries of the same path, in words.
pub fn changes(a: &Entry, b: &Entry, mtime: bool) -> Vec<String> {
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
