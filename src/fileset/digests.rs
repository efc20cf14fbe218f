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

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::resolve::Stamp;

/// The most entries kept on disk (the most recently used first).
const MAX_ENTRIES: usize = 200_000;
/// File format version, in the file name. v1 was text, one line per
/// entry, all parsed at start: with 130,000 entries that cost every trace
/// 150 ms. v2 is a table of buckets and fixed-size records, read where a
/// lookup needs them: two `pread`s per file, whatever the cache's size.
const FILE: &str = "digests-v2";
const OLD_FILES: [&str; 1] = ["digests-v1"];
const MAGIC: &[u8; 8] = b"jaildg2\n";
/// A record: the key (device, inode, size, mtime s, ctime s as big-endian
/// u64s, then mtime ns, ctime ns as big-endian u32s), the sha256, and the
/// save generation it was last used in.
const KEY: usize = 5 * 8 + 2 * 4;
const REC: usize = KEY + 32 + 4;
/// Records are grouped by a hash of their key into this many buckets; the
/// header holds each bucket's first record index (and one past the last).
const BUCKETS: usize = 1 << 16;
const HEAD: usize = MAGIC.len() + 4 + 4 + (BUCKETS + 1) * 4;
/// Digests learned since the sorted file was written are appended to a
/// journal beside it (records as in the file, unsorted, read whole at
/// start): a save costs what it adds. Past this many records the next
/// save merges the journal into the sorted file.
const JOURNAL_MAX: usize = 8192;

type Key = [u8; KEY];
type Record = [u8; REC];

/// Digests by file identity; shareable between threads.
#[derive(Debug, Default)]
pub struct DigestCache {
    /// The file as it was when opened, and its record count.
    disk: Option<(File, u32)>,
    /// The generation of this run's save (the file's plus one).
    generation: u32,
    /// Records of `disk` used by this run (indexes), to keep on trimming.
    used: Mutex<HashSet<u32>>,
    /// The journal's records (learned by earlier runs since the sorted
    /// file was written), with their generations.
    journal: HashMap<Key, (Digest, u32)>,
    /// Digests learned by this run.
    new: Mutex<HashMap<Key, Digest>>,
    /// Where it is kept; `None` for memory only.
    file: Option<PathBuf>,
    added: AtomicBool,
}

