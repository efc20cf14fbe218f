//! The pack job (`jail pack`): a directory tree as a deterministic image,
//! with its documents and push.

use std::path::PathBuf;

use crate::fileset::FileSet;
use crate::image::{self, ImageSpec, ImageSummary, WriteOptions};
use crate::registry::{RegistryOptions, RegistryRef};
use crate::resolve::Root;

use super::emit::image_failure;
use super::evidence::{self, EvidenceRequest};
use super::push::push_image;
use super::request::Defaults;
use super::{Failure, ImageRequest, JobError, Notes, RegistryRequest};

/// `jail pack`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct PackRequest {
    /// The tree: its contents become the image's /.
    pub dir: PathBuf,
    pub output: PathBuf,
    pub image: ImageRequest,
    pub registry: RegistryRequest,
    pub evidence: EvidenceRequest,
    pub force: bool,
}

/// A pack job whose flags and tree were checked.
pub struct PackJob {
    req: PackRequest,
    write: WriteOptions,
    push: Option<(RegistryRef, RegistryOptions)>,
    root: Root,
    spec: ImageSpec,
}

impl PackJob {
    /// Check the flags, the tree and the image spec.
    pub fn resolve(req: PackRequest, notes: &dyn Notes) -> Result<PackJob, Failure> {
        // From the start: a Ctrl-C while the tree is read stops at the
        // first check, with the same clean exit.
        crate::sys::signals::install();
        req.evidence.format()?;
        let target = req.image.push_target()?;
        req.evidence.check_push(target.as_ref())?;
        let registry = req.registry.options()?;
        let write = WriteOptions {
            base: req.image.base(&registry)?,
            ..req.image.write_options(req.force)?
        };
        let root = Root::new(&req.dir).map_err(|e| {
            Failure::usage(JobError::PackRoot {
                dir: req.dir.clone(),
                cause: e.to_string(),
            })
        })?;
        let name = root
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        // Not the directory as the command label: the same tree packed
        // from anywhere gives the same image.
        let spec = req.image.spec(
            Defaults {
                name,
                ..Defaults::default()
            },
            &root,
            "jail pack".into(),
            notes,
        )?;
        Ok(PackJob {
            push: target.map(|t| (t, registry)),
            req,
            write,
            root,
            spec,
        })
    }

    /// Read the tree, write the image, its documents, push.
    pub fn run(self, notes: &dyn Notes) -> Result<ImageSummary, Failure> {
        let req = &self.req;
        let (fs, skipped) = FileSet::from_dir_noting(&req.dir).map_err(|e| {
            Failure::usage(JobError::PackTree {
                cause: crate::error::Chain(&e).to_string(),
            })
        })?;
        if !skipped.is_empty() {
            let shown: Vec<String> = skipped
                .iter()
                .take(5)
                .map(|p| p.display().to_string())
                .collect();
            notes.note(format_args!(
                "left out {} device node(s), fifo(s) or socket(s) ({}{}): the container runtime provides /dev",
                skipped.len(),
                shown.join(", "),
                if skipped.len() > 5 { ", …" } else { "" }
            ));
        }
        // An unpacked jail image packs back into its layers: those its
        // embedded manifest records (its budget unless --layers is given).
        let mut write = self.write.clone();
        if let Ok(Some(ev)) = crate::attest::Evidence::read_from_root(self.root.dir()) {
            write.layering = image::Layering {
                budget: req.image.layers.unwrap_or(ev.image.layers),
                owners: ev.owners(),
            };
        }
        let e = &req.evidence;
        // `jail pack` packs the tree as it is (an unpacked image packs back
        // to the same image): its evidence is the tree's embedded manifest,
        // or one made for the documents only, not added to the image.
        let ev = if e.sbom.is_some() || e.provenance.is_some() || e.attest {
            Some(evidence::for_tree(e, &fs, &self.root, &self.spec, &write)?)
        } else {
            None
        };
        let staged = image::stage(&fs, &self.spec, &write, &req.output)
            .map_err(|err| image_failure(err, &req.output))?;
        let attestations = match &ev {
            Some(ev) => evidence::attestations(e, ev, staged.summary(), &fs, None)?,
            None => Vec::new(),
        };
        let mut summary = staged
            .finish(&attestations)
            .map_err(|err| image_failure(err, &req.output))?;
        notes.image(&summary);
        evidence::note_attached(&summary, notes);
        if let Some(ev) = &ev {
            evidence::documents(e, ev, &summary, &fs, None, notes)?;
        }
        if let Some((target, registry)) = &self.push {
            push_image(&mut summary, target, registry, notes)?;
        }
        Ok(summary)
    }
}
