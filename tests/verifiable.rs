//! Verifiable images (issue 15, docs/verify.md): the embedded manifest and
//! package database of a python image, its SBOMs validated by the reference
//! tools, `jail verify` (identical; a changed byte and a lying manifest
//! caught; a second machine simulated with a debootstrap root), `jail verify
//! --packages`, and `jail slim` keeping the package truth of a debootstrap
//! image.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// The SBOM validators, in the venv scripts/test.sh makes.
fn sbom_venv() -> PathBuf {
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data/sbom-venv/bin");
    assert!(
        v.join("pyspdxtools").exists(),
        "this test needs pyspdxtools and cyclonedx-python-lib in {}: run scripts/test.sh, or `/usr/bin/python3 -m venv target/test-data/sbom-venv && target/test-data/sbom-venv/bin/pip install spdx-tools 'cyclonedx-python-lib[json-validation]'`",
        v.display()
    );
    v
}

/// The installed version of a package on this machine.
fn host_version(package: &str) -> String {
    let o = run(Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]));
    ok(&o);
    text(&o.stdout)
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&o.stdout),
            text(&o.stderr)
        )
    })
}

struct Python {
    dir: tempfile::TempDir,
    image: PathBuf,
    summary: serde_json::Value,
    /// The image's layer, unpacked.
    files: PathBuf,
}

/// One python trace shared by the tests of this file.
fn python() -> &'static Python {
    static P: OnceLock<Python> = OnceLock::new();
    P.get_or_init(|| {
        require("/usr/bin/python3", "python3");
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("py.tar");
        let o = run(jail()
            .args(["trace", "--json", "-o"])
            .arg(&image)
            .arg("--sbom")
            .arg(dir.path().join("py.spdx.json"))
            .arg("--provenance")
            .arg(dir.path().join("py.intoto.json"))
            .args([
                "--",
                "/usr/bin/python3",
                "-c",
                "import json; print(json.dumps([1, 2]))",
            ])
            .current_dir("/"));
        ok(&o);
        let summary = json_of(&o);
        let files = dir.path().join("layer");
        unpack_layers(&image, &files);
        Python {
            dir,
            image,
            summary,
            files,
        }
    })
}

#[test]
fn a_python_image_carries_its_manifest_and_package_database() {
    let p = python();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(p.files.join("var/lib/jail/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["schema"], "jail-manifest/1");
    assert_eq!(m["build"]["kind"], "trace");
    assert_eq!(
        m["build"]["commands"][0],
        serde_json::json!([
            "/usr/bin/python3",
            "-c",
            "import json; print(json.dumps([1, 2]))"
        ])
    );
    assert_eq!(m["origin"]["os_release"]["ID"], "debian");
    assert_eq!(m["origin"]["dpkg_architecture"], "amd64");
    // Each kept file says which package (and exact version) it came from.
    let py = &m["files"]["/usr/bin/python3.11"];
    assert_eq!(py["package"]["name"], "python3.11-minimal");
    assert_eq!(
        py["package"]["version"].as_str().unwrap(),
        host_version("python3.11-minimal")
    );
    assert!(py["sha256"].as_str().unwrap().starts_with("sha256:"));
    let libc = &m["files"]["/usr/lib/x86_64-linux-gnu/libc.so.6"];
    assert_eq!(libc["package"]["name"], "libc6");
    assert_eq!(
        libc["reasons"],
        serde_json::json!(["traced-read", "elf-dependency"])
    );
    // The manifest holds no run-dependent data.
    let raw = fs::read_to_string(p.files.join("var/lib/jail/manifest.json")).unwrap();
    assert!(!raw.contains("\"pid\""), "a pid in the manifest");

    // status.d: the stanza with the host's exact version, and the md5sums
    // of the kept files.
    for pkg in ["python3.11-minimal", "libc6", "libpython3.11-minimal"] {
        let stanza = fs::read_to_string(p.files.join("var/lib/dpkg/status.d").join(pkg))
            .unwrap_or_else(|e| panic!("status.d/{pkg}: {e}"));
        assert!(stanza.starts_with(&format!("Package: {pkg}\n")), "{stanza}");
        assert!(
            stanza.contains(&format!("\nVersion: {}\n", host_version(pkg))),
            "{stanza}"
        );
    }
    let sums = fs::read_to_string(
        p.files
            .join("var/lib/dpkg/status.d/python3.11-minimal.md5sums"),
    )
    .unwrap();
    let host_sums = fs::read_to_string("/var/lib/dpkg/info/python3.11-minimal.md5sums").unwrap();
    let line = sums
        .lines()
        .find(|l| l.ends_with("  usr/bin/python3.11"))
        .unwrap_or_else(|| panic!("{sums}"));
    assert!(host_sums.contains(line), "{line} is not dpkg's");
    // The OS is detectable: os-release and the link to it.
    assert!(fs::symlink_metadata(p.files.join("etc/os-release"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_to_string(p.files.join("usr/lib/os-release"))
        .unwrap()
        .contains("ID=debian"));
    // The package database is not the host's whole one.
    assert!(!p.files.join("var/lib/dpkg/status").exists());
}

#[test]
fn sboms_validate_and_provenance_names_the_image() {
    let p = python();
    let venv = sbom_venv();
    let spdx = p.dir.path().join("py.spdx.json");
    let o = run(Command::new(venv.join("pyspdxtools")).arg("-i").arg(&spdx));
    ok(&o);
    assert!(!text(&o.stderr).contains("invalid"), "{}", text(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&spdx).unwrap()).unwrap();
    let libc = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .expect("libc6 in the SPDX packages");
    let purl = libc["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/libc6@2.")
            && purl.ends_with("?arch=amd64&distro=debian-12"),
        "{purl}"
    );
    assert!(libc["comment"].as_str().unwrap().starts_with("partial:"));

    // CycloneDX, from `jail sbom` on the image.
    let cdx = p.dir.path().join("py.cdx.json");
    ok(&run(jail().arg("sbom").arg(&p.image).arg("-o").arg(&cdx)));
    let check = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nerr = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nprint(err or 'valid')\nsys.exit(1 if err else 0)\n";
    let o = run(Command::new(venv.join("python"))
        .args(["-c", check])
        .arg(&cdx));
    ok(&o);
    let bom: serde_json::Value = serde_json::from_slice(&fs::read(&cdx).unwrap()).unwrap();
    assert_eq!(bom["specVersion"], "1.6");
    assert!(bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "python3.11-minimal"
            && c["components"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["name"] == "/usr/bin/python3.11"))));

    let st: serde_json::Value =
        serde_json::from_slice(&fs::read(p.dir.path().join("py.intoto.json")).unwrap()).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let digest = p.summary["image"]["manifest_digest"].as_str().unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            st["subject"][0]["digest"]["sha256"].as_str().unwrap()
        ),
        digest
    );
}

