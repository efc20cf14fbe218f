//! `jail pack`: reproducible bytes, SOURCE_DATE_EPOCH, thread-count
//! independence, the layer format, bad input and interruption.

mod common;
mod pack_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{jail, ok, run, text};
use pack_support::*;

/// `jail pack DIR -o OUT --json` with extra args and environment.
fn pack(dir: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = jail();
    c.arg("pack")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

const BUSYBOX_ARGS: [&str; 6] = [
    "--tag",
    "test/rich:1",
    "--entrypoint",
    "/bin/busybox",
    "--cmd",
    "echo hello",
];

#[test]
fn identical_bytes_from_differently_made_copies() {
    let base = fresh("pack", "repro");
    let items = rich_items();
    // Copy A: created in order, with a real hard link.
    let a = base.join("one/tree");
    make_tree(&a, &items, true);
    // Copy B: elsewhere, created in reverse order (parents still first),
    // the hard link as a separate file, then atimes and ctimes changed.
    let b = base.join("two/deeper/tree");
    let mut rev: Vec<Item> = items
        .iter()
        .filter(|i| matches!(i, Item::Dir(..)))
        .cloned()
        .collect();
    rev.extend(
        items
            .iter()
            .filter(|i| matches!(i, Item::File(..) | Item::Link(..)))
            .rev()
            .cloned(),
    );
    rev.extend(
        items
            .iter()
            .filter(|i| matches!(i, Item::HardLink(..) | Item::Owner(..) | Item::Cap(..)))
            .cloned(),
    );
    make_tree(&b, &rev, false);
    ok(&run(Command::new("find").arg(&b).args([
        "-exec", "touch", "-a", "-h", "-d", "@1", "{}", "+",
    ])));
    ok(&run(Command::new("chmod")
        .arg("-R")
        .arg("u-w")
        .arg(b.join("etc"))));
    ok(&run(Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(b.join("etc"))));
    // The private dir lost nothing: u+w put back what u-w took, modes equal.
    assert_eq!(
        snapshot(&a, true),
        snapshot(&b, true),
        "the two copies should describe the same tree"
    );

    for (fmt, name) in [("oci-archive", "img.tar"), ("oci-dir", "img.d")] {
        let oa = base.join("one").join(name);
        let ob = base.join("two").join(name);
        let ra = pack(
            &a,
            &oa,
            &[&BUSYBOX_ARGS[..], &["--format", fmt]].concat(),
            &[("TZ", "UTC"), ("LC_ALL", "C")],
        );
        ok(&ra);
        // Different umask, TZ and locale, run from another directory.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("umask 077; exec \"$@\"")
            .arg("sh")
            .arg(common::jail_bin())
            .arg("pack")
            .arg(&b)
            .arg("-o")
            .arg(&ob)
            .arg("--json")
            .args(BUSYBOX_ARGS)
            .args(["--format", fmt])
            .env("TZ", "Asia/Kolkata")
            .env("LC_ALL", "fr_FR.UTF-8")
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(&base);
        let rb = run(&mut c);
        ok(&rb);
        let (sa, sb) = (summary(&ra.stdout), summary(&rb.stdout));
        for k in [
            "image_id",
            "manifest_digest",
            "diff_id",
            "layer_digest",
            "fileset_digest",
            "files",
            "uncompressed_size",
        ] {
            assert_eq!(sa[k], sb[k], "{fmt}: {k} differs");
        }
        if fmt == "oci-archive" {
            assert_eq!(
                fs::read(&oa).unwrap(),
                fs::read(&ob).unwrap(),
                "the archives differ"
            );
            // Every blob, and the docker manifest pointing at them.
            let files = archive_files(&oa);
            assert!(files.contains_key("manifest.json") && files.contains_key("repositories"));
            for (name, data) in &files {
                if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                    assert_eq!(
                        jail::digest::Digest::of(data).hex(),
                        hex,
                        "blob {name} is not named by its digest"
                    );
                }
            }
        } else {
            assert_eq!(
                dir_files(&oa),
                dir_files(&ob),
                "the layout directories differ"
            );
        }
    }
}

