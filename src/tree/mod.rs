//! Materializing a file set as a chroot tree (`jail trace --tree DIR`).
//!
//! Contents are copied from the file set's root (or its generated content)
//! and checked against the recorded sha256; symlinks stay symlinks;
//! directories get their own modes. As root, owners, setuid/setgid bits and
//! `security.capability` are kept too. The tree is built in a temporary
//! sibling of DIR and renamed into place, so DIR is never half-built.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::digest::DigestWriter;
use crate::fileset::{Entry, FileSet};
use crate::resolve::FileType;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{} exists and is not empty; pass --force to replace it", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot create the tree in {}", dir.display())]
    Staging { dir: PathBuf, source: io::Error },
    #[error("cannot copy {} into the tree", path.display())]
    Copy { path: PathBuf, source: io::Error },
    #[error("{} changed since it was recorded (sha256 {expected}, now {found}); trace again", path.display())]
    Changed {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("cannot set {what} of {} in the tree", path.display())]
    Metadata {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot move the tree into place at {}", dest.display())]
    Rename { dest: PathBuf, source: io::Error },
}

/// How to write the tree.
#[derive(Clone, Copy, Debug)]
pub struct TreeOptions {
    /// Replace a non-empty destination.
    pub force: bool,
    /// Set owners, setuid/setgid bits and file capabilities (needs root).
    pub preserve_owners: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            force: false,
            preserve_owners: Uid::effective().is_root(),
        }
    }
}

