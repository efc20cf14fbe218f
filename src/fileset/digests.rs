//! Content digests of files, remembered by file identity.
//!
//! Tracing the same program again hashes the same libraries again; most of
//! a file set's build time is that hashing. A file's digest is remembered
//! under its identity — device, inode, size, mtime and ctime, as git's index
//! does — in memory and in `$XDG_CACHE_HOME/jail/digests` (or
//! `~/.cache/jail/digests`). A write to the file changes its ctime, a
//! replacement its inode: either misses the cache. A wrong entry cannot
//! spoil a jail: the tree writer and the packer check every file's sha256
//! while they copy it.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::resolve::Stamp;

/// The most entries kept on disk (the newest first).
const MAX_ENTRIES: usize = 200_000;
/// File format version, in the file name.
const FILE: &str = "digests-v1";

/// Digests by file identity; shareable between threads.
#[derive(Debug, Default)]
pub struct DigestCache {
    map: Mutex<HashMap<Stamp, (Digest, u64)>>,
    /// Where it is kept; `None` for memory only.
    file: Option<PathBuf>,
    /// A counter that orders entries by last use, for trimming.
    clock: std::sync::atomic::AtomicU64,
    added: std::sync::atomic::AtomicBool,
}

impl DigestCache {
    /// A cache in memory only.
    pub fn in_memory() -> DigestCache {
        DigestCache::default()
    }

    /// The user's cache (loaded now; unreadable or absent means empty).
    pub fn user() -> DigestCache {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            });
        match dir {
            Some(dir) => DigestCache::at(dir.join("jail").join(FILE)),
            None => DigestCache::in_memory(),
        }
    }

    /// A cache kept in `file`.
    pub fn at(file: PathBuf) -> DigestCache {
        let mut c = DigestCache {
            file: Some(file.clone()),
            ..DigestCache::default()
        };
        if let Ok(f) = File::open(&file) {
            let map = c.map.get_mut().unwrap_or_else(|e| e.into_inner());
            for (i, line) in io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .enumerate()
            {
                if let Some((id, d)) = parse(&line) {
                    map.insert(id, (d, i as u64));
                }
            }
            c.clock = std::sync::atomic::AtomicU64::new(map.len() as u64);
        }
        c
    }

    /// The sha256 of the file at `path` whose metadata is `meta`: remembered,
    /// or read now (and remembered).
    pub fn digest(&self, path: &Path, meta: &Metadata) -> io::Result<Digest> {
        let id = Stamp::of(meta);
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = map.get_mut(&id) {
                e.1 = tick;
                return Ok(e.0);
            }
        }
        let d = Digest::of_reader(File::open(path)?)?;
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (d, tick));
        self.added.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(d)
    }

    /// Write the cache back if it learned something (atomically; failures
    /// are ignored: a cache is an optimisation).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.added.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut entries: Vec<(Stamp, Digest, u64)> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.0, v.1))
            .collect();
        // Oldest first, the newest MAX_ENTRIES kept: loading gives later
        // lines higher ticks.
        entries.sort_by_key(|e| e.2);
        let skip = entries.len().saturating_sub(MAX_ENTRIES);
        let mut out = Vec::with_capacity((entries.len() - skip) * 120);
        for (id, d, _) in &entries[skip..] {
            let _ = writeln!(
                out,
                "{} {} {} {} {} {} {} {}",
                id.dev,
                id.ino,
                id.size,
                id.mtime.0,
                id.mtime.1,
                id.ctime.0,
                id.ctime.1,
                d.hex()
            );
        }
        if let Some(dir) = file.parent() {
            if std::fs::create_dir_all(dir).is_ok() {
                let _ = crate::atomic::write_atomic(file, &out);
            }
        }
    }
}

fn parse(line: &str) -> Option<(Stamp, Digest)> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 8 {
        return None;
    }
    let n = |i: usize| f[i].parse::<i64>().ok();
    let id = Stamp {
        dev: f[0].parse().ok()?,
        ino: f[1].parse().ok()?,
        size: f[2].parse().ok()?,
        mtime: (n(3)?, n(4)?),
        ctime: (n(5)?, n(6)?),
    };
    let d = format!("sha256:{}", f[7]).parse().ok()?;
    Some((id, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_notices_changes() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("cache/jail/digests");
        let f = d.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let c = DigestCache::at(store.clone());
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(c.digest(&f, &m).unwrap(), Digest::of(b"one"));
        c.save();
        let again = DigestCache::at(store);
        assert_eq!(again.map.lock().unwrap().len(), 1);
        // A write changes ctime (and here size): a miss, the new content.
        std::fs::write(&f, b"two!").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(again.digest(&f, &m).unwrap(), Digest::of(b"two!"));
        assert!(parse("garbage").is_none());
    }
}
