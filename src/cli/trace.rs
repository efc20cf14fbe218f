//! `jail trace [OPTS] -- CMD [ARGS…]`: trace CMD and write what it touched.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::json;

use jail::manifest::Manifest;
use jail::trace::{self, AccessLog, TraceOptions};

use super::{warn, CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the manifest (access log) here: YAML, or JSON for `.json`.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Do not write an image.
    #[arg(long)]
    no_image: bool,
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
    /// The command to trace and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Ptrace,
    Fanotify,
}

pub fn run(args: Args) -> CmdResult {
    if matches!(args.backend, BackendArg::Fanotify) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--backend fanotify is not implemented yet; use --backend ptrace"
        )));
    }
    if !args.no_image {
        warn("image output is not implemented yet (issue 5): writing no image; pass --no-image to silence this");
    }
    let mut opts = TraceOptions::new(args.command.clone());
    opts.all_syscalls = args.syscalls;
    let log = trace::trace(&opts).map_err(|e| {
        if e.is_usage() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    for w in &log.warnings {
        warn(w);
    }
    if let Some(path) = &args.manifest {
        Manifest::new(Some(log.clone()), None)
            .write(path)
            .map_err(Failure::failed)?;
    }
    eprintln!("jail: {}", summary_line(&log));
    if args.json {
        let s = json!({
            "command": log.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "exit": log.exit,
            "processes": log.processes.len(),
            "files": log.files.len(),
            "kinds": log.counts(),
            "syscall_stops": log.stats.syscall_stops,
            "duration_ms": log.stats.duration_ms,
            "manifest": args.manifest,
            "warnings": log.warnings,
        });
        println!("{s}");
    }
    if !log.exit.success() && !args.keep_going {
        return Err(Failure::failed(anyhow::anyhow!(
            "the traced command failed ({}); fix it, or pass --keep-going to build from this run anyway",
            log.exit
        )));
    }
    Ok(())
}

/// `traced 12 processes in 85 ms: 310 files (290 read, 3 exec, …); exit status 0`.
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
