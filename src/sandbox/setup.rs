//! The steps the sandbox's init takes to build the root file system, prepared
//! by the caller before the clone (every path already a C string) and
//! performed by init without allocating. A failed step is reported back as its
//! index, a sub-step code and an errno, which [`Step::error`] turns into a
//! [`SandboxError`] naming the in-root path.

use std::ffi::{CStr, CString, OsString};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::error::SandboxError;

/// One thing init does to the mount namespace, UTS or network namespace.
pub(crate) enum Action {
    /// Write `data` to a file (the id maps of the user namespace).
    WriteFile {
        path: CString,
        data: CString,
    },
    /// `mount --make-rprivate /`: nothing mounted from here on propagates.
    MakePrivate,
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    /// Create a directory in a file system of our own (tmpfs).
    Mkdir {
        path: CString,
        mode: u32,
        owner: Option<(Uid, Gid)>,
    },
    /// A mount point in the root: kept when it is a directory, created when
    /// missing, refused when it is anything else (a symlink could point
    /// the mount anywhere).
    EnsureDir {
        path: CString,
        mode: u32,
    },
    /// Create an empty file and bind-mount a host device node on it.
    BindFile {
        source: CString,
        target: CString,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    /// A tmpfs on /tmp unless the root has its own /tmp (directory or link).
    TmpIfMissing {
        path: CString,
    },
    /// A fresh read-only sysfs; where the kernel refuses it (a user namespace
    /// without its own network namespace), a read-only bind of the host's.
    Sysfs {
        target: CString,
    },
    /// Hide a path of /proc or /sys as runtimes do: a file under the host's
    /// /dev/null, a directory under an empty read-only tmpfs. Missing paths
    /// (kernel options) are skipped.
    Mask {
        path: CString,
        devnull: CString,
    },
    /// Make a path of /proc read-only (a bind of itself, remounted with
    /// `flags` added, which must repeat the flags the mount it lives on
    /// already has). Missing paths are skipped.
    ReadOnly {
        path: CString,
        flags: MsFlags,
    },
    Hostname(OsString),
    LoopbackUp,
    /// Make `path` the root and detach the old one.
    PivotRoot {
        path: CString,
    },
}

/// An action and the names to show when it fails.
pub(crate) struct Step {
    pub action: Action,
    /// What it acts on, as the user knows it (an in-root path such as
    /// `/proc`, or a host path).
    pub about: PathBuf,
    /// For mounts: what is mounted (a host path or a file system name).
    pub from: PathBuf,
}

// Sub-steps of an action, reported with its errno.
pub(crate) const SUB_MAIN: u32 = 0;
const SUB_MKDIR: u32 = 1;
const SUB_NOT_DIR: u32 = 2;
const SUB_MOUNT: u32 = 3;
const SUB_CREATE: u32 = 4;
const SUB_BIND: u32 = 5;
const SUB_REMOUNT: u32 = 6;
const SUB_CHOWN: u32 = 7; // reported as a failed mkdir
const SUB_LSTAT: u32 = 8;

type Failed = (u32, Errno);

fn at(sub: u32) -> impl Fn(Errno) -> Failed {
    move |e| (sub, e)
}

fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: MsFlags,
    data: Option<&CStr>,
) -> nix::Result<()> {
    nix::mount::mount(Some(source), target, fstype, flags, data)
}

