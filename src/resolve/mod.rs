//! Path resolution inside a root, as the kernel would do it for a process
//! chrooted there, recording every symlink met on the way.
//!
//! Both the tracer (paths a tracee names) and the ELF resolver (paths in an
//! unpacked image) resolve through [`Root`], so a symlink chain such as
//! `/lib64 → usr/lib64` is seen the same way by every stage. Absolute symlink
//! targets are re-rooted and `..` never climbs above the root: nothing ever
//! resolves outside it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// Maximum number of symlinks followed in one resolution (Linux: 40).
pub const MAX_SYMLINKS: usize = 40;

/// Whether a symlink in the last component is followed (`stat`) or not
/// (`lstat`, `O_NOFOLLOW`, `readlink`, `unlink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Follow {
    Yes,
    No,
}

/// The kind of file a path resolved to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    pub fn of(meta: &Metadata) -> FileType {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_dir() {
            FileType::Dir
        } else if t.is_symlink() {
            FileType::Symlink
        } else if t.is_fifo() {
            FileType::Fifo
        } else if t.is_socket() {
            FileType::Socket
        } else if t.is_char_device() {
            FileType::CharDevice
        } else if t.is_block_device() {
            FileType::BlockDevice
        } else {
            FileType::File
        }
    }
}

/// One symlink met while resolving: where it is (in-root) and its raw target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// Why a path did not resolve to an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Missing {
    /// A component does not exist (ENOENT).
    NotFound,
    /// A non-final component is not a directory (ENOTDIR).
    NotDir,
    /// Too many symlinks (ELOOP).
    Loop,
    /// Another error while looking (EACCES, EIO, …), as an errno.
    Other(i32),
}

impl Missing {
    pub fn errno(self) -> i32 {
        match self {
            Missing::NotFound => libc::ENOENT,
            Missing::NotDir => libc::ENOTDIR,
            Missing::Loop => libc::ELOOP,
            Missing::Other(e) => e,
        }
    }
}

/// The result of resolving one path.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The physical in-root path: every symlink in a directory component
    /// resolved (and the last one too with [`Follow::Yes`]). When the path
    /// does not exist, the resolved prefix with the rest appended lexically.
    pub path: PathBuf,
    /// Every symlink met, in the order met.
    pub links: Vec<Link>,
    /// The type of the final file, or why there is none.
    pub outcome: Result<FileType, Missing>,
}

