//! The image's JSON documents, canonical: built with oci-spec's types, then
//! serialized through `serde_json::Value`, whose maps are sorted (serde_json
//! without `preserve_order`), with no insignificant whitespace.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder,
    RootFsBuilder,
};
use serde::Serialize;

use super::{ImageError, ImageSpec, Platform, Reference};
use crate::digest::Digest;

/// Label: the jail version that built the image.
pub const LABEL_VERSION: &str = "jail.version";
/// Label: the jail command that built the image.
pub const LABEL_COMMAND: &str = "jail.command";
/// Label: the sha256 of the file set (see `FileSet::digest`).
pub const LABEL_FILESET: &str = "jail.fileset";
/// index.json annotation: the tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// index.json annotation: the full name, as docker save (25+) writes it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Attestation manifests (BuildKit's layout, docs/formats.md): the
/// index entry's annotations, the statements' media type and annotation.
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";
pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// Canonical JSON bytes of any serializable value.
pub fn canonical(v: &impl Serialize) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(v).map_err(ImageError::Json)?;
    serde_json::to_vec(&value).map_err(ImageError::Json)
}

fn oci<T>(r: Result<T, oci_spec::OciSpecError>) -> Result<T, ImageError> {
    r.map_err(ImageError::Spec)
}

fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest, ImageError> {
    oci(oci_spec::image::Digest::from_str(&d.to_string()))
}

/// `created` as RFC 3339 UTC.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The config blob of a single-layer image.
#[cfg(test)]
pub fn config(
    spec: &ImageSpec,
    diff_id: &Digest,
    fileset: &Digest,
    created: &str,
) -> Result<Vec<u8>, ImageError> {
    config_layers(spec, &[LayerHistory::New(*diff_id, None)], fileset, created)
}

/// A layer as the config lists it.
pub enum LayerHistory {
    /// Written now: its diff_id and what it holds, for the history's
    /// comment (`None`: the single layer's plain comment, as before
    /// layering).
    New(Digest, Option<String>),
    /// A `--base` layer: its diff_id and the base config's history entry.
    Kept(Digest, Option<oci_spec::image::History>),
}

/// The config blob of a (layered) image.
pub fn config_layers(
    spec: &ImageSpec,
    layers: &[LayerHistory],
    fileset: &Digest,
    created: &str,
) -> Result<Vec<u8>, ImageError> {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
    labels.insert(LABEL_COMMAND.into(), spec.command.clone());
    labels.insert(LABEL_FILESET.into(), fileset.to_string());
    let mut c = ConfigBuilder::default().labels(labels);
    if let Some(e) = &spec.entrypoint {
        c = c.entrypoint(e.clone());
    }
    if let Some(cmd) = &spec.cmd {
        c = c.cmd(cmd.clone());
    }
    if !spec.env.is_empty() {
        c = c.env(spec.env.clone());
    }
    if let Some(w) = &spec.working_dir {
        c = c.working_dir(w.clone());
    }
    if let Some(u) = &spec.user {
        c = c.user(u.clone());
    }
    if !spec.exposed_ports.is_empty() {
        c = c.exposed_ports(spec.exposed_ports.clone());
    }
    if !spec.volumes.is_empty() {
        c = c.volumes(spec.volumes.clone());
    }
    if let Some(s) = &spec.stop_signal {
        c = c.stop_signal(s.clone());
    }
    let mut history = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (diff_id, comment) = match l {
            LayerHistory::Kept(d, Some(h)) => {
                diff_ids.push(d.to_string());
                history.push(h.clone());
                continue;
            }
            LayerHistory::Kept(d, None) => (d, "the base image's layer".to_string()),
            LayerHistory::New(d, None) => (d, format!("jail {}", env!("CARGO_PKG_VERSION"))),
            LayerHistory::New(d, Some(w)) => {
                (d, format!("jail {}: {w}", env!("CARGO_PKG_VERSION")))
            }
        };
        diff_ids.push(diff_id.to_string());
        history.push(oci(HistoryBuilder::default()
            .created(created.to_string())
            .created_by(spec.command.clone())
            .comment(comment)
            .build())?);
    }
    let rootfs = oci(RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build())?;
    let mut b = ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(Arch::from(spec.platform.architecture.as_str()))
        .os(Os::from(spec.platform.os.as_str()))
        .config(oci(c.build())?)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &spec.platform.variant {
        b = b.variant(v.clone());
    }
    canonical(&oci(b.build())?)
}

/// A blob as a descriptor names it.
pub struct Desc<'a> {
    pub media_type: &'a str,
    pub digest: Digest,
    pub size: u64,
}

fn descriptor(d: &Desc<'_>) -> Result<oci_spec::image::Descriptor, ImageError> {
    oci(DescriptorBuilder::default()
        .media_type(MediaType::from(d.media_type))
        .digest(oci_digest(&d.digest)?)
        .size(d.size)
        .build())
}

