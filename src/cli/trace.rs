//! `jail trace [OPTS] -- CMD [ARGS…]`: trace CMD, build its file set, and
//! write the manifest, the chroot tree and the image asked for.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::json;

use jail::config::Config;
use jail::fileset::build::{self, BuildOptions, Finding};
use jail::manifest::Manifest;
use jail::resolve::Root;
use jail::trace::{self, AccessLog, TraceOptions};
use jail::tree::{self, TreeOptions};
use jail::verify::{self, Expectation};

use super::{warn, CmdResult, Failure};

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
    /// Replace a non-empty --tree directory.
    #[arg(long)]
    force: bool,
    /// Do not write an image.
    #[arg(long)]
    no_image: bool,
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
    /// The user the image runs as: UID[:GID] (kept in the reduced passwd).
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
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
    /// Do not run the config's tests in the finished jail.
    #[arg(long)]
    no_test: bool,
    /// Tracer backend.
    #[arg(long, value_enum, default_value = "ptrace")]
    backend: BackendArg,
    /// The command to trace and its arguments (default: the config's).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Ptrace,
    Fanotify,
}

pub fn run(args: Args) -> CmdResult {
    let config = match &args.config {
        Some(p) => Some(Config::load(p).map_err(Failure::usage)?),
        None => None,
    };
    let runs = runs(&args, config.as_ref())?;
    if !args.no_image {
        warn("image output is not implemented yet (issue 5): writing no image; pass --no-image to silence this");
    }

    // Trace every run into one log (keeping each run's stdout to compare
    // with the jail's when verifying).
    let mut log: Option<AccessLog> = None;
    let mut expectations = Vec::new();
    for opts in &runs {
        let (one, stdout) = if args.verify {
            traced_with_stdout(opts)?
        } else {
            (trace::trace(opts).map_err(trace_failure)?, Vec::new())
        };
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
            return Err(Failure::failed(anyhow::anyhow!(
                "the traced command failed ({}); fix it, or pass --keep-going to build from this run anyway",
                one.exit
            )));
        }
        if args.verify {
            expectations.push(Expectation {
                label: format!("the traced run of `{}`", shell_words(&opts.argv)),
                argv: opts.argv.clone(),
                env: opts.env.clone(),
                cwd: one.cwd.clone(),
                status: one.exit.code(),
                stdout: Some(stdout),
                stdout_contains: None,
            });
        }
        match log.as_mut() {
            Some(l) => l.merge(one),
            None => log = Some(one),
        }
    }
    let log = log.ok_or_else(|| Failure::usage(anyhow::anyhow!("nothing to trace")))?;

    // The file set.
    let root = Root::host();
    let mut opts = BuildOptions {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        keep_passwd: args.keep_passwd,
        user: None,
    };
    if let Some(c) = &config {
        opts.include.extend(c.include.iter().cloned());
        opts.exclude.extend(c.exclude.iter().cloned());
    }
    let user_spec = args
        .user
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.image.user.clone()));
    if let Some(spec) = &user_spec {
        opts.user = Some(parse_user(spec).map_err(Failure::usage)?);
    }
    let built = build::from_access_log(&log, &root, &opts).map_err(Failure::usage)?;
    report_findings(&built.findings);
    let fileset = built.fileset;
    eprintln!(
        "jail: file set: {} paths, {} bytes of files",
        fileset.entries.len(),
        fileset.total_size()
    );

    if let Some(path) = &args.manifest {
        Manifest::new(Some(log.clone()), Some(fileset.clone()))
            .write(path)
            .map_err(Failure::failed)?;
    }

    if let Some(c) = config.as_ref().filter(|_| !args.no_test) {
        expectations.extend(config_tests(c)?);
    }
    // The tree asked for, or a scratch one to check the jail in.
    let scratch;
    let tree_dir = match (&args.tree, expectations.is_empty()) {
        (Some(dir), _) => Some(dir.clone()),
        (None, false) => {
            scratch = tempfile::Builder::new()
                .prefix("jail-verify-")
                .tempdir()
                .map_err(Failure::failed)?;
            Some(scratch.path().join("tree"))
        }
        (None, true) => None,
    };
    if let Some(dir) = &tree_dir {
        tree::materialize(
            &fileset,
            dir,
            TreeOptions {
                force: args.force,
                ..TreeOptions::default()
            },
        )
        .map_err(|e| match e {
            tree::TreeError::NotEmpty(_) | tree::TreeError::NotADirectory(_) => Failure::usage(e),
            other => Failure::failed(other),
        })?;
        if args.tree.is_some() {
            eprintln!("jail: tree written to {}", dir.display());
        }
    }
    let mut failed = 0;
    if let Some(dir) = &tree_dir {
        for exp in &expectations {
            let outcome = verify::check(dir, exp).map_err(Failure::failed)?;
            match &outcome.failure {
                None => eprintln!("jail: ok: {} in the jail", outcome.label),
                Some(why) => {
                    failed += 1;
                    eprintln!("jail: FAILED: {} in the jail: {why}", outcome.label);
                }
            }
        }
    }

    if args.json {
        let s = json!({
            "command": log.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "exit": log.exit,
            "processes": log.processes.len(),
            "paths": log.files.len(),
            "kinds": log.counts(),
            "syscall_stops": log.stats.syscall_stops,
            "duration_ms": log.stats.duration_ms,
            "fileset": {
                "entries": fileset.entries.len(),
                "bytes": fileset.total_size(),
                "digest": fileset.digest(),
            },
            "findings": built.findings,
            "checks": { "run": expectations.len(), "failed": failed },
            "manifest": args.manifest,
            "tree": args.tree,
            "warnings": log.warnings,
        });
        println!("{s}");
    }
    if failed > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{failed} of {} checks failed inside the jail; the jail misses something the program needs: add it with --include (or a config `include`), or exercise that code path in another traced run",
            expectations.len()
        )));
    }
    Ok(())
}

