//! `jail pack DIR -o IMAGE`: pack an existing tree as a deterministic image.

use std::path::PathBuf;

use anyhow::anyhow;
use jail::fileset::FileSet;
use jail::image;
use jail::resolve::Root;

use super::image_opts::{image_failure, report, Defaults, ImageOpts};
use super::registry_opts::{push_image, push_target, RegistryOpts};
use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to pack (its contents become the image's /).
    dir: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    #[command(flatten)]
    image: ImageOpts,
    #[command(flatten)]
    registry: RegistryOpts,
    #[command(flatten)]
    evidence: super::evidence::EvidenceOpts,
    /// Print a JSON summary on stdout (docs/formats.md).
    #[arg(long)]
    json: bool,
    /// Replace a non-empty directory that is not an OCI layout at -o
    /// (--format oci-dir).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> CmdResult {
    // From the start: a Ctrl-C while the tree is read stops at the first
    // check, with the same clean exit.
    jail::sys::interrupt::install();
    let opts = image::WriteOptions {
        replace: a.force,
        base: a.image.base(&a.registry.options()?)?,
        ..a.image.write_options()?
    };
    a.evidence.sbom_format()?;
    let push = push_target(a.image.push.as_deref())?;
    let registry = a.registry.options()?;
    let root = Root::new(&a.dir).map_err(|e| {
        Failure::usage(anyhow!(
            "{}: {e}: `jail pack` needs a readable directory tree",
            a.dir.display()
        ))
    })?;
    let name = root
        .dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    // Not the directory as the command label: the same tree packed from
    // anywhere gives the same image.
    let spec = a.image.spec(
        Defaults {
            name,
            ..Defaults::default()
        },
        &root,
        "jail pack".into(),
    )?;
    let (fs, skipped) = FileSet::from_dir_noting(&a.dir).map_err(|e| {
        Failure::usage(anyhow!(
            "{}: `jail pack` needs a readable directory tree",
            jail::error::Chain(&e)
        ))
    })?;
    if !skipped.is_empty() {
        let shown: Vec<String> = skipped
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        eprintln!(
            "jail: left out {} device node(s), fifo(s) or socket(s) ({}{}): the container runtime provides /dev",
            skipped.len(),
            shown.join(", "),
            if skipped.len() > 5 { ", …" } else { "" }
        );
    }
    // An unpacked jail image packs back into its layers: those its
    // embedded manifest records (the budget unless --layers is given).
    let mut opts = opts;
    if let Ok(Some(ev)) = jail::attest::Evidence::read_from_root(root.dir()) {
        opts.layering = image::Layering {
            budget: a.image.layers.unwrap_or(ev.image.layers),
            owners: ev.owners(),
        };
    }
    let mut summary =
        image::write(&fs, &spec, &opts, &a.output).map_err(|e| image_failure(e, &a.output))?;
    report(&summary);
    if a.evidence.sbom.is_some() || a.evidence.provenance.is_some() {
        // `jail pack` packs the tree as it is (an unpacked image packs back
        // to the same image): its evidence is the tree's embedded manifest,
        // or one made for the documents only, not added to the image.
        let ev = super::evidence::for_tree(&a.evidence, &fs, &root, &spec, &opts)?;
        super::evidence::documents(&a.evidence, &ev, &summary, &fs)?;
    }
    if let Some(target) = &push {
        push_image(&mut summary, target, &registry)?;
    }
    if a.json {
        let line = serde_json::to_string(&summary).map_err(Failure::failed)?;
        println!("{line}");
    }
    Ok(())
}