/// A stamp as a record key; `None` for a timestamp no file has (negative
/// or out-of-range nanoseconds): such a file is not remembered.
fn key(id: &Stamp) -> Option<Key> {
    let mut k = [0u8; KEY];
    let big = [
        id.dev,
        id.ino,
        id.size,
        id.mtime.0 as u64,
        id.ctime.0 as u64,
    ];
    for (i, v) in big.iter().enumerate() {
        k[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    let ns = |n: i64| u32::try_from(n).ok().filter(|n| *n < 1_000_000_000);
    k[40..44].copy_from_slice(&ns(id.mtime.1)?.to_be_bytes());
    k[44..48].copy_from_slice(&ns(id.ctime.1)?.to_be_bytes());
    Some(k)
}

/// The bucket of a key: FNV-1a, fixed here because it is part of the file
/// format.
fn bucket(k: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &k[..KEY] {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % BUCKETS
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl DigestCache {
    /// A cache in memory only.
    pub fn in_memory() -> DigestCache {
        DigestCache::default()
    }

    /// The user's cache (opened now; unreadable or absent means empty).
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

    /// A cache kept in `file`. Only its header is read now; a file that is
    /// not a v2 file of a consistent size counts as empty (and is replaced
    /// at the next save). The open file is read, even if another jail
    /// replaces it meanwhile (saves rename a new file into place).
    pub fn at(file: PathBuf) -> DigestCache {
        let mut c = DigestCache {
            file: Some(file.clone()),
            generation: 1,
            ..DigestCache::default()
        };
        if let Ok(bytes) = std::fs::read(journal_of(&file)) {
            // A torn last append is a partial record: left out.
            for r in bytes.chunks_exact(REC) {
                let mut k = [0u8; KEY];
                k.copy_from_slice(&r[..KEY]);
                let mut d = [0u8; 32];
                d.copy_from_slice(&r[KEY..KEY + 32]);
                c.journal.insert(k, (Digest(d), be32(&r[KEY + 32..])));
            }
        }
        let Ok(f) = File::open(&file) else { return c };
        let mut head = [0u8; 16];
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.read_exact_at(&mut head, 0).is_err() || head[..8] != MAGIC[..] {
            return c;
        }
        let count = be32(&head[12..]);
        if len != (HEAD + count as usize * REC) as u64 {
            return c;
        }
        c.generation = be32(&head[8..]).wrapping_add(1);
        c.disk = Some((f, count));
        c
    }

    /// The record of `key` in the file: its bucket's bounds, then its
    /// records. A damaged file gives misses, never a wrong digest for a
    /// key it does not hold.
    fn on_disk(&self, key: &Key) -> Option<(u32, Digest)> {
        let (f, count) = self.disk.as_ref()?;
        let b = bucket(key);
        let mut bounds = [0u8; 8];
        f.read_exact_at(&mut bounds, (16 + b * 4) as u64).ok()?;
        let (lo, hi) = (be32(&bounds), be32(&bounds[4..]));
        if lo > hi || hi > *count || hi - lo > 4096 {
            return None;
        }
        let mut recs = vec![0u8; (hi - lo) as usize * REC];
        f.read_exact_at(&mut recs, (HEAD + lo as usize * REC) as u64)
            .ok()?;
        recs.chunks_exact(REC)
            .zip(lo..)
            .find(|(r, _)| r[..KEY] == key[..])
            .map(|(r, i)| {
                let mut d = [0u8; 32];
                d.copy_from_slice(&r[KEY..KEY + 32]);
                (i, Digest(d))
            })
    }

    /// The sha256 of the file at `path` whose metadata is `meta`: remembered,
    /// or read now (and remembered).
    pub fn digest(&self, path: &Path, meta: &Metadata) -> io::Result<Digest> {
        let Some(k) = key(&Stamp::of(meta)) else {
            return Digest::of_reader(File::open(path)?);
        };
        if let Some(d) = self.new.lock().unwrap_or_else(|e| e.into_inner()).get(&k) {
            return Ok(*d);
        }
        if let Some((d, _)) = self.journal.get(&k) {
            return Ok(*d);
        }
        if let Some((i, d)) = self.on_disk(&k) {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(i);
            return Ok(d);
        }
        let d = Digest::of_reader(File::open(path)?)?;
        self.new
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, d);
        self.added.store(true, Ordering::Relaxed);
        Ok(d)
    }

    /// Write the cache back if it learned something (atomically; failures
    /// are ignored: a cache is an optimisation). The records this run used
    /// or learned take its generation; past `MAX_ENTRIES` the oldest
    /// generations go.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.added.load(Ordering::Relaxed) {
            return;
        }
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let new = self.new.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = self.generation.to_be_bytes();
        let record = |k: &Key, d: &Digest, generation: &[u8; 4]| {
            let mut r = [0u8; REC];
            r[..KEY].copy_from_slice(k);
            r[KEY..KEY + 32].copy_from_slice(&d.0);
            r[KEY + 32..].copy_from_slice(generation);
            r
        };
        let Some(dir) = file.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let journal = journal_of(file);
        if self.journal.len() + new.len() <= JOURNAL_MAX && self.disk.is_some() {
            // One append of whole records (O_APPEND: concurrent jails do
            // not overwrite each other's).
            let mut out = Vec::with_capacity(new.len() * REC);
            for (k, d) in new.iter() {
                out.extend_from_slice(&record(k, d, &stamp));
            }
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&journal)
                .and_then(|mut f| f.write_all(&out));
            return;
        }
        let mut old = Vec::new();
        if let Some((f, count)) = &self.disk {
            old = vec![0u8; *count as usize * REC];
            if f.read_exact_at(&mut old, HEAD as u64).is_err() {
                old.clear();
            }
        }
        let mut records: Vec<Record> =
            Vec::with_capacity(old.len() / REC + self.journal.len() + new.len());
        for (i, rec) in old.chunks_exact(REC).enumerate() {
            let mut r = [0u8; REC];
            r.copy_from_slice(rec);
            if used.contains(&(i as u32)) {
                r[KEY + 32..].copy_from_slice(&stamp);
            }
            records.push(r);
        }
        for (k, (d, generation)) in &self.journal {
            records.push(record(k, d, &generation.to_be_bytes()));
        }
        for (k, d) in new.iter() {
            records.push(record(k, d, &stamp));
        }
        if records.len() > MAX_ENTRIES {
            records.sort_by_key(|r| std::cmp::Reverse(be32(&r[KEY + 32..])));
            records.truncate(MAX_ENTRIES);
        }
        records.sort_unstable_by(|a, b| (bucket(a), &a[..KEY]).cmp(&(bucket(b), &b[..KEY])));
        records.dedup_by(|a, b| a[..KEY] == b[..KEY]);
        let mut out = Vec::with_capacity(HEAD + records.len() * REC);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&stamp);
        out.extend_from_slice(&(records.len() as u32).to_be_bytes());
        let mut at = 0usize;
        for b in 0..=BUCKETS {
            while at < records.len() && bucket(&records[at]) < b {
                at += 1;
            }
            out.extend_from_slice(&(at as u32).to_be_bytes());
        }
        for r in &records {
            out.extend_from_slice(r);
        }
        if crate::atomic::write_atomic(file, &out).is_ok() {
            // Merged: the journal, and the text cache of older versions,
            // are dead weight now.
            let _ = std::fs::remove_file(&journal);
            for old in OLD_FILES {
                let _ = std::fs::remove_file(dir.join(old));
            }
        }
    }
}

