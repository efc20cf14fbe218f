//! `jail verify IMAGE [--root DIR] [--packages] [--json]`: rebuild an image
//! from its embedded manifest and a root and compare bit for bit, or check
//! its files against their packages' own checksums (docs/verify.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use jail::attest::rebuild::{self, ImageFacts};
use jail::attest::{AttestError, Evidence};
use jail::image::read::{self, ImageSource, LocalImage, Unpacked};
use jail::resolve::Root;

use super::registry_opts::PullOpts;
use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: an archive, an OCI layout DIR, DIR:TAG, or a registry
    /// reference.
    image: String,
    /// The root to rebuild from: a directory, or an image (unpacked)
    /// [default: /].
    #[arg(long, value_name = "DIR|IMAGE")]
    root: Option<String>,
    /// Check every regular file against its package's checksums in the
    /// root's dpkg database (`info/*.md5sums`, `Conffiles:`) instead of
    /// rebuilding.
    #[arg(long)]
    packages: bool,
    /// With --packages: also download the .deb of each package's exact
    /// version with apt and compare every file's sha256 with it.
    #[arg(long, requires = "packages")]
    fetch: bool,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pull: PullOpts,
}

fn attest_failure(e: AttestError) -> Failure {
    Failure::of(e)
}

fn unpack(s: &str, scratch: &Path, pull: &PullOpts) -> Result<(ImageSource, Unpacked), Failure> {
    let registry = pull.options()?;
    let source = ImageSource::parse(s).map_err(Failure::usage)?;
    let image = read::unpack_with(&source, scratch, &registry).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::failed(e)
        }
    })?;
    Ok((source, image))
}

pub fn run(a: Args) -> CmdResult {
    jail::sys::interrupt::install();
    let scratch = tempfile::Builder::new()
        .prefix("jail-verify-")
        .tempdir()
        .map_err(Failure::failed)?;
    let (source, image) = unpack(&a.image, scratch.path(), &a.pull)?;

    // The root: `/`, a directory, or an image.
    let _root_image;
    let root = match &a.root {
        None => Root::host(),
        Some(r) if Path::new(r).is_dir() && !Path::new(r).join("oci-layout").exists() => {
            Root::new(Path::new(r)).map_err(|e| Failure::usage(anyhow!("--root {r}: {e}")))?
        }
        Some(r) => {
            let (_, unpacked) = unpack(r, scratch.path(), &a.pull)?;
            let root = Root::new(unpacked.root()).map_err(Failure::failed)?;
            _root_image = unpacked;
            root
        }
    };

    if a.packages {
        let fetch = a.fetch.then(|| scratch.path().join("fetch"));
        let check = rebuild::check_packages(image.root(), &root, fetch.as_deref())
            .map_err(attest_failure)?;
        if a.json {
            let line = serde_json::to_string(&check).map_err(Failure::failed)?;
            println!("{line}");
        } else {
            println!(
                "verified: {}\nderived: {} (compiled from a verified source)\nnot from a package: {}\nmismatched: {}\n(jail's evidence files, checked by the rebuild: {})",
                check.verified, check.derived, check.not_from_a_package, check.mismatched, check.evidence
            );
            for p in &check.not_from_a_package_files {
                println!("  not from a package: {p}");
            }
            for d in &check.mismatched_files {
                println!("  MISMATCHED: {}: {}", d.path.display(), d.why);
            }
            if let Some(f) = &check.fetched {
                println!(
                    "fetched: {} package(s) from the archive: {} file(s) verified, {} mismatched, {} package(s) not fetched",
                    f.packages,
                    f.verified,
                    f.mismatched,
                    f.unfetched.len()
                );
                for d in &f.mismatched_files {
                    println!("  MISMATCHED (archive): {}: {}", d.path.display(), d.why);
                }
                for u in &f.unfetched {
                    println!("  NOT FETCHED: {}_{}: {}", u.package, u.version, u.why);
                }
            }
        }
        if !check.ok() {
            return Err(Failure::silent(1));
        }
        return Ok(());
    }

    let evidence = Evidence::read_from_root(image.root())
        .map_err(attest_failure)?
        .ok_or_else(|| {
            attest_failure(AttestError::NoManifest {
                image: a.image.clone(),
            })
        })?;
    let annotations = annotations(&source);
    let facts = ImageFacts {
        root: image.root(),
        manifest_digest: image.manifest_digest,
        annotations,
        reference: image
            .reference
            .as_deref()
            .and_then(|r| jail::image::Reference::parse(r).ok())
            .unwrap_or_else(|| jail::image::Reference::default_for("image")),
    };
    let outcome =
        rebuild::rebuild(&evidence, &facts, &root, scratch.path()).map_err(attest_failure)?;
    if a.json {
        let line = serde_json::to_string(&outcome).map_err(Failure::failed)?;
        println!("{line}");
    } else if outcome.identical {
        if let Some(d) = outcome.rebuilt {
            println!("identical: {d}");
        }
    } else {
        println!(
            "DIFFERENT: {} path(s) differ from a rebuild from {}",
            outcome.differences.len(),
            root.dir().display()
        );
        for d in &outcome.differences {
            println!("  {}: {}", d.path.display(), d.why);
        }
    }
    if outcome.identical {
        Ok(())
    } else {
        Err(Failure::silent(1))
    }
}

/// The OCI manifest's annotations of a local image (a registry image's
/// are not read: the rebuild then compares files, and says so).
fn annotations(source: &ImageSource) -> BTreeMap<String, String> {
    let Ok(local) = LocalImage::open(source) else {
        return BTreeMap::new();
    };
    serde_json::from_slice::<serde_json::Value>(&local.manifest)
        .ok()
        .and_then(|v| v.get("annotations").cloned())
        .and_then(|a| serde_json::from_value(a).ok())
        .unwrap_or_default()
}
