//! `jail slim IMAGE -o OUT [-- CMD]`: unpack an image (no daemon), run the
//! command inside it under the tracer, keep only what it used.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use jail::config::Config;
use jail::fileset::build::BuildOptions;
use jail::image::read::{self, ImageSource, Unpacked};
use jail::image::{ImageSpec, Reference};
use jail::resolve::Root;
use jail::sandbox::{Network, User};
use jail::trace::{SandboxRun, TraceOptions};

use super::emit::{emit, Emit};
use super::image_opts::{Defaults, ImageOpts};
use super::registry_opts::{push_target, registry_failure, PullOpts};
use super::{warn, CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: a docker-archive or OCI-archive tar, an OCI layout
    /// directory (`DIR`, `DIR:TAG`, `DIR@sha256:…`), or a registry
    /// reference (`HOST[:PORT]/NAME[:TAG|@sha256:…]`).
    image: String,
    /// Where to write the slim image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// A jail config: its include/exclude globs and image metadata apply,
    /// its tests run in the slim jail.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The command is a service: wait until this command (run on the host,
    /// inside the service's network namespace, with `sh -c`) succeeds, run
    /// the other probes, then stop the service with its StopSignal.
    /// Repeatable; the first is the readiness check.
    #[arg(long, value_name = "SHELL-CMD")]
    probe: Vec<String>,
    /// How long to wait for the first probe to succeed.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    probe_timeout: u64,
    /// Network of the traced command: none (default; probes still reach it
    /// on loopback) or host.
    #[arg(long, value_enum, default_value = "none")]
    network: NetworkArg,
    /// Write the manifest (access log and file set) here.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Also write the slim jail as a tree in DIR.
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Replace a non-empty --tree directory, or a non-empty directory
    /// that is not an OCI layout at -o with --format oci-dir.
    #[arg(long)]
    force: bool,
    /// Add files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Keep /etc/passwd and /etc/group whole.
    #[arg(long)]
    keep_passwd: bool,
    /// Build even when the command exits non-zero.
    #[arg(long)]
    keep_going: bool,
    /// Re-run the command in the slim jail and compare exit status and
    /// stdout with the traced run.
    #[arg(long)]
    verify: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    image_opts: ImageOpts,
    #[command(flatten)]
    pull: PullOpts,
    #[command(flatten)]
    evidence: super::evidence::EvidenceOpts,
    /// The command to run [default: the image's Entrypoint + Cmd].
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

use super::trace::NetworkArg;

pub fn run(args: Args) -> CmdResult {
    args.evidence.sbom_format()?;
    let config = match &args.config {
        Some(p) => Some(Config::load(p).map_err(Failure::usage)?),
        None => None,
    };
    let write_opts = jail::image::WriteOptions {
        replace: args.force,
        base: args.image_opts.base(&args.pull.options()?)?,
        ..args.image_opts.write_options()?
    };
    let registry = args.pull.options()?;
    let push = push_target(args.image_opts.push.as_deref())?.map(|t| (t, registry.clone()));
    let source = ImageSource::parse(&args.image).map_err(|e| match e {
        read::ReadError::Registry(e) => registry_failure(e),
        e => Failure::usage(e),
    })?;
    let parent = std::env::temp_dir();
    // Ctrl-C during the unpack: unwind, remove the root, exit 128+N.
    jail::sys::interrupt::install();
    let image = read::unpack_with(&source, &parent, &registry).map_err(Failure::of)?;
    let root = Root::new(image.root()).map_err(Failure::failed)?;
    let before = Measure {
        files: count_files(image.root()),
        bytes: image.layers.iter().map(|l| l.uncompressed_size).sum(),
    };
    let base = ImageSpec::from_image_config(&image.config);

    // The command, as the image would run it.
    let argv: Vec<OsString> = if !args.command.is_empty() {
        args.command.clone()
    } else {
        let v: Vec<String> = base
            .entrypoint
            .iter()
            .flatten()
            .chain(base.cmd.iter().flatten())
            .cloned()
            .collect();
        if v.is_empty() {
            return Err(Failure::usage(anyhow!(
                "{} has no Entrypoint or Cmd: give the command to run after `--`",
                args.image
            )));
        }
        v.into_iter().map(OsString::from).collect()
    };
    let mut env: Vec<(OsString, OsString)> = base
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), jail::sandbox::DEFAULT_PATH.into()));
    }
    if let Some(c) = &config {
        for (k, v) in &c.env {
            env.retain(|(ek, _)| ek != k.as_str());
            env.push((k.into(), v.into()));
        }
    }
    let cwd = PathBuf::from(
        base.working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
    );
    // Container runtimes create a missing WorkingDir; so does the private
    // copy of the root the command runs in.
    if root.canonicalize(&cwd).is_none() {
        std::fs::create_dir_all(root.host_path(&cwd)).map_err(|e| {
            Failure::failed(anyhow!(
                "cannot create the working directory {} in the image's root: {e}",
                cwd.display()
            ))
        })?;
    }
    let user_spec = args
        .image_opts
        .user
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.image.user.clone()))
        .or_else(|| base.user.clone().filter(|u| !u.is_empty()));
    let user = match &user_spec {
        Some(u) => Some(User::lookup(image.root(), u).map_err(Failure::usage)?),
        None => None,
    };

    // Trace it in the image's root, probing it if it is a service.
    let (tx, rx) = mpsc::channel();
    let mut opts = TraceOptions::new(argv.clone());
    opts.env = env.clone();
    opts.cwd = Some(cwd.clone());
    opts.sandbox = Some(SandboxRun {
        root: image.root().to_path_buf(),
        user: user.clone(),
        network: match args.network {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        started: Some(tx),
    });
    let stop_signal = parse_signal(base.stop_signal.as_deref())?;
    let prober = (!args.probe.is_empty()).then(|| {
        let probes = args.probe.clone();
        let timeout = Duration::from_secs(args.probe_timeout);
        std::thread::spawn(move || probe_service(&rx, &probes, timeout, stop_signal))
    });
    let mut checks = Vec::new();
    let (log, stdout) =
        super::trace::run_traced(&opts, args.verify && prober.is_none(), args.json)?;
    let probed = match prober {
        Some(t) => Some(
            t.join()
                .map_err(|_| Failure::failed(anyhow!("the probe thread panicked")))?,
        ),
        None => None,
    };
    for w in &log.warnings {
        warn(w);
    }
    eprintln!("jail: {}", super::trace::summary_line(&log));
    match &probed {
        Some(Err(why)) => return Err(Failure::failed(anyhow!("{why}"))),
        Some(Ok(())) => {} // stopped by us: its exit status is ours to ignore
        None if !log.exit.success() && !args.keep_going => {
            return Err(Failure::failed(anyhow!("the command failed in the image ({}); fix it, or pass --keep-going to slim from this run anyway", log.exit)));
        }
        None => {}
    }
    let expectation = jail::verify::Expectation {
        label: "the traced run (as the image runs it)".into(),
        argv: argv.clone(),
        env: env.clone(),
        cwd: cwd.clone(),
        user: user_spec.clone(),
        network: opts.sandbox.as_ref().map_or(Network::None, |s| s.network),
        status: log.exit.code(),
        stdout: Some(stdout),
        stdout_contains: None,
    };
    // A service is verified by starting the slim image the same way and
    // probing it again; a command by comparing its run.
    let mut service = None;
    if args.verify {
        if probed.is_some() {
            service = Some(ProbedService {
                run: expectation,
                probes: args.probe.clone(),
                timeout: Duration::from_secs(args.probe_timeout),
                stop: stop_signal,
            });
        } else {
            checks.push(expectation);
        }
    }
    if let Some(c) = &config {
        checks.extend(super::trace::config_tests(c)?);
    }

    // The slim image keeps the source's config; flags override.
    let mut build = BuildOptions {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        keep_passwd: args.keep_passwd,
        user: user.as_ref().map(|u| (u.uid, u.gid)),
        // The unpacked root is temporary: its inodes mean nothing later.
        digests: None,
    };
    if let Some(c) = &config {
        build.include.extend(c.include.iter().cloned());
        build.exclude.extend(c.exclude.iter().cloned());
    }
    let spec = slim_spec(&args, config.as_ref(), &image, &base, &root, &argv)?;
    let service_check = service.map(|s| move |tree: &Path| s.check(tree));
    let done = emit(Emit {
        log: &log,
        root: &root,
        build,
        manifest: args.manifest.as_deref(),
        tree: args.tree.as_deref(),
        force: args.force,
        checks,
        image: Some((spec, args.output.clone(), write_opts)),
        push,
        keep_going: args.keep_going,
        env: None,
        service: service_check
            .as_ref()
            .map(|f| f as &super::emit::ServiceCheck),
        evidence: Some(super::evidence::EvidenceRequest {
            opts: args.evidence.clone(),
            build: args.evidence.build(
                jail::attest::BuildKind::Slim,
                std::slice::from_ref(&argv),
                args.config.as_deref(),
            ),
            base_image: Some(
                image
                    .manifest_digest
                    .unwrap_or(image.config_digest)
                    .to_string(),
            ),
        }),
    })?;

    let after = done
        .image
        .as_ref()
        .map(|s| (s.uncompressed_size, s.files))
        .unwrap_or_default();
    let ratio = if after.0 > 0 {
        before.bytes as f64 / after.0 as f64
    } else {
        0.0
    };
    eprintln!(
        "jail: before: {} files, {} bytes; after: {} files, {} bytes ({ratio:.1}x smaller)",
        before.files, before.bytes, after.1, after.0
    );
    if args.json {
        let s = json!({
            "image": done.image,
            "source": { "image": args.image, "config_digest": image.config_digest, "manifest_digest": image.manifest_digest, "files": before.files, "bytes": before.bytes },
            "ratio": ratio,
            "command": argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "exit": log.exit,
            "findings": done.findings,
            "checks": { "run": done.checks, "failed": done.failed },
        });
        println!("{s}");
    }
    done.checks_passed()
}

