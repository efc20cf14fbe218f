//! Jail configs (`jail-configs/*.yaml`): how to jail one program, like
//! makejail's examples — the command, extra runs that exercise more code
//! paths, include/exclude globs, image metadata, and tests run inside the
//! finished jail. Unknown keys are errors that name the key. Schema:
//! docs/configs.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One jail config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A short name (also the default image name).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The command traced to build the jail.
    pub command: Vec<String>,
    /// More commands traced into the same jail (other code paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Vec<String>>,
    /// Environment variables set for the traced runs (on top of jail's own
    /// environment) and for the tests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the traced runs and the tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Globs added to the jail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs left out of the jail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Image metadata.
    #[serde(default)]
    pub image: ImageMeta,
    /// Commands run inside the finished jail, with what they must print.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<Test>,
}

/// Image metadata of a config (each can be overridden on the command line).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `UID[:GID]` or a name from the jail's /etc/passwd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `NAME:TAG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A test run inside the finished jail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub command: Vec<String>,
    /// Expected exit status (default 0).
    #[serde(default)]
    pub status: i32,
    /// Expected stdout, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// A string stdout must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    /// Expect stdout to equal what the same command prints outside the jail
    /// (on this machine), as CDE-style comparisons do.
    #[serde(default, skip_serializing_if = "is_false")]
    pub same_as_host: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read jail config {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid jail config {}", path.display())]
    Invalid { path: PathBuf, source: ParseError },
}

/// Why config text is not a valid config.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML, or not the config's shape (the YAML error names the key).
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A key with a value the config rules refuse.
    #[error("{0}")]
    Rule(String),
}

/// A config that cannot be read or is invalid is the user's input: exit 2.
impl crate::error::ExitCode for ConfigError {
    fn is_bad_input(&self) -> bool {
        true
    }
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parse and check config text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Config, ParseError> {
        let c: Config = serde_yaml_ng::from_str(text)?;
        if c.name.is_empty() {
            return Err(ParseError::Rule("`name` must not be empty".into()));
        }
        if c.command.is_empty() {
            return Err(ParseError::Rule("`command` must name a program".into()));
        }
        if let Some(i) = c.runs.iter().position(Vec::is_empty) {
            return Err(ParseError::Rule(format!("`runs[{i}]` is empty")));
        }
        if let Some(i) = c.tests.iter().position(|t| t.command.is_empty()) {
            return Err(ParseError::Rule(format!("`tests[{i}].command` is empty")));
        }
        for p in c.include.iter().chain(&c.exclude) {
            if !p.starts_with('/') && !p.starts_with("**") {
                return Err(ParseError::Rule(format!(
                    "pattern {p:?} must be an absolute path (or start with **)"
                )));
            }
        }
        Ok(c)
    }

    /// Every traced command: `command`, then `runs`.
    pub fn all_runs(&self) -> impl Iterator<Item = &Vec<String>> {
        std::iter::once(&self.command).chain(self.runs.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            "name: demo\ncommand: [/bin/sh, -c, 'echo hi']\nruns: [[/bin/true]]\ninclude: ['/etc/ssl/certs/**']\nimage:\n  entrypoint: [/bin/sh]\n  user: '1000:1000'\ntests:\n  - command: [/bin/sh, -c, 'echo hi']\n    stdout: \"hi\\n\"\n",
        )
        .unwrap();
        assert_eq!(c.all_runs().count(), 2);
        assert_eq!(c.tests[0].stdout.as_deref(), Some("hi\n"));
        assert_eq!(c.image.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("name: x\ncommand: [a]\nincludes: [/x]\n").unwrap_err();
        assert!(e.to_string().contains("includes"), "{e}");
        let e = Config::parse("name: x\ncommand: [a]\nimage:\n  entry: [a]\n").unwrap_err();
        assert!(e.to_string().contains("entry"), "{e}");
        let e = Config::parse("name: x\ncommand: [a]\ntests:\n  - command: [a]\n    exit: 1\n")
            .unwrap_err();
        assert!(e.to_string().contains("exit"), "{e}");
    }

    #[test]
    fn rejects_empty_and_relative() {
        assert!(Config::parse("name: x\ncommand: []\n").is_err());
        assert!(Config::parse("name: x\ncommand: [a]\ninclude: [etc/x]\n")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}
