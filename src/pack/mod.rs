//! The layer writer: a file set to a deterministic layer tar, content read
//! from the file set's root and metadata taken only from its entries, with
//! the diff_id computed while writing.
//!
//! Format (docs/formats.md, "Layer tar"): entries in bytewise path order,
//! parents first; relative names (`usr/bin/x`, directories `usr/bin/`), no
//! entry for `/`; ustar headers with PAX records only where needed; numeric
//! owners; mtimes clamped to `SOURCE_DATE_EPOCH` when given; every path its
//! own regular file (hard links dereferenced); sockets skipped.

pub mod compress;
pub mod tar;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestWriter};
use crate::fileset::{Entry, FileSet, Reason};
use crate::paths::ImagePath;
use crate::resolve::FileType;
use crate::sys::interrupt::{self, Interrupted};

/// Why a layer could not be written. Each names the in-image path.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read {path} (from {host})")]
    Read {
        path: PathBuf,
        host: PathBuf,
        source: io::Error,
    },
    #[error("{path} changed since it was recorded ({what}); record the file set again (re-run the trace, or pack the tree again)")]
    Changed { path: PathBuf, what: String },
    #[error("{path} is a {kind:?}: device nodes cannot be packed (the container runtime provides /dev); remove it from the tree or the file set")]
    Device { path: PathBuf, kind: FileType },
    #[error("{path}: {what}")]
    BadEntry { path: PathBuf, what: String },
    #[error("cannot write the layer")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// How a layer is written.
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// Clamp mtimes to this (seconds since the epoch): `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerStats {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub size: u64,
    /// Tar entries (every path of the file set but `/` and sockets, plus
    /// missing parent directories).
    pub entries: u64,
}

/// Called with the number of content bytes just copied (for progress bars).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Write the layer tar of `fs` into `out`, returning its stats and `out`.
pub fn write_layer<W: Write>(
    fs: &FileSet,
    opts: &LayerOptions,
    out: W,
    progress: Progress<'_>,
) -> Result<(LayerStats, W), PackError> {
    let entries = with_parents(fs)?;
    let mut w = DigestWriter::new(out);
    let mut buf = vec![0u8; 256 << 10];
    let mut count = 0u64;
    for (path, entry) in &entries {
        interrupt::check()?;
        if write_entry(fs, path.as_path(), entry, opts, &mut w, &mut buf, progress)? {
            count += 1;
        }
    }
    tar::write_end(&mut w).map_err(PackError::Write)?;
    let (diff_id, size, out) = w.finish();
    Ok((
        LayerStats {
            diff_id,
            size,
            entries: count,
        },
        out,
    ))
}

/// Entries in tar order, borrowed from the file set or synthesized.
type Ordered<'a> = Vec<(Cow<'a, ImagePath>, Cow<'a, Entry>)>;

/// The entries in tar order, with missing parent directories added (0755,
/// root-owned, mtime 0), after checking that every path is absolute,
/// normal, and has no non-directory parent.
fn with_parents<'a>(fs: &'a FileSet) -> Result<Ordered<'a>, PackError> {
    let mut extra: BTreeMap<ImagePath, Entry> = BTreeMap::new();
    for (path, _) in fs.entries.iter() {
        let p = path.as_path();
        // Bytewise, not with `Path::components`, which hides `.` and `//`
        // that would then reach the tar name.
        let raw = p.as_os_str().as_bytes();
        let normal = raw == b"/"
            || (raw.first() == Some(&b'/')
                && raw[1..]
                    .split(|&b| b == b'/')
                    .all(|c| !c.is_empty() && c != b"." && c != b".."));
        if !normal {
            return Err(PackError::BadEntry {
                path: p.to_path_buf(),
                what: "not an absolute, normalized in-image path".into(),
            });
        }
        let mut parent = p.parent();
        while let Some(dir) = parent {
            if dir == Path::new("/") {
                break;
            }
            let key = ImagePath(dir.to_path_buf());
            match fs.entries.get(&key) {
                Some(e) if e.is_dir() => break,
                Some(e) => {
                    return Err(PackError::BadEntry {
                        path: p.to_path_buf(),
                        what: format!(
                            "its parent {} is a {:?}, not a directory",
                            dir.display(),
                            e.file_type
                        ),
                    })
                }
                None => {
                    extra
                        .entry(key)
                        .or_insert_with(|| Entry::dir(0o755, 0, 0, Reason::ParentDir));
                }
            }
            parent = dir.parent();
        }
    }
    let mut all: Ordered<'a> = fs
        .entries
        .iter()
        .map(|(p, e)| (Cow::Borrowed(p), Cow::Borrowed(e)))
        .collect();
    if !extra.is_empty() {
        all.extend(
            extra
                .into_iter()
                .map(|(p, e)| (Cow::Owned(p), Cow::Owned(e))),
        );
        all.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(all)
}

