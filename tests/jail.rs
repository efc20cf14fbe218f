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

/// The stderr line that names /etc/shadow.
fn shadow_warning(t: &Traced) -> String {
    t.stderr()
        .lines()
        .find(|l| l.contains("/etc/shadow"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no warning names /etc/shadow:\n{}", t.stderr()))
}

/// `/etc/shadow` is a secret (SPEC): left out, and said loudly, naming
/// `--redacted-shadow`. With that flag the jail gets the accounts (PAM's
/// account stage reads them) with every hash replaced; with `--include`
/// the real file (docs/fidelity.md).
#[test]
fn etc_shadow_is_left_out_loudly_or_generated_without_hashes_when_asked() {
    assert!(
        Path::new("/etc/shadow").exists(),
        "this test needs /etc/shadow (package passwd)"
    );
    let argv = os(&[
        &jail_io(),
        &"read",
        &"/etc/shadow",
        &"read",
        &"/etc/os-release",
    ]);
    let t = trace(&[], &argv);
    ok(&t.out);
    assert!(!t.has("/etc/shadow"), "/etc/shadow was copied by default");
    assert!(
        t.has("/etc/os-release"),
        "the other file read is in the tree"
    );
    let warning = shadow_warning(&t);
    assert!(
        warning.contains("SECRET LEFT OUT")
            && warning.contains("read by pid")
            && warning.contains("--redacted-shadow"),
        "{warning}"
    );

    let t = trace(&["--redacted-shadow"], &argv);
    ok(&t.out);
    assert!(
        text(&t.out.stdout).contains("/etc/shadow: "),
        "the run read it"
    );
    let jailed = fs::read_to_string(t.path("/etc/shadow")).expect("the tree has /etc/shadow");
    assert!(jailed.lines().any(|l| l.starts_with("root:")), "{jailed}");
    for line in jailed.lines() {
        let password = line.split(':').nth(1).unwrap_or_default();
        assert!(
            ["", "*", "!", "!!", "!*", "x"].contains(&password),
            "a password hash in the jail's /etc/shadow: {line}"
        );
    }
    let host = fs::metadata("/etc/shadow").unwrap();
    let meta = fs::metadata(t.path("/etc/shadow")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (host.mode() & 0o7777, host.uid(), host.gid())
    );
    let warning = shadow_warning(&t);
    assert!(
        warning.contains("SECRET REDACTED") && warning.contains("read by pid"),
        "{warning}"
    );
    // An explicit include copies the real file.
    let t = trace(
        &["--include", "/etc/shadow"],
        &os(&[&jail_io(), &"read", &"/etc/shadow"]),
    );
    ok(&t.out);
    assert_eq!(
        fs::read(t.path("/etc/shadow")).unwrap(),
        fs::read("/etc/shadow").unwrap(),
        "--include /etc/shadow copies the real file"
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

/// The host's highest system uid/gid, as the jail's rule reads it.
fn host_system_max() -> (u32, u32) {
    let defs = fs::read_to_string("/etc/login.defs").unwrap_or_default();
    let value = |k: &str| -> Option<u32> {
        defs.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(k)).then(|| w.next()?.parse().ok())?
        })
    };
    (
        value("SYS_UID_MAX").unwrap_or(999),
        value("SYS_GID_MAX").unwrap_or(999),
    )
}

#[test]
fn passwd_and_group_keep_root_system_accounts_and_the_run_user() {
    let passwd = host_lines("/etc/passwd");
    let group = host_lines("/etc/group");
    let (sys_uid, sys_gid) = host_system_max();
    assert!(
        passwd.len() > 2 && passwd.iter().any(|(id, _)| *id == 1),
        "this test needs a host /etc/passwd with more users than root and daemon (uid 1)"
    );
    let cmd = os(&[&jail_io(), &"read", &"/etc/passwd", &"read", &"/etc/group"]);
    let system = |id: u32, max: u32| id <= max || id == 65534;

    // Root and the system accounts; human accounts are named as dropped.
    let t = trace(&[], &cmd);
    ok(&t.out);
    let want: String = passwd
        .iter()
        .filter(|(id, _)| system(*id, sys_uid))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(fs::read_to_string(t.path("/etc/passwd")).unwrap(), want);
    let humans: Vec<&str> = passwd
        .iter()
        .filter(|(id, _)| !system(*id, sys_uid))
        .filter_map(|(_, l)| l.split(':').next())
        .collect();
    for h in &humans {
        assert!(
            t.stderr().contains("left out the accounts") && t.stderr().contains(h),
            "dropping {h} is said: {}",
            t.stderr()
        );
    }

    // A human --user is kept too (by name, resolved before the trace).
    if let Some((uid, line)) = passwd.iter().find(|(id, _)| !system(*id, sys_uid)) {
        let name = line.split(':').next().unwrap();
        let t = trace(&["--user", name], &cmd);
        ok(&t.out);
        let jail_passwd = fs::read_to_string(t.path("/etc/passwd")).unwrap();
        assert!(
            jail_passwd.lines().any(|l| l == line),
            "the run user {uid} is kept: {jail_passwd}"
        );
    }
    let jail_group = fs::read_to_string(t.path("/etc/group")).unwrap();
    let host_group: BTreeSet<&str> = group.iter().map(|(_, l)| l.as_str()).collect();
    for line in jail_group.lines() {
        assert!(
            host_group.contains(line),
            "{line:?} is not a host group line"
        );
    }
    for (gid, line) in &group {
        if system(*gid, sys_gid) {
            assert!(
                jail_group.lines().any(|l| l == line),
                "system group {line:?} kept"
            );
        }
    }
    // The file set describes the reduced content, not the host's.
    let t = trace(&[], &cmd);
    let e = t.fileset().get(Path::new("/etc/passwd")).unwrap();
    assert_eq!(e.size, want.len() as u64);
    assert_eq!(
        e.sha256.as_ref().map(|d| d.to_string()),
        Some(format!("sha256:{:x}", Sha256::digest(want.as_bytes())))
    );
}

// ------------------------------------------------ issue 14: fidelity ---

/// `jail trace OPTS -o IMAGE -- CMD` in `dir` with the given environment
/// (and nothing else of the test's).
fn trace_image(dir: &Path, env: &[(&str, &str)], opts: &[&str], cmd: &[&str]) -> (Output, PathBuf) {
    let image = dir.join("image.tar");
    let o = run(jail()
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(env.iter().copied())
        .current_dir(dir)
        .arg("trace")
        .args(opts)
        .arg("-o")
        .arg(&image)
        .arg("--")
        .args(cmd));
    (o, image)
}

#[test]
fn a_directory_the_run_only_wrote_into_is_kept_without_the_output() {
    let (_d, dir) = temp_dir();
    fs::create_dir_all(dir.join("x/d")).unwrap();
    fs::set_permissions(dir.join("x/d"), fs::Permissions::from_mode(0o750)).unwrap();
    let out = dir.join("x/d/f");
    let script = format!("echo x > {0}; cat {0}", out.display());
    let t = trace(&["--verify"], &os(&[&"/bin/sh", &"-c", &script]));
    ok(&t.out);
    assert!(
        t.stderr().contains("jail: ok: the traced run"),
        "{}",
        t.stderr()
    );
    let kept = fs::metadata(t.path(dir.join("x/d"))).expect("the directory is kept");
    assert!(kept.is_dir());
    assert_eq!(kept.mode() & 0o7777, 0o750, "with its own mode");
    assert!(!t.has(&out), "the output itself stays out");
    let e = t.fileset().get(&dir.join("x/d")).unwrap();
    assert!(
        e.reasons.contains(&jail::fileset::Reason::OutputDir),
        "{:?}",
        e.reasons
    );
}

#[test]
fn a_failed_verification_writes_no_image_and_names_what_the_jail_lacks() {
    require("date", "coreutils");
    let (_d, dir) = temp_dir();
    let cmd = ["/usr/bin/env", "TZ=America/New_York", "date", "-d", "@0"];
    let excl = ["--verify", "--exclude", "/usr/share/zoneinfo/**"];
    let (o, image) = trace_image(&dir, &[], &excl, &cmd);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!image.exists(), "a failed verification wrote the image");
    assert!(
        stderr.contains("hint: the jail lacks 1 path")
            && stderr.contains("/usr/share/zoneinfo/America/New_York"),
        "{stderr}"
    );
    // --keep-going writes it anyway (and still fails).
    let mut kg = excl.to_vec();
    kg.push("--keep-going");
    let (o, image) = trace_image(&dir, &[], &kg, &cmd);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(image.exists());
}

