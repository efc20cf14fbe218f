//! `jail trace [OPTS] -- CMD [ARGS…]`: trace CMD, build its file set, and
//! write the manifest, the chroot tree and the image asked for.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::json;

use jail::config::Config;
use jail::environment::{EnvDecision, EnvRule};
use jail::fileset::build::BuildOptions;
use jail::image::{Format, ImageSpec};
use jail::manifest::Manifest;
use jail::resolve::Root;
use jail::trace::{self, AccessLog, TraceOptions};
use jail::verify::Expectation;

use super::emit::{emit, Emit};
use super::image_opts::{Defaults, ImageOpts};
use super::registry_opts::{push_target, RegistryOpts};
use super::{check_destinations, warn, CmdResult, Failure};

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
    evidence: super::evidence::EvidenceOpts,
    /// Add files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Keep /etc/passwd and /etc/group whole instead of reducing them to
    /// root and the run user.
    #[arg(long)]
    keep_passwd: bool,
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
    /// Build even when the traced command exits non-zero.
    #[arg(long)]
    keep_going: bool,
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
    network: NetworkArg,
    /// Do not run the config's tests in the finished jail.
    #[arg(long)]
    no_test: bool,
    /// Tracer backend.
    #[arg(long, value_enum, default_value = "ptrace")]
    backend: BackendArg,
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

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum NetworkArg {
    None,
    Host,
}

