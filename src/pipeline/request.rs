//! The option groups several jobs share, as the CLI hands them over (one
//! definition each, so trace, slim and pack accept the same flags and
//! check them the same way): the image's metadata and output
//! ([`ImageRequest`]), the file-set flags ([`FilesRequest`]) and how to
//! reach registries ([`RegistryRequest`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::config::Config;
use crate::fileset::build::BuildOptions;
use crate::image::{self, Compression, Format, ImageSpec, Platform, Reference, WriteOptions};
use crate::registry::{auth, RegistryOptions, RegistryRef};
use crate::resolve::Root;
use crate::sandbox::DEFAULT_PATH;

use super::{flag, Failure, JobError, Notes};

/// Image metadata and output format (`--format`, `--tag`, `--entrypoint`…).
#[derive(Debug, Clone, Default)]
pub struct ImageRequest {
    pub format: Format,
    pub compression: Compression,
    /// `NAME:TAG` [default: the job's].
    pub tag: Option<String>,
    /// A JSON array, or words split on whitespace.
    pub entrypoint: Option<String>,
    /// A JSON array, or words split on whitespace.
    pub cmd: Option<String>,
    /// `K=V`, over the job's.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// A name or uid, optionally `:group`.
    pub user: Option<String>,
    /// `K=V` labels.
    pub label: Vec<String>,
    /// Compression threads; never changes the bytes.
    pub threads: Option<usize>,
    /// `--push REF` once the image is written.
    pub push: Option<String>,
    /// `--layers N`: the layer budget [default: `image::layers::DEFAULT_BUDGET`].
    pub layers: Option<usize>,
    /// `--base IMAGE`: a jail image whose layers are reused.
    pub base: Option<String>,
}

/// What a job knows about the image before the flags override it.
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

impl ImageRequest {
    /// The image spec: `defaults` overridden by the flags. `root` is where
    /// the entrypoint is looked up for the image's architecture.
    pub fn spec(
        &self,
        defaults: Defaults,
        root: &Root,
        command: String,
        notes: &dyn Notes,
    ) -> Result<ImageSpec, Failure> {
        let reference = match self.tag.as_ref().or(defaults.tag.as_ref()) {
            Some(t) => Reference::parse(t).map_err(Failure::usage)?,
            None => Reference::default_for(&defaults.name),
        };
        let entrypoint = match &self.entrypoint {
            Some(s) => Some(parse_argv(s).map_err(|e| flag("--entrypoint", e))?),
            None => defaults.entrypoint,
        };
        let cmd = match &self.cmd {
            Some(s) => Some(parse_argv(s).map_err(|e| flag("--cmd", e))?),
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
            return Err(JobError::NoThreads.into());
        }
        let platform = platform_of(root, entrypoint.as_ref().or(cmd.as_ref()), &env, notes);
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
    /// `replace`: `--force`.
    pub fn write_options(&self, replace: bool) -> Result<WriteOptions, Failure> {
        if self.threads == Some(0) {
            return Err(JobError::NoThreads.into());
        }
        if let Some(n) = self.layers {
            if !(1..=image::layers::MAX_BUDGET).contains(&n) {
                return Err(JobError::Layers(n).into());
            }
        }
        Ok(WriteOptions {
            format: self.format,
            compression: self.compression,
            source_date_epoch: image::source_date_epoch().map_err(Failure::usage)?,
            threads: self.threads,
            progress: std::io::stderr().is_terminal(),
            replace,
            layering: image::Layering {
                budget: self.layers.unwrap_or(image::layers::DEFAULT_BUDGET),
                ..Default::default()
            },
            base: None,
        })
    }

    /// `--base IMAGE`, read (and pulled with `registry`) before any work.
    pub fn base(
        &self,
        registry: &RegistryOptions,
    ) -> Result<Option<std::sync::Arc<image::Base>>, Failure> {
        let Some(name) = &self.base else {
            return Ok(None);
        };
        let base = image::Base::open(name, registry, &std::env::temp_dir()).map_err(Failure::of)?;
        Ok(Some(std::sync::Arc::new(base)))
    }

    /// `--push REF`, checked before any work (a bad reference: exit 2).
    pub fn push_target(&self) -> Result<Option<RegistryRef>, Failure> {
        self.push
            .as_deref()
            .map(|s| RegistryRef::parse(s).map_err(|e| flag("--push", e)))
            .transpose()
    }
}

/// `--entrypoint`/`--cmd`: a JSON array of strings, or words split on
/// whitespace.
pub fn parse_argv(s: &str) -> Result<Vec<String>, JobError> {
    let t = s.trim_start();
    let v: Vec<String> = if t.starts_with('[') {
        serde_json::from_str(t).map_err(|source| JobError::NotArgv {
            value: s.to_string(),
            source,
        })?
    } else {
        s.split_whitespace().map(str::to_string).collect()
    };
    if v.is_empty() {
        return Err(JobError::EmptyArgv);
    }
    Ok(v)
}

fn check_kv<'a>(s: &'a str, flag: &'static str) -> Result<(&'a str, &'a str), Failure> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(JobError::NotKeyValue {
            flag,
            value: s.to_string(),
        }
        .into()),
    }
}

