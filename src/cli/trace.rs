//! `jail trace [OPTS] -- CMD [ARGS…]`: trace CMD, build its file set, and
//! write the manifest, the chroot tree and the image asked for
//! (`jail::pipeline::trace`).

use std::ffi::OsString;
use std::path::PathBuf;

use jail::pipeline::trace::{TraceJob, TraceRequest};
use jail::sandbox::Network;
use jail::trace::Backend;

use super::build_opts::{EvidenceOpts, FilesOpts};
use super::image_opts::ImageOpts;
use super::registry_opts::RegistryOpts;
use super::{print_json, CmdResult, Stderr};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A jail config (jail-configs/*.yaml): command, extra runs, globs,
    /// image metadata and tests.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the manifest (access log and file set) here: YAML, or JSON for
    /// `.json`.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Also write the jail as a chroot tree in DIR.
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Replace a non-empty --tree directory, or a non-empty directory
    /// that is not an OCI layout at -o with --format oci-dir.
    #[arg(long)]
    force: bool,
    /// Do not write an image.
    #[arg(long)]
    no_image: bool,
    /// Where to write the image [default: ./<command name>.tar, or a
    /// directory with --format oci-dir].
    #[arg(short, long, value_name = "IMAGE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    image: ImageOpts,
    #[command(flatten)]
    registry: RegistryOpts,
    #[command(flatten)]
    evidence: EvidenceOpts,
    #[command(flatten)]
    files: FilesOpts,
    /// Keep traced environment variables matching this glob in the image's
    /// Env, even host-session ones (repeatable; credentials are never kept:
    /// set those with --env).
    #[arg(long, value_name = "PATTERN")]
    env_keep: Vec<String>,
    /// Leave traced environment variables matching this glob out of the
    /// image's Env (repeatable).
    #[arg(long, value_name = "PATTERN")]
    env_drop: Vec<String>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    /// Record the count of every syscall (for `jail report --seccomp`);
    /// slower, as every syscall stops.
    #[arg(long)]
    syscalls: bool,
    /// Re-run each traced command inside the finished tree and fail, showing
    /// the difference, when its exit status or stdout differ from the
    /// traced run's.
    #[arg(long)]
    verify: bool,
    /// Network of the checks in the finished jail (--verify, config tests):
    /// none, or host for a program that talks to a server.
    #[arg(long, value_enum, default_value = "none")]
    network: Network,
    /// Do not run the config's tests in the finished jail.
    #[arg(long)]
    no_test: bool,
    /// Tracer backend (auto: ebpf where this machine allows it, else ptrace).
    #[arg(long, value_enum, default_value = "auto", env = "JAIL_BACKEND")]
    backend: Backend,
    /// Run the ptrace tracer and the command on one CPU: each stop then
    /// costs a switch on that CPU instead of a cross-CPU wake-up (about
    /// half the overhead on VMs). The command sees a one-CPU affinity mask
    /// (`nproc` says 1) and its processes share that CPU: not for parallel
    /// builds.
    #[arg(long)]
    one_cpu: bool,
    /// The command to trace and its arguments (default: the config's).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(a: Args) -> CmdResult {
    let job = TraceJob::resolve(TraceRequest {
        config: a.config,
        manifest: a.manifest,
        tree: a.tree,
        force: a.force,
        no_image: a.no_image,
        output: a.output,
        image: a.image.request(),
        registry: a.registry.request(),
        evidence: a.evidence.request(),
        files: a.files.request(),
        env_keep: a.env_keep,
        env_drop: a.env_drop,
        json: a.json,
        syscalls: a.syscalls,
        verify: a.verify,
        network: a.network,
        no_test: a.no_test,
        backend: a.backend,
        one_cpu: a.one_cpu,
        command: a.command,
    })?;
    let summary = job.run(&Stderr)?;
    if a.json {
        print_json(&summary)?;
    }
    summary.checks.passed()
}
