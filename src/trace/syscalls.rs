//! The path syscalls the tracer stops on (x86_64), and how to read each one:
//! which argument is a dirfd, which a path, where the flags are, and what the
//! call does to the file. The seccomp filter is built from this table, so a
//! syscall missing here is never seen.

use std::sync::OnceLock;

/// Where an `open`-like call keeps its flags.
#[derive(Clone, Copy, Debug)]
pub enum OpenFlags {
    /// In this argument.
    Arg(u8),
    /// Fixed by the syscall (`creat`).
    Fixed(i32),
    /// In the `struct open_how` this argument points to (`openat2`).
    OpenHow(u8),
}

/// What a syscall does to the path(s) it names. Argument positions are
/// 0-based; `dirfd: None` means the path is relative to the cwd.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Open {
        dirfd: Option<u8>,
        path: u8,
        flags: OpenFlags,
    },
    Exec {
        dirfd: Option<u8>,
        path: u8,
        argv: u8,
        flags: Option<u8>,
    },
    /// stat family, access, statfs, getxattr, inotify: only looks.
    /// `flags` holds AT_SYMLINK_NOFOLLOW / AT_EMPTY_PATH when present.
    Stat {
        dirfd: Option<u8>,
        path: u8,
        flags: Option<u8>,
        follow: bool,
    },
    Readlink {
        dirfd: Option<u8>,
        path: u8,
    },
    Chdir {
        path: u8,
    },
    Fchdir {
        fd: u8,
    },
    Getdents {
        fd: u8,
    },
    /// mkdir, mknod: creates the path.
    Create {
        dirfd: Option<u8>,
        path: u8,
    },
    /// unlink, rmdir: removes the path.
    Delete {
        dirfd: Option<u8>,
        path: u8,
    },
    Rename {
        olddir: Option<u8>,
        old: u8,
        newdir: Option<u8>,
        new: u8,
    },
    /// `flags` holds AT_SYMLINK_FOLLOW / AT_EMPTY_PATH (linkat).
    Link {
        olddir: Option<u8>,
        old: u8,
        newdir: Option<u8>,
        new: u8,
        flags: Option<u8>,
    },
    Symlink {
        newdir: Option<u8>,
        new: u8,
    },
    /// truncate, chmod, chown, utimes, setxattr: changes an existing file.
    /// A NULL path (utimensat) means the dirfd itself.
    Modify {
        dirfd: Option<u8>,
        path: u8,
        flags: Option<u8>,
        follow: bool,
    },
    /// bind (creates a socket file) or connect on a unix socket address.
    Sockaddr {
        create: bool,
    },
    /// io_uring_setup: file operations that will bypass ptrace.
    IoUring,
    /// chroot inside the traced run.
    Chroot {
        path: u8,
    },
    /// uselib: loads a library by path.
    Uselib {
        path: u8,
    },
    /// setuid family: the ids a process is about to run as (its first
    /// `count` arguments; -1 means "unchanged"). Evidence for the accounts
    /// the jail's passwd and group keep (docs/fidelity.md).
    SetIds {
        group: bool,
        count: u8,
    },
    /// setgroups(size, list): supplementary groups.
    SetGroups,
}

/// One traced syscall.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    pub nr: i64,
    pub name: &'static str,
    pub op: Op,
}

const fn sc(nr: i64, name: &'static str, op: Op) -> Syscall {
    Syscall { nr, name, op }
}

use Op::*;
use OpenFlags as F;

