//! Pulling: the manifest (an index resolved to one platform), then the
//! config and layers into the blob cache, each verified against its
//! descriptor's digest and size before it gets its name there.

use std::str::FromStr;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::errors::DigestError;
use oci_spec::image::{ImageIndex, ImageManifest};

use super::cache::{self, BlobCache, CacheError};
use super::{Op, RegistryError, RegistryOptions, RegistryRef, Session};
use crate::digest::Digest;
use crate::oci::Platform;
use crate::sys::interrupt;

/// Manifest media types jail reads: OCI and docker v2 schema 2, images and
/// indexes (manifest lists).
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The largest manifest or index read.
const MAX_MANIFEST: usize = 4 << 20;

/// Layers fetched at the same time.
const PARALLEL: usize = 3;

/// What a pull put in the cache.
#[derive(Debug)]
pub struct Pulled {
    pub cache: BlobCache,
    /// The image manifest, bytes as served (their digest verified).
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The index the manifest was chosen from, when the reference named one.
    pub index_digest: Option<Digest>,
    /// Blobs fetched over the network, and their bytes.
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Blobs found in the cache.
    pub cached: usize,
}

/// A blob to have in the cache.
struct Want {
    digest: Digest,
    size: u64,
}

/// Fetch `r`'s manifest, config and layers into the cache (those not there
/// yet). The image reader then reads them from [`Pulled::cache`].
pub fn pull(r: &RegistryRef, opts: &RegistryOptions) -> Result<Pulled, RegistryError> {
    interrupt::install();
    let reference = r.to_string();
    let cache = match &opts.cache {
        Some(dir) => BlobCache::at(dir.clone()),
        None => BlobCache::user(),
    }
    .map_err(|source| RegistryError::Cache {
        reference: reference.clone(),
        source,
    })?;
    let s = Session::open(r, opts, Op::Pull)?;
    let unsupported = |what: String| RegistryError::Unsupported {
        reference: reference.clone(),
        what,
    };

    // The manifest, through an index if the reference names one.
    let (bytes, digest) = s.manifest(r, &cache, None)?;
    let (manifest, manifest_digest, index_digest) = match kind(&bytes).map_err(&unsupported)? {
        Kind::Manifest => (bytes, digest, None),
        Kind::Index => {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| unsupported(format!("the image index is not valid: {e}")))?;
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let (d, size) = choose(&index, &want).map_err(&unsupported)?;
            let (m, md) = s.manifest(&r.with_digest(d), &cache, Some(size))?;
            if kind(&m).map_err(&unsupported)? != Kind::Manifest {
                return Err(unsupported(format!(
                    "the index entry for {} is not an image manifest",
                    want.display()
                )));
            }
            (m, md, Some(digest))
        }
    };
    let parsed: ImageManifest = serde_json::from_slice(&manifest)
        .map_err(|e| unsupported(format!("the manifest is not valid: {e}")))?;

    // The config and the layers.
    let mut wants = Vec::new();
    for d in std::iter::once(parsed.config()).chain(parsed.layers()) {
        let digest = Digest::from_str(d.digest().as_ref()).map_err(|e| {
            unsupported(format!("the manifest names a blob jail cannot verify: {e}"))
        })?;
        wants.push(Want {
            digest,
            size: d.size(),
        });
    }
    let mut missing = Vec::new();
    let mut cached = 0;
    for w in wants {
        if cache.get(&w.digest, Some(w.size)).is_some() {
            cached += 1;
        } else if !missing.iter().any(|m: &Want| m.digest == w.digest) {
            missing.push(w);
        }
    }
    let total: u64 = missing.iter().map(|w| w.size).sum();
    let bar = crate::progress::bar(opts.progress, total, "pulling");
    let oref = r.client_ref();
    let fetched = missing.len();
    s.rt.block_on(
        futures_util::stream::iter(missing.iter().map(|w| s.fetch_blob(&oref, &cache, w, &bar)))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>(),
    )?;
    bar.finish_and_clear();
    // The repository has these blobs: a later push to another repository
    // of the registry mounts them from here.
    let mut record = super::record::BlobRecord::load(cache.root());
    let ds: Vec<Digest> = std::iter::once(parsed.config())
        .chain(parsed.layers())
        .filter_map(|d| Digest::from_str(d.digest().as_ref()).ok())
        .collect();
    record.add(&r.registry, &r.repository, &ds);
    record.save();
    Ok(Pulled {
        cache,
        manifest,
        manifest_digest,
        index_digest,
        fetched,
        fetched_bytes: total,
        cached,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// An image manifest or an index, by its `mediaType` or its shape; schema 1
/// and anything else refused.
fn kind(bytes: &[u8]) -> Result<Kind, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let schema = v.get("schemaVersion").and_then(|s| s.as_i64());
    let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    if schema == Some(1) || media.contains("manifest.v1+") && media.contains("docker") {
        return Err(
            "a docker schema 1 manifest (deprecated since 2017): jail reads OCI and docker schema 2 images; push it again with a current tool".into(),
        );
    }
    if schema != Some(2) {
        return Err(format!("unsupported manifest schemaVersion {schema:?}"));
    }
    if v.get("manifests").is_some() {
        Ok(Kind::Index)
    } else if v.get("layers").is_some() && v.get("config").is_some() {
        Ok(Kind::Manifest)
    } else if media.is_empty() {
        Err("neither an image manifest nor an index".into())
    } else {
        Err(format!("a {media} is not an image"))
    }
}

/// The index entry for `want`: same OS and architecture, and the variant
/// when one is asked for (a missing variant counts as the architecture's
/// default: v8 for arm64, v7 for arm).
fn choose(index: &ImageIndex, want: &Platform) -> Result<(Digest, u64), String> {
    let default_variant = |arch: &str| match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    let mut seen = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let have = Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        };
        seen.push(have.display());
        let variant_ok = match &want.variant {
            None => true,
            Some(v) => {
                have.variant
                    .as_deref()
                    .or(default_variant(&have.architecture))
                    == Some(v.as_str())
            }
        };
        if have.os == want.os && have.architecture == want.architecture && variant_ok {
            let d = Digest::from_str(m.digest().as_ref())
                .map_err(|e| format!("the index entry for {}: {e}", have.display()))?;
            return Ok((d, m.size()));
        }
    }
    seen.sort();
    seen.dedup();
    Err(format!(
        "the image index has no image for {}; it has {}: choose one with --platform OS/ARCH[/VARIANT]",
        want.display(),
        if seen.is_empty() {
            "no platforms".to_string()
        } else {
            seen.join(", ")
        }
    ))
}