/// The slim image's spec: the source config kept (Entrypoint, Cmd, Env,
/// User, WorkingDir, ExposedPorts, Volumes, Labels, StopSignal), then the
/// config's and the flags' overrides. The base image goes into the
/// manifest's annotations, not the config, so the image ID stays a fixed
/// point when the result is slimmed again.
fn slim_spec(
    args: &Args,
    config: Option<&Config>,
    image: &Unpacked,
    base: &ImageSpec,
    root: &Root,
    argv: &[OsString],
) -> Result<ImageSpec, Failure> {
    let name = image.reference.clone().unwrap_or_else(|| {
        Path::new(&args.image)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    });
    let tag = match (
        &args.image_opts.tag,
        config.and_then(|c| c.image.tag.clone()),
    ) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(t)) => Some(t),
        (None, None) => Reference::parse(&name)
            .ok()
            .map(|r| format!("{}:{}-slim", r.name, r.tag)),
    };
    let mut defaults = Defaults {
        name: name
            .rsplit('/')
            .next()
            .unwrap_or("image")
            .split(':')
            .next()
            .unwrap_or("image")
            .to_string(),
        entrypoint: base.entrypoint.clone(),
        cmd: base.cmd.clone(),
        env: base.env.clone(),
        workdir: base.working_dir.clone(),
        user: base.user.clone(),
        labels: base.labels.clone(),
        tag,
    };
    if let Some(c) = config {
        let m = &c.image;
        if m.entrypoint.is_some() {
            defaults.entrypoint = m.entrypoint.clone();
        }
        if m.cmd.is_some() {
            defaults.cmd = m.cmd.clone();
        }
        for (k, v) in &m.env {
            defaults.env.retain(|e| !e.starts_with(&format!("{k}=")));
            defaults.env.push(format!("{k}={v}"));
        }
        defaults.workdir = m.workdir.clone().or(defaults.workdir);
        defaults.user = m.user.clone().or(defaults.user);
        defaults.labels.extend(m.labels.clone());
    }
    let command = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut spec = args.image_opts.spec(defaults, root, command)?;
    spec.exposed_ports = base.exposed_ports.clone();
    spec.volumes = base.volumes.clone();
    spec.stop_signal = base.stop_signal.clone();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.base.name".to_string(),
        image
            .reference
            .clone()
            .unwrap_or_else(|| args.image.clone()),
    );
    annotations.insert(
        "org.opencontainers.image.base.digest".to_string(),
        image
            .manifest_digest
            .unwrap_or(image.config_digest)
            .to_string(),
    );
    spec.annotations = annotations;
    Ok(spec)
}

