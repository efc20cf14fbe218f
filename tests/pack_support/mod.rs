//! Trees and image helpers shared by tests/pack.rs and tests/image_tools.rs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{ok, require, run};

/// The mtime every test tree gets.
pub const MTIME: i64 = 1_600_000_000;
/// A `security.capability` value: cap_net_bind_service=ep (VFS v2).
pub const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// One thing to create in a tree.
#[derive(Clone)]
pub enum Item {
    Dir(&'static str, u32),
    File(String, Vec<u8>, u32),
    Link(&'static str, &'static str),
    /// A second name for an existing file: a hard link, or a copy.
    HardLink(&'static str, &'static str),
    Owner(&'static str, u32, u32),
    Cap(&'static str),
}

/// A static busybox tree: /bin/busybox, a few applet symlinks, /tmp.
pub fn busybox_items() -> Vec<Item> {
    require("busybox", "busybox-static");
    let bb = fs::read("/bin/busybox").expect("read /bin/busybox");
    vec![
        Item::Dir("bin", 0o755),
        Item::File("bin/busybox".into(), bb, 0o755),
        Item::Link("bin/sh", "busybox"),
        Item::Link("bin/echo", "busybox"),
        Item::Link("bin/cat", "/bin/busybox"),
        Item::Link("bin/ls", "busybox"),
        Item::Dir("tmp", 0o1777),
    ]
}

/// Busybox plus the hard cases of the layer format: odd modes, owners, a
/// capability, a hard link, a long path, an empty file, > 1 MiB of content.
pub fn rich_items() -> Vec<Item> {
    let long_dir: &'static str = Box::leak(format!("opt/{}", "d".repeat(90)).into_boxed_str());
    let mut v = busybox_items();
    v.extend([
        Item::Dir("etc", 0o755),
        Item::File(
            "etc/hello.txt".into(),
            b"hello from the tree\n".to_vec(),
            0o644,
        ),
        Item::File("etc/secret".into(), b"s3cret\n".to_vec(), 0o600),
        Item::File("etc/empty".into(), Vec::new(), 0o644),
        Item::Owner("etc/hello.txt", 1234, 5678),
        // Above ustar's 2097151: carried in PAX uid/gid records.
        Item::Owner("etc/empty", 3_000_000, 3_000_001),
        Item::Dir("etc/private", 0o700),
        Item::File("etc/private/setgid".into(), b"#!/bin/sh\n".to_vec(), 0o2750),
        Item::File(
            "bin/suid".into(),
            b"#!/bin/sh\necho suid\n".to_vec(),
            0o4755,
        ),
        Item::File("bin/capped".into(), b"caps".to_vec(), 0o755),
        Item::Cap("bin/capped"),
        Item::HardLink("bin/busybox-hard", "bin/busybox"),
        Item::Dir("opt", 0o755),
        Item::Dir(long_dir, 0o755),
        Item::File(
            format!("{long_dir}/a-file-name-that-makes-the-path-longer-than-a-hundred-bytes.txt"),
            b"long\n".to_vec(),
            0o644,
        ),
        Item::Dir("data", 0o755),
        Item::File("data/big.bin".into(), pseudo_random(3 << 20), 0o644),
        Item::Link("data/dangling", "../nowhere/at/all"),
    ]);
    v
}

/// Incompressible-ish but reproducible bytes.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a' + (i % 26) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// Create `items` under `dir` in the given order; `hard_links` false makes
/// a copy instead of a hard link. Then every mtime is set to [`MTIME`].
pub fn make_tree(dir: &Path, items: &[Item], hard_links: bool) {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    for it in items {
        match it {
            Item::Dir(p, mode) => {
                fs::create_dir_all(dir.join(p)).unwrap();
                fs::set_permissions(dir.join(p), fs::Permissions::from_mode(*mode)).unwrap();
            }
            Item::File(p, data, mode) => {
                fs::create_dir_all(dir.join(p).parent().unwrap()).unwrap();
                fs::write(dir.join(p), data).unwrap();
                fs::set_permissions(dir.join(p), fs::Permissions::from_mode(*mode)).unwrap();
            }
            Item::Link(p, t) => symlink(t, dir.join(p)).unwrap(),
            Item::HardLink(p, existing) => {
                if hard_links {
                    fs::hard_link(dir.join(existing), dir.join(p)).unwrap();
                } else {
                    fs::copy(dir.join(existing), dir.join(p)).unwrap();
                    let mode = fs::metadata(dir.join(existing)).unwrap().mode();
                    fs::set_permissions(dir.join(p), fs::Permissions::from_mode(mode)).unwrap();
                }
            }
            Item::Owner(p, u, g) => {
                std::os::unix::fs::lchown(dir.join(p), Some(*u), Some(*g)).unwrap()
            }
            Item::Cap(p) => set_cap(&dir.join(p)),
        }
    }
    // chown clears setuid/setgid: re-apply modes after owners.
    for it in items {
        if let Item::File(p, _, mode) = it {
            fs::set_permissions(dir.join(p), fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
    set_mtimes(dir, MTIME);
}

fn set_cap(p: &Path) {
    let hex: String = CAP.iter().map(|b| format!("\\x{b:02x}")).collect();
    let script = format!("import os,sys; os.setxattr(sys.argv[1], 'security.capability', b'{hex}', follow_symlinks=False)");
    ok(&run(Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(p)));
}

/// Set every mtime below (and of) `dir`, symlinks included.
pub fn set_mtimes(dir: &Path, t: i64) {
    ok(&run(Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d"])
        .arg(format!("@{t}"))
        .args(["{}", "+"])));
}

/// Everything a tree says about itself: path → (type, mode, uid, gid,
/// mtime, content or link target). Hard links are not distinguished.
pub type Snapshot = BTreeMap<PathBuf, (char, u32, u32, u32, i64, Vec<u8>)>;

pub fn snapshot(dir: &Path, with_mtime: bool) -> Snapshot {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let m = fs::symlink_metadata(&e).unwrap();
        let rel = e.strip_prefix(dir).unwrap().to_path_buf();
        let ft = m.file_type();
        let (t, data) = if ft.is_dir() {
            ('d', Vec::new())
        } else if ft.is_symlink() {
            (
                'l',
                fs::read_link(&e)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            ('f', fs::read(&e).unwrap())
        };
        let mtime = if with_mtime && !ft.is_dir() {
            m.mtime()
        } else {
            0
        };
        out.insert(rel, (t, m.mode() & 0o7777, m.uid(), m.gid(), mtime, data));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            v.push(p);
        }
    }
    v
}

/// A fresh empty directory under target/test-data/<group>/<name>.
pub fn fresh(group: &str, name: &str) -> PathBuf {
    let d = crate::common::test_dir(group).join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Every file of an OCI archive tar: name → bytes.
pub fn archive_files(tar_path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// The parsed `--json` summary of a jail run.
pub fn summary(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is not JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// The one layer's blob of an archive, decompressed.
pub fn layer_tar(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let mdig = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&files[&blob_name(mdig)]).unwrap();
    let layer = &manifest["layers"][0];
    let bytes = &files[&blob_name(layer["digest"].as_str().unwrap())];
    let mut out = Vec::new();
    match layer["mediaType"].as_str().unwrap() {
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            out = zstd::decode_all(&bytes[..]).unwrap()
        }
        _ => out = bytes.clone(),
    }
    out
}

pub fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())
}

/// Entries left in `dir` whose name starts with `.` (staging leftovers).
pub fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}