fn lstat_kind(path: &CStr) -> nix::Result<SFlag> {
    let st = nix::sys::stat::lstat(path)?;
    Ok(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
}

impl Action {
    /// Perform the action. Runs in the cloned init: no allocation.
    pub(crate) fn perform(&self) -> Result<(), Failed> {
        match self {
            Action::WriteFile { path, data } => {
                let fd = nix::fcntl::open(
                    path.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(SUB_MAIN))?;
                let n = nix::unistd::write(&fd, data.as_bytes()).map_err(at(SUB_MAIN))?;
                if n != data.as_bytes().len() {
                    return Err((SUB_MAIN, Errno::EIO));
                }
                Ok(())
            }
            Action::MakePrivate => nix::mount::mount(
                None::<&CStr>,
                c"/",
                None::<&CStr>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&CStr>,
            )
            .map_err(at(SUB_MAIN)),
            Action::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => mount(source, target, fstype.as_deref(), *flags, data.as_deref())
                .map_err(at(SUB_MAIN)),
            Action::Mkdir { path, mode, owner } => {
                nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(*mode))
                    .map_err(at(SUB_MKDIR))?;
                if let Some((uid, gid)) = owner {
                    nix::unistd::chown(path.as_c_str(), Some(*uid), Some(*gid))
                        .map_err(at(SUB_CHOWN))?;
                }
                Ok(())
            }
            Action::EnsureDir { path, mode } => match lstat_kind(path) {
                Ok(SFlag::S_IFDIR) => Ok(()),
                Ok(_) => Err((SUB_NOT_DIR, Errno::ENOTDIR)),
                Err(Errno::ENOENT) => {
                    nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(*mode))
                        .map_err(at(SUB_MKDIR))
                }
                Err(e) => Err((SUB_LSTAT, e)),
            },
            Action::BindFile { source, target } => {
                let fd = nix::fcntl::open(
                    target.as_c_str(),
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o666),
                )
                .map_err(at(SUB_CREATE))?;
                drop(fd);
                mount(source, target, None, MsFlags::MS_BIND, None).map_err(at(SUB_BIND))
            }
            Action::Symlink { target, path } => {
                nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, path.as_c_str())
                    .map_err(at(SUB_MAIN))
            }
            Action::TmpIfMissing { path } => match lstat_kind(path) {
                Ok(_) => Ok(()),
                Err(Errno::ENOENT) => {
                    nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o1777))
                        .map_err(at(SUB_MKDIR))?;
                    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                    mount(c"tmpfs", path, Some(c"tmpfs"), flags, Some(c"mode=1777"))
                        .map_err(at(SUB_MOUNT))
                }
                Err(e) => Err((SUB_LSTAT, e)),
            },
            Action::Sysfs { target } => {
                let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                match mount(
                    c"sysfs",
                    target,
                    Some(c"sysfs"),
                    locked | MsFlags::MS_RDONLY,
                    None,
                ) {
                    Ok(()) => Ok(()),
                    Err(Errno::EPERM) => {
                        // A user namespace may only mount sysfs for a network
                        // namespace it owns; with the host's network, show
                        // the host's sysfs, read-only. Submounts come along
                        // (a user namespace may not split them off).
                        mount(
                            c"/sys",
                            target,
                            None,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            None,
                        )
                        .map_err(at(SUB_BIND))?;
                        let ro =
                            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked;
                        mount(c"none", target, None, ro, None).map_err(at(SUB_REMOUNT))
                    }
                    Err(e) => Err((SUB_MOUNT, e)),
                }
            }
            Action::Mask { path, devnull } => match lstat_kind(path) {
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err((SUB_LSTAT, e)),
                Ok(SFlag::S_IFDIR) => {
                    let flags = MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC;
                    mount(c"jail-masked", path, Some(c"tmpfs"), flags, Some(c"size=0"))
                        .map_err(at(SUB_MOUNT))
                }
                Ok(_) => mount(devnull, path, None, MsFlags::MS_BIND, None).map_err(at(SUB_BIND)),
            },
            Action::ReadOnly { path, flags } => match lstat_kind(path) {
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err((SUB_LSTAT, e)),
                Ok(_) => {
                    mount(path, path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
                        .map_err(at(SUB_BIND))?;
                    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | *flags;
                    mount(c"none", path, None, ro, None).map_err(at(SUB_REMOUNT))
                }
            },
            Action::Hostname(name) => nix::unistd::sethostname(name).map_err(at(SUB_MAIN)),
            Action::LoopbackUp => crate::sys::netdev::loopback_up().map_err(at(SUB_MAIN)),
            Action::PivotRoot { path } => {
                nix::unistd::chdir(path.as_c_str()).map_err(at(SUB_MAIN))?;
                // pivot_root(".", "."): the old root ends up stacked on top of
                // the new one, and detaching it leaves only the new root.
                nix::unistd::pivot_root(c".", c".").map_err(at(SUB_MAIN))?;
                nix::mount::umount2(c".", MntFlags::MNT_DETACH).map_err(at(SUB_MAIN))?;
                nix::unistd::chdir(c"/").map_err(at(SUB_MAIN))
            }
        }
    }
}

impl Step {
    /// The error for a failure of this step reported by init.
    pub(crate) fn error(&self, sub: u32, errno: Errno) -> SandboxError {
        let about = self.about.clone();
        let mount = |fstype: &str, errno: Errno| SandboxError::Mount {
            fstype: fstype.to_string(),
            from: self.from.clone(),
            target: about.clone(),
            errno,
        };
        match &self.action {
            Action::WriteFile { .. } => SandboxError::IdMap { file: about, errno },
            Action::MakePrivate => SandboxError::MakePrivate(errno),
            Action::Mount { fstype, flags, .. } => {
                let name = match fstype {
                    Some(t) => t.to_string_lossy().into_owned(),
                    None if flags.contains(MsFlags::MS_BIND) => "bind".to_string(),
                    None => String::new(),
                };
                mount(&name, errno)
            }
            Action::Mkdir { .. } => SandboxError::Mkdir { path: about, errno },
            Action::EnsureDir { .. } if sub == SUB_NOT_DIR => {
                SandboxError::NotADirectory { path: about }
            }
            Action::EnsureDir { .. } => SandboxError::Mkdir { path: about, errno },
            Action::BindFile { .. } if sub == SUB_CREATE => {
                SandboxError::CreateFile { path: about, errno }
            }
            Action::BindFile { .. } => mount("bind", errno),
            Action::Symlink { .. } => SandboxError::Symlink { path: about, errno },
            Action::TmpIfMissing { .. } if sub == SUB_MOUNT => mount("tmpfs", errno),
            Action::TmpIfMissing { .. } => SandboxError::Mkdir { path: about, errno },
            Action::Sysfs { .. } if sub == SUB_MOUNT => mount("sysfs", errno),
            Action::Sysfs { .. } => mount("bind (read-only)", errno),
            Action::Mask { .. } if sub == SUB_MOUNT => mount("tmpfs (masking)", errno),
            Action::Mask { .. } if sub == SUB_BIND => mount("bind of /dev/null (masking)", errno),
            Action::Mask { .. } | Action::ReadOnly { .. } if sub == SUB_LSTAT => {
                SandboxError::Stat { path: about, errno }
            }
            Action::Mask { .. } => mount("mask", errno),
            Action::ReadOnly { .. } if sub == SUB_BIND => mount("bind", errno),
            Action::ReadOnly { .. } => mount("bind (read-only)", errno),
            Action::Hostname(name) => SandboxError::Hostname {
                name: name.clone(),
                errno,
            },
            Action::LoopbackUp => SandboxError::Loopback(errno),
            Action::PivotRoot { .. } => SandboxError::PivotRoot {
                root: self.from.clone(),
                errno,
            },
        }
    }
}
