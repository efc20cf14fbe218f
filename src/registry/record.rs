//! Where blobs are known to be: a small record, beside the blob cache
//! (`pushed.json`), of the repositories each blob was pushed to or pulled
//! from, per registry. A push asks it for another repository of the same
//! registry that has a blob, and mounts the blob from there instead of
//! uploading it (docs/registry.md, "Pushing").
//!
//! The record is a hint, never trusted: a mount the registry refuses falls
//! back to an upload. Concurrent jails may each rewrite it (the last one
//! wins, atomically); a lost entry costs one upload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Blobs kept per registry: beyond it, the first by digest are forgotten
/// (the record stays small; a forgotten blob is uploaded once more).
const MAX_BLOBS: usize = 20_000;

/// registry → blob digest → repositories.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BlobRecord {
    #[serde(skip)]
    path: Option<PathBuf>,
    registries: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl BlobRecord {
    /// The record in the cache directory `dir` (empty when there is none
    /// or it cannot be read: it is only a hint).
    pub fn load(dir: &Path) -> BlobRecord {
        let path = dir.join("pushed.json");
        let mut r: BlobRecord = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        r.path = Some(path);
        r
    }

    /// Repositories of `registry` other than `except` known to have `d`.
    pub fn repositories(&self, registry: &str, d: &Digest, except: &str) -> Vec<String> {
        self.registries
            .get(registry)
            .and_then(|m| m.get(&d.to_string()))
            .map(|s| s.iter().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }

    /// Note that `repository` of `registry` has the blobs `ds`.
    pub fn add(&mut self, registry: &str, repository: &str, ds: &[Digest]) {
        let m = self.registries.entry(registry.to_string()).or_default();
        for d in ds {
            m.entry(d.to_string())
                .or_default()
                .insert(repository.to_string());
        }
        while m.len() > MAX_BLOBS {
            let Some(first) = m.keys().next().cloned() else {
                break;
            };
            m.remove(&first);
        }
    }

    /// Write it back; failures are ignored (the next push uploads again).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Ok(bytes) = serde_json::to_vec(self) {
            let _ = crate::atomic::write_atomic(path, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_repositories_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"x");
        let mut r = BlobRecord::load(dir.path());
        r.add("reg:5000", "base", &[d]);
        r.add("reg:5000", "app", &[d]);
        r.save();
        let r = BlobRecord::load(dir.path());
        assert_eq!(r.repositories("reg:5000", &d, "app"), ["base"]);
        assert!(r.repositories("other:5000", &d, "app").is_empty());
        assert!(r
            .repositories("reg:5000", &Digest::of(b"y"), "app")
            .is_empty());
    }
}
