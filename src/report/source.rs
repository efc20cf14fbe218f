//! What `jail report` reviews: an image, a directory tree or a manifest,
//! read into a file set whose root holds the content.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::ReportError;
use crate::fileset::{FileSet, Reason};
use crate::image::read::Unpacked;
use crate::image::LABEL_FILESET;
use crate::input::open_input;
use crate::manifest::Manifest;
use crate::paths::ImagePath;
use crate::registry::RegistryOptions;

/// What kind of thing was named, and the named subject before it is read:
/// the one classification of `crate::input`, shared with `jail diff`.
pub use crate::input::{Input as Source, Kind as SourceKind};

/// A subject read into memory.
#[derive(Debug)]
pub struct Loaded {
    /// As named on the command line.
    pub name: String,
    pub kind: SourceKind,
    /// The files; `fileset.root` is where their content is.
    pub fileset: FileSet,
    /// Whether the reasons of the entries are known (from a manifest).
    pub reasons_known: bool,
    /// The manifest (the subject itself, or given with `--manifest`).
    pub manifest: Option<Manifest>,
    pub manifest_path: Option<PathBuf>,
    /// What the reader of the report should know about how it was made.
    pub notes: Vec<String>,
    /// The image config (an image subject).
    pub config: Option<super::ConfigInfo>,
    /// Keeps an unpacked image's root alive.
    _unpacked: Option<Unpacked>,
}

impl Loaded {
    /// How to name where the content is: the image's name (its unpacked
    /// root is temporary), or the directory.
    pub fn root_label(&self) -> String {
        match self.kind {
            SourceKind::Image => self.name.clone(),
            _ => self.fileset.root.display().to_string(),
        }
    }

    /// The paths that came without a reason (not in the manifest).
    pub fn reasons_of(&self, path: &Path) -> Option<&BTreeSet<Reason>> {
        if !self.reasons_known {
            return None;
        }
        self.fileset
            .get(path)
            .map(|e| &e.reasons)
            .filter(|r| !r.is_empty())
    }
}

/// Read `source`; `manifest` adds reasons (and the trace) to an image or a
/// tree. An image is unpacked into a temporary directory under `scratch`,
/// removed when the [`Loaded`] is dropped; one in a registry is pulled
/// with `registry` (TLS, credentials, platform).
pub fn load(
    source: &Source,
    name: &str,
    manifest: Option<&Path>,
    scratch: &Path,
    registry: &RegistryOptions,
) -> Result<Loaded, ReportError> {
    let extra = match manifest {
        Some(p) => Some((Manifest::read(p)?, p.to_path_buf())),
        None => None,
    };
    let mut notes = Vec::new();
    let opened = open_input(source, scratch, registry)?;
    let kind = opened.kind;
    let fileset = opened.fileset;
    let unpacked = opened.image;
    let own_manifest = match (source, opened.manifest) {
        (Source::Manifest(path), Some(m)) => {
            if !fileset.root.is_dir() {
                notes.push(format!(
                    "the content root {} of the manifest is not on this machine: ELF checks, symlink names and RPATH directories are skipped",
                    fileset.root.display()
                ));
            }
            Some((m, path.clone()))
        }
        _ => None,
    };
    if let (Some(u), Some((m, path))) = (&unpacked, &extra) {
        let label = u
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get(LABEL_FILESET).cloned());
        let digest = m.fileset.as_ref().map(|f| f.digest().to_string());
        if let (Some(label), Some(digest)) = (&label, &digest) {
            if label != digest {
                notes.push(format!(
                    "the manifest {} does not describe this image (its file set digest {digest} differs from the image's {LABEL_FILESET} label {label}): reasons may be wrong",
                    path.display()
                ));
            }
        }
    }
    let config = unpacked.as_ref().map(|u| {
        let c = u.config.config().clone().unwrap_or_default();
        let mut ports = c.exposed_ports().clone().unwrap_or_default();
        ports.sort();
        super::ConfigInfo {
            user: c.user().clone().filter(|u| !u.is_empty()),
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            env: c.env().clone().unwrap_or_default(),
            exposed_ports: ports,
        }
    });
    let mut loaded = Loaded {
        name: name.to_string(),
        kind,
        fileset,
        reasons_known: false,
        manifest: None,
        manifest_path: None,
        notes,
        config,
        _unpacked: unpacked,
    };
    match (own_manifest, extra) {
        (Some((m, path)), extra) => {
            if extra.is_some() {
                loaded
                    .notes
                    .push("--manifest is ignored: the subject is a manifest".into());
            }
            loaded.reasons_known = true;
            loaded.manifest = Some(m);
            loaded.manifest_path = Some(path);
        }
        (None, Some((m, path))) => {
            adopt_reasons(&mut loaded, &m, &path);
            loaded.manifest = Some(m);
            loaded.manifest_path = Some(path);
        }
        (None, None) if adopt_embedded(&mut loaded) => {}
        (None, None) => {
            loaded.notes.push(format!(
                "reasons unknown: {} is {} without a manifest; pass --manifest FILE (the one `jail trace` or `jail slim` wrote) to say why each file is there",
                name,
                match kind {
                    SourceKind::Image => "an image",
                    _ => "a directory tree",
                }
            ));
        }
    }
    Ok(loaded)
}

/// Take each path's reasons from the image's embedded manifest
/// (`/var/lib/jail/manifest.json`, docs/verify.md), when it has one.
fn adopt_embedded(loaded: &mut Loaded) -> bool {
    let ev = match crate::attest::Evidence::read_from_root(&loaded.fileset.root) {
        Ok(Some(ev)) => ev,
        Ok(None) => return false,
        Err(e) => {
            loaded
                .notes
                .push(format!("the embedded manifest is unreadable: {e}"));
            return false;
        }
    };
    let mut missing = 0;
    for (p, e) in loaded.fileset.entries.iter_mut() {
        if p.as_path() == Path::new(crate::attest::MANIFEST_PATH) {
            e.reasons = [Reason::Evidence].into();
            continue;
        }
        match ev.files.get(p) {
            Some(r) => e.reasons = r.entry.reasons.clone(),
            None => {
                e.reasons.clear();
                // Parent directories the layer adds are implied.
                if !e.is_dir() {
                    missing += 1;
                }
            }
        }
    }
    loaded.reasons_known = true;
    if missing > 0 {
        loaded.notes.push(format!(
            "{missing} files are not in the embedded manifest {}: their reasons are unknown",
            crate::attest::MANIFEST_PATH
        ));
    }
    true
}

/// Take each path's reasons from the manifest's file set; a path the
/// manifest does not have gets none (and is counted in a note).
fn adopt_reasons(loaded: &mut Loaded, m: &Manifest, path: &Path) {
    let Some(fs) = &m.fileset else {
        loaded.notes.push(format!(
            "{} has no file set: reasons unknown",
            path.display()
        ));
        return;
    };
    let mut missing = 0;
    for (p, e) in loaded.fileset.entries.iter_mut() {
        match fs.entries.get(&ImagePath(p.0.clone())) {
            Some(me) => e.reasons = me.reasons.clone(),
            None => {
                e.reasons.clear();
                missing += 1;
            }
        }
    }
    loaded.reasons_known = true;
    if missing > 0 {
        loaded.notes.push(format!(
            "{missing} paths are not in the manifest {}: their reasons are unknown",
            path.display()
        ));
    }
}
