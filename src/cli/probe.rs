//! `jail probe-runner` (hidden): run by `jail slim --probe` as a process of
//! its own, since the tracer reaps every child of jail (`jail::probe`).

use std::time::Duration;

use jail::pipeline::JobError;
use jail::probe::runner_report;

use super::{CmdResult, Failure};

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
pub fn run(a: ProbeArgs) -> CmdResult {
    let ok = |p: &str| eprintln!("jail: probe ok: {p}");
    let timeout = Duration::from_secs(a.timeout);
    let report = runner_report(a.pid, a.probes, timeout, &a.stop_signal, &ok)
        .ok_or_else(|| Failure::usage(JobError::StopSignal(a.stop_signal.clone())))?;
    println!("{report}");
    Ok(())
}