/// `slim --verify --probe`: start the slim jail as the image runs it, probe
/// it as the traced service was probed, stop it.
struct ProbedService {
    run: jail::verify::Expectation,
    probes: Vec<String>,
    timeout: Duration,
    stop: Signal,
}

impl ProbedService {
    fn check(&self, tree: &Path) -> Result<(), String> {
        let spec = self
            .run
            .spec(tree)
            .map_err(|e| format!("cannot start the service in the jail: {e}"))?;
        let mut child = jail::sandbox::spawn(&spec, jail::sandbox::Hooks::default())
            .map_err(|e| format!("cannot start the service in the jail: {e}"))?;
        child
            .start()
            .map_err(|e| format!("cannot start the service in the jail: {e}"))?;
        let init = child.pid().as_raw();
        // The probes run beside; this thread reaps the sandbox, so that a
        // stopped service is gone (not a zombie) when the prober looks.
        let probes = self.probes.clone();
        let (timeout, stop) = (self.timeout, self.stop);
        let prober = std::thread::spawn(move || run_probes(init, &probes, timeout, stop));
        let status = child.wait();
        let probed = prober
            .join()
            .map_err(|_| "the probe thread panicked".to_string())?;
        match (probed, status) {
            (Ok(()), _) => Ok(()),
            (Err(why), Ok(status)) => Err(format!(
                "{why} (the service in the jail ended with {status})"
            )),
            (Err(why), Err(e)) => Err(format!("{why} (and the sandbox failed: {e})")),
        }
    }
}