/// name → bytes of every file under an OCI layout directory.
fn dir_files(d: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for sub in ["", "blobs/sha256"] {
        for e in fs::read_dir(d.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                out.insert(
                    format!("{sub}/{}", e.file_name().to_string_lossy()),
                    fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    assert!(out.len() >= 5, "{:?}", out.keys());
    out
}

#[test]
fn layer_tar_format() {
    let base = fresh("pack", "format");
    let tree = base.join("tree");
    make_tree(&tree, &rich_items(), true);
    let out = base.join("img.tar");
    ok(&pack(&tree, &out, &BUSYBOX_ARGS, &[]));
    let layer = layer_tar(&archive_files(&out));
    let mut a = tar::Archive::new(&layer[..]);
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        assert!(!name.starts_with('/') && !name.starts_with("./"), "{name}");
        assert!(h.as_ustar().is_some(), "{name}: not a ustar header");
        assert_eq!(
            h.username_bytes(),
            Some(&b""[..]),
            "{name}: has a user name"
        );
        assert_eq!(
            h.groupname_bytes(),
            Some(&b""[..]),
            "{name}: has a group name"
        );
        assert_eq!(h.mtime().unwrap(), MTIME as u64, "{name}");
        let caps: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .map(|x| {
                x.map(|r| r.unwrap())
                    .map(|r| (r.key().unwrap().to_string(), r.value_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        for (k, _) in &caps {
            assert!(
                ["path", "uid", "gid", "SCHILY.xattr.security.capability"].contains(&k.as_str()),
                "{name}: unexpected PAX {k}"
            );
        }
        match name.as_str() {
            "bin/capped" => assert_eq!(
                caps,
                [("SCHILY.xattr.security.capability".to_string(), CAP.to_vec())]
            ),
            "bin/suid" => assert_eq!(h.mode().unwrap(), 0o4755),
            "etc/private/setgid" => assert_eq!(h.mode().unwrap(), 0o2750),
            "tmp/" => assert_eq!(h.mode().unwrap(), 0o1777),
            "etc/hello.txt" => assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (1234, 5678)),
            "etc/empty" => assert_eq!(
                caps,
                [
                    ("gid".to_string(), b"3000001".to_vec()),
                    ("uid".to_string(), b"3000000".to_vec())
                ]
            ),
            // The hard link is dereferenced: a regular file with content.
            "bin/busybox-hard" => {
                assert_eq!(h.entry_type(), tar::EntryType::Regular);
                assert_eq!(
                    h.size().unwrap(),
                    fs::metadata("/bin/busybox").unwrap().len()
                );
            }
            "bin/cat" => assert_eq!(h.link_name_bytes().as_deref(), Some(&b"/bin/busybox"[..])),
            n if n.len() > 100 => assert_eq!(caps.len(), 1, "{n}: long path without a PAX path"),
            _ => {}
        }
        if h.entry_type() == tar::EntryType::Directory {
            assert!(name.ends_with('/'), "{name}");
        }
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort_by(|x, y| {
        x.trim_end_matches('/')
            .as_bytes()
            .cmp(y.trim_end_matches('/').as_bytes())
    });
    assert_eq!(names, sorted, "entries are not in bytewise order");
    assert!(names.iter().any(|n| n.len() > 100));
    assert!(
        !names.iter().any(|n| n == "./" || n == "/"),
        "no root entry"
    );
    // The archive ends with exactly two zero blocks.
    assert_eq!(layer.len() % 512, 0);
    assert!(layer[layer.len() - 1024..].iter().all(|&b| b == 0));
}

#[test]
fn source_date_epoch_clamps_mtimes_and_sets_created() {
    let base = fresh("pack", "sde");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    let plain = base.join("plain.tar");
    let r0 = pack(&tree, &plain, &BUSYBOX_ARGS, &[]);
    ok(&r0);
    let s0 = summary(&r0.stdout);

    // Older than the files: mtimes clamped, created set, bytes change.
    let old = base.join("old.tar");
    let r1 = pack(
        &tree,
        &old,
        &BUSYBOX_ARGS,
        &[("SOURCE_DATE_EPOCH", "1500000000")],
    );
    ok(&r1);
    let s1 = summary(&r1.stdout);
    assert_ne!(s0["diff_id"], s1["diff_id"]);
    let files = archive_files(&old);
    let layer = layer_tar(&files);
    let mut a = tar::Archive::new(&layer[..]);
    for e in a.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_500_000_000);
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&files[&blob_name(s1["image_id"].as_str().unwrap())]).unwrap();
    assert_eq!(cfg["created"], "2017-07-14T02:40:00Z");
    assert_eq!(cfg["history"][0]["created"], "2017-07-14T02:40:00Z");

    // Newer than the files: the layer is unchanged, only created differs.
    let new = base.join("new.tar");
    let r2 = pack(
        &tree,
        &new,
        &BUSYBOX_ARGS,
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    ok(&r2);
    let s2 = summary(&r2.stdout);
    assert_eq!(s0["diff_id"], s2["diff_id"]);
    assert_eq!(s0["layer_digest"], s2["layer_digest"]);
    assert_ne!(s0["image_id"], s2["image_id"]);
    // Without it, created is the epoch.
    let cfg0: serde_json::Value = serde_json::from_slice(
        &archive_files(&plain)[&blob_name(s0["image_id"].as_str().unwrap())],
    )
    .unwrap();
    assert_eq!(cfg0["created"], "1970-01-01T00:00:00Z");

    // Malformed: exit 2, nothing written.
    for bad in ["yesterday", "-5", "1.5", ""] {
        let dest = base.join("bad.tar");
        let r = pack(&tree, &dest, &BUSYBOX_ARGS, &[("SOURCE_DATE_EPOCH", bad)]);
        assert_eq!(
            r.status.code(),
            Some(2),
            "SOURCE_DATE_EPOCH={bad:?}: {}",
            text(&r.stderr)
        );
        assert!(
            text(&r.stderr).contains("SOURCE_DATE_EPOCH"),
            "{}",
            text(&r.stderr)
        );
        assert!(!dest.exists());
    }
    assert_eq!(leftovers(&base), Vec::<String>::new());
}

#[test]
fn bytes_do_not_depend_on_the_thread_count() {
    let base = fresh("pack", "threads");
    let tree = base.join("tree");
    make_tree(&tree, &rich_items(), true);
    let mut outputs = Vec::new();
    for (threads, comp) in [("1", "gzip"), ("4", "gzip"), ("1", "zstd"), ("3", "zstd")] {
        let out = base.join(format!("img-{threads}-{comp}.tar"));
        ok(&pack(
            &tree,
            &out,
            &[
                &BUSYBOX_ARGS[..],
                &["--threads", threads, "--compression", comp],
            ]
            .concat(),
            &[],
        ));
        outputs.push(fs::read(&out).unwrap());
    }
    assert!(
        outputs[0].len() > 2 << 20,
        "the tree should span several 1 MiB gzip blocks"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "gzip output depends on the thread count"
    );
    assert_eq!(
        outputs[2], outputs[3],
        "zstd output depends on the thread count"
    );
}

#[test]
fn compressions_hold_the_same_layer() {
    let base = fresh("pack", "compressions");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    let mut diff_ids = Vec::new();
    for comp in ["gzip", "zstd", "none"] {
        let out = base.join(format!("{comp}.tar"));
        let r = pack(
            &tree,
            &out,
            &[&BUSYBOX_ARGS[..], &["--compression", comp]].concat(),
            &[],
        );
        ok(&r);
        let s = summary(&r.stdout);
        let files = archive_files(&out);
        let layer = layer_tar(&files);
        assert_eq!(
            format!("{}", jail::digest::Digest::of(&layer)),
            s["diff_id"].as_str().unwrap()
        );
        assert_eq!(layer.len() as u64, s["uncompressed_size"].as_u64().unwrap());
        // zstd images are OCI only: docker-archive readers cannot take zstd.
        assert_eq!(
            files.contains_key("manifest.json"),
            comp != "zstd",
            "{comp}"
        );
        if comp == "none" {
            assert_eq!(s["diff_id"], s["layer_digest"]);
        }
        diff_ids.push(s["diff_id"].clone());
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let base = fresh("pack", "bad");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    let dest = base.join("out.tar");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "pack".into(),
                base.join("missing").display().to_string(),
                "-o".into(),
                dest.display().to_string(),
            ],
            "missing",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                base.join("no/such/dir/x.tar").display().to_string(),
            ],
            "does not exist",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                dest.display().to_string(),
                "--tag".into(),
                "Bad Tag".into(),
            ],
            "invalid image reference",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                dest.display().to_string(),
                "--env".into(),
                "NOEQUALS".into(),
            ],
            "KEY=VALUE",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                dest.display().to_string(),
                "--compression".into(),
                "lz4".into(),
            ],
            "lz4",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                dest.display().to_string(),
                "--entrypoint".into(),
                "[1,2]".into(),
            ],
            "JSON array",
        ),
        (
            vec![
                "pack".into(),
                tree.display().to_string(),
                "-o".into(),
                base.display().to_string(),
            ],
            "is a directory",
        ),
    ];
    for (args, needle) in cases {
        let r = run(jail().args(&args).env_remove("SOURCE_DATE_EPOCH"));
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", text(&r.stderr));
        assert!(
            text(&r.stderr).contains(needle),
            "{args:?}: {}",
            text(&r.stderr)
        );
        assert!(!dest.exists(), "{args:?}");
    }
    // A device node is left out, by name (issue 14: a debootstrap root's
    // /dev/console must not stop `jail pack`).
    let devtree = base.join("devtree");
    make_tree(&devtree, &busybox_items(), true);
    ok(&run(Command::new("mknod")
        .arg(devtree.join("tmp/null"))
        .args(["c", "1", "3"])));
    let r = pack(&devtree, &dest, &[], &[]);
    ok(&r);
    assert!(
        text(&r.stderr).contains("left out 1 device node") && text(&r.stderr).contains("/tmp/null"),
        "{}",
        text(&r.stderr)
    );
    // Every layer's listing: busybox is in, the node is not.
    let x = base.join("devtree-x");
    std::fs::create_dir_all(&x).unwrap();
    let listing = run(Command::new("sh").arg("-c").arg(format!(
        "tar -xf {} -C {} && for b in {}/blobs/sha256/*; do tar -tzf $b 2>/dev/null; done",
        dest.display(),
        x.display(),
        x.display()
    )));
    assert!(
        text(&listing.stdout).contains("bin/busybox"),
        "{}",
        text(&listing.stdout)
    );
    assert!(!text(&listing.stdout).contains("tmp/null"));
    std::fs::remove_dir_all(&x).unwrap();
    std::fs::remove_file(&dest).unwrap();
    assert_eq!(leftovers(&base), Vec::<String>::new());
}

