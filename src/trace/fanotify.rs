//! The fanotify backend: filesystem-wide open/exec notifications, kept only
//! for the command's processes.
//!
//! A notification group (`FAN_CLASS_NOTIF`, unlimited queue when permitted)
//! marks every filesystem the command can reach with `FAN_OPEN |
//! FAN_OPEN_EXEC | FAN_CLOSE_WRITE` (directories too). A reader thread drains
//! the queue while the command runs and keeps the events whose pid belongs to
//! the command's process tree; that set is kept by the ptrace backend in
//! process-only mode (fork/clone/exec events, no syscall stops), which adds a
//! new process before it runs. A queue overflow is an error: a lost event is
//! an incomplete jail.
//!
//! fanotify reports the file opened, never the name used: symlinks and
//! failed lookups are invisible. The tracer recovers the names of what was
//! executed (argv[0], interpreters); the file-set stage adds the symlinks of
//! the ELF closure. A file created by the run is told apart by its birth time
//! (statx btime) being later than the trace's start. docs/tracing.md lists
//! the blind spots.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

use crate::resolve::Root;

use super::TraceError;

/// One notification of the command's processes.
#[derive(Debug)]
pub(super) struct Event {
    pub pid: i32,
    /// Host path of the file.
    pub path: PathBuf,
    pub what: What,
    /// Born after the trace started: the run made it.
    pub created: bool,
    pub is_dir: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum What {
    Open,
    Exec,
    CloseWrite,
}

/// A running watcher: the group, its reader thread, and the pipe that tells
/// the thread to drain and stop.
pub(super) struct Watcher {
    stop: OwnedFd,
    thread: JoinHandle<Result<Vec<Event>, TraceError>>,
    /// Filesystems that could not be marked (their opens are not seen).
    pub unmarked: Vec<String>,
}

/// File systems that hold no files a jail could carry.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "fusectl",
    "configfs",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "efivarfs",
    "selinuxfs",
];

const MASK: MaskFlags = MaskFlags::FAN_OPEN
    .union(MaskFlags::FAN_OPEN_EXEC)
    .union(MaskFlags::FAN_CLOSE_WRITE)
    .union(MaskFlags::FAN_ONDIR);

/// Set up the group and its marks and start reading. `pids` is the live
/// set of the command's processes; `start` the trace's start time.
pub(super) fn start(
    root: &Root,
    pids: Arc<Mutex<HashSet<i32>>>,
    start: SystemTime,
) -> Result<Watcher, TraceError> {
    let setup = |what, source| TraceError::Setup { what, source };
    // A bounded queue is for tests that provoke an overflow
    // (docs/tracing.md); users get the unlimited one.
    let bounded = std::env::var_os("JAIL_FANOTIFY_BOUNDED_QUEUE").is_some();
    let mut flags = InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK;
    if !bounded {
        flags |= InitFlags::FAN_UNLIMITED_QUEUE;
    }
    let event_flags = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
    let group = Fanotify::init(flags, event_flags).map_err(|e| match e {
        Errno::EPERM => TraceError::Unsupported(
            "--backend fanotify needs CAP_SYS_ADMIN (run jail as root), or use --backend ptrace"
                .into(),
        ),
        other => setup("create a fanotify group", other),
    })?;

    let mut unmarked = Vec::new();
    let mut marked_devs = HashSet::new();
    for m in mounts(root) {
        if !marked_devs.insert(m.dev.clone()) {
            continue;
        }
        let fs = group.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            MASK,
            nix::fcntl::AT_FDCWD,
            Some(m.point.as_path()),
        );
        if fs.is_err()
            && group
                .mark(
                    MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT,
                    MASK,
                    nix::fcntl::AT_FDCWD,
                    Some(m.point.as_path()),
                )
                .is_err()
        {
            unmarked.push(format!("{} ({})", m.point.display(), m.fstype));
        }
    }

    let (stop_rd, stop_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| setup("create a pipe", e))?;
    let thread = std::thread::Builder::new()
        .name("jail-fanotify".into())
        .spawn(move || read_loop(&group, &stop_rd, &pids, start))
        .map_err(|e| {
            setup(
                "start the fanotify reader",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            )
        })?;
    Ok(Watcher {
        stop: stop_wr,
        thread,
        unmarked,
    })
}

impl Watcher {
    /// Call once every traced process has exited: their events are all
    /// queued by then. Drains the queue and returns the command's events.
    pub fn finish(self) -> Result<Vec<Event>, TraceError> {
        let _ = nix::unistd::write(&self.stop, b"x");
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Err(TraceError::Unsupported(
                "the fanotify reader thread panicked".into(),
            )),
        }
    }
}

fn read_loop(
    group: &Fanotify,
    stop: &OwnedFd,
    pids: &Mutex<HashSet<i32>>,
    start: SystemTime,
) -> Result<Vec<Event>, TraceError> {
    let mut out = Vec::new();
    let mut stopping = false;
    loop {
        let mut fds = [
            PollFd::new(group.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(TraceError::Setup {
                    what: "poll the fanotify group",
                    source: e,
                })
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            stopping = true;
        }
        // Drain everything queued now.
        loop {
            let events = match group.read_events() {
                Ok(ev) if ev.is_empty() => break,
                Ok(ev) => ev,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(TraceError::Setup {
                        what: "read fanotify events",
                        source: e,
                    })
                }
            };
            let members = pids.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for ev in events {
                if ev.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                    return Err(TraceError::Overflow);
                }
                if !members.contains(&ev.pid()) {
                    continue; // dropping `ev` closes its fd
                }
                let Some(fd) = ev.fd() else { continue };
                if let Some(e) = describe(fd, ev.pid(), ev.mask(), start) {
                    out.push(e);
                }
            }
        }
        if stopping {
            return Ok(out);
        }
    }
}

