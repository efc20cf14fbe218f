//! `jail diff`: trees, images and manifests compared file by file.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use common::*;

#[test]
fn reports_added_removed_and_changed_across_input_kinds() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    for t in [&a, &b] {
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("etc/same"), "same\n").unwrap();
    }
    fs::write(a.join("etc/gone"), "x").unwrap();
    fs::write(b.join("etc/new"), "y").unwrap();
    fs::write(a.join("etc/conf"), "one\n").unwrap();
    fs::write(b.join("etc/conf"), "two!\n").unwrap();
    fs::write(a.join("etc/mode"), "m").unwrap();
    fs::write(b.join("etc/mode"), "m").unwrap();
    fs::set_permissions(b.join("etc/mode"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("same", a.join("etc/link")).unwrap();
    symlink("conf", b.join("etc/link")).unwrap();

    let o = run(jail().arg("diff").arg(&a).arg(&b));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("- /etc/gone\n"), "{out}");
    assert!(out.contains("+ /etc/new\n"), "{out}");
    assert!(out.contains("~ /etc/conf (content (4 → 5 bytes))"), "{out}");
    assert!(out.contains("~ /etc/mode (mode 0644 → 0600)"), "{out}");
    assert!(out.contains("~ /etc/link (target same → conf)"), "{out}");
    assert!(!out.contains("/etc/same"), "{out}");

    // The same tree as an image: no difference, exit 0.
    let img = d.path().join("a.tar");
    ok(&run(jail().arg("pack").arg(&a).arg("-o").arg(&img)));
    let o = run(jail().args(["diff", "--json"]).arg(&a).arg(&img));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["added"], serde_json::json!([]));
    assert_eq!(v["changed"], serde_json::json!([]));

    // A manifest against the tree it was not made from.
    let m = d.path().join("m.json");
    ok(&run(jail()
        .args(["trace", "--no-image", "--manifest"])
        .arg(&m)
        .args(["--", "/bin/true"])));
    let o = run(jail().args(["diff", "--json"]).arg(&m).arg(&b));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/usr/bin/true"),
        "{v}"
    );

    // Bad input.
    let o = run(jail().arg("diff").arg(d.path().join("nope")).arg(&a));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("nope"), "{}", text(&o.stderr));
}
