//! Probing a service (`jail slim --probe`): wait until the first probe (a
//! shell command run on the host, inside the service's network namespace)
//! succeeds, run the others, then stop the service with its StopSignal and,
//! after a grace period, SIGKILL.
//!
//! While the service is traced, the probes must not be jail's own children
//! (the tracer reaps every child of jail): [`probe_traced`] has a probe
//! runner do it, a process of its own: the jail binary re-executed as
//! `jail probe-runner --pid INIT --timeout SECS --stop-signal SIG -- PROBE…`,
//! whose command calls [`run_probes`] and prints [`RUNNER_OK`] or why not.
//! A finished jail is probed in-process ([`ProbedService::check`]).

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sandbox;
use crate::verify::Expectation;

/// What the probe runner prints when every probe succeeded.
pub const RUNNER_OK: &str = "ok";

/// How long the service gets to stop after its StopSignal.
const GRACE: Duration = Duration::from_secs(10);

/// Why probing a service failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("the service did not start")]
    NotStarted,
    #[error("cannot find jail's own executable for the probe runner: {0}")]
    NoExecutable(std::io::Error),
    #[error("cannot start the probe runner: {0}")]
    RunnerStart(std::io::Error),
    #[error("the probe runner died without a report")]
    RunnerDied,
    /// The probe runner's report, as it printed it.
    #[error("{0}")]
    Runner(String),
    #[error("probe `{probe}` never succeeded within {secs}s: {stderr}")]
    NeverReady {
        probe: String,
        secs: u64,
        stderr: String,
    },
    #[error("cannot run probe `{probe}`: {error}")]
    CannotRun {
        probe: String,
        error: std::io::Error,
    },
    #[error("probe `{probe}` failed ({status}): {stderr}")]
    Failed {
        probe: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot start the service in the jail: {0}")]
    JailStart(sandbox::SandboxError),
    #[error("the probe thread panicked")]
    Panicked,
    #[error("{probe} (the service in the jail ended with {status})")]
    JailEnded {
        probe: Box<ProbeFailure>,
        status: std::process::ExitStatus,
    },
    #[error("{probe} (and the sandbox failed: {error})")]
    JailFailed {
        probe: Box<ProbeFailure>,
        error: sandbox::SandboxError,
    },
}

/// The probes of a service and how to stop it.
#[derive(Debug, Clone)]
pub struct Probes {
    /// Shell commands; the first is the readiness check.
    pub commands: Vec<String>,
    /// How long the first may take to succeed.
    pub timeout: Duration,
    /// The service's StopSignal.
    pub stop: Signal,
}

/// `SIGTERM`, `TERM`, `15` → a signal; none or empty → SIGTERM. `None`: not
/// a signal.
pub fn parse_signal(s: Option<&str>) -> Option<Signal> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Some(Signal::SIGTERM);
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    name.parse::<Signal>().ok()
}

/// Beside the tracer: wait for the traced service's sandbox init to be
/// reported on `started`, then have a probe runner probe and stop it.
pub fn probe_traced(started: &mpsc::Receiver<i32>, probes: &Probes) -> Result<(), ProbeFailure> {
    let init = started
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| ProbeFailure::NotStarted)?;
    let exe = std::env::current_exe().map_err(ProbeFailure::NoExecutable)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("probe-runner")
        .arg("--pid")
        .arg(init.to_string())
        .arg("--timeout")
        .arg(probes.timeout.as_secs().to_string())
        .arg("--stop-signal")
        .arg(probes.stop.as_str());
    cmd.arg("--").args(&probes.commands);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(ProbeFailure::RunnerStart)?;
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut out, &mut report);
    }
    // Not waited for here: the tracer reaps it.
    match report.trim() {
        RUNNER_OK => Ok(()),
        "" => Err(ProbeFailure::RunnerDied),
        why => Err(ProbeFailure::Runner(why.to_string())),
    }
}