#[test]
fn sigint_leaves_nothing_at_the_destination() {
    let base = fresh("pack", "sigint");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    // Incompressible content: seconds of deflate even in a release build.
    ok(&run(Command::new("sh").arg("-c").arg(format!(
        "head -c 256M /dev/urandom > {}/tmp/random",
        tree.display()
    ))));
    use nix::sys::signal::Signal::{SIGINT, SIGTERM};
    for (sig, code, format) in [(SIGINT, 130, "oci-archive"), (SIGTERM, 143, "oci-dir")] {
        let dest = base.join("out");
        let child = jail()
            .arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&dest)
            .args(["--format", format])
            .env_remove("SOURCE_DATE_EPOCH")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Until the staging directory shows up, then a little more.
        for _ in 0..6000 {
            if !leftovers(&base).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{sig} {format}: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stderr).contains("nothing was written"),
            "{}",
            text(&o.stderr)
        );
        assert!(!dest.exists(), "{sig} {format}: the destination exists");
        assert_eq!(
            leftovers(&base),
            Vec::<String>::new(),
            "{sig} {format}: temp files left"
        );
    }
    let _ = fs::remove_file(tree.join("tmp/random"));
}

#[test]
fn oci_dir_replaces_an_existing_layout() {
    let base = fresh("pack", "ocidir");
    let tree = base.join("tree");
    make_tree(&tree, &busybox_items(), true);
    let dest = base.join("layout");
    ok(&pack(
        &tree,
        &dest,
        &["--format", "oci-dir", "--tag", "x/y:1"],
        &[],
    ));
    let first = fs::read(dest.join("index.json")).unwrap();
    ok(&pack(
        &tree,
        &dest,
        &["--format", "oci-dir", "--tag", "x/y:2"],
        &[],
    ));
    let second = fs::read(dest.join("index.json")).unwrap();
    assert_ne!(first, second);
    assert!(
        text(&second).contains(r#""org.opencontainers.image.ref.name":"2""#),
        "{}",
        text(&second)
    );
    assert!(
        !dest.join("manifest.json").exists(),
        "manifest.json is for archives"
    );
    assert_eq!(leftovers(&base), Vec::<String>::new());
    assert!(Path::new(&dest.join("oci-layout")).exists());
}
