//! The jobs the commands run, from one resolved options struct each
//! (ripgrep's `HiArgs` pattern): `trace` (trace → file set → manifest,
//! tree, checks, image, push), `slim` (unpack → trace in the image →
//! the same outputs), `pack` (a tree → image). A job's `resolve` checks
//! every flag, the config, the user and the destinations before any work,
//! so a bad one never costs a trace; its `run` does the work and returns a
//! summary that the CLI prints as text or `--json`.
//!
//! The pipeline does not print: what it has to say while it works goes to
//! a [`Notes`] (the CLI writes it to stderr as `jail: …`).
//!
//! The top of the library: it uses every stage, and no stage uses it.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::ExitCode;
use crate::image::ImageSummary;

pub mod destinations;
pub mod diff;
pub mod emit;
pub mod evidence;
pub mod ldd;
pub mod pack;
pub mod push;
pub mod report;
pub mod request;
pub mod run;
pub mod slim;
pub mod trace;
pub mod verify;

pub use destinations::Destinations;
pub use request::{FilesRequest, ImageRequest, RegistryRequest};

/// What a job says while it works: progress, results of checks, warnings.
/// `Sync`: probes report from their own threads.
pub trait Notes: Sync {
    /// A line about the work (`file set: 12 paths …`, `ok: … in the jail`).
    fn note(&self, msg: fmt::Arguments<'_>);
    /// Something the user should know that does not stop the work.
    fn warn(&self, msg: fmt::Arguments<'_>);
    /// An image was written (its summary, before any push or document).
    fn image(&self, summary: &ImageSummary);
}

/// A job that failed: the error (which says its own context) and the exit
/// code it maps to (1 failed, 2 bad usage or input, 128+N interrupted).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: Box<dyn Error + Send + Sync + 'static>,
}

impl Failure {
    /// Bad usage or input: exit 2.
    pub fn usage(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Failure {
        Failure {
            code: 2,
            error: error.into(),
        }
    }

    /// The work failed: exit 1.
    pub fn failed(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Failure {
        Failure {
            code: 1,
            error: error.into(),
        }
    }

    /// Exit with `code`, having already said why.
    pub fn silent(code: i32) -> Failure {
        Failure {
            code,
            error: Box::new(Silent),
        }
    }

    /// The exit code: whatever failed after SIGINT/SIGTERM arrived failed
    /// because of it (128+N, the same in every command), else `code`.
    pub fn exit_code(&self) -> i32 {
        match crate::sys::signals::received() {
            Some(sig) if self.code == 1 || self.code == 2 => 128 + sig as i32,
            _ => self.code,
        }
    }

    /// A reader that went away (`jail … | head`): not an error.
    pub fn is_broken_pipe(&self) -> bool {
        let first: &(dyn Error + 'static) = &*self.error;
        std::iter::successors(Some(first), |e| (*e).source()).any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
    }

    /// The code the error's type maps it to (`error::ExitCode`).
    pub fn of<E: ExitCode + Send + Sync + 'static>(error: E) -> Failure {
        Failure {
            code: error.exit_code(),
            error: Box::new(error),
        }
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Failure {
        Failure::of(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// A failure already explained: prints nothing.
#[derive(Debug, thiserror::Error)]
#[error("")]
struct Silent;

/// What the pipeline itself refuses or reports as failed (the stages'
/// own errors travel in [`Failure`] as they are).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{what} {}: the directory {} does not exist; create it or choose another path", .path.display(), .parent.display())]
    NoParent {
        what: &'static str,
        path: PathBuf,
        parent: PathBuf,
    },
    #[error("manifest destination {} is a directory; give a file name", .0.display())]
    ManifestIsDir(PathBuf),
    #[error("tree destination {} exists and is not a directory", .0.display())]
    TreeNotDir(PathBuf),
    #[error("tree destination {} is not empty; pass --force to replace it", .0.display())]
    TreeNotEmpty(PathBuf),
    #[error("{flag}")]
    Flag {
        flag: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync + 'static>,
    },
    #[error("{flag} {value:?}: expected KEY=VALUE")]
    NotKeyValue { flag: &'static str, value: String },
    #[error("{value:?} is not a JSON array of strings")]
    NotArgv {
        value: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("empty command")]
    EmptyArgv,
    #[error("--threads must be at least 1")]
    NoThreads,
    #[error("--layers {0}: give a number from 1 to {max}", max = crate::image::layers::MAX_BUDGET)]
    Layers(usize),
    #[error("--push needs an image: drop --no-image")]
    PushWithoutImage,
    #[error("--attest attaches the SBOM and provenance to the image: drop --no-image")]
    AttestWithoutImage,
    #[error("--push {0}: with --attest the image goes with an index, whose digest is not known ahead; push to a tag (HOST/NAME:TAG)")]
    AttestPushDigest(String),
    #[error("--sbom-format needs --sbom FILE")]
    SbomFormatWithoutSbom,
    #[error("--sbom {}: name it *.spdx.json (SPDX 2.3) or *.cdx.json (CycloneDX 1.6), or pass --sbom-format spdx|cyclonedx", .0.display())]
    SbomName(PathBuf),
    #[error("no command to trace: give one after `--`, or a config with -c")]
    NoCommand,
    #[error("nothing to trace")]
    NothingToTrace,
    #[error("the traced command failed ({exit}); fix it, or pass --keep-going to build from this run anyway")]
    TracedCommandFailed {
        exit: crate::trace::ExitStatus,
        /// 128+N when a signal jail forwarded killed it.
        code: i32,
    },
    #[error("the command failed in the image ({0}); fix it, or pass --keep-going to slim from this run anyway")]
    SlimCommandFailed(crate::trace::ExitStatus),
    #[error("{0} has no Entrypoint or Cmd: give the command to run after `--`")]
    NoEntrypoint(String),
    #[error("cannot create the working directory {} in the image's root", .path.display())]
    Workdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("test {index} of {config}: cannot run {command:?} outside the jail")]
    HostTest {
        index: usize,
        config: String,
        command: Vec<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("{failed} of {run} checks failed inside the jail (each failure above says why)")]
    ChecksFailed { failed: usize, run: usize },
    #[error("cannot write {}", .0.display())]
    WriteFile(PathBuf, #[source] std::io::Error),
    #[error("cannot write the {what} {}", .path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {cause}: `jail pack` needs a readable directory tree", .dir.display())]
    PackRoot { dir: PathBuf, cause: String },
    #[error("{cause}: `jail pack` needs a readable directory tree")]
    PackTree { cause: String },
    #[error("{cause}; nothing was written to {}", .dest.display())]
    ImageInterrupted {
        cause: String,
        dest: PathBuf,
        signal: crate::sys::signals::Interrupted,
    },
    #[error("cannot read the image just written to push it: {0}")]
    PushReread(String),
    #[error("{} changed since it was written (manifest {found}, not {written}); not pushing it", .path.display())]
    PushChanged {
        path: PathBuf,
        found: crate::digest::Digest,
        written: crate::digest::Digest,
    },
    #[error("the image's StopSignal {0:?} is not a signal")]
    StopSignal(String),
    #[error("the probe thread panicked")]
    ProbePanicked,
    #[error("{0}")]
    Probe(crate::probe::ProbeFailure),
}

impl ExitCode for JobError {
    fn interrupted(&self) -> Option<crate::sys::signals::Interrupted> {
        match self {
            JobError::ImageInterrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            JobError::TracedCommandFailed { .. }
                | JobError::SlimCommandFailed(_)
                | JobError::Workdir { .. }
                | JobError::HostTest { .. }
                | JobError::ChecksFailed { .. }
                | JobError::Write { .. }
                | JobError::WriteFile(..)
                | JobError::PushReread(_)
                | JobError::PushChanged { .. }
                | JobError::ProbePanicked
                | JobError::Probe(_)
        )
    }

    fn exit_code(&self) -> i32 {
        match self {
            JobError::TracedCommandFailed { code, .. } => *code,
            JobError::ImageInterrupted { signal, .. } => signal.exit_code(),
            e if e.is_bad_input() => 2,
            _ => 1,
        }
    }
}

/// A flag's value was refused: `--FLAG: why`, exit 2.
pub(crate) fn flag(flag: &'static str, e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
    Failure::usage(JobError::Flag {
        flag,
        source: e.into(),
    })
}

/// `dir`'s parent as written, `.` for a bare name.
pub(crate) fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// An image's summary for people, as `jail: wrote …` and indented lines.
pub struct Written<'a>(pub &'a ImageSummary);

impl fmt::Display for Written<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        writeln!(
            f,
            "jail: wrote {} ({}, {}) as {}",
            s.output.display(),
            plain(&s.format),
            plain(&s.compression),
            s.reference
        )?;
        writeln!(f, "  image id:        {}", s.image_id)?;
        writeln!(f, "  manifest digest: {}", s.manifest_digest)?;
        writeln!(f, "  platform:        {}", s.platform)?;
        writeln!(f, "  files:           {}", s.files)?;
        writeln!(
            f,
            "  size:            {} uncompressed, {} compressed",
            human(s.uncompressed_size),
            human(s.compressed_size)
        )?;
        writeln!(f, "  layers:          {}", s.layers.len())?;
        if let Some(b) = &s.base {
            writeln!(
                f,
                "  base:            {} layer(s) of {} reused; it provides {} paths, and brings {} files / {} this command does not use",
                b.layers,
                b.image,
                b.provided_files,
                b.unused_files,
                human(b.unused_bytes)
            )?;
        }
        Ok(())
    }
}

/// A value serialized as a plain string (`oci-archive`, `gzip`).
fn plain(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `1.5 MiB (1572864 bytes)`, or `12 B`.
fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {} ({n} bytes)", UNITS[u])
    }
}
