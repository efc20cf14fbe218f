//! `--attest` (issue 15, item 4): the SBOM and the provenance attached to
//! the image as a BuildKit-style attestation manifest. One traced image (a
//! dynamic /bin/echo from `/`, with its dpkg evidence) is checked for the
//! layout BuildKit uses, determinism, the tools that load it (podman,
//! skopeo, umoci), jail's own readers (verify, sbom), and a push to a real
//! registry.

mod common;
#[path = "common/registry.rs"]
mod registry_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{ok, require, run, text, Podman};
use registry_server::{Registry, Scratch};
use serde_json::Value;
use sha2::Digest as _;

const SPDX: &str = "https://spdx.dev/Document";
const SLSA: &str = "https://slsa.dev/provenance/v1";

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

impl Scratch {
    fn new() -> Scratch {
        Scratch::new_in("jail-attest-test")
    }

    /// `jail trace --attest -- /bin/echo attested` with `args`, as JSON.
    fn trace(&self, args: &[&str]) -> Value {
        let o = run(self
            .jail()
            .args(["trace", "--attest", "--json"])
            .args(args)
            .args(["--", "/bin/echo", "attested"]));
        ok(&o);
        // The traced command's own output comes first on stdout.
        let out = text(&o.stdout);
        let start = out.find('{').expect("a JSON summary");
        json(&out.as_bytes()[start..])
    }
}

/// The traced image, written once: an archive (with `--provenance`) and
/// the same image as an OCI layout.
struct Traced {
    s: Scratch,
    archive: PathBuf,
    layout: PathBuf,
    summary: Value,
    provenance: Vec<u8>,
}

fn traced() -> &'static Traced {
    static T: OnceLock<Traced> = OnceLock::new();
    T.get_or_init(|| {
        let s = Scratch::new();
        let summary = s.trace(&["-o", "echo.tar", "--provenance", "prov.json"])["image"].clone();
        s.trace(&["-o", "echo", "--format", "oci-dir"]);
        let provenance = std::fs::read(s.path().join("prov.json")).unwrap();
        Traced {
            archive: s.path().join("echo.tar"),
            layout: s.path().join("echo"),
            s,
            summary,
            provenance,
        }
    })
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let b = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256(&b), digest, "blob {digest} does not match its name");
    b
}

/// The statements of an attestation manifest, checked against BuildKit's
/// layout, by predicate type.
fn statements(layout: &Path, manifest: &[u8], image_digest: &str) -> Vec<(String, Vec<u8>)> {
    let m = json(manifest);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = json(&blob(layout, m["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "unknown", "{config}");
    assert_eq!(config["os"], "unknown", "{config}");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers.len()
    );
    layers
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            let predicate = l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .expect("the predicate-type annotation")
                .to_string();
            let bytes = blob(layout, l["digest"].as_str().unwrap());
            let st = json(&bytes);
            assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
            assert_eq!(st["predicateType"], predicate.as_str());
            assert_eq!(
                format!(
                    "sha256:{}",
                    st["subject"][0]["digest"]["sha256"].as_str().unwrap()
                ),
                image_digest,
                "the subject is the image manifest"
            );
            (predicate, bytes)
        })
        .collect()
}

#[test]
fn the_attestation_manifest_is_laid_out_as_buildkit_does_and_deterministic() {
    let t = traced();
    let image_digest = t.summary["manifest_digest"].as_str().unwrap();
    let att_digest = t.summary["attestation"].as_str().expect("an attestation");

    // The layout and the archive hold the same index.
    let unpacked = t.s.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    ok(&run(Command::new("tar")
        .arg("-xf")
        .arg(&t.archive)
        .arg("-C")
        .arg(&unpacked)));
    let index_bytes = std::fs::read(t.layout.join("index.json")).unwrap();
    assert_eq!(
        std::fs::read(unpacked.join("index.json")).unwrap(),
        index_bytes
    );
    let index = json(&index_bytes);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[0]["digest"], image_digest);
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let att = &entries[1];
    assert_eq!(att["digest"], att_digest);
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(att["platform"]["os"], "unknown");
    let a = att["annotations"].as_object().unwrap();
    assert_eq!(a["vnd.docker.reference.type"], "attestation-manifest");
    assert_eq!(a["vnd.docker.reference.digest"], image_digest);
    assert_eq!(a.len(), 2, "no tag names the attestation manifest: {att}");
    // docker's manifest.json lists the image only.
    let dm = json(&std::fs::read(unpacked.join("manifest.json")).unwrap());
    assert_eq!(dm.as_array().unwrap().len(), 1);

    let st = statements(&t.layout, &blob(&t.layout, att_digest), image_digest);
    let kinds: Vec<&str> = st.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(kinds, [SPDX, SLSA]);
    let sbom = json(&st[0].1);
    assert_eq!(sbom["predicate"]["spdxVersion"], "SPDX-2.3");
    let packages: Vec<&str> = sbom["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(packages.contains(&"libc6"), "{packages:?}");
    // The attached provenance is the one --provenance writes.
    assert_eq!(st[1].1, t.provenance);

    // Same input, same bytes.
    let again = t.s.trace(&["-o", "again.tar"]);
    assert_eq!(again["image"]["attestation"], att_digest);
    assert_eq!(
        std::fs::read(t.s.path().join("again.tar")).unwrap(),
        std::fs::read(&t.archive).unwrap()
    );
}

