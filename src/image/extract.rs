//! Applying layer tars to a root directory without ever writing outside it.
//!
//! Every path is resolved from an fd of the root, one component at a time,
//! with `O_NOFOLLOW`: a symlink is never followed while extracting, whether
//! it came from this layer or an earlier one. Entries that would need to
//! (a parent that is a symlink), absolute names, `..` components, hard links
//! to absolute or `..` paths, and whiteouts naming `.` or `..` are refused
//! with an [`Unsafe`] error naming the entry. Whiteouts (`.wh.NAME`) and
//! opaque directories (`.wh..wh..opq`) follow the OCI image spec.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::sys::interrupt::{self, Interrupted};

/// Why an entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The entry would escape the root, or is malformed in a dangerous way.
    #[error("entry {entry:?}: {what}")]
    Unsafe { entry: String, what: String },
    /// The layer stream itself is bad (truncated, not a tar).
    #[error("{0}")]
    Corrupt(String),
    /// Writing into the root failed.
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// Counts of what a layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    pub whiteouts: u64,
    /// Device nodes are not created (the sandbox provides /dev).
    pub skipped_devices: u64,
}

/// Applies layers, in order, to one root.
pub struct Extractor {
    root: OwnedFd,
    root_path: PathBuf,
    /// Directory mtimes, set last (adding children changes them).
    dir_times: BTreeMap<Vec<u8>, i64>,
    /// Whether chown works (root); otherwise owners are left as they are.
    chown: bool,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl Extractor {
    /// Extract into `root`, an existing (normally empty) directory.
    pub fn new(root: &Path) -> io::Result<Extractor> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Extractor {
            root: fd,
            root_path: root.to_path_buf(),
            dir_times: BTreeMap::new(),
            chown: nix::unistd::geteuid().is_root(),
        })
    }

    fn werr(&self, rel: &[u8], e: impl Into<io::Error>) -> ExtractError {
        ExtractError::Write {
            path: self.root_path.join(os(rel)),
            source: e.into(),
        }
    }

    /// Apply one layer tar (uncompressed stream). The stream is read to its
    /// end, so a digest computed around `reader` covers all of it.
    pub fn apply<R: Read>(&mut self, reader: R) -> Result<(Applied, R), ExtractError> {
        let mut archive = tar::Archive::new(reader);
        let mut applied = Applied::default();
        let mut this_layer: HashSet<Vec<u8>> = HashSet::new();
        let entries = archive
            .entries()
            .map_err(|e| ExtractError::Corrupt(format!("not a tar stream: {e}")))?;
        for entry in entries {
            interrupt::check()?;
            let mut entry =
                entry.map_err(|e| ExtractError::Corrupt(format!("bad tar header: {e}")))?;
            self.apply_entry(&mut entry, &mut applied, &mut this_layer)?;
        }
        let mut reader = archive.into_inner();
        // Zero blocks and whatever follows: part of the blob all the same.
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| ExtractError::Corrupt(format!("cannot read the end of the layer: {e}")))?;
        Ok((applied, reader))
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        applied: &mut Applied,
        this_layer: &mut HashSet<Vec<u8>>,
    ) -> Result<(), ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_entry = |what: &str| ExtractError::Unsafe {
            entry: shown.clone(),
            what: what.to_string(),
        };
        let Some(comps) = clean(&raw).map_err(&unsafe_entry)? else {
            return Ok(()); // the root itself
        };
        let rel = comps.join(&b'/');
        let (name, parents) = comps
            .split_last()
            .expect("clean returns at least one component");
        let header = entry.header().clone();
        let kind = header.entry_type();

        // Whiteouts.
        if *name == OPAQUE {
            let Some(dir) = self.walk(parents, false, &shown)? else {
                return Ok(());
            };
            let prefix: Vec<u8> = parents.join(&b'/');
            self.clear_dir(&dir, &prefix, this_layer)?;
            applied.whiteouts += 1;
            return Ok(());
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                return Err(unsafe_entry(
                    "a whiteout must name a file in its directory, not `.` or `..`",
                ));
            }
            if let Some(dir) = self.walk(parents, false, &shown)? {
                let mut path = parents.join(&b'/');
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(target);
                self.remove(&dir, target, &path)?;
            }
            applied.whiteouts += 1;
            return Ok(());
        }

        let parent = self
            .walk(parents, true, &shown)?
            .expect("walk with create returns a directory");
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let pax = pax_numbers(entry);
        let uid = pax.uid.unwrap_or_else(|| header.uid().unwrap_or(0)) as u32;
        let gid = pax.gid.unwrap_or_else(|| header.gid().unwrap_or(0)) as u32;
        let mtime = pax
            .mtime
            .unwrap_or_else(|| header.mtime().unwrap_or(0) as i64);
        let times = (TimeSpec::new(mtime, 0), TimeSpec::new(mtime, 0));

        match kind {
            tar::EntryType::Directory => {
                match fstatat(&parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                            == SFlag::S_IFDIR => {}
                    Ok(_) => self.remove(&parent, name, &rel)?,
                    Err(Errno::ENOENT) => {}
                    Err(e) => return Err(self.werr(&rel, e)),
                }
                match mkdirat(&parent, os(name), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.werr(&rel, e)),
                }
                let d = openat(
                    &parent,
                    os(name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.werr(&rel, e))?;
                self.own(&d, uid, gid, &rel)?;
                fchmod(&d, mode).map_err(|e| self.werr(&rel, e))?;
                self.dir_times.insert(rel.clone(), mtime);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove(&parent, name, &rel)?;
                let fd = openat(
                    &parent,
                    os(name),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.werr(&rel, e))?;
                let mut f = File::from(fd);
                self.copy(entry, &mut f, &rel)?;
                self.own(&f, uid, gid, &rel)?;
                fchmod(&f, mode).map_err(|e| self.werr(&rel, e))?;
                if let Some(cap) = capability(entry) {
                    // Only root can set it; without, the file keeps working
                    // minus its capability.
                    if self.chown {
                        crate::sys::xattr::fset(&f, "security.capability", &cap)
                            .map_err(|e| self.werr(&rel, e))?;
                    }
                }
                futimens(&f, &times.0, &times.1).map_err(|e| self.werr(&rel, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("symlink without a target"))?
                    .into_owned();
                self.remove(&parent, name, &rel)?;
                symlinkat(os(&target), &parent, os(name)).map_err(|e| self.werr(&rel, e))?;
                if self.chown {
                    fchownat(
                        &parent,
                        os(name),
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| self.werr(&rel, e))?;
                }
                utimensat(
                    &parent,
                    os(name),
                    &times.0,
                    &times.1,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.werr(&rel, e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("hard link without a target"))?
                    .into_owned();
                if link.starts_with(b"/") {
                    return Err(unsafe_entry(&format!(
                        "hard link to the absolute path {:?}",
                        String::from_utf8_lossy(&link)
                    )));
                }
                let Some(src) =
                    clean(&link).map_err(|w| unsafe_entry(&format!("hard link target: {w}")))?
                else {
                    return Err(unsafe_entry("hard link to the root directory"));
                };
                let (src_name, src_parents) = src.split_last().expect("non-empty");
                let src_dir = self.walk(src_parents, false, &shown)?.ok_or_else(|| {
                    unsafe_entry("hard link to a path that does not exist in the image")
                })?;
                match fstatat(&src_dir, os(src_name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                            == SFlag::S_IFDIR =>
                    {
                        return Err(unsafe_entry("hard link to a directory"))
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(unsafe_entry(
                            "hard link to a path that does not exist in the image",
                        ))
                    }
                }
                if src == comps {
                    return Ok(());
                }
                self.remove(&parent, name, &rel)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                linkat(&src_dir, os(src_name), &parent, os(name), AtFlags::empty())
                    .map_err(|e| self.werr(&rel, e))?;
            }
            tar::EntryType::Fifo => {
                self.remove(&parent, name, &rel)?;
                mknodat(&parent, os(name), SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| self.werr(&rel, e))?;
                if self.chown {
                    fchownat(
                        &parent,
                        os(name),
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| self.werr(&rel, e))?;
                }
                utimensat(
                    &parent,
                    os(name),
                    &times.0,
                    &times.1,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.werr(&rel, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                applied.skipped_devices += 1;
                return Ok(());
            }
            // PAX/GNU metadata entries are consumed by the tar crate; other
            // types (sockets never appear) carry nothing to create.
            _ => return Ok(()),
        }
        this_layer.insert(rel);
        applied.entries += 1;
        Ok(())
    }

    /// Open the directory `comps` below the root without following any
    /// symlink; missing directories are created (0755) when `create`, else
    /// `None` is returned.
    fn walk(
        &self,
        comps: &[&[u8]],
        create: bool,
        entry: &str,
    ) -> Result<Option<OwnedFd>, ExtractError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut fd = self.root.try_clone().map_err(|e| self.werr(b"", e))?;
        let mut so_far: Vec<u8> = Vec::new();
        for c in comps {
            if !so_far.is_empty() {
                so_far.push(b'/');
            }
            so_far.extend_from_slice(c);
            let next = match openat(&fd, os(c), flags, Mode::empty()) {
                Ok(n) => n,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&fd, os(c), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.werr(&so_far, e)),
                    }
                    openat(&fd, os(c), flags, Mode::empty()).map_err(|e| self.werr(&so_far, e))?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => {
                    let what = match fstatat(&fd, os(c), AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK => format!(
                            "its parent {:?} is a symlink (from this or an earlier layer): extracting through it could write outside the root",
                            String::from_utf8_lossy(&so_far)
                        ),
                        Ok(_) => format!("its parent {:?} is not a directory", String::from_utf8_lossy(&so_far)),
                        Err(_) => return Err(self.werr(&so_far, e)),
                    };
                    return Err(ExtractError::Unsafe {
                        entry: entry.to_string(),
                        what,
                    });
                }
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    fn own(&self, fd: &impl AsFd, uid: u32, gid: u32, rel: &[u8]) -> Result<(), ExtractError> {
        if self.chown {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| self.werr(rel, e))?;
        }
        Ok(())
    }

    fn copy<R: Read>(&self, entry: &mut R, f: &mut File, rel: &[u8]) -> Result<(), ExtractError> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            interrupt::check()?;
            let n = match entry.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ExtractError::Corrupt(format!(
                        "cannot read the content of {:?}: {e} (truncated or corrupt layer)",
                        String::from_utf8_lossy(rel)
                    )))
                }
            };
            f.write_all(&buf[..n]).map_err(|e| self.werr(rel, e))?;
        }
    }

    /// Remove `name` in `dir` (a whole tree if it is a directory), never
    /// following symlinks; a missing name is fine.
    fn remove(&self, dir: &OwnedFd, name: &[u8], rel: &[u8]) -> Result<(), ExtractError> {
        match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {
                let sub = openat(
                    dir,
                    os(name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.werr(rel, e))?;
                self.clear_dir(&sub, rel, &HashSet::new())?;
                unlinkat(dir, os(name), UnlinkatFlags::RemoveDir).map_err(|e| self.werr(rel, e))?;
                Ok(())
            }
            Err(e) => Err(self.werr(rel, e)),
        }
    }

    /// Remove every child of `dir` (at `rel`) that this layer did not create.
    fn clear_dir(
        &self,
        dir: &OwnedFd,
        rel: &[u8],
        keep: &HashSet<Vec<u8>>,
    ) -> Result<(), ExtractError> {
        // The fd's own directory (the magic link cannot be swapped for a
        // symlink elsewhere), listed with std rather than nix's `dir`.
        let listing = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in std::fs::read_dir(&listing).map_err(|e| self.werr(rel, e))? {
            names.push(
                e.map_err(|e| self.werr(rel, e))?
                    .file_name()
                    .as_bytes()
                    .to_vec(),
            );
        }
        for n in names {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&n);
            if keep.contains(&child) {
                continue;
            }
            self.remove(dir, &n, &child)?;
        }
        Ok(())
    }

    /// Set the directory mtimes recorded while extracting. Call once, after
    /// the last layer.
    pub fn finish(self) -> Result<(), ExtractError> {
        for (rel, mtime) in self.dir_times.iter().rev() {
            let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            let t = TimeSpec::new(*mtime, 0);
            // A directory removed by a later layer is simply gone.
            if let Ok(Some(d)) = self.walk(&comps, false, "") {
                futimens(&d, &t, &t).map_err(|e| self.werr(rel, e))?;
            }
        }
        Ok(())
    }
}

