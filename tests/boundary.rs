//! The sandbox as a boundary (docs/sandbox.md): a hostile command, run by
//! `jail run` on a tree and by `jail slim` as an image's entrypoint, tries
//! mknod + mount of the host's disk, raw disk reads, module loading, a user
//! namespace, ptrace and kill of a host process, and host-wide /proc
//! settings. Each must fail and the host must stay untouched. And while a
//! slim runs, an unprivileged local user cannot reach the unpacked image.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use jail::digest::Digest;

/// The hostile program, static (it runs in trees and images without libc).
fn hostile() -> PathBuf {
    fixture("boundary_hostile", &["-static"])
}

/// Major and minor of the block device the host's root is on.
fn host_disk() -> (u64, u64) {
    let dev = fs::metadata("/").unwrap().dev();
    (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// A host process for the hostile command to attack; killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn new() -> Sleeper {
        Sleeper(Command::new("sleep").arg("600").spawn().expect("run sleep"))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every attempt the hostile command makes, as it names them.
const ATTEMPTS: [&str; 25] = [
    "mknod-block",
    "read-mknod-disk",
    "mknod-char-mem",
    "mount-disk",
    "mount-tmpfs",
    "mount-proc-again",
    "umount-proc",
    "fsopen",
    "open_tree",
    "unshare-user",
    "unshare-net",
    "pivot_root",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "iopl",
    "bpf",
    "ptrace-host",
    "ptrace-seize-host",
    "kill-host",
    "write-core_pattern",
    "open-sysrq-trigger",
    "read-kcore",
    "sethostname",
];

/// Check the hostile command's report: every attempt present and blocked,
/// the capability bounding set is the boundary's, no_new_privs and a seccomp
/// filter are on.
fn check_report(out: &str, extra: &[&str]) {
    assert!(!out.contains("ESCAPED"), "an attack got through:\n{out}");
    for name in ATTEMPTS.iter().chain(extra) {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no report of {name}:\n{out}"));
        assert!(line.contains("blocked"), "{line}");
    }
    let status = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("status {key}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_string()
    };
    let keep = jail::sandbox::boundary::KEEP;
    assert_eq!(status("CapBnd"), format!("{keep:016x}"), "{out}");
    let eff = u64::from_str_radix(&status("CapEff"), 16).unwrap();
    assert_eq!(
        eff & !keep,
        0,
        "effective capabilities beyond the boundary: {eff:x}"
    );
    assert_eq!(status("NoNewPrivs"), "1");
    assert_eq!(status("Seccomp"), "2");
}

#[test]
fn a_hostile_command_in_a_tree_cannot_reach_the_host() {
    let dir = test_dir("boundary").join("tree");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(hostile(), dir.join("hostile")).unwrap();
    // A node for the host's disk shipped in the tree itself: the root is
    // mounted nodev, so it cannot be opened.
    let (major, minor) = host_disk();
    nix::sys::stat::mknod(
        &dir.join("disk"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    )
    .expect("mknod in the test tree");
    let sentinel = test_dir("boundary").join("sentinel-tree");
    let _ = fs::remove_file(&sentinel);
    let mut sleeper = Sleeper::new();
    let o = run(jail()
        .arg("run")
        .arg(&dir)
        .arg("--")
        .arg("/hostile")
        .arg("attack")
        .arg(major.to_string())
        .arg(minor.to_string())
        .arg(&sentinel)
        .arg(sleeper.pid().to_string())
        .arg("/disk"));
    ok(&o);
    check_report(&text(&o.stdout), &["read-shipped-node"]);
    assert!(!sentinel.exists(), "the sentinel was written on the host");
    assert!(sleeper.alive(), "the host process was killed");
    // The image's root is not writable through the node either way.
    fs::remove_dir_all(&dir).unwrap();
}

/// A docker-archive with one layer holding `files` (path, host file, mode)
/// and `dirs` (path, mode), and the config's Entrypoint and User.
fn image(
    dir: &Path,
    name: &str,
    files: &[(&str, &Path, u32)],
    dirs: &[(&str, u32)],
    entrypoint: &[String],
    user: &str,
) -> PathBuf {
    let stage = dir.join(format!("{name}-stage"));
    if stage.exists() {
        fs::remove_dir_all(&stage).unwrap();
    }
    fs::create_dir_all(&stage).unwrap();
    for (path, mode) in dirs {
        let p = stage.join(path);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    for (path, from, mode) in files {
        let p = stage.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::copy(from, &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    fs::create_dir_all(stage.join("etc")).unwrap();
    fs::write(
        stage.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    let archive = dir.join(format!("{name}-archive"));
    if archive.exists() {
        fs::remove_dir_all(&archive).unwrap();
    }
    fs::create_dir_all(&archive).unwrap();
    ok(&run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(archive.join("layer.tar"))
        .arg("-C")
        .arg(&stage)
        .arg(".")));
    let diff = Digest::of_reader(fs::File::open(archive.join("layer.tar")).unwrap()).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint,
            "Env": ["PATH=/usr/bin:/bin"],
            "User": user,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
    });
    let cfg = serde_json::to_vec(&config).unwrap();
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    fs::write(archive.join(&cfg_name), &cfg).unwrap();
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [format!("hostile/{name}:1")], "Layers": ["layer.tar"]}]);
    fs::write(
        archive.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join(format!("{name}.tar"));
    ok(&run(Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&archive)
        .args(["manifest.json", &cfg_name, "layer.tar"])));
    fs::remove_dir_all(&archive).unwrap();
    fs::remove_dir_all(&stage).unwrap();
    out
}

#[test]
fn a_hostile_image_entrypoint_cannot_reach_the_host_during_slim() {
    slim_attack("root", "0");
}

#[test]
fn a_hostile_image_entrypoint_runs_as_the_image_user() {
    slim_attack("nobody", "65534");
}

/// Slim an image whose entrypoint is the attack, running as `user`; the
/// command must report uid `uid`.
fn slim_attack(user: &str, uid: &str) {
    let dir = test_dir("boundary").join(format!("slim-{user}"));
    fs::create_dir_all(&dir).unwrap();
    let (major, minor) = host_disk();
    let sentinel = test_dir("boundary").join(format!("sentinel-slim-{user}"));
    let _ = fs::remove_file(&sentinel);
    let mut sleeper = Sleeper::new();
    let entrypoint: Vec<String> = vec![
        "/hostile".into(),
        "attack".into(),
        major.to_string(),
        minor.to_string(),
        sentinel.display().to_string(),
        sleeper.pid().to_string(),
    ];
    let img = image(
        &dir,
        "attack",
        &[("hostile", &hostile(), 0o755)],
        &[("tmp", 0o1777)],
        &entrypoint,
        user,
    );
    let out = dir.join("attack-slim.tar");
    let o = run(jail().arg("slim").arg(&img).arg("-o").arg(&out));
    ok(&o);
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    check_report(&all, &[]);
    let ids = all
        .lines()
        .find_map(|l| l.strip_prefix("status Uid:"))
        .unwrap_or_else(|| panic!("no Uid line:\n{all}"));
    assert!(
        ids.split_whitespace().all(|id| id == uid),
        "the command ran as {ids}, not as the image's User {user} ({uid})"
    );
    assert!(!sentinel.exists(), "the sentinel was written on the host");
    assert!(sleeper.alive(), "the host process was killed");
}

/// `jail slim` running in the background until its command's stdin closes;
/// killed on drop.
struct Slim {
    child: Child,
}

impl Drop for Slim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_local_user_cannot_enter_the_unpack_root_during_slim() {
    require("setpriv", "util-linux");
    let dir = test_dir("boundary").join("private");
    fs::create_dir_all(&dir).unwrap();
    // A TMPDIR every user may enter, as /tmp is.
    let tmp_dir = tempfile::Builder::new()
        .prefix("jail-boundary-")
        .tempdir_in("/tmp")
        .unwrap();
    let tmp = tmp_dir.path().to_path_buf();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let img = image(
        &dir,
        "wait",
        &[
            ("hostile", &hostile(), 0o755),
            // A setuid-root program a local user would love to run.
            ("suid", &hostile(), 0o4755),
        ],
        &[("tmp", 0o1777), ("world", 0o777)],
        &["/hostile".into(), "wait".into()],
        "root",
    );
    let out = dir.join("wait-slim.tar");
    // umask 000: nothing jail creates may become world-writable.
    let mut slim = Slim {
        child: Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$@\"")
            .arg("sh")
            .arg(jail_bin())
            .arg("slim")
            .arg(&img)
            .arg("-o")
            .arg(&out)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run jail slim"),
    };
    // The command prints "waiting" once it runs: the image is unpacked.
    let stdout = slim.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().map(|l| l.unwrap());
    assert_eq!(
        first.as_deref(),
        Some("waiting"),
        "slim did not start the command"
    );

    let unpack: Vec<PathBuf> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("jail-unpack-")
        })
        .collect();
    assert_eq!(unpack.len(), 1, "{unpack:?}");
    let unpack = &unpack[0];
    for e in fs::read_dir(&tmp).unwrap() {
        let p = e.unwrap().path();
        let meta = fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o700,
            "{} is not private",
            p.display()
        );
        assert_eq!(meta.uid(), 0, "{}", p.display());
    }
    let root = unpack.join("rootfs");
    assert!(root.join("suid").exists() && root.join("world").is_dir());

    // As nobody: no listing, no traversal, no setuid program, no injection.
    let probe = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg("sh")
        .arg("-c")
        .arg(
            "ls \"$1\" >/dev/null 2>&1 && echo listed; \
             test -e \"$1\"/rootfs/etc/passwd && echo traversed; \
             \"$1\"/rootfs/suid wait </dev/null >/dev/null 2>&1 && echo ran-setuid; \
             touch \"$1\"/rootfs/world/injected 2>/dev/null && echo injected; \
             echo done",
        )
        .arg("sh")
        .arg(unpack));
    assert_eq!(text(&probe.stdout), "done\n", "{}", text(&probe.stderr));

    // Let the command end; the slim succeeds and the unpack root is gone.
    drop(slim.child.stdin.take());
    let status = slim.child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(slim.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(!unpack.exists(), "the unpack root was left behind");
    assert!(!root.join("world/injected").exists());
}