/// Write one entry; `false` when it is not in the tar (`/`, sockets).
fn write_entry<W: Write>(
    fs: &FileSet,
    path: &Path,
    e: &Entry,
    opts: &LayerOptions,
    w: &mut W,
    buf: &mut [u8],
    progress: Progress<'_>,
) -> Result<bool, PackError> {
    let rel = path
        .strip_prefix("/")
        .unwrap_or(path)
        .as_os_str()
        .as_bytes();
    if rel.is_empty() {
        // The root's own mode and owner are the runtime's business, as in
        // docker and buildkit layers.
        return Ok(false);
    }
    let kind = match e.file_type {
        FileType::File => tar::Kind::File,
        FileType::Dir => tar::Kind::Dir,
        FileType::Symlink => tar::Kind::Symlink,
        FileType::Fifo => tar::Kind::Fifo,
        FileType::Socket => return Ok(false),
        FileType::CharDevice | FileType::BlockDevice => {
            return Err(PackError::Device {
                path: path.to_path_buf(),
                kind: e.file_type,
            })
        }
    };
    let name: Cow<'_, [u8]> = if kind == tar::Kind::Dir {
        Cow::Owned([rel, b"/"].concat())
    } else {
        Cow::Borrowed(rel)
    };
    let link: &[u8] = match (kind, &e.target) {
        (tar::Kind::Symlink, Some(t)) => t.as_os_str().as_bytes(),
        (tar::Kind::Symlink, None) => {
            return Err(PackError::BadEntry {
                path: path.to_path_buf(),
                what: "symlink without a target".into(),
            })
        }
        _ => b"",
    };
    let content = e.content.as_deref().map(str::as_bytes);
    let size = match (kind, content) {
        (tar::Kind::File, Some(c)) => c.len() as u64,
        (tar::Kind::File, None) => e.size,
        _ => 0,
    };
    let mtime = match opts.source_date_epoch {
        Some(sde) => e.mtime.min(sde),
        None => e.mtime,
    };
    let meta = tar::Meta {
        name: &name,
        kind,
        mode: e.mode,
        uid: u64::from(e.uid),
        gid: u64::from(e.gid),
        size,
        mtime,
        link,
        capability: e.capability.as_deref(),
    };
    if kind != tar::Kind::File {
        tar::write_header(w, &meta).map_err(PackError::Write)?;
        return Ok(true);
    }
    if let Some(c) = content {
        if let Some(want) = e.sha256 {
            if Digest::of(c) != want {
                return Err(PackError::Changed {
                    path: path.to_path_buf(),
                    what: "generated content does not match its sha256".into(),
                });
            }
        }
        tar::write_header(w, &meta).map_err(PackError::Write)?;
        w.write_all(c).map_err(PackError::Write)?;
    } else {
        // Open before writing the header, so a missing file fails cleanly.
        let host = fs.host_path(path);
        let mut f = open_regular(&host).map_err(|source| PackError::Read {
            path: path.to_path_buf(),
            host: host.clone(),
            source,
        })?;
        tar::write_header(w, &meta).map_err(PackError::Write)?;
        copy_verified(&mut f, path, &host, e, w, buf, progress)?;
    }
    w.write_all(&[0u8; tar::BLOCK][..tar::padding(size)])
        .map_err(PackError::Write)?;
    Ok(true)
}

/// Open a regular file without following a final symlink.
fn open_regular(host: &Path) -> io::Result<File> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(host)?;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (mode {:o})", m.mode()),
        ));
    }
    Ok(f)
}