#[test]
fn verify_says_identical_and_packages_check_out() {
    let p = python();
    let o = run(jail().arg("verify").arg(&p.image));
    ok(&o);
    let digest = p.summary["image"]["manifest_digest"].as_str().unwrap();
    assert_eq!(text(&o.stdout), format!("identical: {digest}\n"));

    let o = run(jail()
        .args(["verify", "--packages", "--json"])
        .arg(&p.image));
    ok(&o);
    let c = json_of(&o);
    let n = |k: &str| c[k].as_u64().unwrap();
    let total = n("verified") + n("derived") + n("not_from_a_package") + n("mismatched");
    assert_eq!(n("mismatched"), 0, "{c}");
    assert!(
        (n("verified") + n("derived")) * 100 >= 95 * total,
        "only {} verified and {} derived of {total}: {c}",
        n("verified"),
        n("derived")
    );
    assert!(n("verified") * 100 >= 55 * total, "{c}");
    let not: Vec<&str> = c["not_from_a_package_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(not.contains(&"/etc/ld.so.cache"), "{not:?}");
    assert!(c["derived_files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f.as_str().unwrap().ends_with(".pyc")));
}

/// Pack `files` (an unpacked jail image, changed by `change`) back into an
/// image, and run `jail verify` on it.
fn verify_changed(name: &str, change: impl FnOnce(&Path)) -> std::process::Output {
    let p = python();
    let copy = p.dir.path().join(name);
    ok(&run(Command::new("cp").arg("-a").arg(&p.files).arg(&copy)));
    change(&copy);
    let image = p.dir.path().join(format!("{name}.tar"));
    ok(&run(jail().arg("pack").arg(&copy).arg("-o").arg(&image)));
    run(jail().arg("verify").arg(&image))
}

#[test]
fn verify_names_a_changed_byte() {
    let o = verify_changed("one-byte", |root| {
        let f = root.join("usr/lib/python3.11/json/encoder.py");
        let mut b = fs::read(&f).unwrap();
        b[10] ^= 1;
        fs::write(&f, b).unwrap();
    });
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("/usr/lib/python3.11/json/encoder.py: content changed in the image"),
        "{out}"
    );
}

#[test]
fn verify_names_a_lying_package_version() {
    let o = verify_changed("lie", |root| {
        let f = root.join("var/lib/jail/manifest.json");
        let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        m["files"]["/usr/bin/python3.11"]["package"]["version"] = "9.9-lie".into();
        fs::write(&f, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    });
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("/usr/bin/python3.11: package: the manifest says python3.11-minimal 9.9-lie"),
        "{out}"
    );
}

#[test]
fn verify_on_a_second_machine_from_a_debootstrap_root() {
    let root = debian_root();
    let d = tempfile::tempdir().unwrap();
    let image = d.path().join("dash.tar");
    // ld.so.cache lists this machine's libraries: no other machine has
    // the same one, and the loader finds libc without it.
    ok(&run(jail()
        .args(["trace", "--exclude", "/etc/ld.so.cache", "-o"])
        .arg(&image)
        .args(["--", "/usr/bin/dash", "-c", "echo hi"])
        // cargo's library path names this build's directories.
        .env_remove("LD_LIBRARY_PATH")
        // dash checks $PWD against its working directory.
        .env("PWD", "/")
        .current_dir("/")));
    let files = d.path().join("layer");
    unpack_layers(&image, &files);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(files.join("var/lib/jail/manifest.json")).unwrap())
            .unwrap();

    // The premise: the second machine has the same versions of the image's
    // packages. The debootstrap root has the mirror's newest; this machine
    // may be older (base-files here): the second machine is a copy of the
    // root with this machine's version of those installed (dpkg-repack).
    let theirs = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    let differ: Vec<String> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let head = format!("Package: {}\n", p["name"].as_str().unwrap());
            !theirs.split("\n\n").any(|st| {
                st.starts_with(&head)
                    && st.contains(&format!("\nVersion: {}\n", p["version"].as_str().unwrap()))
            })
        })
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !m["packages"].as_array().unwrap().is_empty(),
        "no package named in the manifest"
    );
    let second = if differ.is_empty() {
        root.clone()
    } else {
        require("dpkg-repack", "dpkg-repack");
        let copy = d.path().join("second");
        ok(&run(Command::new("cp").arg("-a").arg(&root).arg(&copy)));
        let debs = d.path().join("debs");
        fs::create_dir_all(&debs).unwrap();
        for pkg in &differ {
            ok(&run(Command::new("dpkg-repack")
                .arg(pkg)
                .current_dir(&debs)));
        }
        for deb in fs::read_dir(&debs).unwrap() {
            ok(&run(Command::new("dpkg")
                .arg(format!("--root={}", copy.display()))
                .arg("-i")
                .arg(deb.unwrap().path())));
        }
        // dpkg-repack signs the description ("Repackaged on DATE by
        // dpkg-repack"); a real install of the same version would not.
        let status = copy.join("var/lib/dpkg/status");
        let text_ = fs::read_to_string(&status).unwrap();
        let mut kept: Vec<&str> = Vec::new();
        for line in text_.split_inclusive('\n') {
            if line.starts_with(" (Repackaged on ") && kept.last() == Some(&" .\n") {
                kept.pop();
                continue;
            }
            kept.push(line);
        }
        fs::write(&status, kept.concat()).unwrap();
        copy
    };
    let o = run(jail().arg("verify").arg(&image).arg("--root").arg(&second));
    ok(&o);
    assert!(
        text(&o.stdout).starts_with("identical: sha256:"),
        "{}",
        text(&o.stdout)
    );
    // And the root with other versions of them is not the same.
    if !differ.is_empty() {
        let o = run(jail().arg("verify").arg(&image).arg("--root").arg(&root));
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
        // base-files differs there: its os-release (same bytes, the
        // package's newer mtime) is named.
        assert!(
            text(&o.stdout).contains("/usr/lib/os-release: mtime changed"),
            "{}",
            text(&o.stdout)
        );
    }
}