/// Turn one event fd into an [`Event`].
fn describe(fd: BorrowedFd<'_>, pid: i32, mask: MaskFlags, start: SystemTime) -> Option<Event> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    if path.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") {
        return None; // created and removed by the run
    }
    // statx on a duplicate of the event's fd (std reads btime with statx).
    let meta = File::from(fd.try_clone_to_owned().ok()?).metadata().ok()?;
    let born = meta.created().ok().or_else(|| {
        use std::os::unix::fs::MetadataExt;
        // No btime on this filesystem: the inode change time is the
        // closest (a file the run only modified looks created; see docs).
        let secs = u64::try_from(meta.ctime()).ok()?;
        Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, meta.ctime_nsec() as u32))
    });
    let created = born.is_some_and(|b| b > start);
    let what = if mask.contains(MaskFlags::FAN_OPEN_EXEC) {
        What::Exec
    } else if mask.contains(MaskFlags::FAN_CLOSE_WRITE) {
        What::CloseWrite
    } else {
        What::Open
    };
    Some(Event {
        pid,
        path,
        what,
        created,
        is_dir: meta.is_dir(),
    })
}

/// The trace's start, on the clock file timestamps come from.
///
/// The kernel stamps a new file from the coarse real-time clock (it
/// advances once a tick), or, with multigrain timestamps (ext4, xfs, btrfs,
/// tmpfs since Linux 6.13), from the fine-grained clock, which runs ahead
/// of the coarse one by up to a tick. Either stamp is at most the
/// fine-grained time of the moment the file is born. So take the
/// fine-grained time now, then wait until the coarse clock has passed it:
/// every file born before this returns has a birth time at or below the
/// value returned, every file born after it one above (coarse or fine), so
/// `born > start` tells the run's creations apart exactly. Costs at most
/// one tick. (Taking the coarse time as the start, as before, let a file
/// made just before the trace, stamped with the fine clock, look created
/// by the run.)
pub(super) fn tick_boundary() -> SystemTime {
    use nix::time::{clock_gettime, ClockId};
    let (Ok(start), Ok(_)) = (
        clock_gettime(ClockId::CLOCK_REALTIME),
        clock_gettime(ClockId::CLOCK_REALTIME_COARSE),
    ) else {
        return SystemTime::now();
    };
    while clock_gettime(ClockId::CLOCK_REALTIME_COARSE).is_ok_and(|t| t <= start) {
        std::thread::sleep(std::time::Duration::from_micros(250));
    }
    SystemTime::UNIX_EPOCH + std::time::Duration::new(start.tv_sec() as u64, start.tv_nsec() as u32)
}

/// A mount to mark.
struct Mount {
    point: PathBuf,
    dev: String,
    fstype: String,
}

/// Mounts of real filesystems at or below the root (all of them for `/`).
fn mounts(root: &Root) -> Vec<Mount> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let (left, right) = match line.split_once(" - ") {
            Some(p) => p,
            None => continue,
        };
        let f: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next().unwrap_or("");
        if f.len() < 5 || PSEUDO_FS.contains(&fstype) {
            continue;
        }
        let point = PathBuf::from(unescape(f[4]));
        let reachable =
            root.is_host() || point.starts_with(root.dir()) || root.dir().starts_with(&point);
        if reachable {
            out.push(Mount {
                point,
                dev: f[2].to_string(),
                fstype: fstype.to_string(),
            });
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A file's stamp as `describe` reads it: btime, else ctime.
    fn born(p: &Path) -> SystemTime {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        m.created().unwrap_or_else(|_| {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32)
        })
    }

    /// Files made just before the boundary are at or below it, files made
    /// after it above, on a filesystem with multigrain (fine) timestamps
    /// too: a coarse start put most files made just before above it.
    #[test]
    fn the_tick_boundary_splits_files_made_before_and_after() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..100 {
            // A stat marks the directory's inode: the change that creating
            // a file makes to it is stamped fine-grained, which moves the
            // kernel's timestamp floor ahead of the coarse clock, and the
            // new file is born with that finer stamp.
            let _ = std::fs::metadata(d.path());
            let before = d.path().join(format!("before{i}"));
            std::fs::write(&before, "x").unwrap();
            let start = tick_boundary();
            let after = d.path().join(format!("after{i}"));
            std::fs::write(&after, "x").unwrap();
            assert!(
                born(&before) <= start,
                "{} looks made by the run",
                before.display()
            );
            assert!(
                born(&after) > start,
                "{} looks older than the run",
                after.display()
            );
        }
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn host_mounts_exclude_pseudo_filesystems() {
        let m = mounts(&Root::host());
        assert!(
            m.iter().any(|m| m.point == Path::new("/")),
            "no / among {:?}",
            m.iter().map(|m| &m.point).collect::<Vec<_>>()
        );
        assert!(!m.iter().any(|m| m.fstype == "proc"));
    }
}
