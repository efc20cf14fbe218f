//! Decoding a syscall stop into accesses: the syscall's path arguments
//! (`path_arg`, with dirfds, AT_EMPTY_PATH and /proc links), the working
//! directory of a task, and what each path syscall means for the recorder.

use super::*;

impl Tracer {
    pub(super) fn on_syscall(&mut self, tid: Pid) {
        self.stops += 1;
        let Ok(SyscallInfo::Seccomp { arch, nr, args, .. }) = sp::syscall_info(tid) else {
            return;
        };
        if arch != seccomp::AUDIT_ARCH_X86_64 || nr & u64::from(seccomp::X32_SYSCALL_BIT) != 0 {
            let x32 = arch != seccomp::AUDIT_ARCH_I386;
            self.refuse(exec::abi_syscall_refusal(tid.as_raw(), x32, nr));
            return;
        }
        if let Some(c) = self.counts.as_mut() {
            *c.entry(nr).or_insert(0) += 1;
            if is_fd_stat(nr, &args) {
                return;
            }
        }
        let Some(sc) = syscalls::lookup(nr) else {
            return;
        };
        let Some(task) = self.tasks.get(&tid) else {
            return;
        };
        let pid = task.tgid.as_raw();
        match sc.op {
            Op::Open { dirfd, path, flags } => {
                let flags = match flags {
                    OpenFlags::Arg(i) => args[i as usize] as i32,
                    OpenFlags::Fixed(f) => f,
                    OpenFlags::OpenHow(i) => {
                        sp::read_u64(tid, args[i as usize]).unwrap_or(0) as i32
                    }
                };
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    false,
                ) else {
                    return;
                };
                let creat = flags & libc::O_CREAT != 0;
                let follow =
                    if flags & libc::O_NOFOLLOW != 0 || (creat && flags & libc::O_EXCL != 0) {
                        Follow::No
                    } else {
                        Follow::Yes
                    };
                let acc = flags & libc::O_ACCMODE;
                let access = if flags & libc::O_PATH != 0 {
                    Access::Stat
                } else if creat {
                    Access::WriteCreate
                } else if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                let seen = self.rec.access(pid, &named, follow, access);
                if acc == libc::O_RDWR && seen.file_type.is_some() {
                    self.rec.access(pid, &named, follow, Access::Read);
                }
            }
            Op::Exec {
                dirfd,
                path,
                argv,
                flags,
            } => {
                let f = flags.map_or(0, |i| args[i as usize]);
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    f & AT_EMPTY_PATH != 0,
                ) else {
                    return;
                };
                let follow = if f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                let seen = self.rec.access(pid, &named, follow, Access::Exec);
                let argv = sp::read_argv(tid, args[argv as usize], 4096)
                    .unwrap_or_default()
                    .into_iter()
                    .map(OsString::from_vec)
                    .collect();
                if let Some(task) = self.tasks.get_mut(&tid) {
                    task.exec = Some(PendingExec {
                        path: seen.path,
                        argv,
                    });
                }
            }
            Op::Stat {
                dirfd,
                path,
                flags,
                follow,
            } => {
                let f = flags.map_or(0, |i| args[i as usize]);
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    f & AT_EMPTY_PATH != 0,
                ) else {
                    return;
                };
                let follow = if !follow || f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                self.rec.access(pid, &named, follow, Access::Stat);
            }
            Op::Readlink { dirfd, path } => {
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    true,
                ) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::No, Access::Stat);
            }
            Op::Chdir { path } => {
                let Some(named) = self.path_arg(tid, None, args[path as usize], false) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::Yes, Access::Stat);
                self.cwd_changes(tid);
            }
            Op::Fchdir { fd } => {
                if let Some(p) = self.fd_path(tid, args[fd as usize] as i32) {
                    self.rec.access(pid, &p, Follow::No, Access::Stat);
                }
                self.cwd_changes(tid);
            }
            Op::Getdents { fd } => {
                if let Some(p) = self.fd_path(tid, args[fd as usize] as i32) {
                    self.rec.access(pid, &p, Follow::No, Access::List);
                }
            }
            Op::Create { dirfd, path } => {
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    false,
                ) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::No, Access::Create);
            }
            Op::Delete { dirfd, path } => {
                let Some(named) = self.path_arg(
                    tid,
                    dirfd.map(|d| args[d as usize]),
                    args[path as usize],
                    false,
                ) else {
                    return;
                };
                let seen = self.rec.access(pid, &named, Follow::No, Access::Delete);
                self.invalidate_later(tid, seen.path);
            }
            Op::Rename {
                olddir,
                old,
                newdir,
                new,
            } => {
                let old = self.path_arg(
                    tid,
                    olddir.map(|d| args[d as usize]),
                    args[old as usize],
                    false,
                );
                let new = self.path_arg(
                    tid,
                    newdir.map(|d| args[d as usize]),
                    args[new as usize],
                    false,
                );
                if let Some(old) = old {
                    let seen = self.rec.access(pid, &old, Follow::No, Access::Delete);
                    self.invalidate_later(tid, seen.path);
                }
                if let Some(new) = new {
                    let seen = self.rec.access(pid, &new, Follow::No, Access::Replace);
                    self.invalidate_later(tid, seen.path);
                }
            }
            Op::Link {
                olddir,
                old,
                newdir,
                new,
                flags,
            } => {
                let f = flags.map_or(0, |i| args[i as usize]);
                let old = self.path_arg(
                    tid,
                    olddir.map(|d| args[d as usize]),
                    args[old as usize],
                    f & AT_EMPTY_PATH != 0,
                );
                let new = self.path_arg(
                    tid,
                    newdir.map(|d| args[d as usize]),
                    args[new as usize],
                    false,
                );
                if let Some(old) = old {
                    let follow = if f & AT_SYMLINK_FOLLOW != 0 {
                        Follow::Yes
                    } else {
                        Follow::No
                    };
                    self.rec.access(pid, &old, follow, Access::Stat);
                }
                if let Some(new) = new {
                    self.rec.access(pid, &new, Follow::No, Access::Create);
                }
            }
            Op::Symlink { newdir, new } => {
                let Some(named) = self.path_arg(
                    tid,
                    newdir.map(|d| args[d as usize]),
                    args[new as usize],
                    false,
                ) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::No, Access::Create);
            }
            Op::Modify {
                dirfd,
                path,
                flags,
                follow,
            } => {
                let f = flags.map_or(0, |i| args[i as usize]);
                let ptr = args[path as usize];
                let named = if ptr == 0 {
                    // utimensat(fd, NULL, …): the fd itself.
                    dirfd.and_then(|d| self.fd_path(tid, args[d as usize] as i32))
                } else {
                    self.path_arg(
                        tid,
                        dirfd.map(|d| args[d as usize]),
                        ptr,
                        f & AT_EMPTY_PATH != 0,
                    )
                };
                let Some(named) = named else { return };
                let follow = if !follow || f & AT_SYMLINK_NOFOLLOW != 0 {
                    Follow::No
                } else {
                    Follow::Yes
                };
                self.rec.access(pid, &named, follow, Access::Write);
            }
            Op::Sockaddr { create } => {
                let Some(named) = self.unix_socket_path(tid, args[1], args[2]) else {
                    return;
                };
                if create {
                    self.rec.access(pid, &named, Follow::No, Access::Create);
                } else {
                    self.rec.access(pid, &named, Follow::Yes, Access::Stat);
                }
            }
            Op::IoUring => {
                if !self.warned_uring {
                    self.warned_uring = true;
                    self.warnings.push(format!(
                        "pid {pid} set up io_uring: files it opens through io_uring bypass ptrace and may be missing from the jail; trace with --backend fanotify to see them"
                    ));
                }
            }
            Op::Chroot { path } => {
                let Some(named) = self.path_arg(tid, None, args[path as usize], false) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::Yes, Access::Stat);
                if !self.warned_chroot {
                    self.warned_chroot = true;
                    self.warnings.push(format!(
                        "pid {pid} called chroot({}): paths it names afterwards are recorded as if relative to the original root",
                        named.display()
                    ));
                }
            }
            Op::Uselib { path } => {
                let Some(named) = self.path_arg(tid, None, args[path as usize], false) else {
                    return;
                };
                self.rec.access(pid, &named, Follow::Yes, Access::Read);
            }
            Op::SetIds { group, count } => {
                let Some(p) = self.procs.get_mut(&pid) else {
                    return;
                };
                let set = if group { &mut p.gids } else { &mut p.uids };
                // -1 (as a 32-bit id) leaves that id unchanged.
                set.extend(
                    args[..count as usize]
                        .iter()
                        .map(|&a| a as u32)
                        .filter(|&id| id != u32::MAX),
                );
            }
            Op::SetGroups => {
                let n = (args[0] as usize).min(1024);
                let mut buf = vec![0u8; n * 4];
                if n == 0 || sp::read_mem(tid, args[1], &mut buf).is_err() {
                    return;
                }
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.gids.extend(
                        buf.chunks_exact(4)
                            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
            }
        }
    }

    pub(super) fn cwd_changes(&mut self, tid: Pid) {
        if let Some(task) = self.tasks.get_mut(&tid) {
            if !task.pending.cwd_changed {
                task.pending.cwd_changed = true;
                let g = &mut self.cwds[task.fs];
                g.changing += 1;
                g.cwd = None;
            }
        }
    }

    pub(super) fn invalidate_later(&mut self, tid: Pid, path: PathBuf) {
        if let Some(task) = self.tasks.get_mut(&tid) {
            task.pending.invalidate.push(path);
        }
    }

    /// The absolute in-root path a (dirfd, path) argument pair names.
    /// `empty_is_fd`: an empty path means the dirfd itself (AT_EMPTY_PATH).
    pub(super) fn path_arg(
        &mut self,
        tid: Pid,
        dirfd: Option<u64>,
        ptr: u64,
        empty_is_fd: bool,
    ) -> Option<PathBuf> {
        let dirfd = dirfd.map_or(AT_FDCWD, |d| d as i32);
        if ptr == 0 {
            return None;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let read = sp::read_cstr(tid, ptr, &mut buf);
        let result = match read {
            Err(_) => None,
            Ok(()) if buf.is_empty() => {
                if empty_is_fd && dirfd != AT_FDCWD {
                    self.fd_path(tid, dirfd)
                } else if empty_is_fd {
                    self.cwd(tid)
                } else {
                    None // ENOENT without touching anything.
                }
            }
            Ok(()) if buf[0] == b'/' => Some(PathBuf::from(OsStr::from_bytes(&buf))),
            Ok(()) => {
                let base = if dirfd == AT_FDCWD {
                    self.cwd(tid)
                } else {
                    self.fd_path(tid, dirfd)
                };
                base.map(|b| b.join(OsStr::from_bytes(&buf)))
            }
        };
        self.buf = buf;
        result
    }

    /// The in-root working directory of a thread (cached per fs group).
    pub(super) fn cwd(&mut self, tid: Pid) -> Option<PathBuf> {
        let fs = self.tasks.get(&tid)?.fs;
        if let Some(c) = &self.cwds[fs].cwd {
            return Some(c.clone());
        }
        let inner = self.proc_path(std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?)?;
        if self.cwds[fs].changing == 0 {
            self.cwds[fs].cwd = Some(inner.clone());
        }
        Some(inner)
    }

    /// The in-root path an fd refers to, if it is a file in the root.
    pub(super) fn fd_path(&self, tid: Pid, fd: i32) -> Option<PathBuf> {
        if fd < 0 {
            return None;
        }
        let link = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
        if link.as_os_str().as_bytes().ends_with(b" (deleted)") {
            return None;
        }
        self.proc_path(link)
    }

    /// An in-root path from a /proc link (cwd, fd, exe). A process that
    /// shares jail's mount namespace shows host paths; one in the sandbox
    /// (pivot_root into an overlay jail cannot reach) shows paths relative
    /// to its own root, i.e. in-root already. Sockets, pipes and anonymous
    /// inodes (`socket:[…]`) are not paths.
    pub(super) fn proc_path(&self, link: PathBuf) -> Option<PathBuf> {
        if !link.is_absolute() {
            return None;
        }
        if self.sandboxed {
            Some(link)
        } else {
            self.rec.root().inner_path(&link)
        }
    }

    /// The path of a `sockaddr_un` (not abstract), relative paths against
    /// the cwd.
    pub(super) fn unix_socket_path(&mut self, tid: Pid, addr: u64, len: u64) -> Option<PathBuf> {
        let len = (len as usize).min(110);
        if addr == 0 || len <= 2 {
            return None;
        }
        let mut b = [0u8; 110];
        let n = sp::read_mem(tid, addr, &mut b[..len]).ok()?;
        if n <= 2 || u16::from_ne_bytes([b[0], b[1]]) != libc::AF_UNIX as u16 || b[2] == 0 {
            return None;
        }
        let raw = &b[2..n];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        let p = Path::new(OsStr::from_bytes(&raw[..end]));
        if p.is_absolute() {
            Some(p.to_path_buf())
        } else {
            self.cwd(tid).map(|c| c.join(p))
        }
    }
}

/// The argv of a process, from /proc (NUL-separated).
/// The ids in a `/proc/PID/status`: `Uid:` (real, effective, saved, fs),
/// and `Gid:` plus `Groups:`.
pub(super) fn ids_of_status(status: &str) -> (Vec<u32>, Vec<u32>) {
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut gids = ids("Gid:");
    gids.extend(ids("Groups:"));
    (ids("Uid:"), gids)
}

pub(super) fn proc_argv(pid: Pid) -> Vec<OsString> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}