#[test]
fn slim_keeps_the_package_truth_of_a_debootstrap_image() {
    let root = debian_root();
    let d = tempfile::tempdir().unwrap();
    let fat = fat_image(&root, d.path());
    let slim = |input: &Path, out: &Path| {
        let o = run(jail()
            .args(["slim", "--json"])
            .arg(input)
            .arg("-o")
            .arg(out)
            .args(["--", "/usr/bin/python3", "-c", "print(1)"]));
        ok(&o);
        json_of(&o)
    };
    let s1 = d.path().join("s1.tar");
    let a = slim(&fat, &s1);
    let files = d.path().join("s1");
    unpack_layers(&s1, &files);
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    let stanza =
        fs::read_to_string(files.join("var/lib/dpkg/status.d/python3.11-minimal")).unwrap();
    let version = stanza
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap();
    let root_stanza = status
        .split("\n\n")
        .find(|s| s.starts_with("Package: python3.11-minimal\n"))
        .expect("python3.11-minimal in the debootstrap root");
    assert!(
        root_stanza.contains(&format!("\nVersion: {version}\n")),
        "{root_stanza}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(files.join("var/lib/jail/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["build"]["kind"], "slim");
    assert_eq!(
        m["files"]["/usr/bin/python3.11"]["package"]["version"],
        version
    );
    assert!(m["origin"]["base_image"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // Slimming the slim image keeps the same truth (and the same layer).
    let s2 = d.path().join("s2.tar");
    let b = slim(&s1, &s2);
    assert_eq!(a["image"]["diff_id"], b["image"]["diff_id"]);

    // And the slim image rebuilds from the fat one.
    let o = run(jail().arg("verify").arg(&s1).arg("--root").arg(&fat));
    ok(&o);
    assert!(
        text(&o.stdout).starts_with("identical: "),
        "{}",
        text(&o.stdout)
    );
}

/// The debootstrap root as a one-layer docker archive (the layer tar is
/// shared with tests/slim.rs, which makes the same one).
fn fat_image(root: &Path, dir: &Path) -> PathBuf {
    let base = test_dir("slim").join("base-layer.tar");
    if !base.exists() {
        let tmp = base.with_extension(format!("verifiable-{}", std::process::id()));
        ok(&run(Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-cf"])
            .arg(&tmp)
            .arg("-C")
            .arg(root)
            .arg(".")));
        fs::rename(&tmp, &base).unwrap();
    }
    let diff_id = jail::digest::Digest::of_reader(fs::File::open(&base).unwrap()).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/usr/bin/python3", "-c", "print(1)"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    let archive = dir.join("fat-archive");
    fs::create_dir_all(&archive).unwrap();
    fs::write(
        archive.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["fat/deb:1"], "Layers": ["base-layer.tar"]}]);
    fs::write(
        archive.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join("fat.tar");
    ok(&run(Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&archive)
        .args(["manifest.json", "config.json"])
        .arg("-C")
        .arg(base.parent().unwrap())
        .arg("base-layer.tar")));
    out
}

