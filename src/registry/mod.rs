//! OCI registries: pulling an image's blobs into the user's blob cache (the
//! image reader then reads them as from a layout) and pushing a written
//! image (docs/registry.md).
//!
//! The protocol is oci-client's (over reqwest and rustls); this module
//! chooses what to fetch, verifies every digest and size itself, keeps the
//! cache consistent, finds credentials, and turns the client's errors into
//! ones that name the reference and say what to do. jail is synchronous:
//! each pull or push runs on its own current-thread tokio runtime.

pub mod auth;
pub mod cache;
mod pull;
mod push;
mod record;
mod reference;
mod token;

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

pub use self::auth::{Credentials, Secret};
pub use self::cache::BlobCache;
pub use self::pull::{pull, Pulled};
pub use self::push::{push, BlobSource, PushBlob, Pushed};
pub use self::reference::{BadRegistryRef, RegistryRef};
use crate::oci::Platform;
use crate::sys::interrupt::Interrupted;

/// How long to wait for a connection, and for each read of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach registries and what to pull.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP; all others
    /// over HTTPS with the system's roots.
    pub insecure: Vec<String>,
    /// From `--creds`: wins over the auth files.
    pub credentials: Option<Credentials>,
    /// The platform to choose from an image index (default: the host's).
    pub platform: Option<Platform>,
    /// The blob cache's directory (default: the user's, see
    /// [`BlobCache::user`]).
    pub cache: Option<PathBuf>,
    /// The auth files to search (default: [`auth::auth_files`]).
    pub auth_files: Option<Vec<PathBuf>>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Why a pull or a push failed. Every message names the reference; none
/// holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] BadRegistryRef),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("{reference}: cannot reach the registry {registry}: {what}")]
    Unreachable {
        reference: String,
        registry: String,
        what: String,
    },
    #[error("{reference}: the registry refused to let jail {action} ({status}): {hint}")]
    Denied {
        reference: String,
        action: String,
        status: u16,
        hint: String,
    },
    #[error("{reference}: {what} not found in the registry")]
    NotFound { reference: String, what: String },
    #[error("{reference}: cannot {action}: {what}")]
    Failed {
        reference: String,
        action: String,
        what: String,
    },
    #[error("{reference}: blob {digest}: {what}; nothing was kept in the cache")]
    Blob {
        reference: String,
        digest: String,
        what: String,
    },
    /// The image or the request cannot be served (exit 2).
    #[error("{reference}: {what}")]
    Unsupported { reference: String, what: String },
    #[error("{reference}")]
    Cache {
        reference: String,
        source: cache::CacheError,
    },
    #[error("{reference}: cannot read the image to push: {what}")]
    Local { reference: String, what: String },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl RegistryError {
    /// True when the reference, the flags or the image are at fault (exit
    /// 2), rather than the registry or the network (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RegistryError::Reference(_)
                | RegistryError::Auth(_)
                | RegistryError::Unsupported { .. }
        )
    }

    /// The signal, when the work was interrupted.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            RegistryError::Interrupted(i) => Some(*i),
            _ => None,
        }
    }
}

impl crate::error::ExitCode for RegistryError {
    fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        RegistryError::interrupted(self)
    }

    fn is_bad_input(&self) -> bool {
        RegistryError::is_bad_input(self)
    }
}

/// The operation a session is for: what it asks the registry to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Pull,
    Push,
}

/// One registry conversation: a runtime, a client with its credentials,
/// and what errors should say.
struct Session {
    rt: tokio::runtime::Runtime,
    client: oci_client::Client,
    auth: RegistryAuth,
    /// The reference as the user wrote it, for messages.
    reference: String,
    registry: String,
    /// Where the credentials came from (`--creds` or a file), if any.
    auth_source: Option<String>,
    op: Op,
}