#[test]
fn podman_skopeo_and_umoci_still_take_the_image() {
    let t = traced();
    let image_digest = t.summary["manifest_digest"].as_str().unwrap();
    let podman = Podman::new();
    podman.load(&t.archive);
    let o = podman.run("jail/echo:latest", ["in podman"]);
    ok(&o);
    assert_eq!(text(&o.stdout), "in podman\n");

    // skopeo and umoci pick the image by its ref.name; the attestation
    // manifest has none.
    require("skopeo", "skopeo");
    let copy = t.s.path().join("skopeo-copy");
    ok(&run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:latest", t.layout.display()))
        .arg(format!("oci:{}:copied", copy.display()))));
    let copied = json(&std::fs::read(copy.join("index.json")).unwrap());
    assert_eq!(copied["manifests"][0]["digest"], image_digest);
    require("umoci", "umoci");
    let bundle = t.s.path().join("bundle");
    ok(&run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", t.layout.display()))
        .arg(&bundle)));
    assert!(bundle.join("rootfs/bin/echo").is_file());
}

#[test]
fn verify_and_sbom_read_the_image_not_its_attestations() {
    let t = traced();
    let o = run(t.s.jail().arg("verify").arg(&t.archive));
    ok(&o);
    assert!(
        text(&o.stdout).contains("identical: sha256:"),
        "{}",
        text(&o.stdout)
    );
    let o = run(t.s.jail().args(["sbom", "--format", "spdx"]).arg(&t.layout));
    ok(&o);
    assert_eq!(json(&o.stdout)["spdxVersion"], "SPDX-2.3");
}

#[test]
fn attest_without_an_image_or_to_a_digest_is_refused_before_the_trace() {
    let s = Scratch::new();
    let o = run(s
        .jail()
        .args(["trace", "--no-image", "--attest", "--", "touch", "ran"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--no-image"),
        "{}",
        text(&o.stderr)
    );
    assert!(!s.path().join("ran").exists(), "the command was traced");
    // Nor to a digest: the tag names the index pushed last.
    let digest = format!("127.0.0.1:9/jail/x@sha256:{}", "0".repeat(64));
    let o = run(s
        .jail()
        .args(["trace", "-o", "x.tar", "--attest", "--push", &digest])
        .args(["--", "touch", "ran"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("push to a tag"),
        "{}",
        text(&o.stderr)
    );
    assert!(!s.path().join("ran").exists(), "the command was traced");
}

/// `skopeo inspect --raw` of a reference in the plain-HTTP registry.
fn raw(reference: &str) -> Vec<u8> {
    let o = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    ok(&o);
    o.stdout
}

#[test]
fn push_sends_an_index_with_the_image_and_its_attestations() {
    require("skopeo", "skopeo");
    let reg = Registry::start(None);
    let host = reg.host();
    let s = Scratch::new();
    let reference = format!("{host}/jail/echo:v1");
    let summary = s.trace(&[
        "-o",
        "echo.tar",
        "--insecure-registry",
        &host,
        "--push",
        &reference,
    ])["image"]
        .clone();
    let image_digest = summary["manifest_digest"].as_str().unwrap();
    let att_digest = summary["attestation"].as_str().unwrap();

    // The tag names an index: the image and its attestation manifest.
    let index_bytes = raw(&reference);
    let pushed = &summary["pushed"];
    assert_eq!(pushed["manifest_digest"], sha256(&index_bytes).as_str());
    let index = json(&index_bytes);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [image_digest, att_digest]);

    // The registry holds the attestation manifest and its statements.
    let att = raw(&format!("{host}/jail/echo@{att_digest}"));
    assert_eq!(sha256(&att), att_digest);
    for l in json(&att)["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert!(reg.blob_data(d).is_file(), "statement {d} not pushed");
    }

    // skopeo copies the tag as the image.
    let out = s.path().join("pulled");
    ok(&run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:pulled", out.display()))));
    let pulled = json(&std::fs::read(out.join("index.json")).unwrap());
    assert_eq!(pulled["manifests"][0]["digest"], image_digest);

    // And jail reads the image (its embedded manifest) through the index.
    let o = run(s
        .jail()
        .args(["report", "--json", "--insecure-registry", &host])
        .arg(&reference));
    ok(&o);
    let r = json(&o.stdout);
    let from = r["subject"]["packages_from"].as_str().unwrap_or_default();
    assert!(from.contains("embedded manifest"), "{r}");
    assert!(text(&o.stdout).contains("\"libc6\""), "{r}");
}