/// Write `fileset` as a directory tree at `dest`.
pub fn materialize(fileset: &FileSet, dest: &Path, opts: TreeOptions) -> Result<(), TreeError> {
    let replace = match fs::symlink_metadata(dest) {
        Ok(m) if !m.is_dir() => return Err(TreeError::NotADirectory(dest.to_path_buf())),
        Ok(_) => {
            let empty = fs::read_dir(dest)
                .map_err(|source| TreeError::Staging {
                    dir: dest.to_path_buf(),
                    source,
                })?
                .next()
                .is_none();
            if !empty && !opts.force {
                return Err(TreeError::NotEmpty(dest.to_path_buf()));
            }
            true
        }
        Err(_) => false,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".jail-tree-")
        .tempdir_in(&parent)
        .map_err(|source| TreeError::Staging {
            dir: parent.clone(),
            source,
        })?;
    let top = staging.path();
    // The staging dir is the tree's `/`: give it the usual mode.
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).map_err(|source| {
        TreeError::Staging {
            dir: top.to_path_buf(),
            source,
        }
    })?;

    // Parents sort before their children (bytewise order), so one pass
    // creates everything; directory modes and times are set afterwards,
    // deepest first, so a read-only directory or a new child does not
    // disturb them.
    let mut dirs = Vec::new();
    for (path, entry) in &fileset.entries {
        let path = path.as_path();
        let target = top.join(path.strip_prefix("/").unwrap_or(path));
        match entry.file_type {
            FileType::Dir => {
                fs::create_dir(&target)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|source| TreeError::Copy {
                        path: path.to_path_buf(),
                        source,
                    })?;
                dirs.push((path, target, entry));
            }
            FileType::Symlink => {
                let Some(link) = &entry.target else { continue };
                symlink(link, &target).map_err(|source| TreeError::Copy {
                    path: path.to_path_buf(),
                    source,
                })?;
                set_owner_and_time(path, &target, entry, opts)?;
            }
            FileType::File => {
                copy_file(fileset, path, &target, entry)?;
                set_owner_and_time(path, &target, entry, opts)?;
                // chown clears setuid/setgid: the mode goes last.
                let mode = if opts.preserve_owners {
                    entry.mode
                } else {
                    entry.mode & 0o1777
                };
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(
                    |source| TreeError::Metadata {
                        path: path.to_path_buf(),
                        what: "mode",
                        source,
                    },
                )?;
                if opts.preserve_owners {
                    if let Some(cap) = &entry.capability {
                        crate::sys::xattr::lset(&target, "security.capability", cap).map_err(
                            |source| TreeError::Metadata {
                                path: path.to_path_buf(),
                                what: "security.capability",
                                source,
                            },
                        )?;
                    }
                }
            }
            // A file set never holds other types (see fileset::build).
            _ => {}
        }
    }
    for (path, target, entry) in dirs.into_iter().rev() {
        set_owner_and_time(path, &target, entry, opts)?;
        let mode = if opts.preserve_owners {
            entry.mode
        } else {
            entry.mode & 0o1777
        };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(|source| {
            TreeError::Metadata {
                path: path.to_path_buf(),
                what: "mode",
                source,
            }
        })?;
    }

    let staged = staging.keep();
    if replace {
        // Move the old tree aside, the new one in, then drop the old one.
        let old = tempfile::Builder::new()
            .prefix(".jail-old-")
            .tempdir_in(&parent)
            .map_err(|source| TreeError::Staging {
                dir: parent.clone(),
                source,
            })?;
        let aside = old.path().join("tree");
        fs::rename(dest, &aside).map_err(|source| TreeError::Rename {
            dest: dest.to_path_buf(),
            source,
        })?;
        if let Err(source) = fs::rename(&staged, dest) {
            let _ = fs::rename(&aside, dest);
            let _ = fs::remove_dir_all(&staged);
            return Err(TreeError::Rename {
                dest: dest.to_path_buf(),
                source,
            });
        }
        make_removable(&aside);
        drop(old);
    } else if let Err(source) = fs::rename(&staged, dest) {
        make_removable(&staged);
        let _ = fs::remove_dir_all(&staged);
        return Err(TreeError::Rename {
            dest: dest.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Give every directory below `dir` owner write+exec so it can be removed.
fn make_removable(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
        }
    }
}

fn copy_file(
    fileset: &FileSet,
    path: &Path,
    target: &Path,
    entry: &Entry,
) -> Result<(), TreeError> {
    let err = |source| TreeError::Copy {
        path: path.to_path_buf(),
        source,
    };
    let out = File::create(target).map_err(err)?;
    let mut w = DigestWriter::new(io::BufWriter::with_capacity(1 << 16, out));
    match &entry.content {
        Some(text) => w.write_all(text.as_bytes()).map_err(err)?,
        None => {
            let mut src = File::open(fileset.host_path(path)).map_err(err)?;
            io::copy(&mut src, &mut w).map_err(err)?;
        }
    }
    let (digest, _, inner) = w.finish();
    inner.into_inner().map_err(|e| err(e.into_error()))?;
    if let Some(expected) = entry.sha256 {
        if expected != digest {
            return Err(TreeError::Changed {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                found: digest.to_string(),
            });
        }
    }
    Ok(())
}

fn set_owner_and_time(
    path: &Path,
    target: &Path,
    entry: &Entry,
    opts: TreeOptions,
) -> Result<(), TreeError> {
    if opts.preserve_owners {
        fchownat(
            nix::fcntl::AT_FDCWD,
            target,
            Some(Uid::from_raw(entry.uid)),
            Some(Gid::from_raw(entry.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| TreeError::Metadata {
            path: path.to_path_buf(),
            what: "owner",
            source: e.into(),
        })?;
    }
    let t = TimeSpec::new(entry.mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        target,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| TreeError::Metadata {
        path: path.to_path_buf(),
        what: "mtime",
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileset::Reason;
    use crate::paths::ImagePath;
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;

    fn entry(t: FileType, mode: u32) -> Entry {
        Entry {
            file_type: t,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            target: None,
            mtime: 1_000_000,
            capability: None,
            content: None,
            reasons: BTreeSet::from([Reason::Tree]),
        }
    }

    fn sample() -> (tempfile::TempDir, FileSet) {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("usr/bin")).unwrap();
        fs::write(src.path().join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        let mut fs_ = FileSet::new(src.path());
        fs_.entries
            .insert(ImagePath("/usr".into()), entry(FileType::Dir, 0o755));
        fs_.entries
            .insert(ImagePath("/usr/bin".into()), entry(FileType::Dir, 0o555));
        let mut tool = entry(FileType::File, 0o4755);
        tool.size = 10;
        tool.sha256 = Some(crate::digest::Digest::of(b"#!/bin/sh\n"));
        fs_.entries.insert(ImagePath("/usr/bin/tool".into()), tool);
        let mut link = entry(FileType::Symlink, 0o777);
        link.target = Some("usr/bin".into());
        fs_.entries.insert(ImagePath("/bin".into()), link);
        let mut gen = entry(FileType::File, 0o644);
        gen.content = Some("root:x:0:0::/root:/bin/sh\n".into());
        fs_.entries.insert(ImagePath("/usr/passwd".into()), gen);
        (src, fs_)
    }

    #[test]
    fn writes_types_modes_times_and_refuses_non_empty() {
        let (_src, fs_) = sample();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("tree");
        materialize(&fs_, &dest, TreeOptions::default()).unwrap();
        let m = fs::symlink_metadata(dest.join("usr/bin")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o555);
        assert_eq!(m.mtime(), 1_000_000);
        assert_eq!(
            fs::read_link(dest.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(fs::read(dest.join("usr/bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            fs::read_to_string(dest.join("usr/passwd")).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        if Uid::effective().is_root() {
            assert_eq!(
                fs::metadata(dest.join("usr/bin/tool")).unwrap().mode() & 0o7777,
                0o4755
            );
        }
        let again = materialize(&fs_, &dest, TreeOptions::default()).unwrap_err();
        assert!(matches!(again, TreeError::NotEmpty(_)), "{again}");
        materialize(
            &fs_,
            &dest,
            TreeOptions {
                force: true,
                ..TreeOptions::default()
            },
        )
        .unwrap();
        // Nothing left beside the tree.
        let left: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["tree"]);
    }

    #[test]
    fn a_changed_source_is_an_error_and_leaves_nothing() {
        let (src, fs_) = sample();
        fs::write(src.path().join("usr/bin/tool"), b"changed!!\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("tree");
        let e = materialize(&fs_, &dest, TreeOptions::default()).unwrap_err();
        assert!(matches!(e, TreeError::Changed { .. }), "{e}");
        assert!(!dest.exists());
        assert_eq!(
            fs::read_dir(out.path()).unwrap().count(),
            0,
            "staging dir left behind"
        );
    }
}