/// PAX records that override ustar fields (the tar crate applies `path`,
/// `linkpath` and `size` itself).
#[derive(Default)]
struct PaxNumbers {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
}

fn pax_numbers<R: Read>(entry: &mut tar::Entry<'_, R>) -> PaxNumbers {
    let mut n = PaxNumbers::default();
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return n;
    };
    for r in exts.flatten() {
        let v = r.value().unwrap_or("");
        match r.key_bytes() {
            b"uid" => n.uid = v.parse().ok(),
            b"gid" => n.gid = v.parse().ok(),
            // Fractional seconds are dropped.
            b"mtime" => n.mtime = v.split('.').next().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    n
}

/// The raw `security.capability` of an entry, from its PAX records.
fn capability<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<Vec<u8>> {
    let exts = entry.pax_extensions().ok()??;
    for r in exts.flatten() {
        if r.key_bytes() == b"SCHILY.xattr.security.capability" {
            return Some(r.value_bytes().to_vec());
        }
    }
    None
}

/// The components of an entry name: `./` and empty components dropped;
/// `Ok(None)` for the root itself; an error for absolute names and `..`.
fn clean(raw: &[u8]) -> Result<Option<Vec<&[u8]>>, &'static str> {
    if raw.first() == Some(&b'/') && raw.iter().any(|&b| b != b'/' && b != b'.') {
        return Err("absolute path: layer entries are relative to the root");
    }
    let mut comps = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` component: it could leave the root"),
            c => comps.push(c),
        }
    }
    Ok(if comps.is_empty() { None } else { Some(comps) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(
            clean(b"./usr/bin/").unwrap(),
            Some(vec![&b"usr"[..], b"bin"])
        );
        assert_eq!(clean(b"./").unwrap(), None);
        assert_eq!(clean(b"/").unwrap(), None);
        assert!(clean(b"/etc/passwd").is_err());
        assert!(clean(b"a/../../etc").is_err());
        assert!(clean(b"..").is_err());
    }
}
