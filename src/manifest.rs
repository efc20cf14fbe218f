//! The manifest file written by `--manifest`: the access log of the run and
//! (from the file-set stage on) the file set built from it. YAML, or JSON
//! when the file name ends in `.json`. Schema: docs/formats.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::EnvDecision;
use crate::fileset::finding::Finding;
use crate::fileset::FileSet;
use crate::trace::AccessLog;

/// Version of the manifest schema.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The jail version that wrote it.
    pub jail: String,
    /// What the run touched (absent for a file set made from a tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<AccessLog>,
    /// What goes into the jail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fileset: Option<FileSet>,
    /// What the file-set build reported (secrets left out, missing
    /// libraries, skipped paths), for `jail report`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// What became of the traced environment: the variables the image's
    /// Env got, and those left out with why (a credential's value is never
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvDecision>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot write manifest {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read manifest {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid manifest: {msg}", path.display())]
    Parse { path: PathBuf, msg: String },
}

impl Manifest {
    pub fn new(trace: Option<AccessLog>, fileset: Option<FileSet>) -> Manifest {
        Manifest {
            version: SCHEMA_VERSION,
            jail: env!("CARGO_PKG_VERSION").to_string(),
            trace,
            fileset,
            findings: Vec::new(),
            environment: None,
        }
    }

    fn is_json(path: &Path) -> bool {
        path.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    }

    /// Serialize in the format the file name asks for.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, ManifestError> {
        let err = |msg: String| ManifestError::Parse {
            path: path.to_path_buf(),
            msg,
        };
        if Self::is_json(path) {
            let mut v = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
            v.push(b'\n');
            Ok(v)
        } else {
            serde_yaml_ng::to_string(self)
                .map(String::into_bytes)
                .map_err(|e| err(e.to_string()))
        }
    }

    /// Write atomically: a temporary file beside `path`, then a rename.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        let bytes = self.to_bytes(path)?;
        write_atomic(path, &bytes).map_err(|source| ManifestError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, Self::is_json(path)).map_err(|msg| ManifestError::Parse {
            path: path.to_path_buf(),
            msg,
        })
    }

    /// Parse manifest bytes (JSON or YAML); the error is the parser's message.
    pub fn parse(bytes: &[u8], json: bool) -> Result<Manifest, String> {
        if json {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())
        } else {
            serde_yaml_ng::from_slice(bytes).map_err(|e| e.to_string())
        }
    }
}

pub use crate::atomic::write_atomic;