impl Session {
    fn open(r: &RegistryRef, opts: &RegistryOptions, op: Op) -> Result<Session, RegistryError> {
        let files = opts.auth_files.clone().unwrap_or_else(auth::auth_files);
        let found = auth::lookup(
            &r.registry,
            &r.repository,
            opts.credentials.as_ref(),
            &files,
        )?;
        // rustls without a built-in provider: ring, chosen here once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let insecure: Vec<String> = opts.insecure.iter().map(|h| normalize_host(h)).collect();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("jail/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let reference = r.to_string();
        let failed = |what: String| RegistryError::Failed {
            reference: reference.clone(),
            action: "start a registry client".into(),
            what,
        };
        let client = oci_client::Client::try_from(config).map_err(|e| failed(chain(&e)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let scheme = if insecure.contains(&r.registry) {
            "http"
        } else {
            "https"
        };
        let mut s = Session {
            rt,
            client,
            auth: RegistryAuth::Anonymous,
            reference,
            registry: r.registry.clone(),
            auth_source: found.as_ref().map(|f| f.source.clone()),
            op,
        };
        s.auth = match found.map(|f| f.credentials) {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username, password.expose().to_string())
            }
            Some(Credentials::Token(t)) => RegistryAuth::Bearer(t.expose().to_string()),
            Some(Credentials::Identity(t)) => {
                let scope = match op {
                    Op::Pull => format!("repository:{}:pull", r.repository),
                    Op::Push => format!("repository:{}:pull,push", r.repository),
                };
                let base = format!("{scheme}://{}", r.registry);
                let token =
                    s.rt.block_on(token::exchange(&base, &t, &scope))
                        .map_err(|e| s.token_error(e))?;
                RegistryAuth::Bearer(token.expose().to_string())
            }
        };
        s.rt.block_on(s.client.store_auth_if_needed(&s.registry, &s.auth));
        Ok(s)
    }

    fn token_error(&self, e: token::TokenError) -> RegistryError {
        match e {
            token::TokenError::Refused(status) => {
                self.denied(status, "exchange its identity token")
            }
            token::TokenError::Unreachable(what) => RegistryError::Unreachable {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                what,
            },
            token::TokenError::Protocol(what) => RegistryError::Failed {
                reference: self.reference.clone(),
                action: "exchange its identity token".into(),
                what,
            },
        }
    }

    /// A 401/403, with what to do about it.
    fn denied(&self, status: u16, action: &str) -> RegistryError {
        let verb = match self.op {
            Op::Pull => "pull from",
            Op::Push => "push to",
        };
        let hint = match (&self.auth_source, status) {
            (None, _) => format!(
                "no credentials for {reg} were found: pass --creds USER:PASSWORD, or log in with `podman login {reg}` or `docker login {reg}` ($REGISTRY_AUTH_FILE, ~/.docker/config.json; see docs/registry.md)",
                reg = self.registry
            ),
            (Some(src), 403) => format!(
                "the credentials from {src} are valid but may not {verb} this repository"
            ),
            (Some(src), _) => format!(
                "the credentials from {src} were refused: check the user name and password or token"
            ),
        };
        RegistryError::Denied {
            reference: self.reference.clone(),
            action: action.to_string(),
            status,
            hint,
        }
    }

    /// The client's error, classified: 401/403, 404, unreachable, other.
    fn error(&self, action: &str, what: &str, e: OciDistributionError) -> RegistryError {
        use OciDistributionError as E;
        let status = match &e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => Some(401),
            E::ServerError { code, .. } => Some(*code),
            E::ImageManifestNotFoundError(_) => Some(404),
            E::RequestError(r) => r.status().map(|s| s.as_u16()),
            E::RegistryError { envelope, .. } => {
                envelope.errors.iter().find_map(|x| match x.code {
                    OciErrorCode::Unauthorized => Some(401),
                    OciErrorCode::Denied => Some(403),
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound => Some(404),
                    _ => None,
                })
            }
            _ => None,
        };
        match status {
            Some(s @ (401 | 403)) => return self.denied(s, action),
            Some(404) => {
                return RegistryError::NotFound {
                    reference: self.reference.clone(),
                    what: what.to_string(),
                }
            }
            _ => {}
        }
        let unreachable = match &e {
            E::RequestError(r) => r.is_connect() || r.is_timeout(),
            E::IoError(_) => true,
            _ => false,
        };
        if unreachable {
            let mut what = chain(&e);
            if what.contains("InvalidContentType") || what.contains("invalid peer certificate") {
                what.push_str(" (a plain-HTTP registry needs --insecure-registry HOST[:PORT])");
            }
            return RegistryError::Unreachable {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                what,
            };
        }
        RegistryError::Failed {
            reference: self.reference.clone(),
            action: action.to_string(),
            what: chain(&e),
        }
    }
}

/// `HOST[:PORT]` as the client compares it (a scheme or a trailing slash
/// dropped).
fn normalize_host(h: &str) -> String {
    h.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// An error and its causes on one line (reqwest's own message only says
/// which URL; the cause says why).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