impl Resolved {
    pub fn exists(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What the cache knows about a directory component.
#[derive(Clone, Debug)]
enum Node {
    Dir,
    Symlink(PathBuf),
}

/// A filesystem root: `/` for jailing from this machine, an unpacked image
/// when slimming. Paths passed in and returned are absolute *inside* the root.
#[derive(Debug)]
pub struct Root {
    host: PathBuf,
    /// Directory components already looked at: dirs and symlinks only (leaves
    /// and missing paths are never cached, so creations need no
    /// invalidation). Mutations call [`Root::invalidate`].
    cache: Mutex<HashMap<PathBuf, Node>>,
}

impl Clone for Root {
    fn clone(&self) -> Self {
        Root {
            host: self.host.clone(),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Root {
    /// The root of this machine.
    pub fn host() -> Root {
        Root {
            host: PathBuf::from("/"),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A root at `dir` (made absolute and canonical, so that host paths can
    /// be mapped back into the root).
    pub fn new(dir: &Path) -> io::Result<Root> {
        let host = fs::canonicalize(dir)?;
        if !fs::metadata(&host)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Root {
            host,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The host directory of this root.
    pub fn dir(&self) -> &Path {
        &self.host
    }

    /// `true` when this is the machine's own `/`.
    pub fn is_host(&self) -> bool {
        self.host == Path::new("/")
    }

    /// Where an in-root path lives on the host.
    pub fn host_path(&self, inner: &Path) -> PathBuf {
        if self.is_host() {
            return inner.to_path_buf();
        }
        let rel = inner.strip_prefix("/").unwrap_or(inner);
        if rel.as_os_str().is_empty() {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// Map a host path (e.g. from `/proc/PID/cwd`) back into the root, or
    /// `None` when it lies outside.
    pub fn inner_path(&self, host: &Path) -> Option<PathBuf> {
        if self.is_host() {
            return Some(host.to_path_buf());
        }
        host.strip_prefix(&self.host)
            .ok()
            .map(|rel| Path::new("/").join(rel))
    }

    /// Forget cached knowledge of `path` and everything below it; called when
    /// a traced program renames, removes or replaces it.
    pub fn invalidate(&self, path: &Path) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.is_empty() {
            return;
        }
        cache.retain(|p, _| !p.starts_with(path));
    }

    /// `lstat` an in-root path.
    pub fn lstat(&self, inner: &Path) -> io::Result<Metadata> {
        fs::symlink_metadata(self.host_path(inner))
    }

    /// The PATH search inside the root, the one all in-root lookups use
    /// (argv[0] of an exec, `#!/usr/bin/env NAME`, an image's entrypoint):
    /// `DIR/name` for each absolute entry of `path` (colon-separated;
    /// relative and empty entries name the host's working directory, which
    /// means nothing in the root, and are skipped), the first that resolves
    /// to a regular file. Returns the candidate as named, not resolved.
    pub fn find_in_path(&self, name: &std::ffi::OsStr, path: &[u8]) -> Option<PathBuf> {
        path.split(|&b| b == b':')
            .filter(|d| d.first() == Some(&b'/'))
            .map(|d| Path::new(std::ffi::OsStr::from_bytes(d)).join(name))
            .find(|cand| self.resolve(cand, Follow::Yes).outcome == Ok(FileType::File))
    }

    /// Resolve an absolute in-root path. A relative `path` is taken from `/`.
    pub fn resolve(&self, path: &Path, follow: Follow) -> Resolved {
        let mut links = Vec::new();
        // Components still to walk, in reverse (pop from the end).
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        let mut cur = PathBuf::from("/");
        let mut followed = 0usize;
        let mut cur_is_dir = true;
        while let Some(name) = todo.pop() {
            if name == ".." {
                cur.pop();
                cur_is_dir = true;
                continue;
            }
            if !cur_is_dir {
                cur.push(&name);
                append_rest(&mut cur, &mut todo);
                return Resolved {
                    path: cur,
                    links,
                    outcome: Err(Missing::NotDir),
                };
            }
            let last = todo.is_empty();
            let candidate = cur.join(&name);
            let node = match self.lookup(&candidate, last) {
                Ok(n) => n,
                Err(missing) => {
                    let mut p = candidate;
                    append_rest(&mut p, &mut todo);
                    return Resolved {
                        path: p,
                        links,
                        outcome: Err(missing),
                    };
                }
            };
            match node {
                Lookup::Symlink(target) if !last || follow == Follow::Yes => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        links.push(Link {
                            path: candidate.clone(),
                            target,
                        });
                        let mut p = candidate;
                        append_rest(&mut p, &mut todo);
                        return Resolved {
                            path: p,
                            links,
                            outcome: Err(Missing::Loop),
                        };
                    }
                    if target.is_absolute() {
                        cur = PathBuf::from("/");
                    }
                    push_components(&mut todo, &target);
                    links.push(Link {
                        path: candidate,
                        target,
                    });
                    cur_is_dir = true;
                }
                Lookup::Symlink(_) => {
                    return Resolved {
                        path: candidate,
                        links,
                        outcome: Ok(FileType::Symlink),
                    };
                }
                Lookup::Dir => {
                    cur = candidate;
                    cur_is_dir = true;
                }
                Lookup::Leaf(t) => {
                    cur = candidate;
                    cur_is_dir = false;
                    if last {
                        return Resolved {
                            path: cur,
                            links,
                            outcome: Ok(t),
                        };
                    }
                }
            }
        }
        // Ended on a directory (or the root itself).
        Resolved {
            path: cur,
            links,
            outcome: Ok(FileType::Dir),
        }
    }

    fn lookup(&self, inner: &Path, last: bool) -> Result<Lookup, Missing> {
        if !last {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(inner) {
                Some(Node::Dir) => return Ok(Lookup::Dir),
                Some(Node::Symlink(t)) => return Ok(Lookup::Symlink(t.clone())),
                None => {}
            }
        }
        let host = self.host_path(inner);
        let meta = fs::symlink_metadata(&host).map_err(|e| io_missing(&e))?;
        let t = FileType::of(&meta);
        let found = match t {
            FileType::Dir => Lookup::Dir,
            FileType::Symlink => Lookup::Symlink(fs::read_link(&host).map_err(|e| io_missing(&e))?),
            other => Lookup::Leaf(other),
        };
        if !last || t == FileType::Dir {
            let node = match &found {
                Lookup::Dir => Some(Node::Dir),
                Lookup::Symlink(t) => Some(Node::Symlink(t.clone())),
                Lookup::Leaf(_) => None,
            };
            if let Some(node) = node {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.insert(inner.to_path_buf(), node);
            }
        }
        Ok(found)
    }

    /// Resolve and return the physical path, or `None` when it does not exist.
    pub fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        let r = self.resolve(path, Follow::Yes);
        r.outcome.ok().map(|_| r.path)
    }

    /// Metadata of an in-root path (following symlinks inside the root).
    pub fn metadata(&self, path: &Path) -> Option<(PathBuf, Metadata)> {
        let p = self.canonicalize(path)?;
        let m = self.lstat(&p).ok()?;
        Some((p, m))
    }
}

enum Lookup {
    Dir,
    Symlink(PathBuf),
    Leaf(FileType),
}

fn io_missing(e: &io::Error) -> Missing {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Missing::NotFound,
        Some(libc::ENOTDIR) => Missing::NotDir,
        Some(libc::ELOOP) => Missing::Loop,
        Some(n) => Missing::Other(n),
        None => Missing::Other(libc::EIO),
    }
}

/// Push the components of `path` onto the reversed work stack so that the
/// first component is popped first. `.` and the root are dropped.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let start = todo.len();
    for c in path.components() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => todo.push(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    todo[start..].reverse();
}

/// Append what is left of the work stack lexically (for missing paths).
fn append_rest(p: &mut PathBuf, todo: &mut Vec<OsString>) {
    while let Some(n) = todo.pop() {
        if n.as_bytes() == b".." {
            p.pop();
        } else {
            p.push(n);
        }
    }
}

/// The inode identity of a file, for caches keyed per file.
pub fn file_id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Identity of a file version, recognised without reading it: the inode
/// plus what changes when the file is rewritten in place. The key of the
/// ELF resolver's parse cache and of the digest cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        let (dev, ino) = file_id(m);
        Stamp {
            dev,
            ino,
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// (device, inode).
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"x").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        fs::create_dir_all(r.join("usr/lib64")).unwrap();
        symlink("usr/lib64", r.join("lib64")).unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld.so",
            r.join("usr/lib64/ld-linux.so"),
        )
        .unwrap();
        symlink("../../../../../../etc", r.join("usr/escape")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        let root = Root::new(r).unwrap();
        (d, root)
    }

    #[test]
    fn records_mid_path_and_final_links() {
        let (_d, root) = tree();
        let r = root.resolve(Path::new("/lib64/ld-linux.so"), Follow::Yes);
        assert_eq!(r.path, Path::new("/usr/lib/x86_64-linux-gnu/ld.so"));
        assert_eq!(r.outcome, Ok(FileType::File));
        let links: Vec<_> = r.links.iter().map(|l| l.path.to_str().unwrap()).collect();
        assert_eq!(links, ["/lib64", "/usr/lib64/ld-linux.so", "/lib"]);
    }

    #[test]
    fn no_follow_keeps_last_link() {
        let (_d, root) = tree();
        let r = root.resolve(Path::new("/lib64/ld-linux.so"), Follow::No);
        assert_eq!(r.path, Path::new("/usr/lib64/ld-linux.so"));
        assert_eq!(r.outcome, Ok(FileType::Symlink));
    }

    #[test]
    fn dotdot_never_leaves_root() {
        let (d, root) = tree();
        fs::create_dir(d.path().join("etc")).unwrap();
        let r = root.resolve(Path::new("/usr/escape"), Follow::Yes);
        assert_eq!(r.path, Path::new("/etc"));
        assert_eq!(r.outcome, Ok(FileType::Dir));
    }

    #[test]
    fn missing_and_notdir_and_loop() {
        let (_d, root) = tree();
        let r = root.resolve(Path::new("/lib/nope/x"), Follow::Yes);
        assert_eq!(r.outcome, Err(Missing::NotFound));
        assert_eq!(r.path, Path::new("/usr/lib/nope/x"));
        let r = root.resolve(Path::new("/lib/x86_64-linux-gnu/ld.so/x"), Follow::Yes);
        assert_eq!(r.outcome, Err(Missing::NotDir));
        let r = root.resolve(Path::new("/loop1"), Follow::Yes);
        assert_eq!(r.outcome, Err(Missing::Loop));
    }

    #[test]
    fn maps_host_paths_back() {
        let (d, root) = tree();
        let canon = fs::canonicalize(d.path()).unwrap();
        assert_eq!(
            root.inner_path(&canon.join("usr/lib")),
            Some(PathBuf::from("/usr/lib"))
        );
        assert_eq!(root.inner_path(Path::new("/elsewhere")), None);
    }
}