/// Every path syscall of x86_64 that the tracer decodes.
pub static TABLE: &[Syscall] = &[
    sc(
        libc::SYS_open,
        "open",
        Open {
            dirfd: None,
            path: 0,
            flags: F::Arg(1),
        },
    ),
    sc(
        libc::SYS_openat,
        "openat",
        Open {
            dirfd: Some(0),
            path: 1,
            flags: F::Arg(2),
        },
    ),
    sc(
        libc::SYS_openat2,
        "openat2",
        Open {
            dirfd: Some(0),
            path: 1,
            flags: F::OpenHow(2),
        },
    ),
    sc(
        libc::SYS_creat,
        "creat",
        Open {
            dirfd: None,
            path: 0,
            flags: F::Fixed(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC),
        },
    ),
    sc(
        libc::SYS_execve,
        "execve",
        Exec {
            dirfd: None,
            path: 0,
            argv: 1,
            flags: None,
        },
    ),
    sc(
        libc::SYS_execveat,
        "execveat",
        Exec {
            dirfd: Some(0),
            path: 1,
            argv: 2,
            flags: Some(4),
        },
    ),
    sc(
        libc::SYS_stat,
        "stat",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_lstat,
        "lstat",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        libc::SYS_newfstatat,
        "newfstatat",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: Some(3),
            follow: true,
        },
    ),
    sc(
        libc::SYS_statx,
        "statx",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: Some(2),
            follow: true,
        },
    ),
    sc(
        libc::SYS_access,
        "access",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_faccessat,
        "faccessat",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_faccessat2,
        "faccessat2",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: Some(3),
            follow: true,
        },
    ),
    sc(
        libc::SYS_statfs,
        "statfs",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_getxattr,
        "getxattr",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_lgetxattr,
        "lgetxattr",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        libc::SYS_listxattr,
        "listxattr",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_llistxattr,
        "llistxattr",
        Stat {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        SYS_GETXATTRAT,
        "getxattrat",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: Some(2),
            follow: true,
        },
    ),
    sc(
        SYS_LISTXATTRAT,
        "listxattrat",
        Stat {
            dirfd: Some(0),
            path: 1,
            flags: Some(2),
            follow: true,
        },
    ),
    sc(
        libc::SYS_inotify_add_watch,
        "inotify_add_watch",
        Stat {
            dirfd: None,
            path: 1,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_readlink,
        "readlink",
        Readlink {
            dirfd: None,
            path: 0,
        },
    ),
    sc(
        libc::SYS_readlinkat,
        "readlinkat",
        Readlink {
            dirfd: Some(0),
            path: 1,
        },
    ),
    sc(libc::SYS_chdir, "chdir", Chdir { path: 0 }),
    sc(libc::SYS_fchdir, "fchdir", Fchdir { fd: 0 }),
    sc(libc::SYS_getdents, "getdents", Getdents { fd: 0 }),
    sc(libc::SYS_getdents64, "getdents64", Getdents { fd: 0 }),
    sc(
        libc::SYS_mkdir,
        "mkdir",
        Create {
            dirfd: None,
            path: 0,
        },
    ),
    sc(
        libc::SYS_mkdirat,
        "mkdirat",
        Create {
            dirfd: Some(0),
            path: 1,
        },
    ),
    sc(
        libc::SYS_mknod,
        "mknod",
        Create {
            dirfd: None,
            path: 0,
        },
    ),
    sc(
        libc::SYS_mknodat,
        "mknodat",
        Create {
            dirfd: Some(0),
            path: 1,
        },
    ),
    sc(
        libc::SYS_unlink,
        "unlink",
        Delete {
            dirfd: None,
            path: 0,
        },
    ),
    sc(
        libc::SYS_unlinkat,
        "unlinkat",
        Delete {
            dirfd: Some(0),
            path: 1,
        },
    ),
    sc(
        libc::SYS_rmdir,
        "rmdir",
        Delete {
            dirfd: None,
            path: 0,
        },
    ),
    sc(
        libc::SYS_rename,
        "rename",
        Rename {
            olddir: None,
            old: 0,
            newdir: None,
            new: 1,
        },
    ),
    sc(
        libc::SYS_renameat,
        "renameat",
        Rename {
            olddir: Some(0),
            old: 1,
            newdir: Some(2),
            new: 3,
        },
    ),
    sc(
        libc::SYS_renameat2,
        "renameat2",
        Rename {
            olddir: Some(0),
            old: 1,
            newdir: Some(2),
            new: 3,
        },
    ),
    sc(
        libc::SYS_link,
        "link",
        Link {
            olddir: None,
            old: 0,
            newdir: None,
            new: 1,
            flags: None,
        },
    ),
    sc(
        libc::SYS_linkat,
        "linkat",
        Link {
            olddir: Some(0),
            old: 1,
            newdir: Some(2),
            new: 3,
            flags: Some(4),
        },
    ),
    sc(
        libc::SYS_symlink,
        "symlink",
        Symlink {
            newdir: None,
            new: 1,
        },
    ),
    sc(
        libc::SYS_symlinkat,
        "symlinkat",
        Symlink {
            newdir: Some(1),
            new: 2,
        },
    ),
    sc(
        libc::SYS_truncate,
        "truncate",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_chmod,
        "chmod",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_fchmodat,
        "fchmodat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: None,
            follow: true,
        },
    ),
    sc(
        SYS_FCHMODAT2,
        "fchmodat2",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: Some(3),
            follow: true,
        },
    ),
    sc(
        libc::SYS_chown,
        "chown",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_lchown,
        "lchown",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        libc::SYS_fchownat,
        "fchownat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: Some(4),
            follow: true,
        },
    ),
    sc(
        libc::SYS_utime,
        "utime",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_utimes,
        "utimes",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_futimesat,
        "futimesat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_utimensat,
        "utimensat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: Some(3),
            follow: true,
        },
    ),
    sc(
        libc::SYS_setxattr,
        "setxattr",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_lsetxattr,
        "lsetxattr",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        libc::SYS_removexattr,
        "removexattr",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: true,
        },
    ),
    sc(
        libc::SYS_lremovexattr,
        "lremovexattr",
        Modify {
            dirfd: None,
            path: 0,
            flags: None,
            follow: false,
        },
    ),
    sc(
        SYS_SETXATTRAT,
        "setxattrat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: Some(2),
            follow: true,
        },
    ),
    sc(
        SYS_REMOVEXATTRAT,
        "removexattrat",
        Modify {
            dirfd: Some(0),
            path: 1,
            flags: Some(2),
            follow: true,
        },
    ),
    sc(libc::SYS_bind, "bind", Sockaddr { create: true }),
    sc(libc::SYS_connect, "connect", Sockaddr { create: false }),
    sc(libc::SYS_io_uring_setup, "io_uring_setup", IoUring),
    sc(libc::SYS_chroot, "chroot", Chroot { path: 0 }),
    sc(libc::SYS_uselib, "uselib", Uselib { path: 0 }),
    sc(
        libc::SYS_setuid,
        "setuid",
        SetIds {
            group: false,
            count: 1,
        },
    ),
    sc(
        libc::SYS_setreuid,
        "setreuid",
        SetIds {
            group: false,
            count: 2,
        },
    ),
    sc(
        libc::SYS_setresuid,
        "setresuid",
        SetIds {
            group: false,
            count: 3,
        },
    ),
    sc(
        libc::SYS_setfsuid,
        "setfsuid",
        SetIds {
            group: false,
            count: 1,
        },
    ),
    sc(
        libc::SYS_setgid,
        "setgid",
        SetIds {
            group: true,
            count: 1,
        },
    ),
    sc(
        libc::SYS_setregid,
        "setregid",
        SetIds {
            group: true,
            count: 2,
        },
    ),
    sc(
        libc::SYS_setresgid,
        "setresgid",
        SetIds {
            group: true,
            count: 3,
        },
    ),
    sc(
        libc::SYS_setfsgid,
        "setfsgid",
        SetIds {
            group: true,
            count: 1,
        },
    ),
    sc(libc::SYS_setgroups, "setgroups", SetGroups),
];