#[test]
fn verify_says_when_nothing_was_missing_and_the_output_differs_anyway() {
    let (_d, dir) = temp_dir();
    let (o, image) = trace_image(&dir, &[], &["--verify"], &["/bin/sh", "-c", "echo $$"]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!image.exists());
    assert!(
        stderr.contains("looked for nothing that the jail lacks")
            && stderr.contains("not deterministic")
            && !stderr.contains("hint: the jail lacks"),
        "{stderr}"
    );
}

#[test]
fn the_image_env_keeps_what_shapes_behaviour_and_never_a_credential() {
    let (_d, dir) = temp_dir();
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let m = dir.join("m.json");
    let (o, image) = trace_image(
        &dir,
        &[
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm"),
            ("GITHUB_TOKEN", token),
            ("MYAPP_MODE", "fast"),
            ("SHLVL", "2"),
        ],
        &["--verify", "--manifest", m.to_str().unwrap()],
        &[
            "/bin/sh",
            "-c",
            "echo $LANG $MYAPP_MODE ${TERM:-noterm} ${GITHUB_TOKEN:+token}",
        ],
    );
    let stderr = text(&o.stderr);
    // The traced run saw TERM and the token; the image does not, so the
    // verification (which runs as the image runs) must fail: a correct
    // "not ok".
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CREDENTIAL LEFT OUT") && stderr.contains("GITHUB_TOKEN"),
        "{stderr}"
    );
    assert!(
        stderr.contains("- C.UTF-8 fast xterm token") && stderr.contains("+ C.UTF-8 fast noterm\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(token),
        "the token's value is printed nowhere"
    );
    let manifest = fs::read_to_string(&m).unwrap();
    assert!(
        !manifest.contains(token),
        "the token's value is not in the manifest"
    );
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let kept: Vec<&str> = v["environment"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert!(
        kept.contains(&"LANG=C.UTF-8") && kept.contains(&"MYAPP_MODE=fast"),
        "{kept:?}"
    );
    assert!(
        !kept.iter().any(|k| k.starts_with("TERM=")
            || k.starts_with("SHLVL=")
            || k.starts_with("GITHUB_TOKEN=")),
        "{kept:?}"
    );
    assert!(!image.exists());

    // Without the session and the credential in play, the image's Env
    // reproduces the run, and podman agrees.
    let (o, image) = trace_image(
        &dir,
        &[
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm"),
            ("MYAPP_MODE", "fast"),
        ],
        &["--verify", "--tag", "fidelity/env:t"],
        &["/bin/sh", "-c", "echo $LANG $MYAPP_MODE"],
    );
    ok(&o);
    let podman = Podman::new();
    podman.load(&image);
    let p = podman.run("localhost/fidelity/env:t", std::iter::empty::<&str>());
    ok(&p);
    assert_eq!(text(&p.stdout), "C.UTF-8 fast\n");
}

#[test]
fn entrypoint_is_the_program_and_cmd_its_arguments() {
    let (_d, dir) = temp_dir();
    let (o, image) = trace_image(
        &dir,
        &[],
        &["--tag", "fidelity/ep:t"],
        &["sh", "-c", "echo traced"],
    );
    ok(&o);
    let podman = Podman::new();
    podman.load(&image);
    let inspect = run(podman.cmd().args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
        "localhost/fidelity/ep:t",
    ]));
    ok(&inspect);
    assert_eq!(
        text(&inspect.stdout).trim(),
        r#"["sh"] ["-c","echo traced"]"#
    );
    let p = podman.run("localhost/fidelity/ep:t", std::iter::empty::<&str>());
    assert_eq!(text(&p.stdout), "traced\n");
    // Other arguments replace Cmd, not the program.
    let p = podman.run("localhost/fidelity/ep:t", ["-c", "echo other"]);
    assert_eq!(text(&p.stdout), "other\n");
    // `jail run` runs the image as podman does, and takes a command too.
    let r = run(jail().arg("run").arg(&image));
    ok(&r);
    assert_eq!(text(&r.stdout), "traced\n");
    // No HOME in the Env: the runtime takes root's from the image's
    // passwd, which the jail keeps for it (the command never read it).
    let r = run(jail()
        .arg("run")
        .arg(&image)
        .args(["--", "sh", "-c", "echo $HOME"]));
    ok(&r);
    assert_eq!(text(&r.stdout), "/root\n");
    let p = podman.run("localhost/fidelity/ep:t", ["-c", "echo $HOME"]);
    assert_eq!(text(&p.stdout), "/root\n");
}