/// Copy exactly `e.size` bytes, checking size and sha256 against the entry.
fn copy_verified<W: Write>(
    f: &mut File,
    path: &Path,
    host: &Path,
    e: &Entry,
    w: &mut W,
    buf: &mut [u8],
    progress: Progress<'_>,
) -> Result<(), PackError> {
    let read_err = |source| PackError::Read {
        path: path.to_path_buf(),
        host: host.to_path_buf(),
        source,
    };
    let changed = |what: String| PackError::Changed {
        path: path.to_path_buf(),
        what,
    };
    let mut hasher = Sha256::new();
    let mut left = e.size;
    while left > 0 {
        interrupt::check()?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(changed(format!(
                    "{} bytes recorded, only {} now",
                    e.size,
                    e.size - left
                )))
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_err(err)),
        };
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(PackError::Write)?;
        left -= n as u64;
        progress(n as u64);
    }
    let mut one = [0u8; 1];
    loop {
        match f.read(&mut one) {
            Ok(0) => break,
            Ok(_) => return Err(changed(format!("{} bytes recorded, now longer", e.size))),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_err(err)),
        }
    }
    if let Some(want) = e.sha256 {
        let got = Digest(hasher.finalize().into());
        if got != want {
            return Err(changed(format!("sha256 {got} now, {want} recorded")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn entry(t: FileType, mode: u32) -> Entry {
        Entry {
            file_type: t,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            target: None,
            mtime: 1000,
            capability: None,
            content: None,
            reasons: BTreeSet::from([Reason::Tree]),
        }
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        ::tar::Archive::new(tar_bytes)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    fn no_progress(_: u64) {}

    #[test]
    fn adds_missing_parents_in_sorted_order() {
        let mut fs = FileSet::new("/nonexistent");
        let mut f = entry(FileType::File, 0o644);
        f.content = Some("hi\n".into());
        fs.entries.insert(ImagePath("/a/b".into()), f);
        fs.entries
            .insert(ImagePath("/a-b".into()), entry(FileType::Dir, 0o755));
        let (stats, out) =
            write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap();
        assert_eq!(names(&out), ["a/", "a-b/", "a/b"]);
        assert_eq!(stats.entries, 3);
        assert_eq!(stats.diff_id, Digest::of(&out));
        assert_eq!(stats.size, out.len() as u64);
    }

    #[test]
    fn refuses_paths_below_symlinks_and_unnormal_paths() {
        let mut fs = FileSet::new("/nonexistent");
        let mut l = entry(FileType::Symlink, 0o777);
        l.target = Some("/etc".into());
        fs.entries.insert(ImagePath("/lib".into()), l);
        fs.entries
            .insert(ImagePath("/lib/x".into()), entry(FileType::Dir, 0o755));
        let err = write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap_err();
        assert!(err.to_string().contains("/lib/x"), "{err}");
        let mut fs = FileSet::new("/nonexistent");
        fs.entries.insert(
            ImagePath("/a/../../etc".into()),
            entry(FileType::Dir, 0o755),
        );
        assert!(matches!(
            write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress),
            Err(PackError::BadEntry { .. })
        ));
    }

    #[test]
    fn detects_changed_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello").unwrap();
        let mut fs = FileSet::new(dir.path());
        let mut f = entry(FileType::File, 0o644);
        f.size = 5;
        f.sha256 = Some(Digest::of(b"hello"));
        fs.entries.insert(ImagePath("/f".into()), f);
        write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap();
        std::fs::write(dir.path().join("f"), b"HELLO").unwrap();
        let err = write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap_err();
        assert!(
            matches!(err, PackError::Changed { .. }) && err.to_string().contains("/f"),
            "{err}"
        );
        std::fs::write(dir.path().join("f"), b"hello!").unwrap();
        let err = write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap_err();
        assert!(err.to_string().contains("longer"), "{err}");
        std::fs::write(dir.path().join("f"), b"hell").unwrap();
        let err = write_layer(&fs, &LayerOptions::default(), Vec::new(), &no_progress).unwrap_err();
        assert!(err.to_string().contains("only 4"), "{err}");
    }

    #[test]
    fn clamps_mtimes_to_source_date_epoch() {
        let mut fs = FileSet::new("/nonexistent");
        fs.entries
            .insert(ImagePath("/d".into()), entry(FileType::Dir, 0o1777));
        let opts = LayerOptions {
            source_date_epoch: Some(10),
        };
        let (_, out) = write_layer(&fs, &opts, Vec::new(), &no_progress).unwrap();
        let mut a = ::tar::Archive::new(&out[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mtime().unwrap(), 10);
        assert_eq!(e.header().mode().unwrap(), 0o1777);
    }
}
