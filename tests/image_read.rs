//! The image reader (`jail::image::read`): jail's own images round-trip;
//! whiteouts and opaque directories apply; malicious layers built here are
//! refused with nothing written outside the temporary root; corrupt inputs
//! are refused with a clear message.

mod common;
mod pack_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jail::digest::Digest;
use jail::image::read::{unpack, ImageSource, ReadError, Unpacked};
use pack_support::*;

/// One raw tar entry; names are written as given (no checks), which is the
/// point.
struct E<'a> {
    name: &'a [u8],
    kind: u8,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a str, data: &'a str) -> E<'a> {
    E {
        name: name.as_bytes(),
        kind: b'0',
        link: b"",
        data: data.as_bytes(),
        mode: 0o644,
    }
}
fn dir(name: &str) -> E<'_> {
    E {
        name: name.as_bytes(),
        kind: b'5',
        link: b"",
        data: b"",
        mode: 0o755,
    }
}
fn symlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        name: name.as_bytes(),
        kind: b'2',
        link: target.as_bytes(),
        data: b"",
        mode: 0o777,
    }
}
fn hardlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        name: name.as_bytes(),
        kind: b'1',
        link: target.as_bytes(),
        data: b"",
        mode: 0o644,
    }
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        {
            let raw = h.as_old_mut();
            raw.name[..e.name.len()].copy_from_slice(e.name);
            raw.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Knobs for breaking an image on purpose.
#[derive(Default)]
struct Break {
    truncate_layer: bool,
    wrong_diff_id: bool,
    missing_blob: bool,
    bad_index: bool,
}

/// Write an OCI layout with gzip layers to `dir` (tag `t`).
fn oci_layout(dir: &Path, layers: &[Vec<u8>], b: &Break) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = Digest::of(bytes);
        fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let mut gz = gzip(l);
        if b.truncate_layer {
            gz.truncate(gz.len() / 2);
        }
        let (d, n) = put(&gz);
        if b.missing_blob {
            fs::remove_file(
                dir.join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap();
        }
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}));
        diff_ids.push(if b.wrong_diff_id {
            Digest::of(b"other").to_string()
        } else {
            Digest::of(l).to_string()
        });
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/x"], "User": "1000", "Env": ["A=1"], "WorkingDir": "/w",
                   "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "Labels": {"k": "v"}, "StopSignal": "SIGQUIT"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cn) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs
    });
    let (md, mn) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                       "annotations": {"org.opencontainers.image.ref.name": "t"}}]
    });
    let mut ib = serde_json::to_vec(&index).unwrap();
    if b.bad_index {
        ib.truncate(ib.len() - 3);
    }
    fs::write(dir.join("index.json"), ib).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A test area: `base/` holds `img/` (the layout) and `unpack/` (the parent
/// of the temporary root). Returns (base, layout dir, unpack parent).
fn area(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = fresh("image-read", name);
    let unpack_dir = base.join("unpack");
    fs::create_dir_all(&unpack_dir).unwrap();
    (base.clone(), base.join("img"), unpack_dir)
}

fn read(src: &str, parent: &Path) -> Result<Unpacked, ReadError> {
    unpack(&ImageSource::parse(src)?, parent)
}

/// Nothing but the expected entries in `base`, the unpack parent empty.
#[track_caller]
fn assert_clean(base: &Path, parent: &Path) {
    let mut names: Vec<String> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["img", "unpack"],
        "something was written beside the root"
    );
    assert_eq!(
        fs::read_dir(parent).unwrap().count(),
        0,
        "the temporary root was not removed"
    );
    assert!(
        !Path::new("/tmp/jail-read-test-evil").exists(),
        "an absolute path was written"
    );
}

