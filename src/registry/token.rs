//! Identity tokens (docker's `identitytoken`, what `docker login` keeps for
//! registries with OAuth2 logins): a refresh token that the registry's
//! token service exchanges for a bearer token of the scope jail needs
//! (the `refresh_token` grant of the distribution token protocol).
//! oci-client only sends a bearer token as it is, so the exchange is here.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};

use super::auth::Secret;

/// Why the exchange failed. No variant holds a token.
#[derive(Debug)]
pub enum TokenError {
    /// The token service answered 401/403.
    Refused(u16),
    Unreachable(String),
    Protocol(String),
}

/// Exchange `refresh` for a bearer token for `scope` at the token service
/// that `base` (`https://HOST[:PORT]`) names in its `/v2/` challenge.
pub async fn exchange(base: &str, refresh: &Secret, scope: &str) -> Result<Secret, TokenError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| TokenError::Protocol(e.to_string()))?;
    let res = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .map_err(|e| TokenError::Unreachable(super::chain(&e)))?;
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_bearer)
        .ok_or_else(|| {
            TokenError::Protocol(
                "the registry asks for no bearer token at /v2/, so an identity token cannot be used there; log in with a user name and password".into(),
            )
        })?;
    // The refresh token goes only to an HTTPS token service (or a plain-HTTP
    // one for a registry that is itself plain HTTP by --insecure-registry).
    if !challenge.realm.starts_with("https://") && !base.starts_with("http://") {
        return Err(TokenError::Protocol(format!(
            "the registry's token service {} is not HTTPS; not sending the identity token there",
            challenge.realm
        )));
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh.expose())
        .append_pair("client_id", "jail")
        .append_pair("scope", scope);
    if let Some(s) = &challenge.service {
        form.append_pair("service", s);
    }
    let res = client
        .post(&challenge.realm)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .map_err(|e| TokenError::Unreachable(super::chain(&e)))?;
    let status = res.status().as_u16();
    if status == 401 || status == 403 {
        return Err(TokenError::Refused(status));
    }
    if !res.status().is_success() {
        return Err(TokenError::Protocol(format!(
            "the token service {} answered {status}",
            challenge.realm
        )));
    }
    let body: serde_json::Value = res
        .json()
        .await
        .map_err(|_| TokenError::Protocol("the token service's answer is not JSON".into()))?;
    body.get("access_token")
        .or_else(|| body.get("token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .ok_or_else(|| TokenError::Protocol("the token service's answer has no token".into()))
}

/// A `Bearer realm="…",service="…"` challenge.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
}

fn parse_bearer(h: &str) -> Option<Challenge> {
    let (scheme, params) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        assert_eq!(
            parse_bearer(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a,b:pull""#
            ),
            Some(Challenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_bearer("bearer realm=https://r/t"),
            Some(Challenge {
                realm: "https://r/t".into(),
                service: None
            })
        );
        assert_eq!(parse_bearer(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer(r#"Bearer service="x""#), None);
    }
}
