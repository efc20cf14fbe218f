//! Command-line front end: one file a subcommand, each turning arguments into
//! library calls. Diagnostics go to stderr as `jail: …`; results to stdout.
//!
//! Exit codes: 0 success; 1 the work failed (traced command failed, a check
//! failed); 2 bad usage or bad input; 128+N interrupted by signal N (the
//! traced command killed by a forwarded signal, or SIGINT/SIGTERM to jail
//! during its own work).

use std::io::Write;

use clap::{Parser, Subcommand};

// `print!`, `println!`, `eprint!` and `eprintln!` for every module of the
// CLI, shadowing std's, which panic when the stream is closed
// (`jail slim … 2>&1 | head -1` exited 101 and wrote no image). These drop
// what cannot be written and carry on: a reader that went away is not an
// error (ripgrep's rule), and the image is still written.
macro_rules! print {
    ($($arg:tt)*) => { $crate::cli::write_quietly(&mut ::std::io::stdout(), format_args!($($arg)*)) };
}
macro_rules! println {
    () => { print!("\n") };
    ($($arg:tt)*) => { print!("{}\n", format_args!($($arg)*)) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::cli::write_quietly(&mut ::std::io::stderr(), format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { eprint!("\n") };
    ($($arg:tt)*) => { eprint!("{}\n", format_args!($($arg)*)) };
}

/// Write to stdout or stderr, ignoring a failure (closed pipe, full disk):
/// what the print macros of the CLI call.
pub fn write_quietly(w: &mut dyn Write, args: std::fmt::Arguments<'_>) {
    let _ = w.write_fmt(args);
}

mod build_opts;
mod diff;
mod image_opts;
mod ldd;
mod pack;
mod probe;
mod registry_opts;
mod report;
mod run;
mod sbom;
mod slim;
mod trace;
mod verify;

/// Build the smallest container image that still runs a program, by watching
/// it run.
#[derive(Parser, Debug)]
#[command(name = "jail", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trace CMD, build its file set, write an image.
    Trace(trace::Args),
    /// Print the ELF dependency closure, as the loader would resolve it.
    Ldd(ldd::Args),
    /// Pack an existing directory tree into a deterministic image.
    Pack(pack::Args),
    /// Run a command inside a jail (tree or image).
    Run(run::Args),
    /// Shrink an existing image to what a command uses.
    Slim(slim::Args),
    /// Security review of an image, tree or manifest.
    Report(report::Args),
    /// File-level difference of two images, trees or manifests.
    Diff(diff::Args),
    /// Rebuild an image from its embedded manifest and compare bit for bit,
    /// or check its files against their packages.
    Verify(verify::Args),
    /// Write the SBOM (SPDX 2.3 or CycloneDX 1.6 JSON) of an image.
    Sbom(sbom::Args),
    /// Probe a service for `jail slim --probe` (internal).
    #[command(hide = true)]
    ProbeRunner(probe::ProbeArgs),
}

/// A failed command: the error (printed with each cause once) and its
/// exit code.
pub use jail::pipeline::Failure;

pub type CmdResult = Result<(), Failure>;

/// Parse, dispatch, and turn the outcome into an exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Ldd(a) => ldd::run(a),
        Command::Pack(a) => pack::run(a),
        Command::Run(a) => run::run(a),
        Command::Slim(a) => slim::run(a),
        Command::Report(a) => report::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Sbom(a) => sbom::run(a),
        Command::ProbeRunner(a) => probe::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(f) if f.is_broken_pipe() => 0,
        Err(f) => {
            // The context, then each cause once (jail::error).
            let msg = jail::error::Chain(&*f.error).to_string();
            if !msg.is_empty() {
                eprintln!("jail: error: {msg}");
            }
            f.exit_code()
        }
    }
}

/// The pipeline's notes on stderr: `jail: …`, `jail: warning: …`, and an
/// image's summary.
pub struct Stderr;

impl jail::pipeline::Notes for Stderr {
    fn note(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("jail: {msg}");
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("jail: warning: {msg}");
    }

    fn image(&self, summary: &jail::image::ImageSummary) {
        eprint!("{}", jail::pipeline::Written(summary));
    }
}

/// Print a `--json` summary on stdout, one line.
pub fn print_json(v: &impl serde::Serialize) -> CmdResult {
    let line = serde_json::to_string(v).map_err(Failure::failed)?;
    println!("{line}");
    Ok(())
}
