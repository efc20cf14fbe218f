//! From trace to a working jail (issue 4, "Done when"): the size of a real
//! jail, secrets and created files left out, the tree exactly as the file
//! set says, `--verify` catching a broken jail, passwd/group reduced, and
//! config keys checked. Every test runs the real binary on real programs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use jail::fileset::FileSet;
use jail::manifest::Manifest;
use jail::resolve::FileType;
use jail::sandbox::DEFAULT_PATH;
use jail::trace::AccessKind;
use sha2::{Digest as _, Sha256};

/// A traced jail: `jail trace`'s output, its tree and its manifest.
struct Traced {
    out: Output,
    tree: PathBuf,
    manifest: Manifest,
    _dir: tempfile::TempDir,
}

impl Traced {
    fn fileset(&self) -> &FileSet {
        self.manifest
            .fileset
            .as_ref()
            .expect("the manifest holds the file set")
    }

    fn stderr(&self) -> String {
        text(&self.out.stderr)
    }

    /// The tree's copy of an in-jail path.
    fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        self.tree
            .join(p.as_ref().strip_prefix("/").unwrap_or(p.as_ref()))
    }

    /// Whether the tree has `p` (a symlink counts, whatever it points to).
    fn has(&self, p: impl AsRef<Path>) -> bool {
        fs::symlink_metadata(self.path(p)).is_ok()
    }
}