impl From<NetworkArg> for jail::sandbox::Network {
    fn from(n: NetworkArg) -> Self {
        match n {
            NetworkArg::None => jail::sandbox::Network::None,
            NetworkArg::Host => jail::sandbox::Network::Host,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Ptrace,
    Fanotify,
    Ebpf,
}

pub fn run(args: Args) -> CmdResult {
    let config = match &args.config {
        Some(p) => Some(Config::load(p).map_err(Failure::usage)?),
        None => None,
    };
    let runs = runs(&args, config.as_ref())?;
    args.evidence.sbom_format()?;
    // Every flag and destination is checked before anything runs: a bad
    // one must not cost a whole trace.
    let write_opts = if args.no_image {
        None
    } else {
        Some(jail::image::WriteOptions {
            replace: args.force,
            base: args.image.base(&args.registry.options()?)?,
            ..args.image.write_options()?
        })
    };
    let push = match push_target(args.image.push.as_deref())? {
        Some(_) if args.no_image => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--push needs an image: drop --no-image"
            )))
        }
        Some(t) => Some((t, args.registry.options()?)),
        None => None,
    };
    let env_rule = EnvRule::new(&args.env_keep, &args.env_drop).map_err(Failure::usage)?;
    let root = Root::host();
    let user_spec = args
        .image
        .user
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.image.user.clone()));
    // A user name is resolved in this machine's /etc/passwd, whose
    // reduced copy the jail gets.
    let user = match &user_spec {
        Some(spec) => Some(
            jail::sandbox::User::lookup(root.dir(), spec)
                .map_err(|e| Failure::usage(anyhow::anyhow!("--user: {e}")))?,
        ),
        None => None,
    };
    let output = write_opts
        .as_ref()
        .map(|w| output_path(&args, config.as_ref(), &w.format));
    check_destinations(
        output.as_deref(),
        args.tree.as_deref(),
        args.manifest.as_deref(),
        args.force,
    )?;

    // Trace every run into one log (keeping each run's stdout to compare
    // with the jail's when verifying).
    let mut log: Option<AccessLog> = None;
    let mut traced = Vec::new();
    for opts in &runs {
        let (one, stdout) = run_traced(opts, args.verify, args.json)?;
        for w in &one.warnings {
            warn(w);
        }
        eprintln!("jail: {}", summary_line(&one));
        if !one.exit.success() && !args.keep_going {
            if let Some(path) = &args.manifest {
                Manifest::new(Some(one.clone()), None)
                    .write(path)
                    .map_err(Failure::failed)?;
            }
            let mut failure = Failure::failed(anyhow::anyhow!(
                "the traced command failed ({}); fix it, or pass --keep-going to build from this run anyway",
                one.exit
            ));
            // Killed by the Ctrl-C (or kill) jail got and forwarded:
            // 128+N, as a shell reports it.
            if let trace::ExitStatus::Signal { signal } = one.exit {
                if jail::sys::signals::seen(signal) {
                    failure.code = 128 + signal;
                }
            }
            return Err(failure);
        }
        traced.push((opts.argv.clone(), one.exit.code(), one.cwd.clone(), stdout));
        match log.as_mut() {
            Some(l) => l.merge(one),
            None => log = Some(one),
        }
    }
    let log = log.ok_or_else(|| Failure::usage(anyhow::anyhow!("nothing to trace")))?;

    // The image's environment, from the first run's.
    let env = env_rule.decide(&runs[0].env);
    eprintln!("jail: {}", env.summary());
    let (spec, derived) = image_spec(&args, config.as_ref(), &log, &root, &env)?;

    // The checks run the finished jail as a container runtime runs the
    // image: its Env, User and WorkingDir. The first run is the image's
    // default command when the image runs the traced command.
    let mut checks = Vec::new();
    if args.verify {
        let image_env: Vec<(OsString, OsString)> = spec
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let workdir = spec
            .working_dir
            .as_ref()
            .filter(|w| !w.is_empty())
            .map_or_else(|| PathBuf::from("/"), PathBuf::from);
        for (i, (argv, status, _, stdout)) in traced.into_iter().enumerate() {
            let argv = match (i, derived) {
                (0, true) => spec
                    .entrypoint
                    .iter()
                    .flatten()
                    .chain(spec.cmd.iter().flatten())
                    .map(OsString::from)
                    .collect(),
                _ => argv,
            };
            checks.push(Expectation {
                label: format!(
                    "the traced run of `{}` (as the image runs it)",
                    shell_words(&argv)
                ),
                argv,
                env: image_env.clone(),
                cwd: workdir.clone(),
                user: spec.user.clone(),
                network: args.network.into(),
                status,
                stdout: Some(stdout),
                stdout_contains: None,
            });
        }
    }

    // The file set, manifest, tree, checks and image.
    let mut build = BuildOptions {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        keep_passwd: args.keep_passwd,
        user: user.as_ref().map(|u| (u.uid, u.gid)),
        digests: Some(std::sync::Arc::new(
            jail::fileset::digests::DigestCache::user(),
        )),
    };
    if let Some(c) = &config {
        build.include.extend(c.include.iter().cloned());
        build.exclude.extend(c.exclude.iter().cloned());
    }
    if let Some(c) = config.as_ref().filter(|_| !args.no_test) {
        checks.extend(config_tests(c)?.into_iter().map(|mut t| {
            t.network = args.network.into();
            t
        }));
    }
    let image = match (write_opts, output) {
        (Some(w), Some(output)) => Some((spec, output, w)),
        _ => None,
    };
    let done = emit(Emit {
        log: &log,
        root: &root,
        build,
        manifest: args.manifest.as_deref(),
        tree: args.tree.as_deref(),
        force: args.force,
        checks,
        image,
        push,
        keep_going: args.keep_going,
        env: Some(env),
        service: None,
        evidence: Some(super::evidence::EvidenceRequest {
            opts: args.evidence.clone(),
            build: args.evidence.build(
                jail::attest::BuildKind::Trace,
                &runs.iter().map(|r| r.argv.clone()).collect::<Vec<_>>(),
                args.config.as_deref(),
            ),
            base_image: None,
        }),
    })?;

    if args.json {
        let s = json!({
            "image": done.image,
            "command": log.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "exit": log.exit,
            "processes": log.processes.len(),
            "paths": log.files.len(),
            "kinds": log.counts(),
            "syscall_stops": log.stats.syscall_stops,
            "duration_ms": log.stats.duration_ms,
            "setup_ms": log.stats.setup_ms,
            "fileset_ms": done.fileset_ms,
            "fileset": {
                "entries": done.fileset.entries.len(),
                "bytes": done.fileset.total_size(),
                "digest": done.fileset.digest(),
            },
            "findings": done.findings,
            "checks": { "run": done.checks, "failed": done.failed },
            "manifest": args.manifest,
            "tree": args.tree,
            "warnings": log.warnings,
        });
        println!("{s}");
    }
    done.checks_passed()
}

/// Where the image goes: `-o`, else `./<name>.tar` (or `./<name>` for an
/// OCI layout directory).
fn output_path(args: &Args, config: Option<&Config>, format: &Format) -> PathBuf {
    args.output.clone().unwrap_or_else(|| {
        let name = image_name(config, &args.command);
        match format {
            Format::OciDir => PathBuf::from(&name),
            Format::OciArchive => PathBuf::from(format!("{name}.tar")),
        }
    })
}

