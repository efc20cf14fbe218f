//! What can go wrong while building or running a sandbox: one variant a step,
//! each naming the path, pid or id it is about and saying what to do.

use std::ffi::OsString;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::Pid;

/// Errors of [`spawn`](super::spawn), [`run`](super::run) and
/// [`Child`](super::Child). Failures inside the sandbox's init or the payload
/// before `execve` are sent back to the caller and reported as the variant of
/// the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("root {root}: {reason}")]
    BadRoot { root: PathBuf, reason: String },

    #[error("{0}")]
    BadSpec(String),

    #[error("user {user:?} in {root}: {reason}")]
    BadUser {
        user: String,
        root: PathBuf,
        reason: String,
    },

    #[error("cannot read {path}")]
    ReadRootFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot create the sandbox's scratch directory in {dir} (set TMPDIR to a writable directory)")]
    Scratch {
        dir: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot create a pipe to the sandbox: {0}")]
    Pipe(Errno),

    #[error("cannot block signals for forwarding: {0}")]
    Signals(Errno),

    #[error("cannot create the sandbox process (clone with new namespaces): {errno}{}", clone_hint(*.errno, *.userns))]
    Clone { errno: Errno, userns: bool },

    #[error("cannot write {file}: {errno}{}", userns_hint())]
    IdMap { file: PathBuf, errno: Errno },

    #[error("cannot make the mounts of the sandbox private: {0}")]
    MakePrivate(Errno),

    #[error("cannot mount {fstype} {from} on {target}: {errno}{}", mount_hint(*.errno))]
    Mount {
        fstype: String,
        from: PathBuf,
        target: PathBuf,
        errno: Errno,
    },

    #[error("cannot create directory {path} in the sandbox: {errno}")]
    Mkdir { path: PathBuf, errno: Errno },

    #[error("cannot inspect {path} in the sandbox: {errno}")]
    Stat { path: PathBuf, errno: Errno },

    #[error("{path} in the root is not a directory (a symlink or a file), but the sandbox mounts a file system there: replace it with a directory")]
    NotADirectory { path: PathBuf },

    #[error("cannot create {path} in the sandbox: {errno}")]
    CreateFile { path: PathBuf, errno: Errno },

    #[error("cannot create symlink {path} in the sandbox: {errno}")]
    Symlink { path: PathBuf, errno: Errno },

    #[error("cannot set the hostname to {name:?}: {errno}")]
    Hostname { name: OsString, errno: Errno },

    #[error("cannot bring up the loopback interface of the sandbox's network namespace: {0}")]
    Loopback(Errno),

    #[error("cannot pivot_root into {root}: {errno} (the root must be on a file system that supports pivot_root; an initramfs root does not)")]
    PivotRoot { root: PathBuf, errno: Errno },

    #[error("the {hook} hook failed in the sandbox: {errno}")]
    Hook { hook: &'static str, errno: Errno },

    #[error("the sandbox's init could not start the command: {step}: {errno}")]
    Init { step: &'static str, errno: Errno },

    #[error("working directory {path} in {root}: {errno} (pass an existing directory of the root, e.g. --workdir /)")]
    Workdir {
        path: PathBuf,
        root: PathBuf,
        errno: Errno,
    },

    #[error("cannot switch to {what} {id} in the sandbox: {errno}")]
    SetId {
        what: &'static str,
        id: u32,
        errno: Errno,
    },

    #[error("cannot confine the command in {root}: {step}: {errno} (the kernel must support capabilities, no_new_privs and seccomp filters)")]
    Boundary {
        step: &'static str,
        root: PathBuf,
        errno: Errno,
    },

    #[error("{command:?}: command not found in {root}{}; check the name, or that the tree contains it", searched(.command, .path))]
    CommandNotFound {
        command: OsString,
        root: PathBuf,
        path: OsString,
    },

    #[error("{command:?} in {root}: {file:?} exists but its interpreter does not (the ELF loader named by PT_INTERP, or the `#!` program): add it to the tree")]
    InterpreterMissing {
        command: OsString,
        root: PathBuf,
        file: OsString,
    },

    #[error("{command:?} in {root}: cannot execute {file:?}: {errno}")]
    Exec {
        command: OsString,
        root: PathBuf,
        file: OsString,
        errno: Errno,
    },

    #[error("waiting for the sandbox (pid {pid}): {errno}")]
    Wait { pid: Pid, errno: Errno },

    #[error("the sandbox's init (pid {pid}) {how} before the command ran")]
    InitDied { pid: Pid, how: String },
}

impl SandboxError {
    /// The exit code a command-line front end should use: 127 when the
    /// command does not exist in the root, 126 when it cannot be executed,
    /// 2 for bad input (root, spec, user), 1 for a failed sandbox setup.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::CommandNotFound { .. } | SandboxError::InterpreterMissing { .. } => 127,
            SandboxError::Exec { .. } => 126,
            SandboxError::BadRoot { .. }
            | SandboxError::BadSpec(_)
            | SandboxError::BadUser { .. } => 2,
            SandboxError::Workdir { .. } => 2,
            _ => 1,
        }
    }
}

fn searched(command: &OsString, path: &OsString) -> String {
    use std::os::unix::ffi::OsStrExt;
    if command.as_bytes().contains(&b'/') {
        String::new()
    } else {
        format!(" (searched PATH={path:?})")
    }
}

fn clone_hint(errno: Errno, userns: bool) -> String {
    match (errno, userns) {
        (Errno::EPERM | Errno::ENOSPC | Errno::EINVAL, true) => format!("; as a non-root user jail needs user namespaces: {}", userns_status()),
        (Errno::EPERM, false) => "; creating namespaces needs CAP_SYS_ADMIN (run as root, or as a normal user so that jail uses a user namespace)".to_string(),
        _ => String::new(),
    }
}

fn userns_hint() -> String {
    format!("; {}", userns_status())
}

/// What this machine says about unprivileged user namespaces.
fn userns_status() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut said = Vec::new();
    if let Some(v) = read("/proc/sys/kernel/unprivileged_userns_clone") {
        if v == "0" {
            said.push("kernel.unprivileged_userns_clone is 0 (enable it with `sysctl -w kernel.unprivileged_userns_clone=1`)".to_string());
        }
    }
    if let Some(v) = read("/proc/sys/user/max_user_namespaces") {
        if v == "0" {
            said.push("user.max_user_namespaces is 0 (raise it with `sysctl -w user.max_user_namespaces=10000`)".to_string());
        }
    }
    if let Some(v) = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        if v == "1" {
            said.push("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)".to_string());
        }
    }
    if said.is_empty() {
        "user namespaces look enabled; a seccomp filter or a container may forbid them (run as root instead)".to_string()
    } else {
        said.join("; ")
    }
}

fn mount_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM => " (mounting needs root, or a user namespace the kernel lets you mount in)",
        Errno::ENODEV => {
            " (the kernel lacks this file system; overlayfs: `modprobe overlay`, or use --writable)"
        }
        _ => "",
    }
}