fn trace_failure(e: trace::TraceError) -> Failure {
    if e.is_usage() {
        Failure::usage(e)
    } else {
        Failure::failed(e)
    }
}

/// Trace with the command's stdout teed: passed through to ours, and kept
/// to compare with the run inside the jail.
fn traced_with_stdout(opts: &TraceOptions) -> Result<(AccessLog, Vec<u8>), Failure> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Failure::failed)?;
    let tee = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut src = std::fs::File::from(rd);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut out = std::io::stdout();
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

/// A config's tests as expectations.
fn config_tests(c: &Config) -> Result<Vec<Expectation>, Failure> {
    let mut env: Vec<(OsString, OsString)> =
        vec![("PATH".into(), jail::sandbox::DEFAULT_PATH.into())];
    for (k, v) in &c.env {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
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
            o.backend = match args.backend {
                BackendArg::Ptrace => trace::Backend::Ptrace,
                BackendArg::Fanotify => trace::Backend::Fanotify,
            };
            o.backend = match args.backend {
                BackendArg::Ptrace => trace::Backend::Ptrace,
                BackendArg::Fanotify => trace::Backend::Fanotify,
            };
            if let Some(c) = config {
                for (k, v) in &c.env {
                    o.env.retain(|(ek, _)| ek != k.as_str());
                    o.env.push((k.into(), v.into()));
                }
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

/// `UID[:GID]` (numeric; GID defaults to UID).
fn parse_user(spec: &str) -> anyhow::Result<(u32, u32)> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(anyhow::anyhow!(
            "invalid user {spec:?}: expected UID[:GID], numeric"
        )),
    }
}

/// Secrets loudly, the rest as warnings.
fn report_findings(findings: &[Finding]) {
    for f in findings {
        warn(f);
    }
}

/// `traced 12 processes in 85 ms: 310 paths (290 read, 3 exec, …); exit status 0`.
fn summary_line(log: &AccessLog) -> String {
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
    format!(
        "traced {} process{} in {} ms: {} paths ({}); command {}",
        log.processes.len(),
        if log.processes.len() == 1 { "" } else { "es" },
        log.stats.duration_ms,
        log.files.len(),
        kinds.join(", "),
        log.exit
    )
}
