//! The blob cache: pulled blobs by digest, under
//! `$XDG_CACHE_HOME/jail/blobs/sha256/<hex>` (or `~/.cache/jail/…`), laid
//! out as an OCI layout's `blobs/` so the image reader reads them as it
//! reads a layout.
//!
//! A blob is written under a temporary name (`.partial-…`) in the same
//! directory, hashed while written, and renamed to its digest only when its
//! digest and size are the ones asked for. A failure or an interruption
//! drops the temporary file: the cache never holds a partial or wrong blob
//! under a digest's name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Temporary files older than this are left over by a killed jail.
const STALE: Duration = Duration::from_secs(24 * 3600);

/// A blob cache directory.
#[derive(Clone, Debug)]
pub struct BlobCache {
    /// The directory holding `blobs/sha256/`.
    root: PathBuf,
}

/// Why a blob did not make it into the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set XDG_CACHE_HOME or HOME")]
    NoHome,
    #[error("cannot write the blob cache {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// More bytes than the descriptor's size arrived.
    #[error("more than the {want} bytes its descriptor says")]
    TooLong { want: u64 },
    /// The digest or size of what arrived is wrong.
    #[error("{what}")]
    Mismatch { what: String },
}

impl BlobCache {
    /// The user's cache: `$XDG_CACHE_HOME/jail` or `~/.cache/jail`.
    pub fn user() -> Result<BlobCache, CacheError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let base = var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .ok_or(CacheError::NoHome)?;
        BlobCache::at(base.join("jail"))
    }

    /// A cache in `root` (created, 0700: images may hold private files).
    pub fn at(root: PathBuf) -> Result<BlobCache, CacheError> {
        let c = BlobCache { root };
        let dir = c.dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| CacheError::Io {
                path: dir.clone(),
                source,
            })?;
        c.remove_stale();
        Ok(c)
    }

    /// The directory that holds `blobs/sha256/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// Where the blob `d` is kept.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir().join(d.hex())
    }

    /// The cached blob `d`, when it is there with `size` bytes (if given)
    /// and its content hashes to `d`. A wrong entry (a disk error, a hand
    /// edit) is removed, so the blob is fetched again.
    pub fn get(&self, d: &Digest, size: Option<u64>) -> Option<PathBuf> {
        let p = self.path(d);
        let meta = fs::metadata(&p).ok()?;
        let ok = meta.is_file()
            && size.is_none_or(|s| s == meta.len())
            && File::open(&p)
                .and_then(|f| Digest::of_reader(io::BufReader::with_capacity(1 << 20, f)))
                .is_ok_and(|got| got == *d);
        if ok {
            Some(p)
        } else {
            let _ = fs::remove_file(&p);
            None
        }
    }

    /// Start writing blob `d` of `size` bytes (if known).
    pub fn writer(&self, d: &Digest, size: Option<u64>) -> Result<BlobWriter, CacheError> {
        let dir = self.dir();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".partial-{}-", &d.hex()[..12]))
            .tempfile_in(&dir)
            .map_err(|source| CacheError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(BlobWriter {
            dest: self.path(d),
            out: BufWriter::with_capacity(1 << 20, tmp),
            hasher: Sha256::new(),
            len: 0,
            want: *d,
            want_size: size,
        })
    }

    /// Remove the temporary files of jails that were killed mid-pull.
    fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with(".partial-") {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// A blob being written: hashed and counted as it is written; only
/// [`BlobWriter::commit`] gives it its digest's name.
pub struct BlobWriter {
    dest: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    len: u64,
    want: Digest,
    want_size: Option<u64>,
}

impl BlobWriter {
    /// Append `buf`; more bytes than the expected size is an error at once
    /// (a registry must not make jail fill the disk).
    pub fn write(&mut self, buf: &[u8]) -> Result<(), CacheError> {
        if let Some(want) = self.want_size {
            if self.len + buf.len() as u64 > want {
                return Err(CacheError::TooLong { want });
            }
        }
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        self.out.write_all(buf).map_err(|source| CacheError::Io {
            path: self.dest.clone(),
            source,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Check the digest and size, then rename the blob into place. On a
    /// mismatch the temporary file is removed.
    pub fn commit(self) -> Result<PathBuf, CacheError> {
        let got = Digest(self.hasher.finalize().into());
        if let Some(want) = self.want_size.filter(|w| *w != self.len) {
            return Err(CacheError::Mismatch {
                what: format!("truncated: {} of {want} bytes arrived", self.len),
            });
        }
        if got != self.want {
            return Err(CacheError::Mismatch {
                what: format!("the content's digest is {got}, not the one asked for"),
            });
        }
        let io_err = |source| CacheError::Io {
            path: self.dest.clone(),
            source,
        };
        let tmp = self.out.into_inner().map_err(|e| io_err(e.into_error()))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
        tmp.persist(&self.dest).map_err(|e| io_err(e.error))?;
        Ok(self.dest)
    }
}

/// Copy a reader into the cache as blob `d` (for tests and local sources).
pub fn put(cache: &BlobCache, d: &Digest, mut r: impl Read) -> Result<PathBuf, CacheError> {
    let mut w = cache.writer(d, None)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).map_err(|source| CacheError::Io {
            path: cache.path(d),
            source,
        })?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n])?;
    }
    w.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(c: &BlobCache) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(c.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_whole_verified_blobs_get_their_names() {
        let d = tempfile::tempdir().unwrap();
        let c = BlobCache::at(d.path().join("jail")).unwrap();
        let good = Digest::of(b"hello");

        // Truncated, too long, wrong content: nothing is left.
        let mut w = c.writer(&good, Some(5)).unwrap();
        w.write(b"hel").unwrap();
        assert!(matches!(w.commit(), Err(CacheError::Mismatch { .. })));
        let mut w = c.writer(&good, Some(5)).unwrap();
        assert!(matches!(
            w.write(b"hello!"),
            Err(CacheError::TooLong { .. })
        ));
        drop(w);
        let mut w = c.writer(&good, Some(5)).unwrap();
        w.write(b"HELLO").unwrap();
        assert!(w.commit().is_err());
        assert!(files(&c).is_empty(), "{:?}", files(&c));

        let p = put(&c, &good, &b"hello"[..]).unwrap();
        assert_eq!(files(&c), vec![good.hex()]);
        assert_eq!(c.get(&good, Some(5)), Some(p.clone()));
        assert_eq!(c.get(&good, Some(6)), None);
        // A corrupt entry is dropped.
        put(&c, &good, &b"hello"[..]).unwrap();
        fs::write(&p, b"jello").unwrap();
        assert_eq!(c.get(&good, None), None);
        assert!(files(&c).is_empty());
    }
}