// Newer than the libc crate's table (Linux 6.6 and 6.13).
const SYS_FCHMODAT2: i64 = 452;
const SYS_SETXATTRAT: i64 = 463;
const SYS_GETXATTRAT: i64 = 464;
const SYS_LISTXATTRAT: i64 = 465;
const SYS_REMOVEXATTRAT: i64 = 466;

/// Size of the direct lookup table (x86_64 syscall numbers stay below it).
const MAX_NR: usize = 512;

/// Look up a syscall number: O(1), no hashing, on the tracer's hot path.
pub fn lookup(nr: u64) -> Option<&'static Syscall> {
    static INDEX: OnceLock<Vec<u8>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut v = vec![u8::MAX; MAX_NR];
        for (i, s) in TABLE.iter().enumerate() {
            v[s.nr as usize] = i as u8;
        }
        v
    });
    let i = *index.get(usize::try_from(nr).ok()?)?;
    (i != u8::MAX).then(|| &TABLE[i as usize])
}

/// The name of any x86_64 syscall number, for syscall statistics.
pub fn name(nr: u64) -> Option<&'static str> {
    syscalls::Sysno::new(nr as usize).map(|s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert!(TABLE.len() < u8::MAX as usize);
        for s in TABLE {
            assert!((s.nr as usize) < MAX_NR, "{}", s.name);
            assert_eq!(lookup(s.nr as u64).map(|x| x.name), Some(s.name));
            // Our names agree with the kernel's table.
            assert_eq!(name(s.nr as u64), Some(s.name), "nr {}", s.nr);
        }
        assert!(lookup(libc::SYS_read as u64).is_none());
        assert!(lookup(u64::MAX).is_none());
    }
}