/// `jail trace --no-image --tree T --manifest M OPTS -- CMD` with a clean
/// environment (only PATH). The tree and manifest exist whatever the exit
/// status (a failed `--verify` still writes them).
fn trace(opts: &[&str], cmd: &[OsString]) -> Traced {
    let dir = tempfile::Builder::new()
        .prefix("jail-test-")
        .tempdir()
        .expect("tempdir");
    let tree = dir.path().join("tree");
    let m = dir.path().join("m.json");
    let out = run(jail()
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .args(["trace", "--no-image", "--tree"])
        .arg(&tree)
        .arg("--manifest")
        .arg(&m)
        .args(opts)
        .arg("--")
        .args(cmd));
    let manifest = Manifest::read(&m).unwrap_or_else(|e| {
        panic!(
            "no manifest ({e})\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    Traced {
        out,
        tree,
        manifest,
        _dir: dir,
    }
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

/// The jail_io fixture (read / write / rename files, see its source).
fn jail_io() -> PathBuf {
    fixture("jail_io", &[])
}

/// A canonical temp dir (tracer paths are physical).
fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("jail-data-")
        .tempdir()
        .unwrap();
    let p = fs::canonicalize(d.path()).unwrap();
    (d, p)
}

// ------------------------------------------------------------ tree size ---

#[test]
fn python_json_jail_is_small_and_holds_no_docs_or_package_state() {
    require("/usr/bin/python3", "python3");
    let t = trace(
        &["--verify"],
        &os(&[
            &"/usr/bin/python3",
            &"-c",
            &"import json; print(json.dumps([1]))",
        ]),
    );
    ok(&t.out);
    assert!(
        t.has("/usr/lib/python3.11/json/__init__.py")
            || t.has("/usr/lib/python3.11/json/__pycache__"),
        "the jail holds the json package"
    );
    let mut bytes = 0u64;
    let mut unwanted = Vec::new();
    for e in walkdir::WalkDir::new(&t.tree).min_depth(1) {
        let e = e.unwrap();
        let inside = Path::new("/").join(e.path().strip_prefix(&t.tree).unwrap());
        if [
            "/usr/share/doc",
            "/usr/share/man",
            "/var/lib/apt",
            "/var/cache",
        ]
        .iter()
        .any(|p| inside.starts_with(p))
        {
            unwanted.push(inside);
        }
        let m = e.path().symlink_metadata().unwrap();
        if m.is_file() {
            bytes += m.len();
        }
    }
    assert!(unwanted.is_empty(), "the jail holds {unwanted:#?}");
    assert!(
        bytes < 25_000_000,
        "the python3 json jail is {bytes} bytes, more than 25 MB"
    );
    assert_eq!(bytes, t.fileset().total_size(), "tree and file set sizes");
}

// -------------------------------------------------------------- secrets ---

#[test]
fn etc_shadow_is_left_out_with_a_loud_warning() {
    assert!(
        Path::new("/etc/shadow").exists(),
        "this test needs /etc/shadow (package passwd)"
    );
    let t = trace(
        &[],
        &os(&[
            &jail_io(),
            &"read",
            &"/etc/shadow",
            &"read",
            &"/etc/os-release",
        ]),
    );
    ok(&t.out);
    assert!(
        text(&t.out.stdout).contains("/etc/shadow: "),
        "the run read it"
    );
    assert!(!t.has("/etc/shadow"), "/etc/shadow is in the tree");
    assert!(!t.fileset().contains(Path::new("/etc/shadow")));
    assert!(
        t.has("/etc/os-release"),
        "the other file read is in the tree"
    );
    let warning = t
        .stderr()
        .lines()
        .find(|l| l.contains("/etc/shadow"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no warning names /etc/shadow:\n{}", t.stderr()));
    assert!(
        warning.contains("SECRET LEFT OUT") && warning.contains("read by pid"),
        "{warning}"
    );
}

#[test]
fn a_pem_private_key_is_left_out_with_a_loud_warning() {
    let (_d, dir) = temp_dir();
    let key = dir.join("service.pem");
    let notes = dir.join("notes.txt");
    fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ0vZQ9bW1Lz3J8m7nYqk3pW0b2gqQfW6l2dM2i2S6gM\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fs::write(&notes, "not a secret\n").unwrap();
    let t = trace(&[], &os(&[&jail_io(), &"read", &key, &"read", &notes]));
    ok(&t.out);
    assert!(!t.has(&key), "the private key is in the tree");
    assert!(!t.fileset().contains(&key));
    assert!(t.has(&notes), "the other file read is in the tree");
    let pid =
        t.manifest.trace.as_ref().unwrap().files[&jail::paths::ImagePath(key.clone())].first_pid;
    let warning = t
        .stderr()
        .lines()
        .find(|l| l.contains(key.to_str().unwrap()))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no warning names {}:\n{}", key.display(), t.stderr()));
    assert!(
        warning.contains("SECRET LEFT OUT") && warning.contains(&format!("read by pid {pid} ")),
        "{warning}"
    );
}

// -------------------------------------------------------- created files ---

#[test]
fn files_the_run_created_are_left_out_and_files_it_read_are_in() {
    let (_d, dir) = temp_dir();
    let input = dir.join("input.txt");
    fs::write(&input, "some input\n").unwrap();
    let (out, part, done) = (
        dir.join("out.txt"),
        dir.join("part.tmp"),
        dir.join("final.txt"),
    );
    let t = trace(
        &["--verify"],
        &os(&[
            &jail_io(),
            &"read",
            &input,
            &"write",
            &out,
            &"x",
            &"write",
            &part,
            &"y",
            &"rename",
            &part,
            &done,
        ]),
    );
    ok(&t.out);
    let log = t.manifest.trace.as_ref().unwrap();
    for p in [&out, &part, &done] {
        let acc = &log.files[&jail::paths::ImagePath(p.clone())];
        assert!(
            acc.kinds.contains(&AccessKind::Create) && !acc.existed,
            "{} was seen created: {acc:?}",
            p.display()
        );
        assert!(
            !t.has(p),
            "{} (created by the run) is in the tree",
            p.display()
        );
        assert!(!t.fileset().contains(p));
    }
    assert!(t.has(&input), "the input file is in the tree");
    assert_eq!(fs::read(t.path(&input)).unwrap(), b"some input\n");
    assert!(
        t.has(&dir),
        "its directory is in the tree (the run writes there)"
    );
}

// ------------------------------------------- the tree matches the file set ---

/// What the tree says about one path, in the file set's terms.
#[derive(Debug, PartialEq)]
struct Seen {
    file_type: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    sha256: Option<String>,
    target: Option<PathBuf>,
    mtime: i64,
}

fn seen_in_tree(tree: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(tree) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let ft = m.file_type();
        let file_type = if ft.is_file() {
            FileType::File
        } else if ft.is_dir() {
            FileType::Dir
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            panic!("{}: unexpected file type in a tree", e.path().display())
        };
        let inside = Path::new("/").join(e.path().strip_prefix(tree).unwrap());
        out.insert(
            inside,
            Seen {
                file_type,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_file() { m.len() } else { 0 },
                sha256: ft
                    .is_file()
                    .then(|| format!("sha256:{:x}", Sha256::digest(fs::read(e.path()).unwrap()))),
                target: ft.is_symlink().then(|| fs::read_link(e.path()).unwrap()),
                mtime: m.mtime(),
            },
        );
    }
    out
}

#[test]
fn the_tree_matches_the_file_set() {
    require("/usr/bin/python3", "python3");
    assert!(
        Path::new("/usr/bin/passwd").exists(),
        "this test needs the setuid /usr/bin/passwd: apt-get install -y passwd"
    );
    // A file and a directory with their own owners and modes.
    let (_d, dir) = temp_dir();
    let private = dir.join("private");
    fs::create_dir(&private).unwrap();
    let owned = private.join("owned.txt");
    fs::write(&owned, "owned\n").unwrap();
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o710)).unwrap();
    nix::unistd::chown(&owned, Some(1234.into()), Some(5678.into())).unwrap();
    nix::unistd::chown(&private, Some(0.into()), Some(5678.into())).unwrap();

    let script = format!(
        "cat /etc/os-release {} >/dev/null && ls /usr/share/zoneinfo/Etc >/dev/null && /usr/bin/python3 -c 'import json'",
        owned.display()
    );
    let t = trace(
        &["--include", "/usr/bin/passwd"],
        &os(&[&"/bin/sh", &"-c", &script]),
    );
    ok(&t.out);
    let want: BTreeMap<PathBuf, Seen> = t
        .fileset()
        .entries
        .iter()
        .map(|(p, e)| {
            (
                p.0.clone(),
                Seen {
                    file_type: e.file_type,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    size: e.size,
                    sha256: e.sha256.as_ref().map(|d| d.to_string()),
                    target: e.target.clone(),
                    mtime: e.mtime,
                },
            )
        })
        .collect();
    let mut got = seen_in_tree(&t.tree);
    // The tree's own directory is its `/`, whether or not the file set
    // names it.
    if !want.contains_key(Path::new("/")) {
        got.remove(Path::new("/"));
    }

    let want_paths: BTreeSet<_> = want.keys().collect();
    let got_paths: BTreeSet<_> = got.keys().collect();
    assert_eq!(
        got_paths.difference(&want_paths).collect::<Vec<_>>(),
        Vec::<&&PathBuf>::new(),
        "in the tree, not in the file set"
    );
    assert_eq!(
        want_paths.difference(&got_paths).collect::<Vec<_>>(),
        Vec::<&&PathBuf>::new(),
        "in the file set, not in the tree"
    );
    let differing: Vec<String> = want
        .iter()
        .filter(|(p, w)| got.get(*p) != Some(w))
        .map(|(p, w)| {
            format!(
                "{}:\n  file set {w:?}\n  tree     {:?}",
                p.display(),
                got[p]
            )
        })
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n"));

    // The cases the comparison must have covered.
    let kinds: BTreeSet<FileType> = want.values().map(|s| s.file_type).collect();
    assert_eq!(
        kinds,
        [FileType::File, FileType::Dir, FileType::Symlink].into()
    );
    assert_eq!(
        want[&PathBuf::from("/bin")].target,
        Some(PathBuf::from("usr/bin"))
    );
    assert_eq!(
        want[&PathBuf::from("/usr/bin/passwd")].mode & 0o4000,
        0o4000
    );
    assert_eq!(want[&PathBuf::from("/tmp")].mode, 0o1777);
    let o = &want[&owned];
    assert_eq!((o.uid, o.gid, o.mode), (1234, 5678, 0o640));
    let p = &want[&private];
    assert_eq!((p.uid, p.gid, p.mode), (0, 5678, 0o710));
}

// ------------------------------------------------------------- --verify ---

#[test]
fn verify_catches_a_jail_without_a_needed_library() {
    require("/usr/bin/python3", "python3");
    let cmd = os(&[
        &"/usr/bin/python3",
        &"-c",
        &"import sqlite3; print(sqlite3.sqlite_version)",
    ]);
    let good = trace(&["--verify"], &cmd);
    ok(&good.out);
    assert!(
        good.stderr()
            .contains("jail: ok: the traced run of `/usr/bin/python3"),
        "{}",
        good.stderr()
    );

    let broken = trace(
        &[
            "--verify",
            "--exclude",
            "/usr/lib/x86_64-linux-gnu/libsqlite3*",
        ],
        &cmd,
    );
    let stderr = broken.stderr();
    assert_eq!(broken.out.status.code(), Some(1), "{stderr}");
    assert!(
        !broken
            .fileset()
            .entries
            .keys()
            .any(|p| p.0.to_string_lossy().contains("libsqlite3")),
        "the exclude left libsqlite3 in"
    );
    assert!(
        stderr.contains("jail: FAILED: the traced run of `/usr/bin/python3")
            && stderr.contains("exit status 1, expected 0")
            && stderr.contains("libsqlite3.so.0"),
        "the failure, and the jail's own error, are shown:\n{stderr}"
    );
}

#[test]
fn verify_catches_a_jail_that_prints_something_else() {
    // Same exit status, other stdout: a file read with a fallback.
    let cmd = os(&[
        &"/bin/sh",
        &"-c",
        &"head -n 1 /etc/os-release 2>/dev/null || echo none",
    ]);
    let good = trace(&["--verify"], &cmd);
    ok(&good.out);
    let broken = trace(
        &[
            "--verify",
            "--exclude",
            "/etc/os-release",
            "--exclude",
            "/usr/lib/os-release",
        ],
        &cmd,
    );
    let stderr = broken.stderr();
    assert_eq!(broken.out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stdout differs") && stderr.contains("+ none"),
        "{stderr}"
    );
    assert!(!stderr.contains("exit status 0, expected"), "{stderr}");
}

// ------------------------------------------------------ passwd / group ---

/// The host's lines of an /etc file, keyed by the numeric id in field 3.
fn host_lines(file: &str) -> Vec<(u32, String)> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| Some((l.split(':').nth(2)?.parse().ok()?, l.to_string())))
        .collect()
}

