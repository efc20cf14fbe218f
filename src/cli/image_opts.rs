//! The image options shared by `trace`, `pack` and `slim`, and how an
//! image write is reported: one definition, so the three commands accept
//! the same flags and print the same summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{anyhow, Context};
use jail::image::{
    self, Compression, Format, ImageError, ImageSpec, ImageSummary, Platform, Reference,
    WriteOptions,
};
use jail::resolve::Root;
use jail::sandbox::DEFAULT_PATH;

use super::{warn, Failure};

/// Image metadata and output format.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageOpts {
    /// oci-archive (one tar, also loadable as a docker archive) or oci-dir.
    #[arg(long, default_value = "oci-archive")]
    pub format: Format,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: Compression,
    /// Image name and tag [default: jail/<name>:latest].
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Entrypoint: a JSON array (`'["/bin/sh","-c"]'`) or words split on
    /// whitespace.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON array or words split on whitespace.
    #[arg(long)]
    pub cmd: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// User (name or uid, optionally :group).
    #[arg(long)]
    pub user: Option<String>,
    /// Config label (repeatable).
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Compression threads [default: all cores]; never changes the bytes.
    #[arg(long, hide = true)]
    pub threads: Option<usize>,
    /// Once the image is written, push it to this registry reference
    /// (HOST[:PORT]/NAME[:TAG]; blobs the registry has are skipped) and
    /// print it by digest (NAME@sha256:…).
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// At most N layers (1 to 16): the root's largest packages in layers
    /// of their own, the other packages in one, the files of no package
    /// (the app) on top, so images share layers and an app change
    /// re-pushes only the top (docs/formats.md, "Layers"). 1: one layer
    /// [default: 8; `pack` of an unpacked jail image: the image's].
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Reuse this jail image's layers byte for byte (an archive, an OCI
    /// layout, or a registry reference) and add layers only for what the
    /// command needs beyond it (docs/formats.md, "Layers on a base").
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
}

/// What a command knows about the image before the flags override it.
#[derive(Debug, Default)]
pub struct Defaults {
    pub name: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The tag from a config, below `--tag`.
    pub tag: Option<String>,
}

impl ImageOpts {
    /// The image spec: `defaults` overridden by the flags. `root` is where
    /// the entrypoint is looked up for the image's architecture.
    pub fn spec(
        &self,
        defaults: Defaults,
        root: &Root,
        command: String,
    ) -> Result<ImageSpec, Failure> {
        let reference = match self.tag.as_ref().or(defaults.tag.as_ref()) {
            Some(t) => Reference::parse(t).map_err(Failure::usage)?,
            None => Reference::default_for(&defaults.name),
        };
        let entrypoint = match &self.entrypoint {
            Some(s) => Some(
                parse_argv(s)
                    .context("--entrypoint")
                    .map_err(Failure::usage)?,
            ),
            None => defaults.entrypoint,
        };
        let cmd = match &self.cmd {
            Some(s) => Some(parse_argv(s).context("--cmd").map_err(Failure::usage)?),
            None => defaults.cmd,
        };
        let mut env = defaults.env;
        for e in &self.env {
            let (k, _) = check_kv(e, "--env")?;
            env.retain(|old| old.split_once('=').map(|(ok, _)| ok) != Some(k));
            env.push(e.clone());
        }
        let mut labels = defaults.labels;
        for l in &self.label {
            let (k, v) = check_kv(l, "--label")?;
            labels.insert(k.to_string(), v.to_string());
        }
        if self.threads == Some(0) {
            return Err(Failure::usage(anyhow!("--threads must be at least 1")));
        }
        let platform = platform_of(root, entrypoint.as_ref().or(cmd.as_ref()), &env);
        Ok(ImageSpec {
            reference,
            platform,
            entrypoint,
            cmd,
            env,
            working_dir: self.workdir.clone().or(defaults.workdir),
            user: self.user.clone().or(defaults.user),
            labels,
            command,
            ..ImageSpec::default()
        })
    }

    /// Output options; `SOURCE_DATE_EPOCH` is read here (malformed: exit 2).
    pub fn write_options(&self) -> Result<WriteOptions, Failure> {
        if let Some(n) = self.layers {
            if !(1..=jail::image::layers::MAX_BUDGET).contains(&n) {
                return Err(Failure::usage(anyhow!(
                    "--layers {n}: give a number from 1 to {}",
                    jail::image::layers::MAX_BUDGET
                )));
            }
        }
        Ok(WriteOptions {
            format: self.format,
            compression: self.compression,
            source_date_epoch: image::source_date_epoch().map_err(Failure::usage)?,
            threads: self.threads,
            progress: std::io::stderr().is_terminal(),
            replace: false,
            layering: jail::image::Layering {
                budget: self.layers.unwrap_or(jail::image::layers::DEFAULT_BUDGET),
                ..Default::default()
            },
            base: None,
        })
    }

    /// `--base`, read (and pulled with `registry`) before any work.
    pub fn base(
        &self,
        registry: &jail::registry::RegistryOptions,
    ) -> Result<Option<std::sync::Arc<jail::image::Base>>, Failure> {
        let Some(image) = &self.base else {
            return Ok(None);
        };
        let base =
            jail::image::Base::open(image, registry, &std::env::temp_dir()).map_err(|e| {
                if e.is_bad_input() {
                    Failure::usage(e)
                } else {
                    Failure::failed(e)
                }
            })?;
        eprintln!(
            "jail: base {image}: {} layer(s), {} paths",
            base.layers.len(),
            base.files.len()
        );
        Ok(Some(std::sync::Arc::new(base)))
    }
}

pub fn image_failure(e: ImageError, dest: &Path) -> Failure {
    if let Some(sig) = e.interrupted() {
        return Failure {
            code: sig.exit_code(),
            error: anyhow!(
                "{}; nothing was written to {}",
                jail::error::Chain(&e),
                dest.display()
            ),
        };
    }
    Failure::of(e)
}

/// Human summary on stderr.
pub fn report(s: &ImageSummary) {
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
    eprintln!("  layers:          {}", s.layers.len());
    if let Some(b) = &s.base {
        eprintln!(
            "  base:            {} layer(s) of {} reused; it provides {} paths, and brings {} files / {} this command does not use",
            b.layers,
            b.image,
            b.provided_files,
            b.unused_files,
            human(b.unused_bytes)
        );
    }
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
pub fn parse_argv(s: &str) -> anyhow::Result<Vec<String>> {
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

/// The platform of the entrypoint inside the root, else the host's.
fn platform_of(root: &Root, argv: Option<&Vec<String>>, env: &[String]) -> Platform {
    let Some(program) = argv.and_then(|v| v.first()) else {
        return Platform::host();
    };
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    Platform::of_program(root, program, path).unwrap_or_else(|| {
        warn(format!(
            "entrypoint {program:?} is not an ELF program in {} (looked on PATH {path}); the image's architecture is the host's",
            root.dir().display()
        ));
        Platform::host()
    })
}