#[test]
fn applies_layers_whiteouts_and_opaque_directories() {
    let (_base, img, parent) = area("whiteouts");
    let l1 = layer(&[
        dir("a/"),
        file("a/x", "x"),
        file("a/y", "y"),
        dir("a/sub/"),
        file("a/sub/deep", "d"),
        file("b", "b"),
        file("c", "c"),
        symlink("lnk", "/a/x"),
        hardlink("hard", "c"),
    ]);
    let l2 = layer(&[
        dir("a/"),
        file("a/.wh..wh..opq", ""),
        file("a/z", "z"),
        file(".wh.b", ""),
        file("c", "c2"),
    ]);
    oci_layout(&img, &[l1, l2], &Break::default());
    let u = read(&format!("{}:t", img.display()), &parent).unwrap();
    let root = u.root().to_path_buf();
    let mut got: Vec<String> = walk(&root);
    got.sort();
    assert_eq!(got, ["a", "a/z", "c", "hard", "lnk"]);
    assert_eq!(fs::read_to_string(root.join("c")).unwrap(), "c2");
    assert_eq!(
        fs::read_to_string(root.join("hard")).unwrap(),
        "c",
        "the hard link keeps the old inode"
    );
    assert_eq!(fs::read_link(root.join("lnk")).unwrap(), Path::new("/a/x"));
    let c = u.config.config().as_ref().unwrap();
    assert_eq!(c.entrypoint().as_deref(), Some(&["/bin/x".to_string()][..]));
    assert_eq!(c.user().as_deref(), Some("1000"));
    assert_eq!(c.working_dir().as_deref(), Some("/w"));
    assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
    assert_eq!(
        c.exposed_ports().as_deref(),
        Some(&["80/tcp".to_string()][..])
    );
    assert_eq!(u.layers.len(), 2);
    assert_eq!(u.layers[1].applied.whiteouts, 2);
    assert!(u.manifest_digest.is_some());
    drop(u);
    assert!(!root.exists(), "dropping the image removes its root");
}

fn walk(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            v.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
    v
}

#[test]
fn malicious_layers_are_refused_and_nothing_escapes() {
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        ("dotdot", vec![layer(&[file("../evil", "x")])], "`..`"),
        (
            "dotdot-deep",
            vec![layer(&[dir("a/"), file("a/../../evil", "x")])],
            "`..`",
        ),
        (
            "absolute",
            vec![layer(&[file("/tmp/jail-read-test-evil", "x")])],
            "absolute",
        ),
        (
            "symlink-one-layer",
            vec![layer(&[symlink("esc", "../.."), file("esc/evil", "x")])],
            "symlink",
        ),
        (
            "symlink-absolute",
            vec![layer(&[
                symlink("esc", "/tmp"),
                file("esc/jail-read-test-evil", "x"),
            ])],
            "symlink",
        ),
        (
            "symlink-two-layers",
            vec![
                layer(&[symlink("esc", "../..")]),
                layer(&[file("esc/evil", "x")]),
            ],
            "symlink",
        ),
        (
            "symlink-dir-two-layers",
            vec![
                layer(&[dir("d/"), symlink("d/up", "../../..")]),
                layer(&[dir("d/up/x/"), file("d/up/x/evil", "x")]),
            ],
            "symlink",
        ),
        (
            "hardlink-dotdot",
            vec![layer(&[hardlink("h", "../../etc/passwd")])],
            "`..`",
        ),
        (
            "hardlink-absolute",
            vec![layer(&[hardlink("h", "/etc/passwd")])],
            "absolute",
        ),
        (
            "hardlink-through-symlink",
            vec![layer(&[
                symlink("etc", "/etc"),
                hardlink("h", "etc/passwd"),
            ])],
            "symlink",
        ),
        (
            "whiteout-dotdot",
            vec![layer(&[file(".wh...", "")])],
            "whiteout",
        ),
        (
            "whiteout-dot",
            vec![layer(&[dir("a/"), file("a/.wh..", "")])],
            "whiteout",
        ),
        (
            "whiteout-through-dotdot",
            vec![layer(&[file("../.wh.unpack", "")])],
            "`..`",
        ),
    ];
    for (name, layers, needle) in cases {
        let (base, img, parent) = area(&format!("evil-{name}"));
        oci_layout(&img, &layers, &Break::default());
        let err = read(&img.display().to_string(), &parent).expect_err(name);
        let msg = err.to_string();
        assert!(matches!(err, ReadError::Unsafe { .. }), "{name}: {msg}");
        assert!(err.is_bad_input(), "{name}");
        assert!(msg.contains(needle), "{name}: {msg}");
        assert!(
            msg.contains("layer blobs/sha256/"),
            "{name}: the error should name the layer: {msg}"
        );
        assert_clean(&base, &parent);
        // The target of the escape attempts is intact.
        assert!(Path::new("/etc/passwd").exists());
    }
}

