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
    let pushed = registry::push(
        &local.manifest,
        &local.media_type,
        &local.blobs,
        &local,
        target,
        opts,
    )
    .map_err(Failure::of)?;
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