/// The platform of the entrypoint inside the root, else the host's.
fn platform_of(
    root: &Root,
    argv: Option<&Vec<String>>,
    env: &[String],
    notes: &dyn Notes,
) -> Platform {
    let Some(program) = argv.and_then(|v| v.first()) else {
        return Platform::host();
    };
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    Platform::of_program(root, program, path).unwrap_or_else(|| {
        notes.warn(format_args!(
            "entrypoint {program:?} is not an ELF program in {} (looked on PATH {path}); the image's architecture is the host's",
            root.dir().display()
        ));
        Platform::host()
    })
}

/// The file-set flags of trace and slim.
#[derive(Debug, Clone, Default)]
pub struct FilesRequest {
    /// Globs of files to add.
    pub include: Vec<String>,
    /// Globs of files to leave out.
    pub exclude: Vec<String>,
    /// Keep /etc/passwd and /etc/group whole.
    pub keep_passwd: bool,
    /// Generate /etc/shadow and /etc/gshadow without hashes when read.
    pub redacted_shadow: bool,
    /// Build even when the command exits non-zero, and write the image
    /// even when a check failed.
    pub keep_going: bool,
}

impl FilesRequest {
    /// The build options: the flags' globs, then the config's.
    pub fn build(&self, config: Option<&Config>, user: Option<(u32, u32)>) -> BuildOptions {
        let mut build = BuildOptions {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            keep_passwd: self.keep_passwd,
            redacted_shadow: self.redacted_shadow,
            runtime_reads: Vec::new(),
            user,
            digests: None,
        };
        if let Some(c) = config {
            build.include.extend(c.include.iter().cloned());
            build.exclude.extend(c.exclude.iter().cloned());
        }
        build
    }
}

/// How to reach registries, and what to pull from an index.
#[derive(Debug, Clone, Default)]
pub struct RegistryRequest {
    /// `HOST[:PORT]` spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// `USER:PASSWORD` (never printed).
    pub creds: Option<auth::Secret>,
    /// `OS/ARCH[/VARIANT]` to pull from an index.
    pub platform: Option<String>,
}

impl RegistryRequest {
    /// The library's options (a malformed `--creds` or `--platform`: exit 2).
    pub fn options(&self) -> Result<RegistryOptions, Failure> {
        let credentials = match &self.creds {
            Some(c) => Some(auth::parse_creds(c.expose()).map_err(Failure::usage)?),
            None => None,
        };
        let platform = match &self.platform {
            Some(p) => Some(Platform::parse(p).map_err(Failure::usage)?),
            None => None,
        };
        Ok(RegistryOptions {
            insecure: self.insecure.clone(),
            credentials,
            platform,
            progress: std::io::stderr().is_terminal(),
            ..RegistryOptions::default()
        })
    }
}

/// A config file, loaded (a bad one: exit 2).
pub fn load_config(path: Option<&PathBuf>) -> Result<Option<Config>, Failure> {
    path.map(|p| Config::load(p).map_err(Failure::usage))
        .transpose()
}