#[test]
fn corrupt_inputs_are_refused_with_a_clear_message() {
    let good = || vec![layer(&[dir("a/"), file("a/f", &"hello ".repeat(5000))])];
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "truncated-gzip",
            Break {
                truncate_layer: true,
                ..Break::default()
            },
            "layer blobs/sha256/",
        ),
        (
            "wrong-diff-id",
            Break {
                wrong_diff_id: true,
                ..Break::default()
            },
            "diff_id",
        ),
        (
            "missing-blob",
            Break {
                missing_blob: true,
                ..Break::default()
            },
            "missing blob",
        ),
        (
            "bad-json",
            Break {
                bad_index: true,
                ..Break::default()
            },
            "not valid JSON",
        ),
    ];
    for (name, b, needle) in cases {
        let (base, img, parent) = area(&format!("corrupt-{name}"));
        oci_layout(&img, &good(), &b);
        let err = read(&img.display().to_string(), &parent).expect_err(name);
        let msg = err.to_string();
        assert!(err.is_bad_input(), "{name}: {msg}");
        assert!(msg.contains(needle), "{name}: {msg}");
        assert!(
            msg.contains(&img.display().to_string()),
            "{name}: the error should name the image: {msg}"
        );
        assert_clean(&base, &parent);
    }
    // Not an image at all: a text file, a tar of something else, a directory.
    let (base, img, parent) = area("not-an-image");
    fs::create_dir_all(&img).unwrap();
    fs::write(img.join("notes.txt"), "hello").unwrap();
    let err = read(&img.join("notes.txt").display().to_string(), &parent).unwrap_err();
    assert!(matches!(err, ReadError::NotAnImage { .. }), "{err}");
    let t = img.join("other.tar");
    fs::write(&t, layer(&[file("README", "hi")])).unwrap();
    let err = read(&t.display().to_string(), &parent).unwrap_err();
    assert!(
        matches!(err, ReadError::NotAnImage { .. }) && err.to_string().contains("index.json"),
        "{err}"
    );
    let err = read(&img.display().to_string(), &parent).unwrap_err();
    assert!(matches!(err, ReadError::NotAnImage { .. }), "{err}");
    let err = read(&base.join("nope.tar").display().to_string(), &parent).unwrap_err();
    assert!(
        matches!(err, ReadError::NotFound { .. }) && err.is_bad_input(),
        "{err}"
    );
    assert_clean(&base, &parent);
}

#[test]
fn reads_jail_images_in_every_format_back_to_the_tree() {
    let base = fresh("image-read", "round-trip");
    let tree = base.join("tree");
    make_tree(&tree, &rich_items(), true);
    let want = snapshot(&tree, true);
    let parent = base.join("unpack");
    fs::create_dir_all(&parent).unwrap();
    for (comp, format, out) in [
        ("gzip", "oci-archive", "gzip.tar"),
        ("zstd", "oci-archive", "zstd.tar"),
        ("none", "oci-dir", "none.d"),
        ("gzip", "oci-dir", "gzip.d"),
    ] {
        let dest = base.join(out);
        let o = common::run(
            common::jail()
                .arg("pack")
                .arg(&tree)
                .arg("-o")
                .arg(&dest)
                .args([
                    "--json",
                    "--tag",
                    "r/t:v1",
                    "--compression",
                    comp,
                    "--format",
                    format,
                    "--entrypoint",
                    "/bin/busybox",
                ])
                .env_remove("SOURCE_DATE_EPOCH"),
        );
        common::ok(&o);
        let s = summary(&o.stdout);
        let src = if format == "oci-dir" {
            format!("{}:v1", dest.display())
        } else {
            dest.display().to_string()
        };
        let u = read(&src, &parent).unwrap_or_else(|e| panic!("{out}: {e}"));
        assert_eq!(
            snapshot(u.root(), true),
            want,
            "{out}: the unpacked root differs from the tree"
        );
        assert_eq!(
            u.config_digest.to_string(),
            s["image_id"].as_str().unwrap(),
            "{out}"
        );
        assert_eq!(
            u.manifest_digest.unwrap().to_string(),
            s["manifest_digest"].as_str().unwrap(),
            "{out}"
        );
        assert_eq!(
            u.layers[0].diff_id.to_string(),
            s["diff_id"].as_str().unwrap(),
            "{out}"
        );
        assert_eq!(u.reference.as_deref(), Some("r/t:v1"), "{out}");
        // Fixed point: the unpacked root packs to the same image.
        let again = base.join(format!("again-{out}.tar"));
        let o = common::run(
            common::jail()
                .arg("pack")
                .arg(u.root())
                .arg("-o")
                .arg(&again)
                .args([
                    "--json",
                    "--tag",
                    "r/t:v1",
                    "--compression",
                    comp,
                    "--entrypoint",
                    "/bin/busybox",
                ])
                .env_remove("SOURCE_DATE_EPOCH"),
        );
        common::ok(&o);
        let s2 = summary(&o.stdout);
        for k in ["diff_id", "layer_digest", "image_id", "fileset_digest"] {
            assert_eq!(s2[k], s[k], "{out}: {k} changed through jail's own reader");
        }
    }
    // The same archive read as a docker archive (manifest.json only).
    let files = archive_files(&base.join("gzip.tar"));
    let docker = base.join("docker.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&docker).unwrap());
        for (name, data) in &files {
            if name.ends_with('/') || name == "index.json" || name == "oci-layout" {
                continue;
            }
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    let u = read(&docker.display().to_string(), &parent).unwrap();
    assert_eq!(
        snapshot(u.root(), true),
        want,
        "docker-archive: the unpacked root differs from the tree"
    );
    assert_eq!(u.manifest_digest, None);
    assert_eq!(u.reference.as_deref(), Some("r/t:v1"));
    drop(u);
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
}

/// Streaming: a layer over 2 GiB unpacks with bounded memory. Slow in a
/// debug build; scripts/test.sh runs the suite in release.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow without optimizations: run with --release"
)]
fn a_layer_over_two_gib_streams() {
    let base = fresh("image-read", "big");
    let tree = base.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::File::create(tree.join("big"))
        .unwrap()
        .set_len((2 << 30) + 12345)
        .unwrap();
    fs::write(tree.join("after"), "after the big file\n").unwrap();
    let img = base.join("big.tar");
    common::ok(&common::run(
        common::jail()
            .arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&img)
            .env_remove("SOURCE_DATE_EPOCH"),
    ));
    let parent = base.join("unpack");
    fs::create_dir_all(&parent).unwrap();
    let u = read(&img.display().to_string(), &parent).unwrap();
    assert_eq!(
        fs::metadata(u.root().join("big")).unwrap().len(),
        (2 << 30) + 12345
    );
    assert_eq!(
        fs::read_to_string(u.root().join("after")).unwrap(),
        "after the big file\n"
    );
    assert!(u.layers[0].uncompressed_size > 2 << 30);
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert!(
        hwm < 256 << 10,
        "peak memory {hwm} kB: the layer was buffered"
    );
    drop(u);
    fs::remove_file(&img).unwrap();
}

