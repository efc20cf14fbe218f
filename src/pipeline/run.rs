//! The run job (`jail run`): a command in a jail (a tree as it is, or an
//! image unpacked to a private temporary root), as a container runtime
//! runs it: the image's Env, User, WorkingDir and, without a command, its
//! Entrypoint + Cmd; the flags override.

use std::ffi::OsStr;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::image::read::{self, ImageSource, Unpacked};
use crate::sandbox::{self, Network, Spec, User};

use super::Failure;

/// `jail run`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// A tree, or an image (archive, layout, `DIR:TAG`).
    pub jail: PathBuf,
    pub user: Option<String>,
    pub network: Network,
    pub writable: bool,
    /// `K=V`, or `K` to pass this environment's value; over the image's.
    pub env: Vec<OsString>,
    pub workdir: Option<PathBuf>,
    pub hostname: Option<OsString>,
    pub command: Vec<OsString>,
}

/// Why `jail run` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no command: give CMD after `--`{}", if *.image { " (the image has no Entrypoint or Cmd)" } else { "" })]
    NoCommand { image: bool },
    #[error("--env {0}: not set here; use --env K=V")]
    EnvNotSet(String),
    #[error("--env {0}: empty variable name")]
    EnvNoName(String),
}

/// Run the command; its exit code (the status as a shell reports it).
pub fn run(req: RunRequest) -> Result<i32, Failure> {
    let vars = req
        .env
        .iter()
        .map(split_env)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let (root, image) = open(&req.jail)?;
    let config = image.as_ref().and_then(|i| i.config.config().clone());
    let mut command = req.command.clone();
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
        return Err(Failure::usage(RunError::NoCommand {
            image: image.is_some(),
        }));
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
    spec.cwd = req
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
    spec.writable = req.writable;
    spec.hostname = req.hostname.clone();
    spec.network = req.network;
    for (k, v) in vars {
        spec.env.retain(|(name, _)| *name != k);
        spec.env.push((k, v));
    }
    let user = req.user.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty())
    });
    if let Some(u) = &user {
        spec.user = Some(User::lookup(&root, u).map_err(sandbox_failure)?);
    }
    if image.is_some() {
        let uid = spec.user.as_ref().map_or(0, |u| u.uid);
        sandbox::add_runtime_home(&mut spec.env, &root, uid);
    }
    let status = sandbox::run(&spec).map_err(sandbox_failure)?;
    drop(image);
    Ok(sandbox::exit_code(&status))
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
    let image = read::unpack(&source, &std::env::temp_dir()).map_err(Failure::of)?;
    Ok((image.root().to_path_buf(), Some(image)))
}

/// A sandbox error with its own exit code (127 not found, 126 not
/// executable, 2 bad input, 1 failed).
fn sandbox_failure(e: sandbox::SandboxError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: Box::new(e),
    }
}

/// `K=V`, or `K` passed from this environment.
fn split_env(kv: &OsString) -> Result<(OsString, OsString), RunError> {
    let b = kv.as_bytes();
    let shown = || kv.to_string_lossy().into_owned();
    let (k, v) = match b.iter().position(|&c| c == b'=') {
        Some(i) => (
            OsStr::from_bytes(&b[..i]).to_owned(),
            OsStr::from_bytes(&b[i + 1..]).to_owned(),
        ),
        None => {
            let v = std::env::var_os(kv).ok_or_else(|| RunError::EnvNotSet(shown()))?;
            (kv.clone(), v)
        }
    };
    if k.is_empty() {
        return Err(RunError::EnvNoName(shown()));
    }
    Ok((k, v))
}
