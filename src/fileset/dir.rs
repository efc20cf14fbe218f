//! A file set from a directory tree on disk (`jail pack DIR`): every path
//! below the directory, with its metadata as `lstat` sees it, content
//! digests, symlink targets and `security.capability`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Entry, FileSet, Reason};
use crate::digest::Digest;
use crate::paths::ImagePath;
use crate::resolve::FileType;

/// Why a directory could not be read into a file set.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{0} is not a directory")]
    NotADir(PathBuf),
    #[error("cannot read {path}")]
    Io { path: PathBuf, source: io::Error },
}

impl FileSet {
    /// Every path under `dir` (but not `dir` itself), not following symlinks: type,
    /// mode, owner, size, sha256, symlink target, mtime and
    /// `security.capability`, with reason [`Reason::Tree`]. Hard links are
    /// separate entries (each packed as its own file). Content digests are
    /// computed in parallel.
    ///
    /// Device nodes, fifos and sockets are left out: an image cannot carry
    /// a socket, and a container runtime provides `/dev` itself, so a
    /// node packed from a root (`/dev/console` of a debootstrap root) would
    /// only be shadowed, or give an image a device its runtime did not
    /// grant. [`FileSet::from_dir_noting`] returns them too.
    pub fn from_dir(dir: &Path) -> Result<FileSet, DirError> {
        Self::from_dir_noting(dir).map(|(fs, _)| fs)
    }

    /// [`FileSet::from_dir`], and the special files it left out.
    pub fn from_dir_noting(dir: &Path) -> Result<(FileSet, Vec<PathBuf>), DirError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DirError::Io { path, source }
        };
        let root = fs::canonicalize(dir).map_err(io_err(dir))?;
        if !fs::metadata(&root).map_err(io_err(dir))?.is_dir() {
            return Err(DirError::NotADir(dir.to_path_buf()));
        }
        let mut found: Vec<(PathBuf, fs::Metadata)> = Vec::new();
        for item in walkdir::WalkDir::new(&root).follow_links(false) {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                DirError::Io {
                    path,
                    source: e.into(),
                }
            })?;
            let meta = item.metadata().map_err(|e| {
                let path = item.path().to_path_buf();
                DirError::Io {
                    path,
                    source: e.into(),
                }
            })?;
            found.push((item.into_path(), meta));
        }
        // Not `/` itself: the layer has no entry for it (the runtime owns the
        // root's mode), so its metadata must not reach the file set's digest
        // either, or an unpacked image would not pack to the same image.
        found.retain(|(host, _)| host != &root);
        let inner =
            |host: &Path| Path::new("/").join(host.strip_prefix(&root).unwrap_or(Path::new("")));
        let special = |m: &fs::Metadata| {
            matches!(
                FileType::of(m),
                FileType::Fifo | FileType::Socket | FileType::CharDevice | FileType::BlockDevice
            )
        };
        let skipped: Vec<PathBuf> = found
            .iter()
            .filter(|(_, m)| special(m))
            .map(|(h, _)| inner(h))
            .collect();
        found.retain(|(_, m)| !special(m));
        let mut skipped = skipped;
        skipped.sort();
        let entries = found
            .into_par_iter()
            .map(|(host, meta)| {
                let entry = entry_of(&host, &meta).map_err(io_err(&host))?;
                Ok((ImagePath(inner(&host)), entry))
            })
            .collect::<Result<_, DirError>>()?;
        Ok((FileSet { root, entries }, skipped))
    }
}

fn entry_of(host: &Path, meta: &fs::Metadata) -> io::Result<Entry> {
    let file_type = FileType::of(meta);
    let (size, sha256) = if file_type == FileType::File {
        let f = fs::File::open(host)?;
        (meta.len(), Some(Digest::of_reader(f)?))
    } else {
        (0, None)
    };
    let target = if file_type == FileType::Symlink {
        Some(fs::read_link(host)?)
    } else {
        None
    };
    let capability = match file_type {
        FileType::File => crate::sys::xattr::lget(host, "security.capability")?,
        _ => None,
    };
    Ok(Entry {
        file_type,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        sha256,
        target,
        mtime: meta.mtime(),
        capability,
        content: None,
        reasons: BTreeSet::from([Reason::Tree]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn reads_types_modes_targets_and_digests() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("bin")).unwrap();
        fs::write(d.path().join("bin/x"), b"hello").unwrap();
        fs::set_permissions(d.path().join("bin/x"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("x", d.path().join("bin/y")).unwrap();
        let set = FileSet::from_dir(d.path()).unwrap();
        let keys: Vec<_> = set
            .entries
            .keys()
            .map(|k| k.0.to_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["/bin", "/bin/x", "/bin/y"]);
        let x = set.get(Path::new("/bin/x")).unwrap();
        assert_eq!(
            (x.mode, x.size, x.sha256),
            (0o4755, 5, Some(Digest::of(b"hello")))
        );
        let y = set.get(Path::new("/bin/y")).unwrap();
        assert_eq!(
            (y.file_type, y.target.as_deref()),
            (FileType::Symlink, Some(Path::new("x")))
        );
        assert!(matches!(
            FileSet::from_dir(&d.path().join("bin/x")),
            Err(DirError::NotADir(_))
        ));
        assert!(matches!(
            FileSet::from_dir(&d.path().join("nope")),
            Err(DirError::Io { .. })
        ));
    }
}
