//! Where an image is written, atomically: everything is staged in a
//! temporary directory beside the destination, then renamed into place.
//! Until then nothing exists at the destination; on an error or SIGINT
//! (see `sys::interrupt`) the staging directory is removed when dropped.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::ImageError;
use crate::digest::Digest;
use crate::pack::tar as tarfmt;
use crate::sys::interrupt;

/// A staging directory beside the destination holding an OCI layout.
pub struct Staging {
    dir: tempfile::TempDir,
    dest: PathBuf,
    _lock: Option<Flock<File>>,
}

impl Staging {
    /// Check the destination and create the staging directory beside it.
    /// `replace`: an existing non-empty directory that is not an OCI layout
    /// may be replaced (`--force`).
    pub fn new(dest: &Path, want_dir: bool, replace: bool) -> Result<Staging, ImageError> {
        let bad = |what: String| ImageError::Destination {
            path: dest.to_path_buf(),
            what,
        };
        let name = dest
            .file_name()
            .ok_or_else(|| bad("not a file name".into()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(bad(format!(
                "directory {} does not exist: create it first",
                parent.display()
            )));
        }
        check_destination(dest, want_dir, replace).map_err(bad)?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".jail-");
        remove_stale(&parent, prefix.as_bytes());
        // Private while it fills: no local user may add to it, whatever the
        // umask. An oci-dir gets its final mode at the rename.
        let dir = crate::sys::tempdir::private(&parent, &prefix).map_err(|e| {
            bad(format!(
                "cannot create a temporary directory in {}: {e}",
                parent.display()
            ))
        })?;
        // Held until this staging directory is gone: a later run sees it
        // is alive (a killed run's lock went with its process).
        let lock = File::open(dir.path())
            .ok()
            .and_then(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).ok());
        let s = Staging {
            dir,
            dest: dest.to_path_buf(),
            _lock: lock,
        };
        fs::create_dir_all(s.path().join("blobs/sha256")).map_err(|e| s.io(e))?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn io(&self, e: io::Error) -> ImageError {
        ImageError::Write {
            path: self.dest.clone(),
            source: e,
        }
    }

    /// Where a blob lives in the layout.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.path().join("blobs/sha256").join(d.hex())
    }

    /// Store a small blob.
    pub fn add_blob(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let d = Digest::of(bytes);
        fs::write(self.blob_path(&d), bytes).map_err(|e| self.io(e))?;
        Ok(d)
    }

    /// Store a blob read from `r` (a `--base` layer), checking its digest
    /// and length.
    pub fn copy_blob(&self, mut r: impl io::Read, d: &Digest, size: u64) -> Result<(), ImageError> {
        let tmp = self.path().join("blobs/sha256/copy.tmp");
        let f = File::create(&tmp).map_err(|e| self.io(e))?;
        let mut w = crate::digest::DigestWriter::new(BufWriter::with_capacity(1 << 20, f));
        io::copy(&mut r, &mut w).map_err(|e| self.io(e))?;
        let (got, len, out) = w.finish();
        out.into_inner().map_err(|e| self.io(e.into_error()))?;
        if got != *d || len != size {
            return Err(self.io(io::Error::other(format!(
                "the base's blob {d} read as {len} bytes with digest {got}, not {size} bytes"
            ))));
        }
        fs::rename(&tmp, self.blob_path(d)).map_err(|e| self.io(e))
    }

    /// A file for the layer, renamed to its digest with [`Staging::seal_layer`].
    pub fn layer_file(&self) -> Result<(PathBuf, File), ImageError> {
        let p = self.path().join("blobs/sha256/layer.tmp");
        let f = File::create(&p).map_err(|e| self.io(e))?;
        Ok((p, f))
    }

    pub fn seal_layer(&self, tmp: &Path, d: &Digest) -> Result<(), ImageError> {
        fs::rename(tmp, self.blob_path(d)).map_err(|e| self.io(e))
    }

    /// Store a top-level file (index.json, oci-layout, …).
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        fs::write(self.path().join(name), bytes).map_err(|e| self.io(e))
    }

    /// Move the layout directory into place (`--format oci-dir`), replacing
    /// what was there in one step.
    pub fn finish_dir(self) -> Result<(), ImageError> {
        interrupt::check()?;
        let tmp = self.dir.path().to_path_buf();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(|e| self.io(e))?;
        if fs::symlink_metadata(&self.dest).is_ok() {
            // Swap atomically, then remove the old one (now at the staging
            // path, which the TempDir drop removes).
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &self.dest,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(|e| self.io(e.into()))?;
            if fs::symlink_metadata(&tmp).is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&tmp).map_err(|e| self.io(e))?;
            }
            return Ok(());
        }
        fs::rename(&tmp, &self.dest).map_err(|e| self.io(e))?;
        let _ = self.dir.keep();
        Ok(())
    }

    /// Write the layout as one tar at the destination (`--format
    /// oci-archive`), entries in bytewise order, directories 0755 and files
    /// 0644, owned by 0:0, mtime 0.
    pub fn finish_archive(self) -> Result<(), ImageError> {
        let mut names = Vec::new();
        collect(self.path(), Path::new(""), &mut names).map_err(|e| self.io(e))?;
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let tar_path = self.path().join(".archive.tmp");
        let mut out =
            BufWriter::with_capacity(1 << 20, File::create(&tar_path).map_err(|e| self.io(e))?);
        for (name, is_dir) in &names {
            interrupt::check()?;
            let host = self
                .path()
                .join(std::str::from_utf8(name).unwrap_or_default());
            let size = if *is_dir {
                0
            } else {
                fs::metadata(&host).map_err(|e| self.io(e))?.len()
            };
            let meta = tarfmt::Meta {
                name,
                kind: if *is_dir {
                    tarfmt::Kind::Dir
                } else {
                    tarfmt::Kind::File
                },
                mode: if *is_dir { 0o755 } else { 0o644 },
                uid: 0,
                gid: 0,
                size,
                mtime: 0,
                link: b"",
                capability: None,
            };
            tarfmt::write_header(&mut out, &meta).map_err(|e| self.io(e))?;
            if !*is_dir {
                let mut f = File::open(&host).map_err(|e| self.io(e))?;
                let n = copy_checked(&mut f, &mut out).map_err(|e| match e {
                    CopyError::Io(e) => self.io(e),
                    CopyError::Interrupted(i) => ImageError::Interrupted(i),
                })?;
                if n != size {
                    return Err(self.io(io::Error::other(format!(
                        "{} changed size while archiving",
                        host.display()
                    ))));
                }
                out.write_all(&[0u8; tarfmt::BLOCK][..tarfmt::padding(size)])
                    .map_err(|e| self.io(e))?;
            }
        }
        tarfmt::write_end(&mut out).map_err(|e| self.io(e))?;
        let f = out.into_inner().map_err(|e| self.io(e.into_error()))?;
        drop(f);
        interrupt::check()?;
        fs::rename(&tar_path, &self.dest).map_err(|e| self.io(e))?;
        Ok(())
    }
}

