//! Turning "process P did X to the path it named N" into access-log entries.
//!
//! Both backends feed a [`Recorder`]. It resolves each named path inside the
//! root (recording every symlink met, mid-path ones included), classifies
//! the access from what the call does and whether the path existed when the
//! run first named it, and keeps one [`FileAccess`] per physical path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::paths::{self, ImagePath};
use crate::resolve::{FileType, Follow, Missing, Root};

use super::exec::{self, Image, MAX_INTERP_DEPTH};
use super::log::{AccessKind, FileAccess};

/// What a call does to the path it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Opens for reading (a directory opened this way is only looked at).
    Read,
    /// Opens an existing file for writing, or changes its metadata.
    Write,
    /// Opens for writing, creating the file when missing (O_CREAT).
    WriteCreate,
    /// Executes (execve, or the kernel loading an interpreter).
    Exec,
    /// Looks at it without using the content (stat, access, readlink).
    Stat,
    /// Reads a directory's entries.
    List,
    /// Creates it (mkdir, mknod, symlink, link target, bind).
    Create,
    /// Removes it (unlink, rmdir, rename source).
    Delete,
    /// Replaces or creates it (rename target).
    Replace,
}

/// Paths never resolved against the root: the runtime provides them, and
/// resolving `/proc/self` in the tracer would name the tracer itself.
const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

/// What the recorder learned about one access, for callers that act on it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The physical in-root path.
    pub path: PathBuf,
    /// Its type, when it exists.
    pub file_type: Option<FileType>,
}

/// Collects accesses into per-path entries.
pub struct Recorder {
    root: Root,
    files: HashMap<PathBuf, FileAccess>,
    names: HashMap<PathBuf, PathBuf>,
    /// Accesses already recorded that change nothing in the tree, with
    /// what they found: the same one again (a loop opening one file, each
    /// of a program's runs stating the same directories) records nothing
    /// new, and is answered without resolving it again. Emptied by every
    /// access that creates, removes or replaces a path, since the same
    /// name may then resolve elsewhere.
    seen: HashMap<(PathBuf, Follow, Access, Option<bool>), Seen>,
}

