//! `jail run TREE-or-IMAGE [-- CMD [ARGS…]]`: run a command inside a jail
//! (chrooted in TREE, or in an image unpacked to a private temporary root,
//! in private namespaces), passing stdio and the exit status through.
//!
//! An image runs as a container runtime runs it: its Env, User and
//! WorkingDir, and without CMD its Entrypoint + Cmd; flags override.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::{CmdResult, Failure};
use jail::image::read::{self, ImageSource, Unpacked};
use jail::sandbox::{self, Network, SandboxError, Spec, User};

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
    network: NetworkArg,

    /// Let the command write to the tree itself. By default it sees a
    /// throwaway writable view and the tree is never modified.
    #[arg(long)]
    writable: bool,

    /// Set an environment variable (K=V), or pass K from this environment
    /// (K alone). The command's environment is only PATH plus these.
    #[arg(long, short = 'e', value_name = "K=V")]
    env: Vec<OsString>,

    /// Working directory inside the tree [default: the image's WorkingDir,
    /// or /].
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

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum NetworkArg {
    None,
    Host,
}

pub fn run(args: Args) -> CmdResult {
    let (root, image) = open(&args.tree)?;
    let config = image.as_ref().and_then(|i| i.config.config().clone());
    let mut command = args.command.clone();
    if command.is_empty() {
        command = config
            .iter()
            .flat_map(|c| {
                c.entrypoint()
                    .iter()
                    .flatten()
                    .chain(c.cmd().iter().flatten())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .map(OsString::from)
            .collect();
    }
    if command.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no command: give CMD after `--`{}",
            if image.is_some() {
                " (the image has no Entrypoint or Cmd)"
            } else {
                ""
            }
        )));
    }
    let mut spec = Spec::new(root.clone(), command);
    if let Some(env) = config.as_ref().and_then(|c| c.env().clone()) {
        spec.env = env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if !spec.env.iter().any(|(k, _)| k == "PATH") {
            spec.env.push(("PATH".into(), sandbox::DEFAULT_PATH.into()));
        }
    }
    spec.cwd = args
        .workdir
        .clone()
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/"));
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
    let user = args.user.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty())
    });
    if let Some(u) = &user {
        spec.user = Some(User::lookup(&root, u).map_err(failure)?);
    }
    if image.is_some() && !spec.env.iter().any(|(k, _)| k == "HOME") {
        let uid = spec.user.as_ref().map_or(0, |u| u.uid);
        spec.env
            .push(("HOME".into(), sandbox::home_of(&root, uid).into_os_string()));
    }
    let status = sandbox::run(&spec).map_err(failure)?;
    drop(image);
    match sandbox::exit_code(&status) {
        0 => Ok(()),
        code => Err(Failure::silent(code)),
    }
}

/// The root to run in: a tree directory as it is, or an image unpacked
/// into a temporary root (removed when the returned image is dropped). A
/// directory is an image when it holds an OCI layout (`oci-layout`).
fn open(arg: &Path) -> Result<(PathBuf, Option<Unpacked>), Failure> {
    let is_tree = arg.is_dir() && !arg.join("oci-layout").exists();
    if is_tree {
        return Ok((arg.to_path_buf(), None));
    }
    let s = arg.to_string_lossy();
    let source = ImageSource::parse(&s).map_err(Failure::usage)?;
    let image = read::unpack(&source, &std::env::temp_dir()).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    Ok((image.root().to_path_buf(), Some(image)))
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