#[test]
fn bad_destinations_and_users_fail_before_anything_is_traced() {
    let (_d, dir) = temp_dir();
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let cmd = ["/bin/sh", "-c", touch.as_str()];
    let full = dir.join("full");
    fs::create_dir_all(full.join("x")).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["-o".into(), "/nonexistent-dir/x.tar".into()],
        vec![
            "--tree".into(),
            full.display().to_string(),
            "--no-image".into(),
        ],
        vec![
            "--manifest".into(),
            "/nonexistent-dir/m.json".into(),
            "--no-image".into(),
        ],
        vec![
            "--user".into(),
            "no-such-user-here".into(),
            "--no-image".into(),
        ],
        vec!["--env-keep".into(), "[".into(), "--no-image".into()],
    ];
    for opts in cases {
        let o = run(jail()
            .current_dir(&dir)
            .arg("trace")
            .args(&opts)
            .arg("--")
            .args(cmd));
        assert_eq!(o.status.code(), Some(2), "{opts:?}: {}", text(&o.stderr));
        assert!(
            !marker.exists(),
            "{opts:?}: the command ran before the check"
        );
    }
    // A user name is accepted (resolved in this machine's passwd).
    let o = run(jail()
        .current_dir(&dir)
        .args(["trace", "--no-image", "--user", "nobody", "--"])
        .args(cmd));
    ok(&o);
    assert!(marker.exists());
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
