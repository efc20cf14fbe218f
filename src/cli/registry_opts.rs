//! Registry flags, one definition for every command: how to reach
//! registries (`RegistryOpts`: trace, pack, slim, diff), what to pull from
//! an index (`PullOpts`: slim, diff), and the push that trace, slim and pack
//! do once the image is written (`--push`, in `ImageOpts`).

use std::io::IsTerminal;
use std::str::FromStr;

use anyhow::anyhow;
use jail::image::read::{ImageSource, LocalImage, Select};
use jail::image::{Format, ImageSummary, Platform};
use jail::registry::{self, auth, RegistryError, RegistryOptions, RegistryRef};

use super::Failure;

/// How to reach registries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryOpts {
    /// Speak plain HTTP (no TLS) to this registry, e.g. a test registry on
    /// loopback (repeatable). Every other registry is reached over HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Registry credentials, over those of the auth files
    /// ($REGISTRY_AUTH_FILE, ~/.docker/config.json). Other users can see a
    /// command line: prefer `podman login` or an auth file.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<CredsArg>,
}

/// `--creds` as given: never printed (clap would quote a value it refuses,
/// so this parser refuses nothing; `RegistryOpts::options` checks it).
#[derive(Clone)]
pub struct CredsArg(String);

impl FromStr for CredsArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(CredsArg(s.to_string()))
    }
}

impl std::fmt::Debug for CredsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl RegistryOpts {
    /// The library's options (a malformed `--creds`: exit 2).
    pub fn options(&self) -> Result<RegistryOptions, Failure> {
        let credentials = match &self.creds {
            Some(c) => Some(auth::parse_creds(&c.0).map_err(Failure::usage)?),
            None => None,
        };
        Ok(RegistryOptions {
            insecure: self.insecure_registry.clone(),
            credentials,
            progress: std::io::stderr().is_terminal(),
            ..RegistryOptions::default()
        })
    }
}

/// What to pull: the registry flags and the platform.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PullOpts {
    #[command(flatten)]
    pub registry: RegistryOpts,
    /// The platform to pull from a multi-platform image (an index)
    /// [default: the host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

impl PullOpts {
    pub fn options(&self) -> Result<RegistryOptions, Failure> {
        let mut o = self.registry.options()?;
        if let Some(p) = &self.platform {
            o.platform = Some(Platform::parse(p).map_err(Failure::usage)?);
        }
        Ok(o)
    }
}

/// `--push REF`, checked before any work (a bad reference: exit 2).
pub fn push_target(push: Option<&str>) -> Result<Option<RegistryRef>, Failure> {
    push.map(|s| RegistryRef::parse(s).map_err(|e| Failure::usage(anyhow!("--push: {e}"))))
        .transpose()
}

/// A registry error as a failure: exit 2 for bad references, flags or
/// images, 128+N when interrupted, 1 otherwise.
pub fn registry_failure(e: RegistryError) -> Failure {
    Failure::of(e)
}

/// Push the image just written (`summary`) to `target`, print the pushed
/// reference by digest, and record it in the summary (`--json`).
pub fn push_image(
    summary: &mut ImageSummary,
    target: &RegistryRef,
    opts: &RegistryOptions,
) -> Result<(), Failure> {
    let source = match summary.format {
        Format::OciArchive => ImageSource::Archive(summary.output.clone()),
        Format::OciDir => ImageSource::Layout {
            dir: summary.output.clone(),
            select: Select::Only,
        },
    };
    let local = LocalImage::open(&source).map_err(|e| {
        Failure::failed(anyhow!(
            "cannot read the image just written to push it: {}",
            jail::error::Chain(&e)
        ))
    })?;
    if local.manifest_digest != summary.manifest_digest {
        return Err(Failure::failed(anyhow!(
            "{} changed since it was written (manifest {}, not {}); not pushing it",
            summary.output.display(),
            local.manifest_digest,
            summary.manifest_digest
        )));
    }
    let pushed = registry::push(
        &local.manifest,
        &local.media_type,
        &local.blobs,
        &local,
        target,
        opts,
    )
    .map_err(registry_failure)?;
    eprintln!(
        "jail: pushed {} as {} ({} blob(s) uploaded, {} bytes; skipped: {} already there, {} mounted from another repository, {} bytes)",
        pushed.tag.as_deref().unwrap_or(&pushed.reference),
        pushed.reference,
        pushed.uploaded,
        pushed.uploaded_bytes,
        pushed.existing,
        pushed.mounted,
        pushed.existing_bytes + pushed.mounted_bytes
    );
    summary.pushed = Some(pushed);
    Ok(())
}