#[test]
fn passwd_and_group_are_reduced_to_root_and_the_run_user() {
    let passwd = host_lines("/etc/passwd");
    let group = host_lines("/etc/group");
    assert!(
        passwd.len() > 2 && passwd.iter().any(|(id, _)| *id == 1),
        "this test needs a host /etc/passwd with more users than root and daemon (uid 1)"
    );
    let cmd = os(&[&jail_io(), &"read", &"/etc/passwd", &"read", &"/etc/group"]);

    // Root only.
    let t = trace(&[], &cmd);
    ok(&t.out);
    let want: String = passwd
        .iter()
        .filter(|(id, _)| *id == 0)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(fs::read_to_string(t.path("/etc/passwd")).unwrap(), want);

    // Root and the --user.
    let t = trace(&["--user", "1:1"], &cmd);
    ok(&t.out);
    let want: String = passwd
        .iter()
        .filter(|(id, _)| *id == 0 || *id == 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(fs::read_to_string(t.path("/etc/passwd")).unwrap(), want);
    let names: Vec<&str> = want.lines().filter_map(|l| l.split(':').next()).collect();
    let jail_group = fs::read_to_string(t.path("/etc/group")).unwrap();
    let host_group: BTreeSet<&str> = group.iter().map(|(_, l)| l.as_str()).collect();
    let mut gids = BTreeSet::new();
    for line in jail_group.lines() {
        assert!(
            host_group.contains(line),
            "{line:?} is not a host group line"
        );
        let gid: u32 = line.split(':').nth(2).unwrap().parse().unwrap();
        let members = line.split(':').nth(3).unwrap_or("");
        assert!(
            gid == 0 || gid == 1 || members.split(',').any(|m| names.contains(&m)),
            "group {line:?} is neither the user's nor has them as a member"
        );
        gids.insert(gid);
    }
    assert!(gids.contains(&0) && gids.contains(&1), "{jail_group}");
    assert!(
        jail_group.lines().count() < group.len(),
        "group was not reduced"
    );
    // The file set describes the reduced content, not the host's.
    let e = t.fileset().get(Path::new("/etc/passwd")).unwrap();
    assert_eq!(e.size, want.len() as u64);
    assert_eq!(
        e.sha256.as_ref().map(|d| d.to_string()),
        Some(format!("sha256:{:x}", Sha256::digest(want.as_bytes())))
    );
}

// --------------------------------------------------------- config keys ---

fn trace_config(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    fs::write(&file, yaml).unwrap();
    run(Command::new(jail_bin())
        .args(["trace", "--no-image", "-c"])
        .arg(&file))
}

#[test]
fn unknown_config_keys_are_errors_that_name_the_key() {
    for (yaml, key) in [
        ("name: x\ncommand: [/bin/true]\ntset: []\n", "tset"),
        ("name: x\ncommand: [/bin/true]\nimage:\n  entrypont: [/bin/true]\n", "entrypont"),
        (
            "name: x\ncommand: [/bin/true]\ntests:\n  - command: [/bin/true]\n    stdout_contain: x\n",
            "stdout_contain",
        ),
    ] {
        let out = trace_config(yaml);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(&format!("`{key}`")),
            "the error names {key}: {stderr}"
        );
        assert!(!stderr.contains("traced"), "nothing ran: {stderr}");
    }
    // The same config without the typo is fine.
    ok(&trace_config(
        "name: x\ncommand: [/bin/true]\ntests:\n  - command: [/bin/true]\n",
    ));
}
