//! `jail report SUBJECT [--json] [--seccomp FILE] [--against ORIGINAL]`:
//! security review of an image, tree or manifest (docs/report.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use jail::manifest::write_atomic;
use jail::registry::RegistryOptions;
use jail::report::dpkg::PackageDb;
use jail::report::{self, seccomp, Loaded, Source};
use jail::resolve::Root;

use super::registry_opts::PullOpts;
use super::{warn, CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to review: an image (docker-archive or OCI archive .tar, an OCI
    /// layout DIR, DIR:TAG, a registry reference HOST[:PORT]/NAME[:TAG|@sha256:…]),
    /// a directory tree, or a manifest (.yaml/.json).
    subject: String,
    /// Print the report as JSON (schema: docs/report.md).
    #[arg(long)]
    json: bool,
    /// Write a Docker/OCI seccomp profile allowing the traced syscalls
    /// (needs a manifest traced with `jail trace --syscalls`).
    #[arg(long, value_name = "FILE")]
    seccomp: Option<PathBuf>,
    /// Say what slimming removed from and kept of ORIGINAL (an image,
    /// tree or manifest).
    #[arg(long, value_name = "ORIGINAL")]
    against: Option<String>,
    /// The manifest of an image or tree (`jail trace`/`jail slim
    /// --manifest`): why each file is there, the trace's syscalls and the
    /// secrets it left out.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Attribute files to Debian packages with DIR's dpkg database
    /// [default: the subject's own, the original's, or the root the
    /// manifest was traced in].
    #[arg(long, value_name = "DIR")]
    dpkg_root: Option<PathBuf>,
    #[command(flatten)]
    pull: PullOpts,
}

pub fn run(a: Args) -> CmdResult {
    jail::sys::interrupt::install();
    let scratch = std::env::temp_dir();
    let registry = a.pull.options()?;
    let subject = open(&a.subject, a.manifest.as_deref(), &scratch, &registry)?;

    // The profile first: a manifest without syscalls is bad input, and
    // nothing should be printed before saying so.
    if let Some(out) = &a.seccomp {
        let (m, path) = match (&subject.manifest, &subject.manifest_path) {
            (Some(m), Some(p)) => (m, p),
            _ => {
                return Err(Failure::usage(anyhow!(
                    "--seccomp needs the trace: give the manifest written by `jail trace --syscalls --manifest FILE` (as the subject, or with --manifest)"
                )))
            }
        };
        let built = seccomp::from_manifest(m, path).map_err(Failure::usage)?;
        for name in &built.unnamed {
            warn(format!("the trace saw {name}, which has no name in the syscall table: the profile denies it"));
        }
        write_atomic(out, &built.profile.to_json()).map_err(|e| {
            Failure::failed(anyhow!(
                "cannot write the seccomp profile {}: {e}",
                out.display()
            ))
        })?;
        eprintln!(
            "jail: wrote {}: {} syscalls allowed ({} traced, {} for the container runtime)",
            out.display(),
            built.traced + built.runtime_only,
            built.traced,
            built.runtime_only
        );
    }

    let original = match &a.against {
        Some(o) => Some(open(o, None, &scratch, &registry)?),
        None => None,
    };
    let db_root = match &a.dpkg_root {
        Some(d) => Some((
            Root::new(d).map_err(|e| {
                Failure::usage(anyhow!(
                    "--dpkg-root {}: {}",
                    d.display(),
                    jail::error::Chain(&e)
                ))
            })?,
            d.display().to_string(),
        )),
        None => report::package_root(&subject, original.as_ref()),
    };
    let db = match &db_root {
        Some((r, label)) => Some(load_db(r, label, a.dpkg_root.is_some())?),
        // A jail image says itself which package each file came from.
        None => jail::attest::Evidence::read_from_root(&subject.fileset.root)
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

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        out.write_all(&review.to_json()).map_err(Failure::failed)?;
    } else {
        report::write_text(&review, &mut out).map_err(Failure::failed)?;
    }
    out.flush().map_err(Failure::failed)?;
    Ok(())
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
    manifest: Option<&std::path::Path>,
    scratch: &std::path::Path,
    registry: &RegistryOptions,
) -> Result<Loaded, Failure> {
    let src = Source::parse(name).map_err(Failure::of)?;
    report::load(&src, name, manifest, scratch, registry).map_err(Failure::of)
}
