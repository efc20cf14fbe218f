//! A Docker/OCI seccomp profile from a traced run (`jail report --seccomp`):
//! every syscall the trace counted (`jail trace --syscalls`), plus the ones
//! the container runtime makes between loading the filter and starting the
//! program. Everything else fails with `EPERM`.
//!
//! Only `SCMP_ARCH_X86_64` is listed. Docker's default profile adds
//! `SCMP_ARCH_X86` and `SCMP_ARCH_X32` so that the same names also allow
//! the 32-bit and x32 ABIs; the tracer refuses 32-bit and x32 syscalls, so a
//! trace never shows one is needed, and the kernel then kills a process
//! that makes one (libseccomp's default for an architecture not in the
//! filter) instead of letting `int 0x80` reach a differently-numbered table.
//!
//! The runtime's list ([`RUNTIME`]) was found by running jail images under
//! runc 1.1.5 (Debian 12) with `SCMP_ACT_LOG` as the default action and
//! reading the kernel's audit lines, then checked one syscall at a time
//! (docs/report.md has the method and the outcome of each).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::Manifest;

/// Why a profile cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{}: the manifest has no access log; re-trace with `jail trace --syscalls --manifest FILE -- CMD`", path.display())]
    NoTrace { path: PathBuf },
    #[error("{}: the trace has no syscall counts; re-trace with `jail trace --syscalls --manifest FILE -- CMD` (every syscall is counted then)", path.display())]
    NoSyscalls { path: PathBuf },
}

/// Syscalls the container runtime (runc) makes after it loads the filter
/// and before the program's own `execve`, and why.
pub const RUNTIME: &[(&str, &str)] = &[
    // Required: without each one runc init fails and the container does not start.
    (
        "capget",
        "runc reads its capability sets before dropping them",
    ),
    (
        "capset",
        "runc sets the process's capabilities (\"unable to apply caps\")",
    ),
    ("chdir", "runc enters the image's working directory"),
    ("close", "runc closes its sync pipe and fds before exec"),
    ("execve", "runc starts the program"),
    (
        "faccessat2",
        "runc looks the program up on PATH (exec.LookPath)",
    ),
    (
        "fstat",
        "runc checks /dev/stdin and the other stdio fds (\"unable to setup user\")",
    ),
    (
        "fstatfs",
        "runc checks /proc/self/fd is on procfs before closing fds",
    ),
    ("futex", "Go runtime of runc init: thread synchronisation"),
    (
        "getcwd",
        "runc verifies the working directory is inside the container",
    ),
    (
        "getdents64",
        "runc lists /proc/self/fd to mark fds close-on-exec",
    ),
    ("getppid", "runc checks its parent did not die"),
    (
        "newfstatat",
        "runc stats /dev/null and the program (\"unable to setup user\")",
    ),
    (
        "openat",
        "runc opens /proc/self/fd, /proc/self/status and the exec fifo",
    ),
    (
        "prctl",
        "runc drops the bounding set, sets keep-caps and the parent-death signal",
    ),
    ("read", "runc reads /proc/self/status and its sync pipe"),
    ("setgid", "runc switches to the container's group"),
    ("setgroups", "runc sets the supplementary groups"),
    ("setuid", "runc switches to the container's user"),
    ("write", "runc writes to the exec fifo to say it is ready"),
    // Seen, and failing them does not stop runc, but the failure costs
    // something: fds left open, or files not on the poller.
    (
        "epoll_ctl",
        "Go runtime: registers opened files with its poller",
    ),
    (
        "fcntl",
        "runc marks inherited fds close-on-exec (denied: host fds leak into the program)",
    ),
    ("getpid", "runc puts its pid in the state passed to hooks"),
    // The Go runtime of runc init, at any moment: signal delivery
    // (rt_sigreturn was seen) and preemption, scheduling, memory.
    (
        "rt_sigreturn",
        "Go runtime: returning from a signal handler (preemption signals)",
    ),
    (
        "rt_sigprocmask",
        "Go runtime: signal masks around thread switches",
    ),
    ("sigaltstack", "Go runtime: the signal stack of each thread"),
    (
        "tgkill",
        "Go runtime: preempting a goroutine (SIGURG to a thread)",
    ),
    ("gettid", "Go runtime: names the thread to signal"),
    ("sched_yield", "Go runtime: spinning locks"),
    ("nanosleep", "Go runtime: sysmon and lock back-off"),
    (
        "epoll_pwait",
        "Go runtime: the network poller in the scheduler",
    ),
    ("mmap", "Go runtime: heap growth"),
    ("munmap", "Go runtime: returning memory"),
    ("madvise", "Go runtime: returning memory"),
    ("exit", "Go runtime: a thread exits"),
    (
        "exit_group",
        "runc init exits when it fails (to report the error)",
    ),
];

