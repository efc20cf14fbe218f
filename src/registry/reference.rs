//! Registry references: `HOST[:PORT]/NAME[:TAG][@sha256:…]`, and the rule
//! that tells one from a local path (docs/registry.md, "References").

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::oci::Reference;

/// An image in a registry. The host is always explicit: jail never guesses
/// a default registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `HOST[:PORT]`, as written (`127.0.0.1:5000`, `ghcr.io`).
    pub registry: String,
    /// The repository path below the host (`jail/python3`).
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// The manifest digest, which wins over the tag when both are given.
    pub digest: Option<Digest>,
}

/// Why a string is not a registry reference.
#[derive(Debug, thiserror::Error)]
pub enum BadRegistryRef {
    #[error("invalid registry reference {0:?}: expected HOST[:PORT]/NAME[:TAG][@sha256:…], NAME lowercase letters, digits and `._-/`, TAG up to 128 of `A-Za-z0-9_.-`")]
    Syntax(String),
    #[error("invalid registry reference {reference:?}: {what}")]
    Digest { reference: String, what: String },
}

impl RegistryRef {
    /// True when `s` has the shape of a registry reference: a `/`, and a
    /// first component that is a host (it has a `.` or a `:`, or is
    /// `localhost`). Local paths are checked first by the callers: an
    /// existing file or directory always wins.
    pub fn looks_like(s: &str) -> bool {
        match s.split_once('/') {
            Some((host, rest)) => {
                !rest.is_empty()
                    && (host.contains('.') || host.contains(':') || host == "localhost")
                    && !host.starts_with('.')
            }
            None => false,
        }
    }

    /// Parse `HOST[:PORT]/NAME[:TAG][@sha256:…]`.
    pub fn parse(s: &str) -> Result<RegistryRef, BadRegistryRef> {
        let syntax = || BadRegistryRef::Syntax(s.to_string());
        if !RegistryRef::looks_like(s) {
            return Err(syntax());
        }
        let (named, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::from_str(d).map_err(|e| BadRegistryRef::Digest {
                    reference: s.to_string(),
                    what: e.to_string(),
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // `Reference` checks the name (host with a port, path components)
        // and the tag; it defaults the tag to `latest`.
        let has_tag = named
            .rsplit_once('/')
            .is_some_and(|(_, last)| last.contains(':'));
        let r = Reference::parse(named).map_err(|_| syntax())?;
        let (registry, repository) = r.name.split_once('/').ok_or_else(syntax)?;
        if repository.is_empty() {
            return Err(syntax());
        }
        let tag = if has_tag || digest.is_none() {
            Some(r.tag)
        } else {
            None
        };
        Ok(RegistryRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `HOST/NAME`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `HOST/NAME@sha256:…`: what deployments pin.
    pub fn by_digest(&self, d: &Digest) -> String {
        format!("{}@{d}", self.name())
    }

    /// The same repository, pointing at `d`.
    pub fn with_digest(&self, d: Digest) -> RegistryRef {
        RegistryRef {
            digest: Some(d),
            ..self.clone()
        }
    }

    /// What to ask the registry for: the digest when there is one, else
    /// the tag.
    pub(crate) fn client_ref(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.to_string(),
            ),
            (None, t) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for RegistryRef {
    type Err = BadRegistryRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegistryRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tells_references_from_paths() {
        for s in [
            "127.0.0.1:5000/x",
            "localhost/a/b:1",
            "ghcr.io/o/r@sha256:00",
        ] {
            assert!(RegistryRef::looks_like(s), "{s}");
        }
        for s in [
            "img.tar",
            "dir:tag",
            "out/img.tar",
            "./x/y",
            "localhost",
            "a.b/",
        ] {
            assert!(!RegistryRef::looks_like(s), "{s}");
        }
    }

    #[test]
    fn parses_hosts_ports_tags_and_digests() {
        let r = RegistryRef::parse("127.0.0.1:5000/jail/bb:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "jail/bb");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/jail/bb:v1");

        let r = RegistryRef::parse("localhost:5000/x").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));

        let r = RegistryRef::parse(&format!("ghcr.io/o/r@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().to_string(), D);
        assert_eq!(r.by_digest(&r.digest.unwrap()), format!("ghcr.io/o/r@{D}"));

        let r = RegistryRef::parse(&format!("ghcr.io/o/r:1.0@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.to_string(), format!("ghcr.io/o/r:1.0@{D}"));
    }

    #[test]
    fn refuses_bad_names_and_digests() {
        for s in [
            "127.0.0.1:5000/Upper",
            "127.0.0.1:5000/a:",
            "127.0.0.1:5000/a//b",
            "localhost/",
            "registry.io/x:bad!tag",
        ] {
            assert!(
                matches!(RegistryRef::parse(s), Err(BadRegistryRef::Syntax(_))),
                "{s}"
            );
        }
        for s in ["localhost/x@sha256:abc", "localhost/x@md5:00"] {
            assert!(
                matches!(RegistryRef::parse(s), Err(BadRegistryRef::Digest { .. })),
                "{s}"
            );
        }
    }
}