/// The image manifest.
pub fn manifest(
    config: &Desc<'_>,
    layers: &[Desc<'_>],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, ImageError> {
    let layers = layers
        .iter()
        .map(descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(config)?)
        .layers(layers);
    if !annotations.is_empty() {
        b = b.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    canonical(&oci(b.build())?)
}

/// index.json: the one manifest, tagged; then its attestation manifest
/// (`--attest`), untagged, as BuildKit lists it.
pub fn index(
    manifest: &Desc<'_>,
    platform: &Platform,
    reference: &Reference,
    attestation: Option<&Desc<'_>>,
) -> Result<Vec<u8>, ImageError> {
    let annotations = HashMap::from([
        (ANNOTATION_REF_NAME.to_string(), reference.tag.clone()),
        (ANNOTATION_IMAGE_NAME.to_string(), reference.to_string()),
    ]);
    index_of(manifest, platform, Some(annotations), attestation)
}

fn index_of(
    manifest: &Desc<'_>,
    platform: &Platform,
    annotations: Option<HashMap<String, String>>,
    attestation: Option<&Desc<'_>>,
) -> Result<Vec<u8>, ImageError> {
    let mut p = PlatformBuilder::default()
        .architecture(Arch::from(platform.architecture.as_str()))
        .os(Os::from(platform.os.as_str()));
    if let Some(v) = &platform.variant {
        p = p.variant(v.clone());
    }
    let mut desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(oci_digest(&manifest.digest)?)
        .size(manifest.size)
        .platform(oci(p.build())?);
    if let Some(a) = annotations {
        desc = desc.annotations(a);
    }
    let mut manifests = vec![oci(desc.build())?];
    if let Some(att) = attestation {
        let unknown = oci(PlatformBuilder::default()
            .architecture(Arch::from("unknown"))
            .os(Os::from("unknown"))
            .build())?;
        manifests.push(oci(DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(oci_digest(&att.digest)?)
            .size(att.size)
            .platform(unknown)
            .annotations(HashMap::from([
                (
                    ANNOTATION_REFERENCE_TYPE.to_string(),
                    REFERENCE_TYPE_ATTESTATION.to_string(),
                ),
                (
                    ANNOTATION_REFERENCE_DIGEST.to_string(),
                    manifest.digest.to_string(),
                ),
            ]))
            .build())?);
    }
    let index = oci(ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build())?;
    canonical(&index)
}

/// The config of an attestation manifest, as BuildKit writes it: platform
/// unknown/unknown, no config, the statements' digests as diff_ids (they
/// are stored uncompressed). Only there for tools that expect an image
/// config; readers ignore it.
pub fn attestation_config(statements: &[Digest]) -> Result<Vec<u8>, ImageError> {
    let rootfs = oci(RootFsBuilder::default()
        .typ("layers")
        .diff_ids(statements.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .build())?;
    let b = ImageConfigurationBuilder::default()
        .architecture(Arch::from("unknown"))
        .os(Os::from("unknown"))
        .config(oci(ConfigBuilder::default().build())?)
        .rootfs(rootfs);
    canonical(&oci(b.build())?)
}

/// An attestation manifest: the config, then one
/// `application/vnd.in-toto+json` layer per statement, annotated with its
/// predicate type.
pub fn attestation_manifest(
    config: &Desc<'_>,
    statements: &[(Desc<'_>, &str)],
) -> Result<Vec<u8>, ImageError> {
    let layers = statements
        .iter()
        .map(|(d, predicate)| {
            oci(DescriptorBuilder::default()
                .media_type(MediaType::from(d.media_type))
                .digest(oci_digest(&d.digest)?)
                .size(d.size)
                .annotations(HashMap::from([(
                    ANNOTATION_PREDICATE_TYPE.to_string(),
                    predicate.to_string(),
                )]))
                .build())
        })
        .collect::<Result<Vec<_>, _>>()?;
    canonical(&oci(ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(config)?)
        .layers(layers)
        .build())?)
}

/// oci-layout.
pub fn oci_layout() -> Result<Vec<u8>, ImageError> {
    canonical(&oci(OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build())?)
}

/// docker's manifest.json, pointing at the OCI blobs as docker save (25+)
/// does.
pub fn docker_manifest(
    config: &Digest,
    layers: &[Digest],
    reference: &Reference,
) -> Result<Vec<u8>, ImageError> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Item {
        config: String,
        repo_tags: Vec<String>,
        layers: Vec<String>,
    }
    canonical(&[Item {
        config: format!("blobs/sha256/{}", config.hex()),
        repo_tags: vec![reference.to_string()],
        layers: layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", l.hex()))
            .collect(),
    }])
}

/// docker's legacy `repositories`: name → tag → top layer (here the layer
/// blob's hex digest).
pub fn repositories(layer: &Digest, reference: &Reference) -> Result<Vec<u8>, ImageError> {
    let m = BTreeMap::from([(
        reference.name.clone(),
        BTreeMap::from([(reference.tag.clone(), layer.hex())]),
    )]);
    canonical(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn config_is_canonical() {
        let spec = ImageSpec {
            reference: Reference::parse("a/b:c").unwrap(),
            platform: Platform::host(),
            entrypoint: Some(vec!["/bin/x".into()]),
            labels: BTreeMap::from([("z".into(), "1".into()), ("a".into(), "2".into())]),
            exposed_ports: vec!["8080/tcp".into(), "53/udp".into()],
            command: "jail pack".into(),
            ..ImageSpec::default()
        };
        let d = Digest::of(b"");
        let bytes = config(&spec, &d, &d, &rfc3339(0)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains(' ') || !text.contains(": "), "{text}");
        assert!(text.starts_with(r#"{"architecture":""#), "{text}");
        assert!(
            text.contains(r#""ExposedPorts":{"53/udp":{},"8080/tcp":{}}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#""Labels":{"a":"2","jail.command":"jail pack","jail.fileset":"sha256:"#
            ),
            "{text}"
        );
        // Same input, same bytes (HashMaps inside oci-spec iterate randomly).
        for _ in 0..10 {
            assert_eq!(config(&spec, &d, &d, &rfc3339(0)).unwrap(), bytes);
        }
    }
}
