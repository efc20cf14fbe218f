//! `jail pack DIR -o IMAGE`: pack an existing tree as a deterministic image.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use jail::fileset::FileSet;
use jail::image::{
    self, Compression, Format, ImageError, ImageSpec, ImageSummary, Platform, Reference,
    WriteOptions,
};
use jail::resolve::Root;

use super::{warn, CmdResult, Failure};

/// The PATH an image without one gets from podman and docker.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to pack (its contents become the image's /).
    dir: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// oci-archive (one tar, also loadable as a docker archive) or oci-dir.
    #[arg(long, default_value = "oci-archive")]
    format: Format,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    compression: Compression,
    /// Image name and tag [default: jail/<DIR name>:latest].
    #[arg(long, value_name = "NAME:TAG")]
    tag: Option<String>,
    /// Entrypoint: a JSON array (`'["/bin/sh","-c"]'`) or words split on
    /// whitespace.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Cmd: a JSON array or words split on whitespace.
    #[arg(long)]
    cmd: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// User (name or uid, optionally :group).
    #[arg(long)]
    user: Option<String>,
    /// Config label (repeatable).
    #[arg(long, value_name = "K=V")]
    label: Vec<String>,
    /// Compression threads [default: all cores]; never changes the bytes.
    #[arg(long, hide = true)]
    threads: Option<usize>,
    /// Print a JSON summary on stdout (docs/formats.md).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CmdResult {
    // From the start: a Ctrl-C while the tree is read stops at the first
    // check, with the same clean exit.
    jail::sys::interrupt::install();
    let sde = image::source_date_epoch().map_err(Failure::usage)?;
    let reference = match &a.tag {
        Some(t) => Reference::parse(t).map_err(Failure::usage)?,
        None => {
            let name = std::fs::canonicalize(&a.dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            Reference::default_for(name.as_deref().unwrap_or("image"))
        }
    };
    let entrypoint = a
        .entrypoint
        .as_deref()
        .map(|s| parse_argv(s).context("--entrypoint"))
        .transpose()
        .map_err(Failure::usage)?;
    let cmd = a
        .cmd
        .as_deref()
        .map(|s| parse_argv(s).context("--cmd"))
        .transpose()
        .map_err(Failure::usage)?;
    for e in &a.env {
        check_kv(e, "--env")?;
    }
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = check_kv(l, "--label")?;
        labels.insert(k.to_string(), v.to_string());
    }
    if a.threads == Some(0) {
        return Err(Failure::usage(anyhow!("--threads must be at least 1")));
    }

    let fs = FileSet::from_dir(&a.dir)
        .map_err(|e| Failure::usage(anyhow!("{e}: `jail pack` needs a readable directory tree")))?;
    let platform = platform_of(&a.dir, entrypoint.as_ref().or(cmd.as_ref()), &a.env);
    let spec = ImageSpec {
        reference,
        platform,
        entrypoint,
        cmd,
        env: a.env.clone(),
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        labels,
        // Not the directory: the same tree packed from anywhere gives the
        // same image.
        command: "jail pack".into(),
        ..ImageSpec::default()
    };
    let opts = WriteOptions {
        format: a.format,
        compression: a.compression,
        source_date_epoch: sde,
        threads: a.threads,
        progress: std::io::stderr().is_terminal(),
    };
    let summary =
        image::write(&fs, &spec, &opts, &a.output).map_err(|e| image_failure(e, &a.output))?;
    report(&summary);
    if a.json {
        let line = serde_json::to_string(&summary).map_err(Failure::failed)?;
        println!("{line}");
    }
    Ok(())
}

/// Map an image error to its exit code: 2 for bad input, 128+N for a
/// signal, 1 otherwise.
pub(super) fn image_failure(e: ImageError, dest: &std::path::Path) -> Failure {
    if let Some(sig) = e.interrupted() {
        return Failure {
            code: sig.exit_code(),
            error: anyhow!("{e}; nothing was written to {}", dest.display()),
        };
    }
    if e.is_bad_input() {
        Failure::usage(e)
    } else {
        Failure::failed(e)
    }
}

/// Human summary on stderr.
pub(super) fn report(s: &ImageSummary) {
    eprintln!(
        "jail: wrote {} ({}, {}) as {}",
        s.output.display(),
        serde_plain(&s.format),
        serde_plain(&s.compression),
        s.reference
    );
    eprintln!("  image id:        {}", s.image_id);
    eprintln!("  manifest digest: {}", s.manifest_digest);
    eprintln!("  platform:        {}", s.platform);
    eprintln!("  files:           {}", s.files);
    eprintln!(
        "  size:            {} uncompressed, {} compressed",
        human(s.uncompressed_size),
        human(s.compressed_size)
    );
}

fn serde_plain(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

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

/// `--entrypoint`/`--cmd`: a JSON array of strings, or words split on
/// whitespace.
pub(super) fn parse_argv(s: &str) -> anyhow::Result<Vec<String>> {
    let t = s.trim_start();
    let v: Vec<String> = if t.starts_with('[') {
        serde_json::from_str(t).map_err(|e| anyhow!("{s:?} is not a JSON array of strings: {e}"))?
    } else {
        s.split_whitespace().map(str::to_string).collect()
    };
    if v.is_empty() {
        return Err(anyhow!("empty command"));
    }
    Ok(v)
}

fn check_kv<'a>(s: &'a str, flag: &str) -> Result<(&'a str, &'a str), Failure> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(Failure::usage(anyhow!("{flag} {s:?}: expected KEY=VALUE"))),
    }
}

/// The platform of the entrypoint inside the tree, else the host's.
fn platform_of(dir: &std::path::Path, argv: Option<&Vec<String>>, env: &[String]) -> Platform {
    let Some(program) = argv.and_then(|v| v.first()) else {
        return Platform::host();
    };
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let found = Root::new(dir)
        .ok()
        .and_then(|root| Platform::of_program(&root, program, path));
    found.unwrap_or_else(|| {
        warn(format!(
            "entrypoint {program:?} is not an ELF program in {} (looked on PATH {path}); the image's architecture is the host's",
            dir.display()
        ));
        Platform::host()
    })
}