impl Session {
    /// A manifest or index: from the cache when `r` is by digest and it is
    /// there, else from the registry; verified against the digest asked
    /// for (and `size`), and kept in the cache when by digest.
    fn manifest(
        &self,
        r: &RegistryRef,
        cache: &BlobCache,
        size: Option<u64>,
    ) -> Result<(Vec<u8>, Digest), RegistryError> {
        if let Some(d) = &r.digest {
            if let Some(p) = cache.get(d, size) {
                if let Ok(b) = std::fs::read(p) {
                    return Ok((b, *d));
                }
            }
        }
        let what = match (&r.digest, &r.tag) {
            (Some(d), _) => format!("manifest {d}"),
            (None, Some(t)) => format!("tag {t:?}"),
            (None, None) => "tag \"latest\"".into(),
        };
        let (bytes, _) = self
            .rt
            .block_on(
                self.client
                    .pull_manifest_raw(&r.client_ref(), &self.auth, ACCEPT),
            )
            .map_err(|e| match e {
                oci_client::errors::OciDistributionError::DigestError(d) => RegistryError::Blob {
                    reference: self.reference.clone(),
                    digest: r.digest.map(|d| d.to_string()).unwrap_or_default(),
                    what: format!("the manifest served does not match its digest ({d})"),
                },
                e => self.error("pull the manifest", &what, e),
            })?;
        if bytes.len() > MAX_MANIFEST {
            return Err(RegistryError::Unsupported {
                reference: self.reference.clone(),
                what: format!("the manifest is {} bytes, too large", bytes.len()),
            });
        }
        let got = Digest::of(&bytes);
        if let Some(want) = &r.digest {
            let bad = |what: String| RegistryError::Blob {
                reference: self.reference.clone(),
                digest: want.to_string(),
                what,
            };
            if got != *want {
                return Err(bad(format!("the manifest served has digest {got}")));
            }
            if let Some(s) = size.filter(|s| *s != bytes.len() as u64) {
                return Err(bad(format!(
                    "the manifest served is {} bytes, the index says {s}",
                    bytes.len()
                )));
            }
            cache::put(cache, want, &bytes[..]).map_err(|source| RegistryError::Cache {
                reference: self.reference.clone(),
                source,
            })?;
        }
        Ok((bytes.to_vec(), got))
    }

