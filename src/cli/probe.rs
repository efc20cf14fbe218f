//! `jail probe-runner` (hidden): run by `jail slim --probe` as a process of
//! its own, since the tracer reaps every child of jail (`jail::probe`).

use std::time::Duration;

use jail::pipeline::JobError;
use jail::probe::{parse_signal, run_probes, Probes, RUNNER_OK};

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
    let stop = parse_signal(Some(&a.stop_signal))
        .ok_or_else(|| Failure::usage(JobError::StopSignal(a.stop_signal.clone())))?;
    let probes = Probes {
        commands: a.probes,
        timeout: Duration::from_secs(a.timeout),
        stop,
    };
    let ok = |p: &str| eprintln!("jail: probe ok: {p}");
    match run_probes(a.pid, &probes, &ok) {
        Ok(()) => println!("{RUNNER_OK}"),
        Err(why) => println!("{why}"),
    }
    Ok(())
}
