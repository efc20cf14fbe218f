//! Registry flags, one definition for every command: how to reach
//! registries (`RegistryOpts`: trace, pack) and what to pull from an index
//! (`PullOpts`: slim, diff, report, verify, sbom).

use jail::pipeline::RegistryRequest;
use jail::registry::auth::Secret;

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
    // Never printed: clap would quote a value it refuses, so this parser
    // refuses nothing; the pipeline checks it.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = secret)]
    pub creds: Option<Secret>,
}

impl RegistryOpts {
    pub fn request(&self) -> RegistryRequest {
        RegistryRequest {
            insecure: self.insecure_registry.clone(),
            creds: self.creds.clone(),
            platform: None,
        }
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
    pub fn request(&self) -> RegistryRequest {
        RegistryRequest {
            platform: self.platform.clone(),
            ..self.registry.request()
        }
    }
}

fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}
