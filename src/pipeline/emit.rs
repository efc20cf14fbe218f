//! What trace and slim do once they have an access log: build the file
//! set, report what it left out, write the manifest, the tree and the
//! image, and check the jail works. One place, so both jobs behave alike.

use std::path::{Path, PathBuf};

use crate::environment::EnvDecision;
use crate::fileset::build::{self, BuildOptions, Finding};
use crate::fileset::FileSet;
use crate::image::{self, ImageError, ImageSpec, ImageSummary, WriteOptions};
use crate::manifest::Manifest;
use crate::registry::{RegistryOptions, RegistryRef};
use crate::resolve::Root;
use crate::trace::AccessLog;
use crate::tree::{self, TreeOptions};
use crate::verify::{self, Expectation};

use super::evidence::{self, Embedding};
use super::push::push_image;
use super::{Failure, JobError, Notes};

/// What to produce from a traced run.
pub(crate) struct Emit<'a> {
    pub log: &'a AccessLog,
    /// The root the command ran in.
    pub root: &'a Root,
    pub build: BuildOptions,
    pub manifest: Option<&'a Path>,
    pub tree: Option<&'a Path>,
    pub force: bool,
    /// Checks to run inside the finished jail (in `tree`, or a scratch one).
    pub checks: Vec<Expectation>,
    pub image: Option<(ImageSpec, PathBuf, WriteOptions)>,
    /// `--push`: where to push the image once written (only when every
    /// check passed).
    pub push: Option<(RegistryRef, RegistryOptions)>,
    /// Write the image even when a check failed (`--keep-going`).
    pub keep_going: bool,
    /// What became of the traced environment, for the manifest.
    pub env: Option<EnvDecision>,
    /// A service check run in the finished jail (`slim --verify --probe`).
    pub service: Option<&'a ServiceCheck<'a>>,
    /// The embedded manifest, package database and documents (issue 15).
    pub evidence: Option<Embedding>,
}

/// Starts the finished jail as a service and probes it: `Err` says why it
/// failed.
pub(crate) type ServiceCheck<'n> = dyn Fn(&Path) -> Result<(), crate::probe::ProbeFailure> + 'n;

/// What was produced.
pub(crate) struct Emitted {
    pub fileset: FileSet,
    pub findings: Vec<Finding>,
    pub image: Option<ImageSummary>,
    pub checks: usize,
    pub failed: usize,
    /// Time spent building the file set.
    pub fileset_ms: u64,
}

/// An image write that failed; interrupted, it says nothing was written.
pub(crate) fn image_failure(e: ImageError, dest: &Path) -> Failure {
    if let Some(signal) = e.interrupted() {
        return JobError::ImageInterrupted {
            cause: crate::error::Chain(&e).to_string(),
            dest: dest.to_path_buf(),
            signal,
        }
        .into();
    }
    Failure::of(e)
}

pub(crate) fn emit(e: Emit<'_>, notes: &dyn Notes) -> Result<Emitted, Failure> {
    let clock = std::time::Instant::now();
    let mut built = build::from_access_log(e.log, e.root, &e.build).map_err(Failure::usage)?;
    let fileset_ms = clock.elapsed().as_millis() as u64;
    if let Some(env) = &e.env {
        built
            .findings
            .extend(env.credentials().map(|name| Finding::CredentialExcluded {
                name: name.to_string(),
            }));
    }
    for f in &built.findings {
        notes.warn(format_args!("{f}"));
    }
    let mut fileset = built.fileset;
    let evidence = evidence::add(
        e.evidence.as_ref(),
        &mut fileset,
        e.root,
        e.image.as_ref(),
        notes,
    )?;
    notes.note(format_args!(
        "file set: {} paths, {} bytes of files ({fileset_ms} ms)",
        fileset.entries.len(),
        fileset.total_size()
    ));

    if let Some(path) = e.manifest {
        let mut m = Manifest::new(Some(e.log.clone()), Some(fileset.clone()));
        m.findings = built.findings.clone();
        m.environment = e.env.clone();
        m.write(path).map_err(Failure::failed)?;
    }

    // The tree asked for, or a scratch one to check the jail in.
    let scratch;
    let tree_dir = match (e.tree, e.checks.is_empty() && e.service.is_none()) {
        (Some(dir), _) => Some(dir.to_path_buf()),
        (None, false) => {
            scratch = tempfile::Builder::new()
                .prefix("jail-verify-")
                .tempdir()
                .map_err(Failure::failed)?;
            Some(scratch.path().join("tree"))
        }
        (None, true) => None,
    };
    let mut failed = 0;
    if let Some(dir) = &tree_dir {
        tree::materialize(
            &fileset,
            dir,
            TreeOptions {
                force: e.force,
                ..TreeOptions::default()
            },
        )
        .map_err(|err| match err {
            tree::TreeError::NotEmpty(_) | tree::TreeError::NotADirectory(_) => Failure::usage(err),
            other => Failure::failed(other),
        })?;
        if e.tree.is_some() {
            notes.note(format_args!("tree written to {}", dir.display()));
        }
        for exp in &e.checks {
            let outcome = verify::check(dir, Some(e.root), exp).map_err(Failure::failed)?;
            match &outcome.failure {
                None => notes.note(format_args!("ok: {} in the jail", outcome.label)),
                Some(why) => {
                    failed += 1;
                    notes.note(format_args!("FAILED: {} in the jail: {why}", outcome.label));
                }
            }
        }
        if let Some(service) = e.service {
            match service(dir) {
                Ok(()) => notes.note(format_args!(
                    "ok: the service answered its probes in the jail"
                )),
                Err(why) => {
                    failed += 1;
                    notes.note(format_args!("FAILED: the service in the jail: {why}"));
                }
            }
        }
    }

    let mut summary = None;
    if failed > 0 && !e.keep_going {
        if let Some((_, output, _)) = &e.image {
            notes.note(format_args!(
                "no image written to {}: a failed check means the image would not behave like the program (pass --keep-going to write it anyway)",
                output.display()
            ));
        }
    } else if let Some((spec, output, wopts)) = &e.image {
        crate::sys::signals::install();
        // Layers by package: the attribution the embedded manifest holds.
        let mut wopts = wopts.clone();
        if let Some(ev) = &evidence {
            wopts.layering.owners = ev.owners();
        }
        let staged = image::stage(&fileset, spec, &wopts, output)
            .map_err(|err| image_failure(err, output))?;
        let attestations = match (&e.evidence, &evidence) {
            (Some(req), Some(ev)) => evidence::attestations(
                &req.request,
                ev,
                staged.summary(),
                &fileset,
                wopts.base.as_deref(),
            )?,
            _ => Vec::new(),
        };
        let mut s = staged
            .finish(&attestations)
            .map_err(|err| image_failure(err, output))?;
        notes.image(&s);
        evidence::note_attached(&s, notes);
        if let (Some(req), Some(ev)) = (&e.evidence, &evidence) {
            evidence::documents(&req.request, ev, &s, &fileset, wopts.base.as_deref(), notes)?;
        }
        if let Some((target, ropts)) = &e.push {
            if failed == 0 {
                push_image(&mut s, target, ropts, notes)?;
            } else {
                notes.warn(format_args!(
                    "not pushed to {target}: {failed} check(s) failed in the jail"
                ));
            }
        }
        summary = Some(s);
    }
    Ok(Emitted {
        fileset,
        findings: built.findings,
        image: summary,
        checks: e.checks.len() + usize::from(e.service.is_some()),
        failed,
        fileset_ms,
    })
}