/// The journal beside the sorted file `file`.
fn journal_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".log");
    PathBuf::from(name)
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
        let again = DigestCache::at(store.clone());
        assert_eq!(again.disk.as_ref().map(|d| d.1), Some(1));
        assert_eq!(again.generation, 2);
        // Found on disk: not learned again.
        assert_eq!(again.digest(&f, &m).unwrap(), Digest::of(b"one"));
        assert!(!again.added.load(Ordering::Relaxed));
        // A write changes ctime (and here size): a miss, the new content.
        std::fs::write(&f, b"two!").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(again.digest(&f, &m).unwrap(), Digest::of(b"two!"));
        again.save();
        // The sorted file is left alone: the new digest is in the journal.
        let third = DigestCache::at(store.clone());
        assert_eq!(third.disk.as_ref().map(|d| d.1), Some(1));
        assert_eq!(third.journal.len(), 1);
        assert_eq!(third.digest(&f, &m).unwrap(), Digest::of(b"two!"));
        assert!(!third.added.load(Ordering::Relaxed));
        // A torn append (a partial record) is left out, the rest is kept.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(journal_of(&store))
            .unwrap();
        log.write_all(&[7u8; REC / 2]).unwrap();
        assert_eq!(DigestCache::at(store.clone()).journal.len(), 1);
        // Anything else in the file is an empty cache, not an error.
        std::fs::write(&store, b"65024 1 2 3 4 5 6 abc\n").unwrap();
        assert!(DigestCache::at(store).disk.is_none());
    }

    /// Many entries: every one is found in its bucket, and a stamp that is
    /// not there is not.
    #[test]
    fn every_record_is_found_in_its_bucket() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("digests");
        let stamp = |i: u64| Stamp {
            dev: 7,
            ino: (i * 7919) % 10_007,
            size: i,
            mtime: (i as i64 - 500, 3),
            ctime: (-(i as i64), 999_999_999),
        };
        let c = DigestCache::at(store.clone());
        for i in 0..1000 {
            let k = key(&stamp(i)).unwrap();
            c.new
                .lock()
                .unwrap()
                .insert(k, Digest::of(&i.to_le_bytes()));
        }
        c.added.store(true, Ordering::Relaxed);
        c.save();
        let c = DigestCache::at(store);
        assert_eq!(c.disk.as_ref().map(|d| d.1), Some(1000));
        for i in 0..1000 {
            let (_, got) = c.on_disk(&key(&stamp(i)).unwrap()).unwrap();
            assert_eq!(got, Digest::of(&i.to_le_bytes()));
        }
        assert!(c.on_disk(&key(&stamp(1000)).unwrap()).is_none());
        // Nanoseconds no file has are not remembered.
        let mut odd = stamp(1);
        odd.mtime.1 = -1;
        assert!(key(&odd).is_none());
    }

    /// Past the limit, the records of the oldest generations go; the ones
    /// this run used stay.
    #[test]
    fn trimming_keeps_what_was_used() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("digests");
        let first = d.path().join("first");
        std::fs::write(&first, b"first").unwrap();
        let c = DigestCache::at(store.clone());
        let m = std::fs::metadata(&first).unwrap();
        c.digest(&first, &m).unwrap();
        let stamp = |i: u64| Stamp {
            dev: 9,
            ino: i,
            size: 1,
            mtime: (1, 1),
            ctime: (1, 1),
        };
        for i in 0..MAX_ENTRIES as u64 {
            c.new
                .lock()
                .unwrap()
                .insert(key(&stamp(i)).unwrap(), Digest::of(b"x"));
        }
        c.save();
        // Generation 2 uses `first` and learns more than a journal holds:
        // the save merges, the limit is passed, unused generation-1
        // records go, `first` and what generation 2 learned stay.
        let c = DigestCache::at(store.clone());
        assert_eq!(c.digest(&first, &m).unwrap(), Digest::of(b"first"));
        let second = d.path().join("second");
        std::fs::write(&second, b"second").unwrap();
        c.digest(&second, &std::fs::metadata(&second).unwrap())
            .unwrap();
        for i in 0..JOURNAL_MAX as u64 {
            let mut s = stamp(i);
            s.dev = 10;
            c.new
                .lock()
                .unwrap()
                .insert(key(&s).unwrap(), Digest::of(b"y"));
        }
        c.save();
        assert!(!journal_of(&store).exists());
        let c = DigestCache::at(store);
        assert_eq!(c.disk.as_ref().map(|d| d.1), Some(MAX_ENTRIES as u32));
        assert!(c.on_disk(&key(&Stamp::of(&m)).unwrap()).is_some());
        assert!(c
            .on_disk(&key(&Stamp::of(&std::fs::metadata(&second).unwrap())).unwrap())
            .is_some());
    }
}