/// The image's name: the config's, else the command's file name.
fn image_name(config: Option<&Config>, command: &[OsString]) -> String {
    if let Some(c) = config {
        return c.name.clone();
    }
    command
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// The image of a traced command: it runs the command as traced (argv[0]
/// by the path it was found at), in the directory it ran in, with the
/// loader variables it ran with; a config's `image` and the flags override.
/// The second value says whether Entrypoint and Cmd are the traced command
/// (no config or flag replaced them).
fn image_spec(
    args: &Args,
    config: Option<&Config>,
    log: &AccessLog,
    root: &Root,
    env: &EnvDecision,
) -> Result<(ImageSpec, bool), Failure> {
    let argv: Vec<String> = log
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = image_name(config, &log.command);
    // Entrypoint = the program, Cmd = its arguments (docker convention), so
    // `podman run IMG ARGS` runs the program with other arguments. argv[0]
    // stays as traced (a bare name is found along the image's PATH, which is
    // the traced one), so the program sees the argv[0] it saw when traced;
    // it becomes the absolute path only when the image's PATH would find
    // another program.
    let program = trace::find_program(
        log.command[0].as_os_str(),
        log.env.get("PATH").map(std::ffi::OsStr::new),
        &log.cwd,
    )
    .ok();
    let image_path = env
        .kept
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(jail::sandbox::DEFAULT_PATH);
    let mut entry0 = argv[0].clone();
    if let Some(program) = &program {
        let same = !entry0.contains('/')
            && trace::find_program(
                log.command[0].as_os_str(),
                Some(std::ffi::OsStr::new(image_path)),
                &log.cwd,
            )
            .is_ok_and(|p| p == *program);
        if !same && !entry0.starts_with('/') {
            entry0 = program.to_string_lossy().into_owned();
        }
    }
    let mut env_list = env.kept.clone();
    if !env_list.iter().any(|kv| kv.starts_with("PATH=")) {
        env_list.insert(0, format!("PATH={}", jail::sandbox::DEFAULT_PATH));
    }
    let mut defaults = Defaults {
        name: name.clone(),
        entrypoint: Some(vec![entry0]),
        cmd: (argv.len() > 1).then(|| argv[1..].to_vec()),
        env: env_list,
        workdir: Some(log.cwd.to_string_lossy().into_owned()),
        ..Defaults::default()
    };
    if let Some(c) = config {
        let m = &c.image;
        // A config's entrypoint replaces the command and its arguments; a
        // config's cmd replaces the arguments only.
        if m.entrypoint.is_some() {
            defaults.entrypoint = m.entrypoint.clone();
            defaults.cmd = None;
        }
        if m.cmd.is_some() {
            defaults.cmd = m.cmd.clone();
        }
        for (k, v) in &m.env {
            defaults.env.retain(|e| !e.starts_with(&format!("{k}=")));
            defaults.env.push(format!("{k}={v}"));
        }
        if m.workdir.is_some() {
            defaults.workdir = m.workdir.clone();
        }
        defaults.user = m.user.clone();
        defaults.labels = m.labels.clone();
        defaults.tag = m.tag.clone();
    }
    let spec = args.image.spec(defaults, root, shell_words(&log.command))?;
    let derived = args.image.entrypoint.is_none()
        && args.image.cmd.is_none()
        && config.is_none_or(|c| c.image.entrypoint.is_none() && c.image.cmd.is_none());
    Ok((spec, derived))
}

pub(super) fn trace_failure(e: trace::TraceError) -> Failure {
    Failure::of(e)
}

/// Trace, deciding where the command's stdout goes: to jail's stdout, or
/// to its stderr when stdout carries the `--json` summary; and when `keep`,
/// also kept (teed) to compare with the run inside the jail.
pub(super) fn run_traced(
    opts: &TraceOptions,
    keep: bool,
    json: bool,
) -> Result<(AccessLog, Vec<u8>), Failure> {
    use std::os::fd::AsFd;
    if !keep {
        let mut o = opts.clone();
        if json {
            let err = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(Failure::failed)?;
            o.stdout = Some(std::sync::Arc::new(err));
        }
        return Ok((trace::trace(&o).map_err(trace_failure)?, Vec::new()));
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Failure::failed)?;
    let tee = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut src = std::fs::File::from(rd);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut out: Box<dyn Write> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        while let Ok(n) = src.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            let _ = out.write_all(&buf[..n]);
        }
        let _ = out.flush();
        kept
    });
    let mut o = opts.clone();
    o.stdout = Some(std::sync::Arc::new(wr));
    let log = trace::trace(&o);
    drop(o);
    let kept = tee.join().unwrap_or_default();
    Ok((log.map_err(trace_failure)?, kept))
}

