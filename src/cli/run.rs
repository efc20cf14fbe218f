//! `jail run TREE-or-IMAGE [-- CMD [ARGS…]]`: run a command inside a jail
//! (chrooted in TREE, or in an image unpacked to a private temporary root,
//! in private namespaces), passing stdio and the exit status through
//! (`jail::pipeline::run`).

use std::ffi::OsString;
use std::path::PathBuf;

use jail::pipeline::run::{run as run_jail, RunRequest};

use jail::sandbox::Network;

use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The jail: a directory tree (as written by `jail trace --tree`), or an
    /// image (an OCI or docker archive, an OCI layout directory, `DIR:TAG`).
    #[arg(value_name = "TREE-or-IMAGE")]
    tree: PathBuf,
    /// Run as USER[:GROUP] (names or numbers, looked up in the tree's
    /// /etc/passwd and /etc/group). Default: root.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Network access: `none` (only a private loopback) or `host`.
    #[arg(long, value_enum, default_value = "none")]
    network: Network,
    /// Let the command write to the tree itself. By default it sees a
    /// throwaway writable view and the tree is never modified.
    #[arg(long)]
    writable: bool,
    /// Set an environment variable (K=V), or pass K from this environment
    /// (K alone). The command's environment is only PATH plus these.
    #[arg(long, short = 'e', value_name = "K=V")]
    env: Vec<OsString>,
    /// Working directory inside the tree [default: the image's WorkingDir, or /].
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Hostname inside the jail (default: this machine's).
    #[arg(long, value_name = "NAME")]
    hostname: Option<OsString>,
    /// The command and its arguments, after `--` [default, for an image:
    /// its Entrypoint + Cmd].
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(a: Args) -> CmdResult {
    let code = run_jail(RunRequest {
        jail: a.tree,
        user: a.user,
        network: a.network,
        writable: a.writable,
        env: a.env,
        workdir: a.workdir,
        hostname: a.hostname,
        command: a.command,
    })?;
    match code {
        0 => Ok(()),
        code => Err(Failure::silent(code)),
    }
}
