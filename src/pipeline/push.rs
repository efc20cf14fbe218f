//! `--push` (trace, slim, pack): the image just written, read back and
//! pushed; the pushed reference recorded in its summary.

use crate::image::read::{ImageSource, LocalImage, Select};
use crate::image::{Format, ImageSummary};
use crate::registry::{self, RegistryOptions, RegistryRef};

use super::{Failure, JobError, Notes};

/// Push the image just written (`summary`) to `target`, say the pushed
/// reference by digest, and record it in the summary (`--json`).
pub fn push_image(
    summary: &mut ImageSummary,
    target: &RegistryRef,
    opts: &RegistryOptions,
    notes: &dyn Notes,
) -> Result<(), Failure> {
    let source = match summary.format {
        Format::OciArchive => ImageSource::Archive(summary.output.clone()),
        Format::OciDir => ImageSource::Layout {
            dir: summary.output.clone(),
            select: Select::Only,
        },
    };
    let local = LocalImage::open(&source)
        .map_err(|e| JobError::PushReread(crate::error::Chain(&e).to_string()))
        .map_err(Failure::failed)?;
    if local.manifest_digest != summary.manifest_digest {
        return Err(Failure::failed(JobError::PushChanged {
            path: summary.output.clone(),
            found: local.manifest_digest,
            written: summary.manifest_digest,
        }));
    }
    let attached = local
        .attached()
        .map_err(|e| JobError::PushReread(crate::error::Chain(&e).to_string()))
        .map_err(Failure::failed)?;
    let pushed = match attached {
        None => registry::push(
            &local.manifest,
            &local.media_type,
            &local.blobs,
            &local,
            target,
            opts,
        )
        .map_err(Failure::of)?,
        // `--attest`: the image and its attestation manifest by digest,
        // then the index naming both at the tag (docs/registry.md).
        Some(att) => {
            let by_digest = |d| RegistryRef {
                tag: None,
                digest: Some(d),
                ..target.clone()
            };
            let image = registry::push(
                &local.manifest,
                &local.media_type,
                &local.blobs,
                &local,
                &by_digest(local.manifest_digest),
                opts,
            )
            .map_err(Failure::of)?;
            let attestation = registry::push(
                &att.manifest,
                crate::image::MEDIA_TYPE_MANIFEST,
                &att.blobs,
                &local,
                &by_digest(att.manifest_digest),
                opts,
            )
            .map_err(Failure::of)?;
            let mut index = registry::push(
                &att.index,
                crate::image::MEDIA_TYPE_INDEX,
                &[],
                &local,
                target,
                opts,
            )
            .map_err(Failure::of)?;
            for p in [image, attestation] {
                index.uploaded += p.uploaded;
                index.uploaded_bytes += p.uploaded_bytes;
                index.existing += p.existing;
                index.existing_bytes += p.existing_bytes;
                index.mounted += p.mounted;
                index.mounted_bytes += p.mounted_bytes;
            }
            notes.note(format_args!(
                "pushed the attestation manifest {} with the image {}",
                att.manifest_digest, local.manifest_digest
            ));
            index
        }
    };
    notes.note(format_args!(
        "pushed {} as {} ({} blob(s) uploaded, {} bytes; skipped: {} already there, {} mounted from another repository, {} bytes)",
        pushed.tag.as_deref().unwrap_or(&pushed.reference),
        pushed.reference,
        pushed.uploaded,
        pushed.uploaded_bytes,
        pushed.existing,
        pushed.mounted,
        pushed.existing_bytes + pushed.mounted_bytes
    ));
    summary.pushed = Some(pushed);
    Ok(())
}