/// Run by [`sigint_while_unpacking_removes_the_root`] in a child process.
#[test]
#[ignore = "helper, run in a child process by sigint_while_unpacking_removes_the_root"]
fn helper_unpack_from_env() {
    let (Some(src), Some(parent)) = (
        std::env::var_os("JAIL_TEST_UNPACK_SRC"),
        std::env::var_os("JAIL_TEST_UNPACK_PARENT"),
    ) else {
        return;
    };
    let r = read(src.to_str().unwrap(), Path::new(&parent));
    std::process::exit(match r {
        Err(ReadError::Interrupted(i)) => i.exit_code(),
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(_) => 0,
    });
}

#[test]
fn sigint_while_unpacking_removes_the_root() {
    let base = fresh("image-read", "sigint");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    common::ok(&common::run(
        std::process::Command::new("sh").arg("-c").arg(format!(
            "head -c 512M /dev/urandom > {}/tmp/random",
            tree.display()
        )),
    ));
    let img = base.join("img.tar");
    common::ok(&common::run(
        common::jail()
            .arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&img)
            // Uncompressed: fast to pack even in a debug build; the reader
            // still hashes every byte twice.
            .args(["--compression", "none"])
            .env_remove("SOURCE_DATE_EPOCH"),
    ));
    let parent = base.join("unpack");
    fs::create_dir_all(&parent).unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_unpack_from_env",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JAIL_TEST_UNPACK_SRC", &img)
        .env("JAIL_TEST_UNPACK_PARENT", &parent)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until the big file is being written (the root is `rootfs` in the
    // private jail-unpack-* directory), then signal.
    let mut started = false;
    for _ in 0..3000 {
        let roots: Vec<PathBuf> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if roots.iter().any(|r| r.join("rootfs/tmp/random").exists()) {
            started = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(started, "the unpack never reached the big file");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", common::text(&o.stderr));
    assert_eq!(
        fs::read_dir(&parent).unwrap().count(),
        0,
        "the temporary root was left behind"
    );
    // 1 GB of test data: not worth keeping.
    let _ = fs::remove_dir_all(&base);
}
