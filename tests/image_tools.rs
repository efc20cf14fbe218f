//! Real tools accept `jail pack` images: skopeo inspect, umoci unpack (the
//! rootfs matches the tree), podman load + run; and the fixed point: packing
//! an unpacked jail image gives the same layer.

mod common;
mod pack_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{jail, ok, require, run, text, Podman};
use pack_support::*;

const ARGS: [&str; 4] = ["--entrypoint", "/bin/busybox", "--cmd", "echo hello"];

/// Pack `tree` with `args`, returning the `--json` summary.
fn pack(tree: &Path, out: &Path, args: &[&str]) -> serde_json::Value {
    let mut c = jail();
    c.arg("pack")
        .arg(tree)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(ARGS)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    if !args.contains(&"--tag") {
        c.args(["--tag", "jail-test/busybox:v1"]);
    }
    let o = run(&mut c);
    ok(&o);
    summary(&o.stdout)
}

fn busybox_tree(group: &str) -> (PathBuf, PathBuf) {
    let base = fresh("image-tools", group);
    let tree = base.join("tree");
    make_tree(&tree, &rich_items(), true);
    (base, tree)
}

fn skopeo_inspect(transport_ref: &str) -> serde_json::Value {
    require("skopeo", "skopeo");
    let o = run(Command::new("skopeo").args(["inspect", "--raw", transport_ref]));
    ok(&o);
    let manifest: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = run(Command::new("skopeo").args(["inspect", "--config", transport_ref]));
    ok(&o);
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    serde_json::json!({ "manifest": manifest, "config": config })
}

#[test]
fn skopeo_inspects_every_compression_and_format() {
    let (base, tree) = busybox_tree("skopeo");
    for comp in ["gzip", "zstd", "none"] {
        let out = base.join(format!("{comp}.tar"));
        let s = pack(&tree, &out, &["--compression", comp]);
        let archive = skopeo_inspect(&format!("oci-archive:{}", out.display()));
        let dir = base.join(format!("{comp}.d"));
        pack(&tree, &dir, &["--compression", comp, "--format", "oci-dir"]);
        let layout = skopeo_inspect(&format!("oci:{}:v1", dir.display()));
        assert_eq!(
            archive, layout,
            "{comp}: the archive and the directory hold different images"
        );
        let cfg = &archive["config"];
        assert_eq!(cfg["rootfs"]["diff_ids"][0], s["diff_id"], "{comp}");
        assert_eq!(
            cfg["config"]["Entrypoint"],
            serde_json::json!(["/bin/busybox"])
        );
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["echo", "hello"]));
        assert_eq!(cfg["architecture"], "amd64");
        assert_eq!(cfg["config"]["Labels"]["jail.fileset"], s["fileset_digest"]);
        let layer = &archive["manifest"]["layers"][0];
        assert_eq!(layer["digest"], s["layer_digest"]);
        let want = match comp {
            "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        assert_eq!(layer["mediaType"], want);
    }
    // The archive is a docker archive too.
    let out = base.join("gzip.tar");
    // Selecting the image by its RepoTags entry proves manifest.json is read.
    let o = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        &format!("docker-archive:{}:jail-test/busybox:v1", out.display()),
    ]));
    ok(&o);
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["echo", "hello"]));
}

/// umoci unpack as root, returning the rootfs.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    require("umoci", "umoci");
    let _ = fs::remove_dir_all(bundle);
    let o = run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    ok(&o);
    bundle.join("rootfs")
}