impl Recorder {
    pub fn new(root: Root) -> Recorder {
        Recorder {
            root,
            files: HashMap::new(),
            names: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Record that process `pid` did `access` to the absolute in-root path
    /// `named` (as the program named it: `..` and symlinks unresolved).
    pub fn access(&mut self, pid: i32, named: &Path, follow: Follow, access: Access) -> Seen {
        self.access_at(pid, named, follow, access, None)
    }

    /// [`Recorder::access`] for a backend that learns of the call after the
    /// fact (ebpf): `existed` is what the call's result says about the path
    /// when it was named (`Some(false)`: it failed with ENOENT or created
    /// the path; `Some(true)`: it found it). It overrides what the root
    /// shows now, which the run may have changed since.
    pub fn access_at(
        &mut self,
        pid: i32,
        named: &Path,
        follow: Follow,
        access: Access,
        existed: Option<bool>,
    ) -> Seen {
        let changes_tree = matches!(
            access,
            Access::WriteCreate | Access::Create | Access::Delete | Access::Replace
        );
        if changes_tree {
            self.seen.clear();
            return self.record(pid, named, follow, access, existed);
        }
        let key = (named.to_path_buf(), follow, access, existed);
        if let Some(seen) = self.seen.get(&key) {
            return seen.clone();
        }
        let seen = self.record(pid, named, follow, access, existed);
        self.seen.insert(key, seen.clone());
        seen
    }

    fn record(
        &mut self,
        pid: i32,
        named: &Path,
        follow: Follow,
        access: Access,
        existed: Option<bool>,
    ) -> Seen {
        if PSEUDO.iter().any(|p| named.starts_with(p)) {
            let path = paths::normalize(named);
            let e = self.entry(&path, pid, true, None);
            e.kinds.insert(kind_for(access, Some(FileType::File)));
            return Seen {
                path,
                file_type: None,
            };
        }
        let mut r = self.root.resolve(named, follow);
        match (existed, r.outcome) {
            (Some(false), Ok(_)) => r.outcome = Err(Missing::NotFound),
            (Some(true), Err(_)) => r.outcome = Ok(FileType::File),
            _ => {}
        }
        for link in &r.links {
            let e = self.entry(&link.path, pid, true, Some(FileType::Symlink));
            e.kinds.insert(AccessKind::Symlink);
            if e.target.is_none() {
                e.target = Some(link.target.clone());
            }
        }
        let file_type = r.outcome.ok();
        let last_link_target = if file_type == Some(FileType::Symlink) {
            std::fs::read_link(self.root.host_path(&r.path)).ok()
        } else {
            None
        };
        let e = self.entry(&r.path, pid, r.exists(), file_type);
        match r.outcome {
            Ok(t) => {
                e.kinds.insert(kind_for(access, Some(t)));
                if e.file_type.is_none() {
                    e.file_type = Some(t);
                }
                if let Some(target) = last_link_target {
                    e.target.get_or_insert(target);
                }
                // A success clears an earlier probe's errno.
                e.errno = None;
            }
            Err(missing) => match access {
                Access::WriteCreate => {
                    e.kinds.insert(AccessKind::Create);
                    e.kinds.insert(AccessKind::Write);
                    e.errno = None;
                }
                Access::Create | Access::Replace => {
                    e.kinds.insert(AccessKind::Create);
                    e.errno = None;
                }
                _ => {
                    e.kinds.insert(AccessKind::Missing);
                    if e.kinds.len() == 1 && e.errno.is_none() {
                        e.errno = Some(errno_name(missing));
                    }
                }
            },
        }
        let normal = paths::normalize(named);
        if normal != r.path {
            self.names.entry(normal).or_insert_with(|| r.path.clone());
        }
        Seen {
            path: r.path,
            file_type,
        }
    }

    /// Record an access a backend observed on a physical path (fanotify:
    /// the file opened, no name, no symlinks). `created`: the run made it.
    pub fn observe(&mut self, pid: i32, path: &Path, access: Access, created: bool) -> Seen {
        if !created {
            return self.access(pid, path, Follow::No, access);
        }
        // A new path: the memo's answers may resolve elsewhere now.
        self.seen.clear();
        let file_type = self.root.lstat(path).ok().map(|m| FileType::of(&m));
        let e = self.entry(path, pid, false, file_type);
        e.existed = false;
        e.kinds.insert(AccessKind::Create);
        e.kinds.insert(kind_for(access, file_type));
        e.errno = None;
        Seen {
            path: path.to_path_buf(),
            file_type,
        }
    }

    fn entry(
        &mut self,
        path: &Path,
        pid: i32,
        existed: bool,
        file_type: Option<FileType>,
    ) -> &mut FileAccess {
        if !self.files.contains_key(path) {
            let fa = FileAccess {
                existed,
                file_type,
                first_pid: pid,
                ..FileAccess::default()
            };
            self.files.insert(path.to_path_buf(), fa);
        }
        // Just inserted or already present.
        self.files.get_mut(path).expect("entry present")
    }

    /// Record the `#!` chain and the ELF interpreter the kernel loaded for
    /// the executable at the in-root `path` (process `pid` exec'd it): the
    /// kernel opens them without a syscall any backend sees. Returns how
    /// many arguments the `#!` lines put in front of the script's path in
    /// the argv the kernel hands the final program (each level: the
    /// interpreter and its optional argument).
    pub fn interpreters(&mut self, pid: i32, path: &Path) -> usize {
        let mut cur = path.to_path_buf();
        let mut prefix = 0;
        for _ in 0..MAX_INTERP_DEPTH {
            let host = self.root.host_path(&cur);
            let next = match exec::inspect(&host) {
                Ok(Image::Script { interpreter, arg }) => {
                    prefix += 1 + usize::from(arg.is_some());
                    interpreter
                }
                Ok(Image::Elf {
                    interp: Some(i), ..
                }) => {
                    self.access(pid, &i, Follow::Yes, Access::Exec);
                    return prefix;
                }
                _ => return prefix,
            };
            let named = if next.is_absolute() {
                next
            } else {
                cur.parent().unwrap_or(Path::new("/")).join(next)
            };
            cur = self.access(pid, &named, Follow::Yes, Access::Exec).path;
        }
        prefix
    }

    /// Forget cached resolutions below `path` (the run changed it).
    pub fn invalidate(&mut self, path: &Path) {
        self.seen.clear();
        self.root.invalidate(path);
    }

    /// The collected entries, sorted for the log.
    pub fn finish(
        self,
    ) -> (
        std::collections::BTreeMap<ImagePath, FileAccess>,
        std::collections::BTreeMap<ImagePath, ImagePath>,
    ) {
        let files = self
            .files
            .into_iter()
            .map(|(p, a)| (ImagePath(p), a))
            .collect();
        let names = self
            .names
            .into_iter()
            .map(|(n, p)| (ImagePath(n), ImagePath(p)))
            .collect();
        (files, names)
    }
}

/// The kind an access to an existing file of type `t` records.
fn kind_for(access: Access, t: Option<FileType>) -> AccessKind {
    let dir = t == Some(FileType::Dir);
    match access {
        Access::Read if dir => AccessKind::Stat,
        Access::Read => AccessKind::Read,
        Access::Write | Access::WriteCreate | Access::Replace => AccessKind::Write,
        Access::Exec => AccessKind::Exec,
        Access::Stat => AccessKind::Stat,
        Access::List => AccessKind::List,
        // mkdir/mknod on an existing path fails with EEXIST: only a look.
        Access::Create => AccessKind::Stat,
        Access::Delete => AccessKind::Delete,
    }
}

/// The errno name of a failed lookup (`ENOENT`).
pub fn errno_name(m: Missing) -> String {
    // Errno's Debug form is its symbolic name.
    format!("{:?}", nix::errno::Errno::from_raw(m.errno()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// The memo answers a repeated access, but not across a change of the
    /// tree: the same name, missing both times, goes through a symlink the
    /// run made in between, and that symlink is recorded.
    #[test]
    fn the_memo_forgets_at_each_creation() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("real")).unwrap();
        let mut r = Recorder::new(Root::new(d.path()).unwrap());
        let probe = |r: &mut Recorder| {
            r.access_at(1, Path::new("/l/f"), Follow::Yes, Access::Stat, Some(false))
        };
        assert_eq!(probe(&mut r).path, Path::new("/l/f"));
        assert_eq!(probe(&mut r).path, Path::new("/l/f"));
        symlink("real", d.path().join("l")).unwrap();
        r.access_at(1, Path::new("/l"), Follow::No, Access::Create, Some(false));
        assert_eq!(probe(&mut r).path, Path::new("/real/f"));
        let (files, _) = r.finish();
        let get = |p: &str| files.get(&ImagePath(p.into())).cloned();
        assert!(get("/real/f").is_some_and(|f| f.kinds.contains(&AccessKind::Missing)));
    }

    #[test]
    fn records_chain_kinds_and_creation() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        fs::write(d.path().join("usr/lib/libc.so"), b"x").unwrap();
        symlink("usr/lib", d.path().join("lib")).unwrap();
        let mut r = Recorder::new(Root::new(d.path()).unwrap());
        r.access(7, Path::new("/lib/libc.so"), Follow::Yes, Access::Read);
        r.access(7, Path::new("/lib/missing.so"), Follow::Yes, Access::Read);
        r.access(
            8,
            Path::new("/usr/lib/out.txt"),
            Follow::Yes,
            Access::WriteCreate,
        );
        r.access(8, Path::new("/usr/lib/out.txt"), Follow::Yes, Access::Read);
        let (files, names) = r.finish();
        let get = |p: &str| files.get(&ImagePath(p.into())).unwrap();
        assert_eq!(get("/lib").kinds, [AccessKind::Symlink].into());
        assert_eq!(get("/lib").target.as_deref(), Some(Path::new("usr/lib")));
        assert_eq!(get("/usr/lib/libc.so").kinds, [AccessKind::Read].into());
        assert!(get("/usr/lib/libc.so").existed);
        assert_eq!(get("/usr/lib/missing.so").errno.as_deref(), Some("ENOENT"));
        let out = get("/usr/lib/out.txt");
        assert!(out.created(), "{out:?}");
        assert_eq!(out.first_pid, 8);
        assert_eq!(
            names.get(&ImagePath("/lib/libc.so".into())),
            Some(&ImagePath("/usr/lib/libc.so".into()))
        );
    }
}
