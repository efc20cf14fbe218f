//! Pushing a written image: each blob the registry does not have yet (a
//! HEAD asks first) mounted from another repository of the registry known
//! to have it (`record.rs`), else streamed from the image as written; then
//! the manifest,
//! byte for byte, so the registry's digest is the local one. A jail image
//! is deterministic, so pushing it again uploads nothing.

use std::io::Read;

use reqwest::header::HeaderValue;
use serde::Serialize;

use super::record::BlobRecord;
use super::{BlobCache, Op, RegistryError, RegistryOptions, RegistryRef, Session};
use crate::digest::Digest;
use crate::sys::interrupt;

/// A blob to push: the config or a layer.
#[derive(Clone, Copy, Debug)]
pub struct PushBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Where the blobs' bytes come from (the image as written).
pub trait BlobSource {
    fn open_blob(&self, d: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
}

/// What a push did: printed by the CLI, and in `--json` summaries.
#[derive(Clone, Debug, Serialize)]
pub struct Pushed {
    /// `HOST/NAME@sha256:…`: what deployments pin.
    pub reference: String,
    /// `HOST/NAME:TAG`, when pushed to a tag.
    pub tag: Option<String>,
    pub manifest_digest: Digest,
    /// Blobs uploaded, and their bytes.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs the repository already had, and their bytes.
    pub existing: usize,
    pub existing_bytes: u64,
    /// Blobs mounted from another repository of the registry, and their
    /// bytes.
    pub mounted: usize,
    pub mounted_bytes: u64,
}

/// Push the image whose manifest is `manifest` (of `media_type`), with its
/// config and layer `blobs`, to `target`.
pub fn push(
    manifest: &[u8],
    media_type: &str,
    blobs: &[PushBlob],
    source: &dyn BlobSource,
    target: &RegistryRef,
    opts: &RegistryOptions,
) -> Result<Pushed, RegistryError> {
    interrupt::install();
    let digest = Digest::of(manifest);
    if let Some(d) = target.digest.filter(|d| *d != digest) {
        return Err(RegistryError::Unsupported {
            reference: target.to_string(),
            what: format!(
                "the image's manifest is {digest}, not {d}: push to a tag, or to the image's own digest"
            ),
        });
    }
    let s = Session::open(target, opts, Op::Push)?;
    let oref = target.client_ref();
    let local = |what: String| RegistryError::Local {
        reference: s.reference.clone(),
        what,
    };
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let bar = crate::progress::bar(opts.progress, total, "pushing");
    let mut record = record_dir(opts).map(|d| BlobRecord::load(&d));
    let (mut uploaded, mut uploaded_bytes, mut existing, mut existing_bytes) = (0, 0, 0, 0);
    let (mut mounted, mut mounted_bytes) = (0, 0);
    for b in blobs {
        interrupt::check()?;
        let d = b.digest.to_string();
        let what = format!("blob {d}");
        let there =
            s.rt.block_on(s.client.blob_exists(&oref, &d))
                .map_err(|e| s.error("check for a blob", &what, e))?;
        if there {
            existing += 1;
            existing_bytes += b.size;
            bar.inc(b.size);
            continue;
        }
        // Another repository of this registry has it: mount it from there.
        // A registry that cannot (202: it started an upload instead, or an
        // error) gets the blob uploaded.
        let from = record
            .as_ref()
            .map(|r| r.repositories(&target.registry, &b.digest, &target.repository))
            .unwrap_or_default();
        let mut done = false;
        for repo in from {
            let source = oci_client::Reference::with_digest(
                target.registry.clone(),
                repo.clone(),
                d.clone(),
            );
            if s.rt
                .block_on(s.client.mount_blob(&oref, &source, &d))
                .is_ok()
            {
                done = true;
                break;
            }
            interrupt::check()?;
        }
        if done {
            mounted += 1;
            mounted_bytes += b.size;
            bar.inc(b.size);
            continue;
        }
        let reader = source
            .open_blob(&b.digest)
            .map_err(|e| local(format!("{what}: {e}")))?;
        let r = s.rt.block_on(s.client.push_blob_stream(
            &oref,
            stream(reader, bar.clone()),
            &d,
            Some(b.size),
        ));
        if let Err(e) = r {
            interrupt::check()?;
            return Err(s.error("push a blob", &what, e));
        }
        uploaded += 1;
        uploaded_bytes += b.size;
    }
    bar.finish_and_clear();
    let content_type = HeaderValue::from_str(media_type)
        .map_err(|_| local(format!("bad manifest media type {media_type:?}")))?;
    // To the tag when there is one (a digest given with it was checked
    // above), else by digest.
    let manifest_ref = match &target.tag {
        Some(t) => oci_client::Reference::with_tag(
            target.registry.clone(),
            target.repository.clone(),
            t.clone(),
        ),
        None => oref.clone(),
    };
    let location =
        s.rt.block_on(
            s.client
                .push_manifest_raw(&manifest_ref, manifest.to_vec(), content_type),
        )
        .map_err(|e| s.error("push the manifest", "the repository", e))?;
    // The registry names the manifest by the digest it computed: it must
    // be ours (it is, unless something rewrote the bytes on the way).
    if let Some((_, theirs)) = location.rsplit_once("/manifests/") {
        if theirs.starts_with("sha256:") && theirs != digest.to_string() {
            return Err(RegistryError::Failed {
                reference: s.reference.clone(),
                action: "push the manifest".into(),
                what: format!("the registry stored it as {theirs}, not as {digest}"),
            });
        }
    }
    if let Some(r) = &mut record {
        let ds: Vec<Digest> = blobs.iter().map(|b| b.digest).collect();
        r.add(&target.registry, &target.repository, &ds);
        r.save();
    }
    Ok(Pushed {
        reference: target.by_digest(&digest),
        tag: target
            .tag
            .as_ref()
            .map(|t| format!("{}:{t}", target.name())),
        manifest_digest: digest,
        uploaded,
        uploaded_bytes,
        existing,
        existing_bytes,
        mounted,
        mounted_bytes,
    })
}

/// Where the record of pushed blobs lives: the blob cache's directory.
pub(super) fn record_dir(opts: &RegistryOptions) -> Option<std::path::PathBuf> {
    match &opts.cache {
        Some(dir) => Some(dir.clone()),
        None => BlobCache::user().ok().map(|c| c.root().to_path_buf()),
    }
}

/// A blob's bytes as the stream the client uploads, 1 MiB at a time.
fn stream(
    reader: Box<dyn Read + Send>,
    bar: indicatif::ProgressBar,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::try_unfold((reader, bar), |(mut r, bar)| async move {
        if interrupt::check().is_err() {
            return Err(std::io::Error::other("interrupted").into());
        }
        let mut buf = vec![0u8; 1 << 20];
        let n = loop {
            match r.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        bar.inc(n as u64);
        Ok(Some((bytes::Bytes::from(buf), (r, bar))))
    })
}