#[test]
fn report_reads_the_embedded_manifest_and_the_config() {
    let p = python();
    let o = run(jail().args(["report", "--json"]).arg(&p.image));
    ok(&o);
    let r = json_of(&o);
    assert_eq!(r["subject"]["reasons_known"], true, "{:#}", r["notes"]);
    assert!(r["subject"]["packages_from"]
        .as_str()
        .unwrap()
        .contains("embedded manifest"));
    let py = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/usr/bin/python3.11")
        .unwrap();
    assert_eq!(py["packages"], serde_json::json!(["python3.11-minimal"]));
    assert!(
        py["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "exec"),
        "{}",
        py["reasons"]
    );
    assert_eq!(r["config"]["user"], serde_json::Value::Null);
    assert!(r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "runs-as-root" && f["path"] == "/"));
    let human = text(&run(jail().arg("report").arg(&p.image)).stdout);
    assert!(
        human.contains("  config: User (unset: root); Entrypoint [\"/usr/bin/python3\""),
        "{human}"
    );

    // A private key by content and a home dotfile, in a packed tree.
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(tree.join("root")).unwrap();
    fs::create_dir_all(tree.join("srv")).unwrap();
    fs::write(tree.join("root/.gitconfig"), "[user]\n\tname = me\n").unwrap();
    fs::write(
        tree.join("srv/innocent.txt"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let image = d.path().join("t.tar");
    ok(&run(jail()
        .args(["pack", "--user", "1000"])
        .arg(&tree)
        .arg("-o")
        .arg(&image)));
    let r = json_of(&run(jail().args(["report", "--json"]).arg(&image)));
    let has = |kind: &str, path: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == kind && f["path"] == path)
    };
    assert!(
        has("private-key", "/srv/innocent.txt"),
        "{:#}",
        r["findings"]
    );
    assert!(
        has("home-dotfile", "/root/.gitconfig"),
        "{:#}",
        r["findings"]
    );
    assert!(!has("private-key", "/root/.gitconfig"));
    assert!(!has("runs-as-root", "/"), "User 1000 is not root");
}

