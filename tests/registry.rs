//! Registries (issue 10), against a real registry: Debian's
//! `docker-registry`, started per test on 127.0.0.1 with its storage in a
//! temp dir (and htpasswd auth for the authentication test). Push, re-push
//! (counted in the registry's access log), pull and slim by reference,
//! skopeo's view of the digest, platform selection from an index,
//! credentials from an auth file, and faults: a transfer cut mid-blob, a
//! corrupt or truncated blob in the registry, unreachable registries, bad
//! references, missing tags.

mod common;
#[path = "common/registry.rs"]
mod registry_server;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use common::{ok, require, run, text};
use registry_server::{Registry, Scratch};
use serde_json::Value;

impl Scratch {
    fn new() -> Scratch {
        Scratch::new_in("jail-registry-test")
    }

    /// The files in the blob cache (names only).
    fn cached(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache().join("jail/blobs/sha256")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A tree with a static busybox (and `extra` random bytes in a file).
    fn tree(&self, name: &str, extra: usize) -> PathBuf {
        require("busybox", "busybox-static");
        let t = self.path().join(name);
        std::fs::create_dir_all(t.join("bin")).unwrap();
        let bb = t.join("bin/busybox");
        if !bb.exists() {
            std::fs::copy(which("busybox"), &bb).unwrap();
        }
        if extra > 0 {
            // Incompressible bytes: the layer is as large as they are.
            let mut data = vec![0u8; extra];
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            std::fs::write(t.join("data.bin"), data).unwrap();
        }
        t
    }

    /// `jail pack TREE -o OUT --push REF --json`, with `args`.
    fn pack_push(&self, tree: &Path, out: &str, reference: &str, args: &[&str]) -> Output {
        run(self
            .jail()
            .arg("pack")
            .arg(tree)
            .args(["-o", out, "--json", "--push", reference])
            .args(["--entrypoint", r#"["/bin/busybox","true"]"#])
            .args(args))
    }
}

fn which(tool: &str) -> PathBuf {
    let o = run(Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}")));
    PathBuf::from(text(&o.stdout).trim())
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

/// `skopeo inspect` of a reference in the (plain-HTTP) registry.
fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    require("skopeo", "skopeo");
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--creds", cr]);
    }
    let o = run(c.arg(format!("docker://{reference}")));
    ok(&o);
    json(&o)["Digest"].as_str().unwrap().to_string()
}

#[track_caller]
fn fails_with(o: &Output, code: i32, needles: &[&str]) {
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        text(&o.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn push_pull_slim_round_trip_and_nothing_reuploaded() {
    let reg = Registry::start(None);
    let s = Scratch::new();
    let host = reg.host();
    let tree = s.tree("tree", 0);
    let reference = format!("{host}/jail/bb:v1");

    // Push: the reference by digest on stderr and in --json.
    let o = s.pack_push(
        &tree,
        "img.tar",
        &reference,
        &["--insecure-registry", &host],
    );
    ok(&o);
    let summary = json(&o);
    let digest = summary["manifest_digest"].as_str().unwrap().to_string();
    let by_digest = format!("{host}/jail/bb@{digest}");
    assert_eq!(summary["pushed"]["reference"], by_digest.as_str());
    assert_eq!(summary["pushed"]["tag"], reference.as_str());
    assert_eq!(summary["pushed"]["uploaded"], 2);
    assert!(text(&o.stderr).contains(&by_digest), "{}", text(&o.stderr));
    assert_eq!(
        reg.uploads(),
        2,
        "config and layer uploaded:\n{}",
        reg.log()
    );

    // The registry's digest is the local one.
    assert_eq!(skopeo_digest(&reference, None), digest);

    // Nothing re-uploaded: the same image again.
    let o = s.pack_push(
        &tree,
        "img2.tar",
        &reference,
        &["--insecure-registry", &host],
    );
    ok(&o);
    let again = json(&o);
    assert_eq!(again["manifest_digest"], digest.as_str());
    assert_eq!(again["pushed"]["uploaded"], 0);
    assert_eq!(again["pushed"]["existing"], 2);
    assert_eq!(
        reg.uploads(),
        2,
        "a blob was uploaded again:\n{}",
        reg.log()
    );

    // Pull and slim it by reference, pushing the result.
    let slim_ref = format!("{host}/jail/bb:slim");
    let o = run(s
        .jail()
        .args(["slim", &reference, "-o", "slim.tar", "--json"])
        .args(["--insecure-registry", &host, "--push", &slim_ref]));
    ok(&o);
    let slim = json(&o);
    assert_eq!(slim["source"]["manifest_digest"], digest.as_str());
    let slim_digest = slim["image"]["manifest_digest"].as_str().unwrap();
    assert_eq!(
        slim["image"]["pushed"]["reference"],
        format!("{host}/jail/bb@{slim_digest}").as_str()
    );
    assert_eq!(skopeo_digest(&slim_ref, None), slim_digest);
    // The pulled blobs are in the cache, by digest, and nothing else.
    let mut cached = s.cached();
    cached.sort();
    let mut want = vec![
        summary["image_id"].as_str().unwrap()[7..].to_string(),
        summary["layer_digest"].as_str().unwrap()[7..].to_string(),
    ];
    want.sort();
    assert_eq!(cached, want);

    // jail report reviews it by reference: the same files as the archive.
    let report_of = |subject: &str| {
        let o = run(s
            .jail()
            .args(["report", "--json", subject, "--insecure-registry", &host]));
        ok(&o);
        let r = json(&o);
        assert_eq!(r["subject"]["kind"], "image", "{r}");
        let mut paths: Vec<String> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect();
        paths.sort();
        paths
    };
    let remote = report_of(&reference);
    assert!(!remote.is_empty());
    assert_eq!(remote, report_of("img.tar"));

    // By digest, from the cache and the registry, the same files as the
    // archive.
    let o = run(s
        .jail()
        .args(["diff", &by_digest, "img.tar", "--insecure-registry", &host]));
    ok(&o);
    assert!(text(&o.stderr).contains("0 added, 0 removed, 0 changed"));

    // trace --push: the image of a traced run, pushed.
    let o = run(s
        .jail()
        .args([
            "trace",
            "-o",
            "true.tar",
            "--json",
            "--insecure-registry",
            &host,
        ])
        .args(["--push", &format!("{host}/jail/true")])
        .args(["--", "/bin/true"]));
    ok(&o);
    let t = json(&o);
    let td = t["image"]["manifest_digest"].as_str().unwrap();
    assert_eq!(
        t["image"]["pushed"]["tag"],
        format!("{host}/jail/true:latest").as_str()
    );
    assert_eq!(skopeo_digest(&format!("{host}/jail/true:latest"), None), td);
}

#[test]
fn an_index_resolves_to_the_host_platform_or_platform() {
    let reg = Registry::start(None);
    let s = Scratch::new();
    let host = reg.host();
    let tree = s.tree("tree", 0);
    let o = run(s
        .jail()
        .arg("pack")
        .arg(&tree)
        .args(["-o", "layout", "--format", "oci-dir"])
        .args(["--entrypoint", r#"["/bin/busybox","true"]"#]));
    ok(&o);
    // A two-platform index by hand: the image as it is (amd64), and the
    // same layer under a config that says arm64/v8.
    let layout = s.path().join("layout");
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = format!("sha256:{}", hex(&sha256(bytes)));
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let amd_desc = index["manifests"][0].clone();
    let amd_digest = amd_desc["digest"].as_str().unwrap().to_string();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&amd_digest)).unwrap()).unwrap();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    let mut arm_manifest = manifest.clone();
    arm_manifest["config"]["digest"] = cd.into();
    arm_manifest["config"]["size"] = cs.into();
    let (arm_digest, arm_size) = put(&serde_json::to_vec(&arm_manifest).unwrap());
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": arm_digest, "size": arm_size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": mt, "digest": amd_digest, "size": amd_desc["size"],
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let (idx_digest, idx_size) = put(&serde_json::to_vec(&inner).unwrap());
    let outer = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": idx_digest, "size": idx_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&outer).unwrap(),
    )
    .unwrap();
    let reference = format!("{host}/jail/multi:v1");
    require("skopeo", "skopeo");
    ok(&run(Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{reference}"))));

    let slim = |extra: &[&str]| {
        run(s
            .jail()
            .args(["slim", &reference, "-o", "slim.tar", "--json"])
            .args(["--insecure-registry", &host])
            .args(extra))
    };
    let o = slim(&[]);
    ok(&o);
    assert_eq!(json(&o)["source"]["manifest_digest"], amd_digest.as_str());
    let o = slim(&["--platform", "linux/arm64"]);
    ok(&o);
    assert_eq!(json(&o)["source"]["manifest_digest"], arm_digest.as_str());
    let o = slim(&["--platform", "linux/s390x"]);
    fails_with(
        &o,
        2,
        &[
            &reference,
            "no image for linux/s390x",
            "linux/amd64, linux/arm64/v8",
            "--platform",
        ],
    );
    let o = slim(&["--platform", "linux"]);
    fails_with(&o, 2, &["invalid platform"]);
}

#[test]
fn authentication_from_an_auth_file_and_never_printed() {
    let (user, pass) = ("jailtest", "s3cret-pa55w0rd");
    let reg = Registry::start(Some((user, pass)));
    let s = Scratch::new();
    let host = reg.host();
    let tree = s.tree("tree", 0);
    let reference = format!("{host}/jail/auth:v1");
    let insecure = ["--insecure-registry", host.as_str()];
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let leaks = |o: &Output| {
        for out in [text(&o.stdout), text(&o.stderr)] {
            assert!(!out.contains(pass), "the password was printed:\n{out}");
            assert!(
                !out.contains(&b64),
                "the encoded credentials were printed:\n{out}"
            );
        }
    };

    // No credentials: exit 1, saying how to pass them.
    let o = s.pack_push(&tree, "img.tar", &reference, &insecure);
    fails_with(&o, 1, &[&reference, "401", "--creds", "REGISTRY_AUTH_FILE"]);

    // Wrong ones: exit 1, saying where they came from, not what they are.
    let o = s.pack_push(
        &tree,
        "img.tar",
        &reference,
        &[&insecure[..], &["--creds", "jailtest:wrong-pa55"]].concat(),
    );
    fails_with(
        &o,
        1,
        &[&reference, "credentials from --creds were refused"],
    );
    assert!(!text(&o.stderr).contains("wrong-pa55"));

    // From an auth file ($REGISTRY_AUTH_FILE, podman's format).
    let authfile = s.path().join("auth.json");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    let o = run(s
        .jail()
        .env("REGISTRY_AUTH_FILE", &authfile)
        .arg("pack")
        .arg(&tree)
        .args(["-o", "img.tar", "--json", "--push", &reference])
        .args(insecure));
    ok(&o);
    leaks(&o);
    let digest = json(&o)["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(
        skopeo_digest(&reference, Some(&format!("{user}:{pass}"))),
        digest
    );
    // Not in the image either.
    let img = std::fs::read(s.path().join("img.tar")).unwrap();
    assert!(!img.windows(pass.len()).any(|w| w == pass.as_bytes()));

    // Pulls read docker's config.json; --creds works too.
    let docker = s.path().join("home/.docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"http://{host}/v1/":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    let o = run(s
        .jail()
        .args(["diff", &reference, "img.tar"])
        .args(insecure));
    ok(&o);
    leaks(&o);
    std::fs::remove_file(docker.join("config.json")).unwrap();
    let o = run(s
        .jail()
        .args([
            "diff",
            &reference,
            "img.tar",
            "--creds",
            &format!("{user}:{pass}"),
        ])
        .args(insecure));
    ok(&o);
    leaks(&o);
    // A pull without any: exit 1.
    let _ = std::fs::remove_dir_all(s.cache());
    let o = run(s
        .jail()
        .args(["diff", &reference, "img.tar"])
        .args(insecure));
    fails_with(&o, 1, &[&reference, "401", "--creds"]);
}

/// A TCP proxy to `upstream` that, once a request containing `needle` has
/// gone through a connection, lets `keep` more bytes of the answer through
/// and then closes that connection: a registry dying mid-blob.
fn cutting_proxy(upstream: u16, needle: String, keep: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let cut = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (needle, cut_up) = (needle.clone(), cut.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if String::from_utf8_lossy(&buf[..n]).contains(&needle) {
                        cut_up.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut after_cut = 0;
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut n = n;
                    if cut.load(Ordering::SeqCst) {
                        n = n.min(keep - after_cut);
                        after_cut += n;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if cut.load(Ordering::SeqCst) && after_cut >= keep {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = s_in.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn faults_are_clear_errors_and_leave_no_partial_blob() {
    let reg = Registry::start(None);
    let s = Scratch::new();
    let host = reg.host();
    let tree = s.tree("big", 6 << 20);
    let reference = format!("{host}/jail/big:v1");
    let o = s.pack_push(
        &tree,
        "big.tar",
        &reference,
        &["--insecure-registry", &host],
    );
    ok(&o);
    let summary = json(&o);
    let layer = summary["layer_digest"].as_str().unwrap().to_string();
    let layer_size = summary["compressed_size"].as_u64().unwrap();
    assert!(layer_size > 6 << 20);
    let no_partial = |what: &str| {
        let cached = s.cached();
        assert!(
            !cached
                .iter()
                .any(|f| f.starts_with(".partial") || layer.ends_with(f.as_str())),
            "{what}: the cache holds {cached:?}"
        );
    };
    let diff = |r: &str, insecure: &str| {
        run(s
            .jail()
            .args(["diff", r, "big.tar", "--insecure-registry", insecure]))
    };

    // The connection dies 1 MiB into the layer.
    let proxy = cutting_proxy(reg.port, format!("/blobs/{layer}"), 1 << 20);
    let phost = format!("127.0.0.1:{proxy}");
    let o = diff(&format!("{phost}/jail/big:v1"), &phost);
    fails_with(
        &o,
        1,
        &[
            &format!("{phost}/jail/big:v1"),
            &layer,
            "transfer broke after",
            "nothing was kept",
        ],
    );
    no_partial("cut mid-blob");

    // The registry serves a corrupt layer (same size, one byte changed).
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let o = diff(&reference, &host);
    fails_with(&o, 1, &[&reference, &layer, "does not match the digest"]);
    no_partial("corrupt blob");

    // A truncated one.
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes[..mid]).unwrap();
    let o = diff(&reference, &host);
    fails_with(&o, 1, &[&reference, &layer]);
    no_partial("truncated blob");

    // Restored, the pull works and caches the layer.
    std::fs::write(&data, &bytes).unwrap();
    ok(&diff(&reference, &host));
    assert!(s.cached().iter().any(|f| layer.ends_with(f.as_str())));

    // A missing tag; an unreachable registry: exit 1, naming the reference.
    let o = diff(&format!("{host}/jail/big:nope"), &host);
    fails_with(&o, 1, &[&format!("{host}/jail/big:nope"), "not found"]);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dhost = format!("127.0.0.1:{dead}");
    let o = diff(&format!("{dhost}/jail/big:v1"), &dhost);
    fails_with(
        &o,
        1,
        &[&format!("{dhost}/jail/big:v1"), "cannot reach the registry"],
    );
    // TLS by default: a plain-HTTP registry without --insecure-registry.
    let o = run(s.jail().args(["diff", &reference, "big.tar"]));
    fails_with(&o, 1, &[&reference, "--insecure-registry"]);

    // Bad references: exit 2, before any network.
    for bad in [
        format!("{host}/jail/Big:v1"),
        format!("{host}/jail/big@sha256:abc"),
    ] {
        let o = diff(&bad, &host);
        fails_with(&o, 2, &["invalid registry reference"]);
        let o = run(s
            .jail()
            .arg("pack")
            .arg(&tree)
            .args(["-o", "x.tar", "--push", &bad]));
        fails_with(&o, 2, &["--push", "invalid registry reference"]);
        assert!(!s.path().join("x.tar").exists());
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
