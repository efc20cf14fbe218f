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

    // Trace every run into one log.
    let mut log: Option<AccessLog> = None;
    for opts in &runs {
        let one = trace::trace(opts).map_err(|e| {
            if e.is_usage() {
                Failure::usage(e)
            } else {
                Failure::failed(e)
            }
        })?;
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
    if let Some(dir) = &args.tree {
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
        eprintln!("jail: tree written to {}", dir.display());
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
            "manifest": args.manifest,
            "tree": args.tree,
            "warnings": log.warnings,
        });
        println!("{s}");
    }
    Ok(())
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
                o.cwd = c.workdir.clone();
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
