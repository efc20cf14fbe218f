//! Registry credentials: `--creds`, then the auth files podman, skopeo and
//! docker write (docs/registry.md, "Authentication").
//!
//! A credential is a [`Secret`]: it has no `Display`, its `Debug` is
//! redacted, and no error here quotes a file's content (serde_json's
//! messages can quote the offending value, so they are reduced to a line
//! and column).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// A password or token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate to one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (HTTP basic, or exchanged for a bearer
    /// token at the registry's token service).
    Basic { username: String, password: Secret },
    /// A registry token (`registrytoken`): sent as a bearer token.
    Token(Secret),
    /// An identity token (`identitytoken`): an OAuth2 refresh token,
    /// exchanged for a bearer token at the registry's token service.
    Identity(Secret),
}

/// Credentials and where they came from (a flag or a file: never the
/// credential itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub source: String,
}

/// Why credentials could not be read. Messages name the file or flag,
/// never a credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--creds: expected USER:PASSWORD (a non-empty user, then a colon)")]
    BadCreds,
    #[error("cannot read registry credentials from {}: {what}; fix or move the file", path.display())]
    File { path: PathBuf, what: String },
}

/// `--creds USER:PASSWORD`.
pub fn parse_creds(s: &str) -> Result<Credentials, AuthError> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Credentials::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        }),
        _ => Err(AuthError::BadCreds),
    }
}

/// The auth files, in the order they are searched: `$REGISTRY_AUTH_FILE`
/// (else `$XDG_RUNTIME_DIR/containers/auth.json`), then
/// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/…`), then
/// `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`).
pub fn auth_files() -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let mut files = Vec::new();
    match var("REGISTRY_AUTH_FILE") {
        Some(f) => files.push(f),
        None => {
            if let Some(d) = var("XDG_RUNTIME_DIR") {
                files.push(d.join("containers/auth.json"));
            }
        }
    }
    if let Some(d) = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(d) = var("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push(d.join("config.json"));
    }
    files
}

/// The credentials for `registry`/`repository`: `flag` (from `--creds`)
/// first, then the first auth file with an entry for them. A missing file
/// is skipped; an unreadable or malformed one is an error.
pub fn lookup(
    registry: &str,
    repository: &str,
    flag: Option<&Credentials>,
    files: &[PathBuf],
) -> Result<Option<Found>, AuthError> {
    if let Some(c) = flag {
        return Ok(Some(Found {
            credentials: c.clone(),
            source: "--creds".into(),
        }));
    }
    for f in files {
        let text = match std::fs::read(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(AuthError::File {
                    path: f.clone(),
                    what: e.to_string(),
                })
            }
        };
        if let Some(c) = from_auth_file(&text, f, registry, repository)? {
            return Ok(Some(Found {
                credentials: c,
                source: f.display().to_string(),
            }));
        }
    }
    Ok(None)
}

/// The entry for `registry`/`repository` in one auth file (docker's
/// config.json or containers' auth.json: both keep an `auths` map).
fn from_auth_file(
    text: &[u8],
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, AuthError> {
    let bad = |what: String| AuthError::File {
        path: path.to_path_buf(),
        what,
    };
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        bad(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Some(auths) = v.get("auths") else {
        return Ok(None);
    };
    let auths = auths
        .as_object()
        .ok_or_else(|| bad("`auths` is not an object".into()))?;
    // The most specific key wins: `host/namespace/repo` over `host`.
    let Some((key, entry)) = auths
        .iter()
        .filter_map(|(k, e)| key_matches(k, registry, repository).map(|len| (len, k, e)))
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, k, e)| (k, e))
    else {
        return Ok(None);
    };
    let field = |name: &str| -> Result<Option<&str>, AuthError> {
        match entry.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("auths.{key:?}.{name} is not a string"))),
        }
    };
    if let Some(t) = field("identitytoken")? {
        return Ok(Some(Credentials::Identity(Secret::new(t))));
    }
    if let Some(t) = field("registrytoken")? {
        return Ok(Some(Credentials::Token(Secret::new(t))));
    }
    if let Some(a) = field("auth")? {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of USER:PASSWORD")))?;
        return match decoded.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Some(Credentials::Basic {
                username: u.to_string(),
                password: Secret::new(p),
            })),
            _ => Err(bad(format!(
                "auths.{key:?}.auth is not base64 of USER:PASSWORD"
            ))),
        };
    }
    if let (Some(u), Some(p)) = (field("username")?, field("password")?) {
        return Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        }));
    }
    Ok(None)
}

/// How specific an `auths` key is for `registry`/`repository` (its
/// length), or `None` when it does not apply. Keys may carry a scheme and a
/// `/v1/` or `/v2/` suffix (docker's `https://index.docker.io/v1/`), or a
/// repository namespace (podman's `host/namespace`).
fn key_matches(key: &str, registry: &str, repository: &str) -> Option<usize> {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (khost, kpath) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    // Docker Hub answers to several names.
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    let host_ok = khost == registry || (hub.contains(&khost) && hub.contains(&registry));
    if !host_ok {
        return None;
    }
    match kpath {
        None => Some(k.len()),
        Some(p) if repository == p || repository.starts_with(&format!("{p}/")) => Some(k.len()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_docker_and_containers_auth_files() {
        let p = Path::new("auth.json");
        let text = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io/team":{{"identitytoken":"idt"}},"quay.io":{{"registrytoken":"rt"}}}},"credsStore":"desktop"}}"#,
            b64("u:p:w"),
            b64("hub:pw")
        );
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: Secret::new(p),
        };
        let get = |reg: &str, repo: &str| from_auth_file(text.as_bytes(), p, reg, repo).unwrap();
        assert_eq!(get("127.0.0.1:5000", "x"), Some(basic("u", "p:w")));
        assert_eq!(
            get("docker.io", "library/busybox"),
            Some(basic("hub", "pw"))
        );
        assert_eq!(
            get("quay.io", "team/app"),
            Some(Credentials::Identity(Secret::new("idt")))
        );
        assert_eq!(
            get("quay.io", "other/app"),
            Some(Credentials::Token(Secret::new("rt")))
        );
        assert_eq!(get("127.0.0.1:5001", "x"), None);
    }

    #[test]
    fn errors_never_quote_the_file() {
        let p = Path::new("auth.json");
        for text in [
            r#"{"auths":{"h.io":{"auth":"hunter2hunter2"}}}"#,
            r#"{"auths":{"h.io":{"auth":42}}, "x": hunter2}"#,
            r#"{"auths":"hunter2"}"#,
        ] {
            let e = from_auth_file(text.as_bytes(), p, "h.io", "x").unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(e.to_string().contains("auth.json"), "{e}");
        }
        let e = parse_creds("nocolon").unwrap_err();
        assert!(!e.to_string().contains("nocolon"));
    }

    #[test]
    fn secrets_are_redacted() {
        let c = parse_creds("me:hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