/// The environment of a config's traced runs and tests.
fn config_env(c: &Config) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> =
        vec![("PATH".into(), jail::sandbox::DEFAULT_PATH.into())];
    for (k, v) in &c.env {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
    env
}

/// A config's tests as expectations.
pub(super) fn config_tests(c: &Config) -> Result<Vec<Expectation>, Failure> {
    let env = config_env(c);
    let cwd = c.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    c.tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let argv: Vec<OsString> = t.command.iter().map(OsString::from).collect();
            let stdout = if t.same_as_host {
                let out = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&cwd)
                    .output()
                    .map_err(|e| {
                        Failure::failed(anyhow::anyhow!(
                            "test {i} of {}: cannot run {:?} outside the jail: {e}",
                            c.name,
                            t.command
                        ))
                    })?;
                Some(out.stdout)
            } else {
                t.stdout.clone().map(String::into_bytes)
            };
            Ok(Expectation {
                label: format!(
                    "test {:?}",
                    t.name.clone().unwrap_or_else(|| t.command.join(" "))
                ),
                argv,
                env: env.clone(),
                cwd: cwd.clone(),
                // As `podman run IMAGE TEST` runs it: as the image's user.
                user: c.image.user.clone(),
                network: jail::sandbox::Network::None,
                status: t.status,
                stdout,
                stdout_contains: t.stdout_contains.clone(),
            })
        })
        .collect()
}

/// argv as a shell would show it (for messages).
fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The traced runs: the command line, or the config's command and runs.
fn runs(args: &Args, config: Option<&Config>) -> Result<Vec<TraceOptions>, Failure> {
    let argvs: Vec<Vec<OsString>> = match (args.command.is_empty(), config) {
        (false, _) => vec![args.command.clone()],
        (true, Some(c)) => c
            .all_runs()
            .map(|r| r.iter().map(OsString::from).collect())
            .collect(),
        (true, None) => {
            return Err(Failure::usage(anyhow::anyhow!(
                "no command to trace: give one after `--`, or a config with -c"
            )))
        }
    };
    Ok(argvs
        .into_iter()
        .map(|argv| {
            let mut o = TraceOptions::new(argv);
            o.all_syscalls = args.syscalls;
            o.one_cpu = args.one_cpu;
            o.backend = match args.backend {
                BackendArg::Ptrace => trace::Backend::Ptrace,
                BackendArg::Fanotify => trace::Backend::Fanotify,
                BackendArg::Ebpf => trace::Backend::Ebpf,
            };
            if let Some(c) = config.filter(|_| args.command.is_empty()) {
                // A config's runs see what its tests see: PATH and the
                // config's `env`, nothing of the caller's environment (which
                // would make the jail depend on who built it).
                o.env = config_env(c);
                // The config's own runs start where its tests do (`workdir`,
                // else `/`): the caller's directory is no part of the
                // program and must not become the jail's working directory.
                o.cwd = c
                    .workdir
                    .clone()
                    .or_else(|| args.command.is_empty().then(|| PathBuf::from("/")));
            }
            o
        })
        .collect())
}

/// `traced 12 processes in 85 ms: 310 paths (290 read, 3 exec, …); exit status 0`.
pub(super) fn summary_line(log: &AccessLog) -> String {
    let kinds: Vec<String> = log
        .counts()
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        })
        .collect();
    let setup = if log.stats.setup_ms > 0 {
        format!(
            " (of which {} ms loading the BPF programs)",
            log.stats.setup_ms
        )
    } else {
        String::new()
    };
    format!(
        "traced {} process{} in {} ms{setup}: {} paths ({}); command {}",
        log.processes.len(),
        if log.processes.len() == 1 { "" } else { "es" },
        log.stats.duration_ms,
        log.files.len(),
        kinds.join(", "),
        log.exit
    )
}