    /// Stream one blob into the cache; on any failure its temporary file
    /// is dropped.
    async fn fetch_blob(
        &self,
        oref: &oci_client::Reference,
        cache: &BlobCache,
        w: &Want,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), RegistryError> {
        let digest = w.digest.to_string();
        let blob_err = |what: String| RegistryError::Blob {
            reference: self.reference.clone(),
            digest: digest.clone(),
            what,
        };
        let cache_err = |source: CacheError| match source {
            CacheError::TooLong { .. } | CacheError::Mismatch { .. } => {
                blob_err(source.to_string())
            }
            source => RegistryError::Cache {
                reference: self.reference.clone(),
                source,
            },
        };
        let mut stream = self
            .client
            .pull_blob_stream(oref, digest.as_str())
            .await
            .map_err(|e| self.error("pull a blob", &format!("blob {digest}"), e))?;
        if let Some(n) = stream.content_length.filter(|n| *n != w.size) {
            return Err(blob_err(format!(
                "the registry sends {n} bytes, the manifest says {}",
                w.size
            )));
        }
        let mut out = cache.writer(&w.digest, Some(w.size)).map_err(cache_err)?;
        while let Some(chunk) = stream.next().await {
            interrupt::check()?;
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let is_digest = e
                        .get_ref()
                        .is_some_and(|i| i.downcast_ref::<DigestError>().is_some());
                    return Err(blob_err(if is_digest && out.len() == w.size {
                        format!(
                            "the content served does not match the digest ({})",
                            super::chain(&e)
                        )
                    } else {
                        format!(
                            "the transfer broke after {} of {} bytes: {}",
                            out.len(),
                            w.size,
                            super::chain(&e)
                        )
                    }));
                }
            };
            out.write(&chunk).map_err(cache_err)?;
            bar.inc(chunk.len() as u64);
        }
        out.commit().map_err(cache_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, var))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = var {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", format!("{i:x}").repeat(64).get(..64).unwrap()),
                    "size": 100 + i,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn chooses_the_platform() {
        let ix = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", None),
        ]);
        assert_eq!(choose(&ix, &p("linux/amd64")).unwrap().1, 100);
        assert_eq!(choose(&ix, &p("linux/arm64")).unwrap().1, 101);
        assert_eq!(choose(&ix, &p("linux/arm64/v8")).unwrap().1, 101);
        assert_eq!(choose(&ix, &p("linux/arm/v7")).unwrap().1, 103);
        assert_eq!(choose(&ix, &p("linux/arm/v6")).unwrap().1, 102);
        let e = choose(&ix, &p("linux/s390x")).unwrap_err();
        assert!(
            e.contains("linux/amd64, linux/arm, linux/arm/v6, linux/arm64/v8"),
            "{e}"
        );
    }

    #[test]
    fn tells_manifests_from_indexes() {
        assert_eq!(
            kind(br#"{"schemaVersion":2,"config":{},"layers":[]}"#),
            Ok(Kind::Manifest)
        );
        assert_eq!(
            kind(br#"{"schemaVersion":2,"manifests":[]}"#),
            Ok(Kind::Index)
        );
        assert!(kind(br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .unwrap_err()
            .contains("schema 1"));
    }
}