/// An image's size: paths in its root, and bytes of its layers uncompressed
/// (what the slim image's `uncompressed_size` is compared with).
struct Measure {
    files: u64,
    bytes: u64,
}

fn count_files(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .flatten()
        .count() as u64
}

/// `SIGTERM`, `TERM`, `15` → a signal; none → SIGTERM.
fn parse_signal(s: Option<&str>) -> Result<Signal, Failure> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(Signal::SIGTERM);
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| Failure::usage(anyhow!("the image's StopSignal {s:?} is not a signal")));
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    name.parse::<Signal>()
        .map_err(|_| Failure::usage(anyhow!("the image's StopSignal {s:?} is not a signal")))
}

/// Beside the tracer: wait for the service to start, then have a probe
/// runner (jail itself, re-executed) probe and stop it. The probes must not
/// be jail's own children: the tracer reaps every child of jail.
fn probe_service(
    started: &mpsc::Receiver<i32>,
    probes: &[String],
    timeout: Duration,
    stop: Signal,
) -> Result<(), String> {
    let init = started
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the service did not start".to_string())?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find jail's own executable for the probe runner: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("probe-runner")
        .arg("--pid")
        .arg(init.to_string())
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .arg("--stop-signal")
        .arg(stop.as_str());
    cmd.arg("--").args(probes);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the probe runner: {e}"))?;
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut out, &mut report);
    }
    // Not waited for here: the tracer reaps it.
    match report.trim() {
        "ok" => Ok(()),
        "" => Err("the probe runner died without a report".to_string()),
        why => Err(why.to_string()),
    }
}

/// `jail probe-runner` (hidden): run by `jail slim --probe` as a process
/// of its own.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The sandbox's init: probes enter its network namespace.
    #[arg(long)]
    pid: i32,
    #[arg(long)]
    timeout: u64,
    #[arg(long)]
    stop_signal: String,
    /// At least one: the first is the readiness check.
    #[arg(last = true, required = true, num_args = 1..)]
    probes: Vec<String>,
}

/// Prints `ok`, or why not, on stdout.
pub fn probe_runner(a: ProbeArgs) -> CmdResult {
    let stop = parse_signal(Some(&a.stop_signal))?;
    let report = match run_probes(a.pid, &a.probes, Duration::from_secs(a.timeout), stop) {
        Ok(()) => "ok".to_string(),
        Err(why) => why,
    };
    println!("{report}");
    Ok(())
}

/// Run the probes against the service in the sandbox whose init is `init`
/// (on the host, in the sandbox's network namespace), then stop it.
fn run_probes(init: i32, probes: &[String], timeout: Duration, stop: Signal) -> Result<(), String> {
    let run_probe = |p: &str| -> std::io::Result<std::process::Output> {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(p);
        jail::sys::process::in_network_of(&mut cmd, init)?;
        cmd.output()
    };
    let deadline = Instant::now() + timeout;
    let mut result = Ok(());
    // The first probe doubles as the readiness check.
    loop {
        match run_probe(&probes[0]) {
            Ok(o) if o.status.success() => {
                eprintln!("jail: probe ok: {}", probes[0]);
                break;
            }
            Ok(o) if Instant::now() >= deadline => {
                result = Err(format!(
                    "probe `{}` never succeeded within {}s: {}",
                    probes[0],
                    timeout.as_secs(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                break;
            }
            Err(e) => {
                result = Err(format!("cannot run probe `{}`: {e}", probes[0]));
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    if result.is_ok() {
        for p in &probes[1..] {
            match run_probe(p) {
                Ok(o) if o.status.success() => eprintln!("jail: probe ok: {p}"),
                Ok(o) => {
                    result = Err(format!(
                        "probe `{p}` failed ({}): {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                    break;
                }
                Err(e) => {
                    result = Err(format!("cannot run probe `{p}`: {e}"));
                    break;
                }
            }
        }
    }
    // Stop the service: its StopSignal to the payload (init's child), then
    // SIGKILL to the whole sandbox if it lingers.
    let payload = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        });
    let target = Pid::from_raw(payload.unwrap_or(init));
    let _ = kill(target, stop);
    let grace = Instant::now() + Duration::from_secs(10);
    while Instant::now() < grace && Path::new(&format!("/proc/{init}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{init}")).exists() {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
    }
    result
}
