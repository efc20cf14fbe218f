//! `jail run TREE -- CMD [ARGS…]`: run a command inside a jail (chrooted in
//! TREE, in private namespaces), passing stdio and the exit status through.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::{CmdResult, Failure};
use jail::sandbox::{self, Network, SandboxError, Spec, User};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The jail: a directory tree (as written by `jail trace --tree`).
    #[arg(value_name = "TREE")]
    tree: PathBuf,

    /// Run as USER[:GROUP] (names or numbers, looked up in the tree's
    /// /etc/passwd and /etc/group). Default: root.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    user: Option<String>,

    /// Network access: `none` (only a private loopback) or `host`.
    #[arg(long, value_enum, default_value = "none")]
    network: NetworkArg,

    /// Let the command write to the tree itself. By default it sees a
    /// throwaway writable view and the tree is never modified.
    #[arg(long)]
    writable: bool,

    /// Set an environment variable (K=V), or pass K from this environment
    /// (K alone). The command's environment is only PATH plus these.
    #[arg(long, short = 'e', value_name = "K=V")]
    env: Vec<OsString>,

    /// Working directory inside the tree.
    #[arg(long, short = 'w', value_name = "DIR", default_value = "/")]
    workdir: PathBuf,

    /// Hostname inside the jail (default: this machine's).
    #[arg(long, value_name = "NAME")]
    hostname: Option<OsString>,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum NetworkArg {
    None,
    Host,
}

pub fn run(args: Args) -> CmdResult {
    let root = root_dir(&args.tree)?;
    let mut spec = Spec::new(root.clone(), args.command);
    spec.cwd = args.workdir;
    spec.writable = args.writable;
    spec.hostname = args.hostname;
    spec.network = match args.network {
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    };
    for kv in &args.env {
        let (k, v) = split_env(kv)?;
        spec.env.retain(|(name, _)| *name != k);
        spec.env.push((k, v));
    }
    if let Some(u) = &args.user {
        spec.user = Some(User::lookup(&root, u).map_err(failure)?);
    }
    let status = sandbox::run(&spec).map_err(failure)?;
    match sandbox::exit_code(&status) {
        0 => Ok(()),
        code => Err(Failure::silent(code)),
    }
}

/// The directory to run in. Only trees for now; an image (a tar or an OCI
/// layout) will be unpacked here into a temporary tree by the image reader
/// (issue 6) and the same sandbox run on it.
fn root_dir(arg: &Path) -> Result<PathBuf, Failure> {
    match std::fs::metadata(arg) {
        Ok(m) if m.is_dir() => Ok(arg.to_path_buf()),
        Ok(_) => Err(Failure::usage(anyhow!(
            "{}: not a directory; `jail run` takes a tree directory (running an image file needs the image reader, not built yet)",
            arg.display()
        ))),
        Err(e) => Err(Failure::usage(anyhow!("{}: {e}; give the directory of a jail tree", arg.display()))),
    }
}

fn split_env(kv: &OsString) -> Result<(OsString, OsString), Failure> {
    let b = kv.as_bytes();
    let (k, v) = match b.iter().position(|&c| c == b'=') {
        Some(i) => (
            OsString::from(std::ffi::OsStr::from_bytes(&b[..i])),
            OsString::from(std::ffi::OsStr::from_bytes(&b[i + 1..])),
        ),
        None => {
            let k = kv.clone();
            let v = std::env::var_os(&k).ok_or_else(|| {
                Failure::usage(anyhow!(
                    "--env {}: not set here; use --env K=V",
                    kv.to_string_lossy()
                ))
            })?;
            (k, v)
        }
    };
    if k.is_empty() {
        return Err(Failure::usage(anyhow!(
            "--env {}: empty variable name",
            kv.to_string_lossy()
        )));
    }
    Ok((k, v))
}

fn failure(e: SandboxError) -> Failure {
    let code = e.exit_code();
    Failure {
        code,
        error: e.into(),
    }
}