/// The profile, with fields in sorted order so the JSON is canonical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub architectures: Vec<String>,
    #[serde(rename = "defaultAction")]
    pub default_action: String,
    /// The errno of a denied call: 1 = EPERM.
    #[serde(rename = "defaultErrnoRet")]
    pub default_errno_ret: u32,
    pub syscalls: Vec<Rule>,
}

/// One `syscalls` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub action: String,
    /// Where the names come from (Docker's and podman's parsers accept and
    /// ignore it).
    pub comment: String,
    pub names: Vec<String>,
}

/// A profile and what could not go into it.
#[derive(Clone, Debug)]
pub struct Built {
    pub profile: Profile,
    /// Syscalls the trace saw but could not name (`syscall_NNN`, newer than
    /// the syscall table): the profile denies them.
    pub unnamed: Vec<String>,
    /// Counts: traced names, runtime names not traced.
    pub traced: usize,
    pub runtime_only: usize,
}

/// The profile allowing `counts`' syscalls and [`RUNTIME`].
pub fn profile(counts: &BTreeMap<String, u64>) -> Built {
    let (named, unnamed): (BTreeSet<&str>, BTreeSet<&str>) = counts
        .keys()
        .map(String::as_str)
        .partition(|n| !n.starts_with("syscall_"));
    let runtime: BTreeSet<&str> = RUNTIME
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !named.contains(n))
        .collect();
    let mut syscalls = vec![Rule {
        action: "SCMP_ACT_ALLOW".into(),
        comment: "seen in the trace (jail trace --syscalls)".into(),
        names: named.iter().map(|s| s.to_string()).collect(),
    }];
    if !runtime.is_empty() {
        syscalls.push(Rule {
            action: "SCMP_ACT_ALLOW".into(),
            comment: "needed by the container runtime (runc) to start the program (docs/report.md)"
                .into(),
            names: runtime.iter().map(|s| s.to_string()).collect(),
        });
    }
    Built {
        traced: named.len(),
        runtime_only: runtime.len(),
        unnamed: unnamed.iter().map(|s| s.to_string()).collect(),
        profile: Profile {
            architectures: vec!["SCMP_ARCH_X86_64".into()],
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: 1,
            syscalls,
        },
    }
}

/// The profile of a manifest's trace, or why there is none.
pub fn from_manifest(manifest: &Manifest, path: &std::path::Path) -> Result<Built, SeccompError> {
    let trace = manifest
        .trace
        .as_ref()
        .ok_or_else(|| SeccompError::NoTrace {
            path: path.to_path_buf(),
        })?;
    let counts = trace
        .syscalls
        .as_ref()
        .ok_or_else(|| SeccompError::NoSyscalls {
            path: path.to_path_buf(),
        })?;
    Ok(profile(counts))
}

impl Profile {
    /// Pretty JSON with a final newline; fields and names sorted.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs of strings and vectors always serialize.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Every allowed name.
    pub fn allowed(&self) -> BTreeSet<&str> {
        self.syscalls
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traced_plus_runtime_sorted_and_disjoint() {
        let counts: BTreeMap<String, u64> =
            [("write", 2), ("mmap", 9), ("brk", 3), ("syscall_999", 1)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
        let b = profile(&counts);
        assert_eq!(b.unnamed, ["syscall_999"]);
        assert_eq!(b.profile.syscalls[0].names, ["brk", "mmap", "write"]);
        let rt = &b.profile.syscalls[1].names;
        assert!(rt.windows(2).all(|w| w[0] < w[1]));
        assert!(rt.contains(&"capset".to_string()));
        assert!(!rt.contains(&"write".to_string()) && !rt.contains(&"mmap".to_string()));
        assert_eq!(b.traced + b.runtime_only, b.profile.allowed().len());
        let json: serde_json::Value = serde_json::from_slice(&b.profile.to_json()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        let text = String::from_utf8(b.profile.to_json()).unwrap();
        let keys: Vec<usize> = [
            "architectures",
            "defaultAction",
            "defaultErrnoRet",
            "syscalls",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn runtime_names_are_known_and_unique() {
        let mut seen = BTreeSet::new();
        for (name, why) in RUNTIME {
            assert!(seen.insert(*name), "{name} twice");
            assert!(!why.is_empty());
            assert!(
                name.parse::<syscalls::Sysno>().is_ok(),
                "{name} is not an x86_64 syscall"
            );
        }
    }
}