/// A flat apt archive of `debs` in `dir`, and an apt configuration that
/// knows only it (`APT_CONFIG` for apt-get), with its lists fetched.
fn local_archive(dir: &Path, debs: &[PathBuf]) -> PathBuf {
    fs::create_dir_all(dir.join("pool")).unwrap();
    for d in debs {
        fs::copy(d, dir.join("pool").join(d.file_name().unwrap())).unwrap();
    }
    let o = run(Command::new("dpkg-scanpackages")
        .args(["pool", "/dev/null"])
        .current_dir(dir));
    ok(&o);
    fs::write(dir.join("Packages"), &o.stdout).unwrap();
    for sub in ["lists/partial", "cache/archives/partial", "parts"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(
        dir.join("sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", dir.display()),
    )
    .unwrap();
    let conf = dir.join("apt.conf");
    let d = dir.display();
    fs::write(
        &conf,
        format!(
            "Dir::Etc::SourceList \"{d}/sources.list\";\nDir::Etc::SourceParts \"{d}/parts\";\nDir::State::Lists \"{d}/lists\";\nDir::Cache \"{d}/cache\";\nAPT::Sandbox::User \"root\";\n"
        ),
    )
    .unwrap();
    ok(&run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("APT_CONFIG", &conf)));
    conf
}

/// `verify --packages --fetch` compares with the `.deb`s from an archive,
/// not with the root's own md5sums: here a local archive (a `file:` apt
/// source) with this machine's busybox-static and base-files repacked. The
/// same files verify; an archive whose busybox differs by one byte names it
/// although the local md5sums agree, and a package the archive lacks is
/// listed as not fetched. Both fail the check.
#[test]
fn verify_fetch_compares_files_with_the_archive() {
    require("dpkg-repack", "dpkg-repack");
    require("dpkg-scanpackages", "dpkg-dev");
    require("apt-get", "apt");
    require("/bin/busybox", "busybox-static");
    let d = tempfile::tempdir().unwrap();
    let image = d.path().join("bb.tar");
    ok(&run(jail()
        .arg("trace")
        .arg("-o")
        .arg(&image)
        .args(["--", "/bin/busybox", "echo", "hi"])
        .current_dir("/")));

    let debs = d.path().join("debs");
    fs::create_dir_all(&debs).unwrap();
    ok(&run(Command::new("dpkg-repack")
        .args(["busybox-static", "base-files"])
        .current_dir(&debs)));
    let deb = |prefix: &str| {
        fs::read_dir(&debs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("dpkg-repack wrote no {prefix}*.deb"))
    };
    let (busybox, base_files) = (deb("busybox-static_"), deb("base-files_"));

    let verify = |conf: &Path| {
        run(jail()
            .args(["verify", "--packages", "--fetch", "--json"])
            .arg(&image)
            .env("APT_CONFIG", conf))
    };
    let good = local_archive(&d.path().join("good"), &[busybox.clone(), base_files]);
    let o = verify(&good);
    ok(&o);
    let c = json_of(&o);
    let f = &c["fetched"];
    assert_eq!(f["packages"], 2, "{c}");
    assert_eq!(f["mismatched"], 0, "{c}");
    assert_eq!(f["unfetched"].as_array().unwrap().len(), 0, "{c}");
    assert_eq!(f["verified"], c["verified"], "{c}");

    // The same busybox-static version with one byte changed, and no base-files.
    let tampered = d.path().join("tampered");
    ok(&run(Command::new("dpkg-deb")
        .arg("-R")
        .arg(&busybox)
        .arg(&tampered)));
    let bin = ["usr/bin/busybox", "bin/busybox"]
        .iter()
        .map(|p| tampered.join(p))
        .find(|p| p.is_file() && !p.is_symlink())
        .expect("busybox in the repacked .deb");
    let mut b = fs::read(&bin).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fs::write(&bin, b).unwrap();
    let bad_deb = d.path().join(busybox.file_name().unwrap());
    ok(&run(Command::new("dpkg-deb")
        .arg("-b")
        .arg(&tampered)
        .arg(&bad_deb)));
    let bad = local_archive(&d.path().join("bad"), &[bad_deb]);
    let o = verify(&bad);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let c = json_of(&o);
    assert_eq!(c["mismatched"], 0, "the local md5sums agree: {c}");
    let f = &c["fetched"];
    let mismatched: Vec<String> = f["mismatched_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mismatched.len(), 1, "{c}");
    assert!(mismatched[0].ends_with("bin/busybox"), "{c}");
    let unfetched: Vec<&str> = f["unfetched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["package"].as_str().unwrap())
        .collect();
    assert_eq!(unfetched, ["base-files"], "{c}");
}