#[test]
fn umoci_unpacks_the_tree_for_gzip_and_plain_layers() {
    let (base, tree) = busybox_tree("umoci");
    let want = snapshot(&tree, true);
    for comp in ["gzip", "none"] {
        // From an oci-dir …
        let dir = base.join(format!("{comp}.d"));
        pack(&tree, &dir, &["--compression", comp, "--format", "oci-dir"]);
        let rootfs = umoci_unpack(&dir, "v1", &base.join(format!("{comp}-bundle")));
        assert_eq!(
            snapshot(&rootfs, true),
            want,
            "{comp}: umoci's rootfs differs from the tree"
        );
        let caps = xattr(&rootfs.join("bin/capped"));
        assert_eq!(caps, CAP.to_vec(), "{comp}: the capability was lost");
        // … and from an extracted archive.
        let tar = base.join(format!("{comp}.tar"));
        pack(&tree, &tar, &["--compression", comp]);
        let x = base.join(format!("{comp}-x"));
        let _ = fs::remove_dir_all(&x);
        fs::create_dir_all(&x).unwrap();
        ok(&run(Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&x)));
        let rootfs = umoci_unpack(&x, "v1", &base.join(format!("{comp}-bundle2")));
        assert_eq!(
            snapshot(&rootfs, true),
            want,
            "{comp} (archive): umoci's rootfs differs from the tree"
        );
    }
}

fn xattr(p: &Path) -> Vec<u8> {
    let o = run(Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], 'security.capability'))")
        .arg(p));
    ok(&o);
    o.stdout
}

#[test]
fn podman_loads_and_runs_every_compression() {
    let (base, tree) = busybox_tree("podman");
    let podman = Podman::new();
    for comp in ["gzip", "none", "zstd"] {
        let out = base.join(format!("{comp}.tar"));
        let s = pack(
            &tree,
            &out,
            &[
                "--compression",
                comp,
                "--tag",
                &format!("jail-test/busybox:{comp}"),
            ],
        );
        let loaded = podman.load(&out);
        assert!(
            loaded.contains(&format!("jail-test/busybox:{comp}")),
            "{comp}: {loaded}"
        );
        let o = podman.run(&format!("jail-test/busybox:{comp}"), Vec::<&str>::new());
        ok(&o);
        assert_eq!(text(&o.stdout), "hello\n", "{comp}");
        // The image ID podman shows is the config digest.
        let o = run(podman.cmd().args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("jail-test/busybox:{comp}"),
        ]));
        ok(&o);
        assert_eq!(
            format!("sha256:{}", text(&o.stdout).trim()),
            s["image_id"].as_str().unwrap(),
            "{comp}"
        );
        // The files are there, with their content.
        let o = podman.run(
            &format!("jail-test/busybox:{comp}"),
            ["cat", "/etc/hello.txt"],
        );
        ok(&o);
        assert_eq!(text(&o.stdout), "hello from the tree\n");
    }
}

#[test]
fn packing_an_unpacked_image_is_a_fixed_point() {
    let (base, tree) = busybox_tree("fixed-point");
    let dir = base.join("img.d");
    let first = pack(&tree, &dir, &["--format", "oci-dir"]);

    // Through umoci (root: owners, modes, mtimes and xattrs kept).
    let rootfs = umoci_unpack(&dir, "v1", &base.join("bundle"));
    let again = pack(&rootfs, &base.join("again.tar"), &[]);
    assert_eq!(
        again["diff_id"], first["diff_id"],
        "umoci round trip changed the layer"
    );
    assert_eq!(again["layer_digest"], first["layer_digest"]);
    assert_eq!(
        again["image_id"], first["image_id"],
        "same layer and spec, same image ID"
    );

    // Through GNU tar -xp of the layer blob.
    let files = archive_files(&base.join("again.tar"));
    let layer = layer_tar(&files);
    let x = base.join("tar-x");
    let _ = fs::remove_dir_all(&x);
    fs::create_dir_all(&x).unwrap();
    fs::write(base.join("layer.tar"), &layer).unwrap();
    ok(&run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=security.capability", "-xpf"])
        .arg(base.join("layer.tar"))
        .arg("-C")
        .arg(&x)));
    let third = pack(&x, &base.join("third.tar"), &[]);
    assert_eq!(
        third["diff_id"], first["diff_id"],
        "tar -xp round trip changed the layer"
    );
}