/// Whether jail may put an image at `dest`: nothing there, a regular file
/// (replaced, as `cc -o` does), or for `--format oci-dir` an empty
/// directory or an OCI layout (a previous output; anything else only with
/// `replace`). Devices, FIFOs, sockets and symlinks (`/dev/stdout`) are
/// never replaced: the rename would destroy them, not write through them.
fn check_destination(dest: &Path, want_dir: bool, replace: bool) -> Result<(), String> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect it: {e}")),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let to = fs::read_link(dest)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(format!(
            "is a symlink{to}: jail writes an image only to a file or directory it can replace; name the real path"
        ));
    }
    if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
        return Err(
            "is a device, FIFO or socket, not a file: name a regular file for the image".into(),
        );
    }
    if ft.is_dir() {
        if !want_dir {
            return Err("is a directory: name a file, or use --format oci-dir".into());
        }
        let mut names = Vec::new();
        for e in fs::read_dir(dest).map_err(|e| format!("cannot list it: {e}"))? {
            let e = e.map_err(|e| format!("cannot list it: {e}"))?;
            names.push(e.file_name());
        }
        let layout = ["blobs", "index.json", "oci-layout"];
        let is_layout = !names.is_empty()
            && names
                .iter()
                .all(|n| layout.iter().any(|l| n.as_bytes() == l.as_bytes()))
            && dest.join("oci-layout").is_file();
        if !names.is_empty() && !is_layout && !replace {
            return Err(
                "is a non-empty directory that is not an OCI layout: jail would replace all of it; pass --force to do so, or name another directory".into(),
            );
        }
    }
    Ok(())
}

/// Remove `.NAME.jail-*` staging directories in `parent` that a killed run
/// left (`prefix` is `.NAME.jail-`). A live run holds a lock on its staging
/// directory, so only the dead ones are taken; failures are ignored (the
/// next run tries again).
fn remove_stale(parent: &Path, prefix: &[u8]) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().as_bytes().starts_with(prefix) {
            continue;
        }
        let path = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        if let Ok(_held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            let _ = super::extract::remove_tree(&path);
        }
    }
}

/// Every file and directory under `dir` (not `dir` itself), as relative tar
/// names (directories end in `/`). The layout's names are ASCII.
fn collect(dir: &Path, rel: &Path, out: &mut Vec<(Vec<u8>, bool)>) -> io::Result<()> {
    for e in fs::read_dir(dir.join(rel))? {
        let e = e?;
        let name = rel.join(e.file_name());
        let Some(s) = name.to_str() else { continue };
        if s.starts_with('.') {
            continue;
        }
        if e.file_type()?.is_dir() {
            out.push((format!("{s}/").into_bytes(), true));
            collect(dir, &name, out)?;
        } else {
            out.push((s.as_bytes().to_vec(), false));
        }
    }
    Ok(())
}

enum CopyError {
    Io(io::Error),
    Interrupted(interrupt::Interrupted),
}

/// `io::copy` in 1 MiB steps, checking for SIGINT between them.
fn copy_checked(from: &mut File, to: &mut impl Write) -> Result<u64, CopyError> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        interrupt::check().map_err(CopyError::Interrupted)?;
        let k = match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Io(e)),
        };
        to.write_all(&buf[..k]).map_err(CopyError::Io)?;
        n += k as u64;
    }
}
