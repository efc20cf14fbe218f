//! What `trace` and `slim` do once they have an access log: build the file
//! set, report what it left out, write the manifest, the tree and the image,
//! and check the jail works. One place, so both commands behave alike.

use std::path::{Path, PathBuf};

use jail::environment::EnvDecision;
use jail::fileset::build::{self, BuildOptions, Finding};
use jail::fileset::FileSet;
use jail::image::{self, ImageSpec, ImageSummary, WriteOptions};
use jail::manifest::Manifest;
use jail::registry::{RegistryOptions, RegistryRef};
use jail::resolve::Root;
use jail::trace::AccessLog;
use jail::tree::{self, TreeOptions};
use jail::verify::{self, Expectation};

use super::image_opts::{image_failure, report};
use super::registry_opts::push_image;
use super::{warn, Failure};

/// What to produce from a traced run.
pub struct Emit<'a> {
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
    pub service: Option<&'a ServiceCheck>,
    /// The embedded manifest, package database and documents (issue 15).
    pub evidence: Option<super::evidence::EvidenceRequest>,
}

/// Starts the finished jail as a service and probes it: `Err` says why it
/// failed.
pub type ServiceCheck = dyn Fn(&Path) -> Result<(), String>;

/// What was produced.
pub struct Emitted {
    pub fileset: FileSet,
    pub findings: Vec<Finding>,
    pub image: Option<ImageSummary>,
    pub checks: usize,
    pub failed: usize,
    /// Time spent building the file set.
    pub fileset_ms: u64,
}

pub fn emit(e: Emit<'_>) -> Result<Emitted, Failure> {
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
        warn(f);
    }
    let mut fileset = built.fileset;
    let evidence =
        super::evidence::add(e.evidence.as_ref(), &mut fileset, e.root, e.image.as_ref())?;
    eprintln!(
        "jail: file set: {} paths, {} bytes of files ({fileset_ms} ms)",
        fileset.entries.len(),
        fileset.total_size()
    );

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
            eprintln!("jail: tree written to {}", dir.display());
        }
        for exp in &e.checks {
            let outcome = verify::check(dir, Some(e.root), exp).map_err(Failure::failed)?;
            match &outcome.failure {
                None => eprintln!("jail: ok: {} in the jail", outcome.label),
                Some(why) => {
                    failed += 1;
                    eprintln!("jail: FAILED: {} in the jail: {why}", outcome.label);
                }
            }
        }
        if let Some(service) = e.service {
            match service(dir) {
                Ok(()) => eprintln!("jail: ok: the service answered its probes in the jail"),
                Err(why) => {
                    failed += 1;
                    eprintln!("jail: FAILED: the service in the jail: {why}");
                }
            }
        }
    }

    let mut summary = None;
    if failed > 0 && !e.keep_going {
        if let Some((_, output, _)) = &e.image {
            eprintln!(
                "jail: no image written to {}: a failed check means the image would not behave like the program (pass --keep-going to write it anyway)",
                output.display()
            );
        }
    } else if let Some((spec, output, wopts)) = &e.image {
        jail::sys::interrupt::install();
        // Layers by package: the attribution the embedded manifest holds.
        let mut wopts = wopts.clone();
        if let Some(ev) = &evidence {
            wopts.layering.owners = ev.owners();
        }
        let mut s = image::write(&fileset, spec, &wopts, output)
            .map_err(|err| image_failure(err, output))?;
        report(&s);
        if let (Some(req), Some(ev)) = (&e.evidence, &evidence) {
            super::evidence::documents(&req.opts, ev, &s, &fileset)?;
        }
        if let Some((target, ropts)) = &e.push {
            if failed == 0 {
                push_image(&mut s, target, ropts)?;
            } else {
                warn(format!(
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

impl Emitted {
    /// Exit 1 when a check in the jail failed.
    pub fn checks_passed(&self) -> Result<(), Failure> {
        if self.failed == 0 {
            return Ok(());
        }
        Err(Failure::failed(anyhow::anyhow!(
            "{} of {} checks failed inside the jail (each failure above says why)",
            self.failed,
            self.checks
        )))
    }
}
