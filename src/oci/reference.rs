//! Image references (`NAME:TAG`), as `--tag` takes them and index.json and
//! docker's manifest.json store them.

use std::fmt;

/// A `name:tag` reference. The name may have a registry host (with a port)
/// and path components; digests (`@sha256:…`) are not tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

/// Why a string is not a `NAME:TAG` reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {0:?}: expected NAME[:TAG], NAME lowercase letters, digits and `._-/` (a registry host may have a port), TAG up to 128 of `A-Za-z0-9_.-`")]
pub struct BadReference(pub String);

impl Reference {
    /// Parse `name[:tag]`; the tag defaults to `latest`.
    pub fn parse(s: &str) -> Result<Reference, BadReference> {
        let bad = || BadReference(s.to_string());
        // The tag separator is the last ':' after the last '/' (a ':' before
        // it is a registry port).
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
            None => (s, "latest"),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !tag.starts_with(['.', '-']);
        if !tag_ok || name.is_empty() || s.contains('@') {
            return Err(bad());
        }
        let mut parts = name.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let is_host = first
                && parts.peek().is_some()
                && (part.contains('.') || part.contains(':') || part == "localhost");
            first = false;
            let ok = if is_host {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            } else {
                component_ok(part)
            };
            if !ok {
                return Err(bad());
            }
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    /// A default reference `jail/<name>:latest` from a program or directory
    /// name: lowercased, other characters replaced by `-`.
    pub fn default_for(name: &str) -> Reference {
        let mut n: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else if "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        n = n
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string();
        if n.is_empty() {
            n = "image".into();
        }
        Reference {
            name: format!("jail/{n}"),
            tag: "latest".into(),
        }
    }
}

/// A path component: lowercase alphanumerics separated by single `.`, `_`,
/// `__` or runs of `-`.
fn component_ok(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    p.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && !p.contains("..")
        && !p.contains("___")
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_tags_and_ports() {
        let r = Reference::parse("localhost:5000/jail/x:v1.2").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/jail/x", "v1.2")
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().to_string(),
            "busybox:latest"
        );
        for bad in [
            "",
            "Upper:x",
            "a:",
            "a:-x",
            "a@sha256:00",
            "a//b",
            "a/:x",
            "-a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_names_are_valid() {
        for n in ["python3", "My Tree!", "...", "x86_64"] {
            let r = Reference::default_for(n);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{n}");
        }
        assert_eq!(
            Reference::default_for("python3").to_string(),
            "jail/python3:latest"
        );
    }
}