/// The probe runner's work (`jail probe-runner`): probe the service whose
/// sandbox init is `init`, stop it, and return the report to print
/// ([`RUNNER_OK`] or why not). `None`: `stop_signal` is not a signal.
pub fn runner_report(
    init: i32,
    commands: Vec<String>,
    timeout: Duration,
    stop_signal: &str,
    ok: &dyn Fn(&str),
) -> Option<String> {
    let stop = parse_signal(Some(stop_signal))?;
    let probes = Probes {
        commands,
        timeout,
        stop,
    };
    Some(match run_probes(init, &probes, ok) {
        Ok(()) => RUNNER_OK.to_string(),
        Err(why) => why.to_string(),
    })
}

/// Run the probes against the service in the sandbox whose init is `init`
/// (on the host, in the sandbox's network namespace), then stop it.
/// `ok(probe)` is told each probe that succeeded.
pub fn run_probes(init: i32, probes: &Probes, ok: &dyn Fn(&str)) -> Result<(), ProbeFailure> {
    let run_probe = |p: &str| -> std::io::Result<std::process::Output> {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(p);
        crate::sys::process::in_network_of(&mut cmd, init)?;
        cmd.output()
    };
    let cannot_run = |p: &str, e: std::io::Error| ProbeFailure::CannotRun {
        probe: p.to_string(),
        error: e,
    };
    let result = (|| {
        let (first, rest) = probes
            .commands
            .split_first()
            .ok_or(ProbeFailure::RunnerDied)?;
        let deadline = Instant::now() + probes.timeout;
        // The first probe doubles as the readiness check.
        loop {
            match run_probe(first) {
                Ok(o) if o.status.success() => {
                    ok(first);
                    break;
                }
                Ok(o) if Instant::now() >= deadline => {
                    return Err(ProbeFailure::NeverReady {
                        probe: first.clone(),
                        secs: probes.timeout.as_secs(),
                        stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    })
                }
                Err(e) => return Err(cannot_run(first, e)),
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        for p in rest {
            match run_probe(p) {
                Ok(o) if o.status.success() => ok(p),
                Ok(o) => {
                    return Err(ProbeFailure::Failed {
                        probe: p.clone(),
                        status: o.status,
                        stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    })
                }
                Err(e) => return Err(cannot_run(p, e)),
            }
        }
        Ok(())
    })();
    stop(init, probes.stop);
    result
}

/// Stop the service: its StopSignal to the payload (init's first child),
/// then SIGKILL to the whole sandbox if it lingers.
fn stop(init: i32, signal: Signal) {
    let payload = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        });
    let target = Pid::from_raw(payload.unwrap_or(init));
    let _ = kill(target, signal);
    let alive = || Path::new(&format!("/proc/{init}")).exists();
    let grace = Instant::now() + GRACE;
    while Instant::now() < grace && alive() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
    }
}

/// `slim --verify --probe`: start the slim jail as the image runs it, probe
/// it as the traced service was probed, stop it.
pub struct ProbedService {
    pub run: Expectation,
    pub probes: Probes,
}

impl ProbedService {
    /// Start the service in `tree` and probe it.
    pub fn check(&self, tree: &Path, ok: &(dyn Fn(&str) + Sync)) -> Result<(), ProbeFailure> {
        let spec = self.run.spec(tree).map_err(ProbeFailure::JailStart)?;
        let mut child =
            sandbox::spawn(&spec, sandbox::Hooks::default()).map_err(ProbeFailure::JailStart)?;
        child.start().map_err(ProbeFailure::JailStart)?;
        let init = child.pid().as_raw();
        // The probes run beside; this thread reaps the sandbox, so that a
        // stopped service is gone (not a zombie) when the prober looks.
        std::thread::scope(|s| {
            let prober = s.spawn(|| run_probes(init, &self.probes, ok));
            let status = child.wait();
            let probed = prober.join().map_err(|_| ProbeFailure::Panicked)?;
            match (probed, status) {
                (Ok(()), _) => Ok(()),
                (Err(why), Ok(status)) => Err(ProbeFailure::JailEnded {
                    probe: Box::new(why),
                    status,
                }),
                (Err(why), Err(e)) => Err(ProbeFailure::JailFailed {
                    probe: Box::new(why),
                    error: e,
                }),
            }
        })
    }
}
