//! Layered images (issue 16): a python app traced on this machine is split
//! into package layers below and its own files on top. Changing one line of
//! the app changes only the top layer (and a push then uploads only it, to a
//! real registry on loopback); two commands using the same package files
//! share those layers byte for byte; `--layers 1` is the single layer of
//! before; podman runs the layered image, skopeo and umoci unpack it, and
//! `jail diff` / `jail verify` see through the layers.

mod common;
#[path = "common/registry.rs"]
mod registry_server;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::{jail, ok, require, run, text, unpack_layers, Podman};
use registry_server::Registry;
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

fn app_v1() -> &'static str {
    "import json\nprint(json.dumps({\"app\": \"v1\"}))\n"
}

fn app_v2() -> &'static str {
    "import json\nprint(json.dumps({\"app\": \"v2\"}))\n"
}

/// `jail trace --json -o OUT ARGS -- python3 SCRIPT`, its summary.
fn trace(dir: &Path, out: &str, script: &Path, args: &[&str]) -> Value {
    trace_in(dir, None, out, script, args)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

/// The image's layers: (kind, blob digest, blob size), bottom to top.
fn layers(summary: &Value) -> Vec<(String, String, u64)> {
    summary["image"]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {summary}"))
        .iter()
        .map(|l| {
            (
                l["kind"].to_string(),
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn write_app(path: &Path, code: &str) {
    fs::write(path, code).unwrap();
}

/// Every path under `dir` with its content (regular files) or target.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.insert(rel, Vec::new());
                stack.push(p);
            } else if t.is_symlink() {
                out.insert(
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                );
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn an_app_change_changes_only_the_top_layer_and_tools_unpack_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let app = dir.join("app.py");

    write_app(&app, app_v1());
    let a = trace(dir, "a.tar", &app, &[]);
    write_app(&app, app_v2());
    let b = trace(dir, "b.tar", &app, &["--tree", "b-tree"]);
    let one = trace(dir, "one.tar", &app, &["--layers", "1"]);

    // Packages below, the app on top.
    let (la, lb) = (layers(&a), layers(&b));
    assert!(la.len() >= 3, "{la:?}");
    assert_eq!(la.len(), lb.len(), "{la:?}\n{lb:?}");
    assert_eq!(la.last().unwrap().0, "\"top\"");
    assert!(
        la.iter().any(|l| l.0.contains("libc6")),
        "libc6 has a layer: {la:?}"
    );
    // One line of the app changed: only the top layer differs.
    for (x, y) in la.iter().zip(&lb).take(la.len() - 1) {
        assert_eq!(x, y, "a lower layer changed with the app");
    }
    assert_ne!(la.last().unwrap().1, lb.last().unwrap().1);
    let total: u64 = lb.iter().map(|l| l.2).sum();
    let top = lb.last().unwrap().2;
    assert!(
        top * 20 <= total,
        "the top layer is {top} of {total} bytes, more than 5%"
    );

    // A budget out of range is refused before anything runs.
    let o = run(jail().current_dir(dir).args([
        "trace",
        "--layers",
        "17",
        "--",
        "/bin/sh",
        "-c",
        "touch ran",
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--layers 17"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.join("ran").exists(), "the command ran");

    // --layers 1: one layer with the same files; only the embedded
    // manifest (which records the layer budget) differs.
    let l1 = layers(&one);
    assert_eq!(l1.len(), 1, "{l1:?}");
    let o = run(jail().current_dir(dir).args(["diff", "b.tar", "one.tar"]));
    assert!(
        text(&o.stderr).contains("0 added, 0 removed, 1 changed")
            && text(&o.stdout).starts_with("~ /var/lib/jail/manifest.json "),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    // Another command (decimal: one more package, other stdlib files)
    // keeps the same files of python and libc: the same blobs for them.
    let other = dir.join("other.py");
    write_app(
        &other,
        "import decimal\nprint(decimal.Decimal(\"1.10\") + 2)\n",
    );
    let c = trace(dir, "c.tar", &other, &[]);
    let lc = layers(&c);
    for kind in ["libc6", "python3.11-minimal"] {
        let pick = |ls: &[(String, String, u64)]| {
            ls.iter()
                .find(|l| l.0.contains(&format!("\"{kind}\"")))
                .map(|l| l.1.clone())
        };
        let x = pick(&lb).unwrap_or_else(|| panic!("no {kind} layer: {lb:?}"));
        assert_eq!(
            Some(x),
            pick(&lc),
            "{kind}'s layer differs:\n{lb:?}\n{lc:?}"
        );
    }

    // Unpacked two ways (layers in order; in reverse order, elsewhere,
    // atimes changed), the image packs back into the same layers.
    let archive = dir.join("b-archive");
    fs::create_dir_all(&archive).unwrap();
    ok(&run(Command::new("tar")
        .arg("-xf")
        .arg(dir.join("b.tar"))
        .arg("-C")
        .arg(&archive)));
    let m: Value =
        serde_json::from_slice(&fs::read(archive.join("manifest.json")).unwrap()).unwrap();
    let blobs: Vec<String> = m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let unpack = |tree: &Path, order: &mut dyn Iterator<Item = &String>| {
        fs::create_dir_all(tree).unwrap();
        for l in order {
            ok(&run(Command::new("tar")
                .args(["--numeric-owner", "--xattrs", "-xzf"])
                .arg(archive.join(l))
                .arg("-C")
                .arg(tree)));
        }
    };
    unpack(&dir.join("copy1"), &mut blobs.iter());
    unpack(&dir.join("x/y/copy2"), &mut blobs.iter().rev());
    ok(&run(Command::new("find").arg(dir.join("x/y/copy2")).args(
        ["-exec", "touch", "-a", "-h", "-d", "@1", "{}", "+"],
    )));
    let mut packed = Vec::new();
    for (tree, out) in [("copy1", "p1.tar"), ("x/y/copy2", "p2.tar")] {
        let o = run(jail()
            .current_dir(dir)
            .args(["pack", tree, "-o", out, "--json"]));
        ok(&o);
        packed.push(json(&o));
    }
    assert_eq!(packed[0]["manifest_digest"], packed[1]["manifest_digest"]);
    let repacked: Vec<String> = packed[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        repacked,
        lb.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
        "the unpacked image packs into other layers"
    );

    // jail verify rebuilds the layered image bit for bit from this root.
    let o = run(jail().current_dir(dir).args(["verify", "b.tar"]));
    ok(&o);

    // podman runs it.
    let podman = Podman::new();
    let loaded = podman.load(&dir.join("b.tar"));
    let name = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("podman load said {loaded}"))
        .trim()
        .to_string();
    let o = podman.run(&name, std::iter::empty::<&str>());
    ok(&o);
    assert_eq!(text(&o.stdout), "{\"app\": \"v2\"}\n");

    // skopeo copies it to a layout, umoci unpacks the same tree.
    require("skopeo", "skopeo");
    require("umoci", "umoci");
    let layout = dir.join("layout");
    ok(&run(Command::new("skopeo").args([
        "copy",
        &format!("oci-archive:{}", dir.join("b.tar").display()),
        &format!("oci:{}:v1", layout.display()),
    ])));
    let bundle = dir.join("bundle");
    ok(&run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)));
    let (unpacked, tree) = (files(&bundle.join("rootfs")), files(&dir.join("b-tree")));
    assert_eq!(
        unpacked.keys().collect::<Vec<_>>(),
        tree.keys().collect::<Vec<_>>()
    );
    assert!(
        unpacked == tree,
        "umoci's rootfs differs from the jail tree"
    );
}

#[test]
fn push_after_an_app_change_uploads_only_the_top_layer() {
    let reg = Registry::start(None);
    let host = reg.host();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let app = dir.join("app.py");
    let push = |out: &str, reference: &str, layers_arg: &str| -> Value {
        trace(
            dir,
            out,
            &app,
            &[
                "--layers",
                layers_arg,
                "--push",
                reference,
                "--insecure-registry",
                &host,
            ],
        )
    };

    // Layered: the second push sends the config and the top layer.
    write_app(&app, app_v1());
    let a = push("a.tar", &format!("{host}/app:v1"), "8");
    let first = reg.blob_puts().len();
    assert_eq!(first, layers(&a).len() + 1, "{:?}", reg.blob_puts());
    write_app(&app, app_v2());
    let b = push("b.tar", &format!("{host}/app:v2"), "8");
    let puts: Vec<(String, u64)> = reg.blob_puts().split_off(first);
    let lb = layers(&b);
    let top = lb.last().unwrap();
    let layer_puts: Vec<&(String, u64)> = puts
        .iter()
        .filter(|(d, _)| lb.iter().any(|l| &l.1 == d))
        .collect();
    assert_eq!(
        layer_puts.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        vec![top.1.clone()],
        "only the top layer is uploaded: {puts:?}"
    );
    assert_eq!(puts.len(), 2, "the config and the top layer: {puts:?}");
    let image: u64 = lb.iter().map(|l| l.2).sum();
    let sent: u64 = puts.iter().map(|p| p.1).sum();
    assert!(
        sent * 20 <= image,
        "the second push sent {sent} bytes of a {image}-byte image"
    );
    assert_eq!(b["image"]["pushed"]["uploaded_bytes"], sent);

    // The control: one layer, uploaded again whole.
    write_app(&app, app_v1());
    push("c.tar", &format!("{host}/one:v1"), "1");
    let before = reg.blob_puts().len();
    write_app(&app, app_v2());
    let d2 = push("d.tar", &format!("{host}/one:v2"), "1");
    let puts = reg.blob_puts().split_off(before);
    let image = d2["image"]["compressed_size"].as_u64().unwrap();
    let sent: u64 = puts.iter().map(|p| p.1).sum();
    assert!(
        sent >= image,
        "--layers 1 re-uploads the whole layer ({sent} of {image} bytes): {puts:?}"
    );
}

#[test]
fn a_base_is_reused_byte_for_byte_and_a_differing_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // The base: python traced with a broad workload.
    let base_py = dir.join("base.py");
    write_app(
        &base_py,
        "import json, sqlite3, decimal, csv, io\nprint('base')\n",
    );
    let base = trace(dir, "base.tar", &base_py, &["--tag", "t/base:1"]);
    let app = dir.join("app.py");
    write_app(&app, app_v2());
    let on = trace(
        dir,
        "app.tar",
        &app,
        &["--base", "base.tar", "--tag", "t/app:1"],
    );
    let (lbase, lapp) = (layers(&base), layers(&on));
    assert!(lapp.len() > lbase.len(), "{lapp:?}");
    for (b, a) in lbase.iter().zip(&lapp) {
        assert_eq!(b.1, a.1, "a base layer was not reused as it is");
        assert_eq!(a.0, "\"base\"");
    }
    let added: u64 = lapp[lbase.len()..].iter().map(|l| l.2).sum();
    let whole: u64 = lapp.iter().map(|l| l.2).sum();
    assert!(added * 20 <= whole, "{added} of {whole} bytes added");
    // What the base brings that the command does not use (sqlite3,
    // decimal, csv), reported.
    let b = &on["image"]["base"];
    assert!(b["unused_files"].as_u64().unwrap() > 0, "{b}");
    assert!(b["provided_files"].as_u64().unwrap() > 0, "{b}");
    let o = run(jail()
        .current_dir(dir)
        .args(["trace", "-o", "again.tar", "--base", "base.tar", "--"])
        .arg(PYTHON)
        .arg(&app));
    ok(&o);
    assert!(
        text(&o.stderr).contains("this command does not use"),
        "{}",
        text(&o.stderr)
    );

    base_evidence_is_carried_and_verified(dir, &on);

    // It runs, with the base's files and its own.
    let podman = Podman::new();
    podman.load(&dir.join("app.tar"));
    let o = podman.run("t/app:1", std::iter::empty::<&str>());
    ok(&o);
    assert_eq!(text(&o.stdout), "{\"app\": \"v2\"}\n");

    // A base whose copy of a file the command needs differs: exit 2,
    // naming the path.
    let fake = dir.join("fake/usr/lib/x86_64-linux-gnu");
    fs::create_dir_all(&fake).unwrap();
    fs::write(fake.join("libc.so.6"), "not libc\n").unwrap();
    ok(&run(jail()
        .current_dir(dir)
        .args(["pack", "fake", "-o", "fake.tar"])));
    let o = run(jail()
        .current_dir(dir)
        .args(["trace", "-o", "bad.tar", "--base", "fake.tar", "--"])
        .arg(PYTHON)
        .arg(&app));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("/usr/lib/x86_64-linux-gnu/libc.so.6 differs from the base"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.join("bad.tar").exists());
}

/// An image made on a base (app.tar on base.tar, in `dir`) describes the
/// base's files too: its manifest records the base and their packages,
/// status.d lists them, `jail verify` rebuilds it identical (finding the
/// base by the name its OCI manifest gives, or by --base) and names a changed byte in a
/// base file and in a command file; report and sbom see the base's files.
fn base_evidence_is_carried_and_verified(dir: &Path, on: &Value) {
    let digest = on["image"]["manifest_digest"].as_str().unwrap();
    // Verify finds the base by the name it was given (relative to here).
    let o = run(jail().current_dir(dir).args(["verify", "app.tar"]));
    ok(&o);
    assert_eq!(text(&o.stdout), format!("identical: {digest}\n"));
    // Elsewhere that name is not the base: the error says what to pass.
    let app = dir.join("app.tar");
    let o = run(jail().current_dir("/").arg("verify").arg(&app));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("made on a base")
            && err.contains("base.tar, cannot be read")
            && err.contains("pass --base IMAGE"),
        "{err}"
    );
    let o = run(jail()
        .current_dir("/")
        .arg("verify")
        .arg("--base")
        .arg(dir.join("base.tar"))
        .arg(&app));
    ok(&o);
    assert_eq!(text(&o.stdout), format!("identical: {digest}\n"));

    // The manifest: the base recorded, its files with their packages.
    let tree = dir.join("app-tree");
    unpack_layers(&app, &tree);
    // The directories above the app (in a sticky /tmp) keep their modes:
    // the new layers do not hide the base's with plain 0755 ones.
    use std::os::unix::fs::PermissionsExt;
    for a in dir.ancestors().filter(|a| *a != Path::new("/")) {
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let inside = tree.join(a.strip_prefix("/").unwrap());
        assert_eq!(mode(&inside), mode(a), "{}", a.display());
    }
    let m: Value =
        serde_json::from_slice(&fs::read(tree.join("var/lib/jail/manifest.json")).unwrap())
            .unwrap();
    assert!(m["base"]["manifest_digest"].is_string(), "{}", m["base"]);
    assert_eq!(
        m["base"]["manifest_digest"],
        on["image"]["base"]["manifest_digest"]
    );
    assert_eq!(
        m["base"]["layers"].as_array().unwrap().len(),
        layers(on).iter().filter(|l| l.0 == "\"base\"").count()
    );
    let files = m["files"].as_object().unwrap();
    let find = |part: &str| {
        files
            .iter()
            .find(|(p, r)| p.contains(part) && r["type"] == "file")
            .unwrap_or_else(|| panic!("no {part} in the manifest"))
    };
    let (sqlite_mod, rec) = find("lib-dynload/_sqlite3");
    let sqlite_mod = sqlite_mod.clone();
    assert_eq!(rec["package"]["name"], "libpython3.11-stdlib", "{rec}");
    assert!(
        rec["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "base"),
        "{rec}"
    );
    let (libsqlite, rec) = find("libsqlite3.so");
    let libsqlite = libsqlite.clone();
    assert_eq!(rec["package"]["name"], "libsqlite3-0", "{rec}");
    // The command's own files are not marked.
    let (_, json_rec) = find("python3.11/json/__init__.py");
    assert!(
        !json_rec["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "base"),
        "{json_rec}"
    );
    // One status.d list per package, naming the base's files too.
    let sums = fs::read_to_string(tree.join("var/lib/dpkg/status.d/libpython3.11-stdlib.md5sums"))
        .unwrap();
    assert!(sums.contains(sqlite_mod.trim_start_matches('/')), "{sums}");
    assert!(
        sums.contains("usr/lib/python3.11/json/__init__.py"),
        "{sums}"
    );
    assert!(tree.join("var/lib/dpkg/status.d/libsqlite3-0").is_file());

    // --packages checks the base's files too.
    let o = run(jail()
        .current_dir(dir)
        .args(["verify", "--packages", "--json", "app.tar"]));
    ok(&o);
    let c = json(&o);
    assert_eq!(c["mismatched"], 0, "{c}");
    // Every packaged regular file the manifest lists is verified, the
    // base's (reason `base`) among them.
    let packaged: Vec<&Value> = files
        .values()
        .filter(|r| r["type"] == "file" && r["package"].is_object())
        .collect();
    assert!(packaged
        .iter()
        .any(|r| r["reasons"].as_array().unwrap().iter().any(|x| x == "base")));
    assert_eq!(c["verified"], packaged.len(), "{c}");

    // report: the base's files are packaged.
    let o = run(jail()
        .current_dir(dir)
        .args(["report", "--json", "app.tar"]));
    ok(&o);
    let r = json(&o);
    let in_report = |path: &str| {
        r["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in the report"))["packages"]
            .clone()
    };
    assert_eq!(in_report(&libsqlite), serde_json::json!(["libsqlite3-0"]));
    assert_eq!(
        in_report(&sqlite_mod),
        serde_json::json!(["libpython3.11-stdlib"])
    );

    // sbom: the base's package and files, related.
    ok(&run(jail().current_dir(dir).args([
        "sbom",
        "app.tar",
        "-o",
        "app.spdx.json",
    ])));
    let sbom: Value =
        serde_json::from_slice(&fs::read(dir.join("app.spdx.json")).unwrap()).unwrap();
    let pkg = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libsqlite3-0")
        .expect("libsqlite3-0 in the SBOM");
    let file = sbom["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == format!(".{libsqlite}"))
        .expect("the base's libsqlite3 in the SBOM");
    assert!(sbom["relationships"].as_array().unwrap().iter().any(|rel| {
        rel["spdxElementId"] == pkg["SPDXID"]
            && rel["relationshipType"] == "CONTAINS"
            && rel["relatedSpdxElement"] == file["SPDXID"]
    }));

    // A changed byte in a base file and in a command file, repacked: named.
    for rel in [sqlite_mod.as_str(), "/usr/lib/python3.11/json/__init__.py"] {
        let f = tree.join(rel.trim_start_matches('/'));
        let mut b = fs::read(&f).unwrap();
        b[100] ^= 1;
        fs::write(&f, b).unwrap();
    }
    ok(&run(jail().current_dir(dir).args([
        "pack",
        "app-tree",
        "-o",
        "tampered.tar",
    ])));
    let o = run(jail()
        .current_dir(dir)
        .args(["verify", "--base", "base.tar", "tampered.tar"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for rel in [sqlite_mod.as_str(), "/usr/lib/python3.11/json/__init__.py"] {
        assert!(
            out.contains(&format!("{rel}: content changed in the image")),
            "{out}"
        );
    }
}

/// `jail trace --json -o OUT ARGS -- python3 SCRIPT`, with its own cache
/// when given (where the record of pushed blobs lives).
fn trace_in(dir: &Path, cache: Option<&Path>, out: &str, script: &Path, args: &[&str]) -> Value {
    require(PYTHON, "python3");
    let mut cmd = jail();
    cmd.current_dir(dir);
    if let Some(cache) = cache {
        cmd.env("XDG_CACHE_HOME", cache);
    }
    let o = run(cmd
        .args(["trace", "--json", "-o", out])
        .args(args)
        .arg("--")
        .arg(PYTHON)
        .arg(script));
    ok(&o);
    json(&o)
}

#[test]
fn a_push_mounts_what_another_repository_has_and_uploads_when_it_cannot() {
    let reg = Registry::start(None);
    let host = reg.host();
    let d = tempfile::tempdir().unwrap();
    let (dir, cache) = (d.path(), d.path().join("cache"));
    let insecure = ["--insecure-registry", host.as_str()];

    let base_py = dir.join("base.py");
    write_app(&base_py, "import json, decimal\nprint('base')\n");
    let base_ref = format!("{host}/base:1");
    let base = trace_in(
        dir,
        Some(&cache),
        "base.tar",
        &base_py,
        &[&["--push", &base_ref][..], &insecure].concat(),
    );
    let lbase = layers(&base);

    // The app on the base, to another repository: the base's layers are
    // mounted from base's repository, only the rest is uploaded.
    let app = dir.join("app.py");
    write_app(&app, app_v1());
    let before = reg.blob_puts().len();
    let app_ref = format!("{host}/app:1");
    let on = trace_in(
        dir,
        Some(&cache),
        "app.tar",
        &app,
        &[&["--base", "base.tar", "--push", &app_ref][..], &insecure].concat(),
    );
    let pushed = &on["image"]["pushed"];
    assert_eq!(pushed["mounted"], lbase.len(), "{pushed}");
    assert_eq!(reg.mounts(), lbase.len(), "{}", reg.log());
    let puts = reg.blob_puts().split_off(before);
    assert!(
        puts.iter().all(|(d, _)| lbase.iter().all(|l| &l.1 != d)),
        "a base layer was uploaded: {puts:?}"
    );
    let new_layers = layers(&on).len() - lbase.len();
    assert_eq!(
        puts.len(),
        new_layers + 1,
        "new layers and config: {puts:?}"
    );
    let sent: u64 = puts.iter().map(|p| p.1).sum();
    assert_eq!(pushed["uploaded_bytes"], sent);
    let base_bytes: u64 = lbase.iter().map(|l| l.2).sum();
    assert_eq!(pushed["mounted_bytes"], base_bytes);
    // skopeo reads the pushed image whole.
    require("skopeo", "skopeo");
    ok(&run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{app_ref}"),
        &format!("oci:{}:v1", dir.join("copy").display()),
    ])));

    // A base named by its registry reference: pulled, its layers reused,
    // and mounted into a third repository.
    let by_ref = trace_in(
        dir,
        Some(&cache),
        "app2.tar",
        &app,
        &[
            &["--base", &base_ref, "--push", &format!("{host}/app2:1")][..],
            &insecure,
        ]
        .concat(),
    );
    let l2 = layers(&by_ref);
    for (b, a) in lbase.iter().zip(&l2) {
        assert_eq!(b.1, a.1, "the pulled base's layers were not reused");
    }
    // The same app on the same base as app:1: every blob (the base's, the
    // app's layers, the config) is mounted, nothing uploaded.
    assert_eq!(by_ref["image"]["pushed"]["mounted"], l2.len() + 1);
    assert_eq!(by_ref["image"]["pushed"]["uploaded"], 0);

    // A record that names a repository without the blob: the registry
    // answers 202 (an upload), and jail uploads it.
    write_app(&app, app_v2());
    let other = trace_in(dir, Some(&cache), "other.tar", &app, &[]);
    let record = cache.join("jail/pushed.json");
    let mut r: Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    for (_, digest, _) in layers(&other) {
        r["registries"][&host][&digest] = serde_json::json!(["ghost"]);
    }
    fs::write(&record, serde_json::to_vec(&r).unwrap()).unwrap();
    let mounts = reg.mounts();
    let again = trace_in(
        dir,
        Some(&cache),
        "other.tar",
        &app,
        &[&["--push", &format!("{host}/other:1")][..], &insecure].concat(),
    );
    let pushed = &again["image"]["pushed"];
    assert_eq!(pushed["mounted"], 0, "{pushed}");
    assert_eq!(pushed["uploaded"], layers(&other).len() + 1, "{pushed}");
    assert_eq!(reg.mounts(), mounts);
    assert!(
        reg.log().contains("from=ghost"),
        "no mount was tried:\n{}",
        reg.log()
    );
}
