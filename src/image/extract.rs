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
    /// The longest entry path (from the root, with a leading `/`) that
    /// still fits in `PATH_MAX` below `root_path`.
    max_path: usize,
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
            max_path: PATH_MAX.saturating_sub(root.as_os_str().len()),
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
        let shown = shown(&raw);
        let unsafe_entry = |what: &str| ExtractError::Unsafe {
            entry: shown.clone(),
            what: what.to_string(),
        };
        let Some(comps) = clean(&raw, self.max_path).map_err(&unsafe_entry)? else {
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
                if target.contains(&0) || target.len() > PATH_MAX {
                    return Err(unsafe_entry(
                        "a symlink target with a NUL byte or longer than 4095 bytes",
                    ));
                }
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
                let Some(src) = clean(&link, self.max_path)
                    .map_err(|w| unsafe_entry(&format!("hard link target: {w}")))?
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
        remove_at(dir, name).map_err(|e| self.werr(rel, e))
    }

    /// Remove every child of `dir` (at `rel`) that this layer did not create.
    fn clear_dir(
        &self,
        dir: &OwnedFd,
        rel: &[u8],
        keep: &HashSet<Vec<u8>>,
    ) -> Result<(), ExtractError> {
        for n in list(dir).map_err(|e| self.werr(rel, e))? {
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

/// The names in the directory `dir`. Listed through the fd's own
/// `/proc/self/fd` link (the magic link cannot be swapped for a symlink
/// elsewhere), with std rather than nix's `dir`.
fn list(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let listing = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut names = Vec::new();
    for e in std::fs::read_dir(&listing)? {
        names.push(e?.file_name().as_bytes().to_vec());
    }
    Ok(names)
}

/// Remove `name` in `dir`, a whole tree if it is a directory, never
/// following a symlink; a missing name is fine.
fn remove_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {
            let sub = openat(
                dir,
                os(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            empty_dir(sub)?;
            unlinkat(dir, os(name), UnlinkatFlags::RemoveDir)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A directory's identity, to check that `..` leads back where we came from.
fn dir_id(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Remove everything inside the open directory `top`, depth first, without
/// recursion and with at most two directory fds open at a time, so that any
/// depth of nesting (an image's, or one a traced command built) is removed
/// without a stack overflow or running out of fds. Going back up is by
/// `..`, checked against the identity each directory had on the way down.
/// Not interruptible: it is the cleanup an interruption runs.
fn empty_dir(top: OwnedFd) -> io::Result<()> {
    struct Level {
        /// Its name in its parent.
        name: Vec<u8>,
        id: (u64, u64),
        /// Subdirectories still to remove.
        subdirs: Vec<Vec<u8>>,
    }
    /// Unlink every non-directory of `dir`; return its subdirectories.
    fn sweep(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
        // A directory without write or search permission (0555 in an image)
        // cannot be emptied as a non-root user; it is going anyway.
        let _ = fchmod(dir, Mode::from_bits_truncate(0o700));
        let mut subdirs = Vec::new();
        for n in list(dir)? {
            match unlinkat(dir, os(&n), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) | Err(Errno::EPERM) => subdirs.push(n),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(subdirs)
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur = top;
    let mut levels = vec![Level {
        name: Vec::new(),
        id: dir_id(&cur)?,
        subdirs: sweep(&cur)?,
    }];
    loop {
        let Some(level) = levels.last_mut() else {
            return Ok(());
        };
        if let Some(sub) = level.subdirs.pop() {
            match openat(&cur, os(&sub), flags, Mode::empty()) {
                Ok(fd) => {
                    cur = fd;
                    levels.push(Level {
                        name: sub,
                        id: dir_id(&cur)?,
                        subdirs: sweep(&cur)?,
                    });
                }
                Err(Errno::ENOENT) => {}
                // No longer a directory: an ordinary unlink.
                Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => remove_at(&cur, &sub)?,
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if levels.len() == 1 {
            return Ok(());
        }
        let done = levels.pop().expect("more than one level");
        let parent = openat(&cur, "..", flags, Mode::empty())?;
        if Some(dir_id(&parent)?) != levels.last().map(|l| l.id) {
            return Err(io::Error::other(format!(
                "the directory holding {:?} was moved while it was being removed",
                String::from_utf8_lossy(&done.name)
            )));
        }
        cur = parent;
        unlinkat(&cur, os(&done.name), UnlinkatFlags::RemoveDir)?;
    }
}

/// Remove the directory tree at `path` (not following symlinks), at any
/// depth: see [`empty_dir`]. A missing path is fine. Used to clean up
/// unpack roots, which hold whatever an image (or a command traced in it)
/// put there.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let fd = match openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => return std::fs::remove_file(path),
        Err(e) => return Err(e.into()),
    };
    empty_dir(fd)?;
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
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

/// The longest name a path component can have on Linux (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest path (without its terminating NUL) Linux accepts in one
/// system call (`PATH_MAX` - 1). A longer entry could be created one
/// component at a time, but nothing could name it afterwards (the tracer,
/// the file-set walk, `jail run`), so it is refused as bad input. Entries
/// must fit with the unpack root's own path in front ([`Extractor::new`]).
pub const PATH_MAX: usize = 4095;

/// The components of an entry name: `./` and empty components dropped;
/// `Ok(None)` for the root itself; an error for absolute names, `..`, NUL
/// bytes, a component longer than [`NAME_MAX`] or a path (as it will be
/// below the root, with a leading `/`) longer than `max_path`.
fn clean(raw: &[u8], max_path: usize) -> Result<Option<Vec<&[u8]>>, &'static str> {
    if raw.contains(&0) {
        return Err("a NUL byte in the name: no file can be named that");
    }
    if raw.first() == Some(&b'/') && raw.iter().any(|&b| b != b'/' && b != b'.') {
        return Err("absolute path: layer entries are relative to the root");
    }
    let mut comps = Vec::new();
    let mut len = 0;
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` component: it could leave the root"),
            c if c.len() > NAME_MAX => {
                return Err("a name component longer than 255 bytes (NAME_MAX)")
            }
            c => {
                len += 1 + c.len();
                comps.push(c)
            }
        }
    }
    if len > max_path {
        return Err("a path too long for PATH_MAX (4096 bytes, with the unpack root's own path in front): nothing could open it once unpacked");
    }
    Ok(if comps.is_empty() { None } else { Some(comps) })
}

/// An entry name as shown in messages: lossy UTF-8, NUL bytes escaped, and
/// cut after 200 characters (a refused name can be 64 KiB long).
fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).replace('\0', "\\0");
    match s.char_indices().nth(200) {
        Some((at, _)) => format!("{}…({} bytes)", &s[..at], raw.len()),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        let c = |raw: &'static [u8]| clean(raw, PATH_MAX);
        assert_eq!(c(b"./usr/bin/").unwrap(), Some(vec![&b"usr"[..], b"bin"]));
        assert_eq!(c(b"./").unwrap(), None);
        assert_eq!(c(b"/").unwrap(), None);
        assert!(c(b"/etc/passwd").is_err());
        assert!(c(b"a/../../etc").is_err());
        assert!(c(b"..").is_err());
        assert!(c(b"etc/pass\0wd").is_err());
        let long = [b"d/".to_vec(), vec![b'n'; 256]].concat();
        assert!(clean(&long, PATH_MAX).is_err());
        assert!(clean(&long[..257], PATH_MAX).is_ok());
        let deep = b"a/".repeat(2048);
        assert!(clean(&deep[..4093], PATH_MAX).is_ok());
        assert!(clean(&deep, PATH_MAX).is_err());
        assert!(clean(&deep[..4093], 100).is_err());
    }

    /// Deeper than any recursion or fd limit would survive: removed.
    #[test]
    fn remove_tree_at_any_depth() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut fd = openat(
            nix::fcntl::AT_FDCWD,
            &root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for i in 0..30_000 {
            mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).unwrap();
            if i % 1000 == 0 {
                std::fs::write(format!("/proc/self/fd/{}/file", fd.as_raw_fd()), "x").unwrap();
                symlinkat("/etc/passwd", &fd, "link").unwrap();
            }
            fd = openat(
                &fd,
                "d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
        }
        // A wide level too.
        for i in 0..100 {
            mkdirat(
                &fd,
                format!("w{i}").as_str(),
                Mode::from_bits_truncate(0o500),
            )
            .unwrap();
        }
        drop(fd);
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(Path::new("/etc/passwd").exists());
        remove_tree(&root).unwrap();
    }
}
