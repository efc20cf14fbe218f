//! The report job (`jail report`): open the subject (and `--against`'s
//! original), write the `--seccomp` profile, attribute files to packages,
//! and review (docs/report.md).

use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::dpkg::PackageDb;
use crate::registry::RegistryOptions;
use crate::report::{self, seccomp, Loaded, Report, Source};
use crate::resolve::Root;

use super::{Failure, JobError, Notes, RegistryRequest};

/// `jail report`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    /// An image, a tree or a manifest.
    pub subject: String,
    /// Write a seccomp profile of the traced syscalls here.
    pub seccomp: Option<PathBuf>,
    /// Compare with this original (an image, tree or manifest).
    pub against: Option<String>,
    /// The manifest of the subject.
    pub manifest: Option<PathBuf>,
    /// The dpkg database to attribute files with.
    pub dpkg_root: Option<PathBuf>,
    pub registry: RegistryRequest,
}

/// Why a report cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("--seccomp needs the trace: give the manifest written by `jail trace --syscalls --manifest FILE` (as the subject, or with --manifest)")]
    SeccompNeedsTrace,
    #[error("--dpkg-root {}: {cause}", .dir.display())]
    DpkgRoot { dir: PathBuf, cause: String },
}

/// Review the subject.
pub fn report(req: &ReportRequest, notes: &dyn Notes) -> Result<Report, Failure> {
    crate::sys::signals::install();
    let scratch = std::env::temp_dir();
    let registry = req.registry.options()?;
    let subject = open(&req.subject, req.manifest.as_deref(), &scratch, &registry)?;

    // The profile first: a manifest without syscalls is bad input, and
    // nothing should be printed before saying so.
    if let Some(out) = &req.seccomp {
        let (Some(m), Some(path)) = (&subject.manifest, &subject.manifest_path) else {
            return Err(Failure::usage(ReportError::SeccompNeedsTrace));
        };
        let built = seccomp::from_manifest(m, path).map_err(Failure::usage)?;
        for name in &built.unnamed {
            notes.warn(format_args!("the trace saw {name}, which has no name in the syscall table: the profile denies it"));
        }
        write_atomic(out, &built.profile.to_json()).map_err(|source| JobError::Write {
            what: "seccomp profile",
            path: out.clone(),
            source,
        })?;
        notes.note(format_args!(
            "wrote {}: {} syscalls allowed ({} traced, {} for the container runtime)",
            out.display(),
            built.traced + built.runtime_only,
            built.traced,
            built.runtime_only
        ));
    }

    let original = match &req.against {
        Some(o) => Some(open(o, None, &scratch, &registry)?),
        None => None,
    };
    let db_root = match &req.dpkg_root {
        Some(d) => Some((
            Root::new(d).map_err(|e| {
                Failure::usage(ReportError::DpkgRoot {
                    dir: d.clone(),
                    cause: crate::error::Chain(&e).to_string(),
                })
            })?,
            d.display().to_string(),
        )),
        None => report::package_root(&subject, original.as_ref()),
    };
    let db = match &db_root {
        Some((r, label)) => Some(load_db(r, label, req.dpkg_root.is_some())?),
        // A jail image says itself which package each file came from.
        None => crate::attest::Evidence::read_from_root(&subject.fileset.root)
            .ok()
            .flatten()
            .map(|ev| {
                PackageDb::from_claims(
                    &subject.fileset.root,
                    format!("{} (its embedded manifest)", subject.root_label()),
                    ev.files.iter().filter_map(|(p, r)| {
                        r.package
                            .as_ref()
                            .map(|k| (p.as_path().to_path_buf(), k.name.clone(), k.version.clone()))
                    }),
                )
            }),
    };
    let mut review = report::review(&subject, db.as_ref());
    if let Some(o) = &original {
        // The original's own database when it has one (an image before
        // slimming usually does), else the same as the slim one's.
        let own = Root::new(&o.fileset.root)
            .ok()
            .filter(PackageDb::present)
            .filter(|r| db.as_ref().is_none_or(|d| d.root != r.dir()));
        let own_db = match own {
            Some(r) => Some(load_db(&r, &o.root_label(), false)?),
            None => None,
        };
        let before = report::review(o, own_db.as_ref().or(db.as_ref()));
        review.against = Some(report::compare(&before, &review));
    }
    Ok(review)
}

/// A package database; a bad `--dpkg-root` is bad input.
fn load_db(root: &Root, label: &str, explicit: bool) -> Result<PackageDb, Failure> {
    let mut db = PackageDb::load(root).map_err(|e| {
        if explicit {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    db.label = label.to_string();
    Ok(db)
}

fn open(
    name: &str,
    manifest: Option<&Path>,
    scratch: &Path,
    registry: &RegistryOptions,
) -> Result<Loaded, Failure> {
    let src = Source::parse(name).map_err(Failure::of)?;
    report::load(&src, name, manifest, scratch, registry).map_err(Failure::of)
}
