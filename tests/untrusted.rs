//! Untrusted input stays confined (issue 18, part B): images that name
//! host files, blobs that are devices or FIFOs, nesting deeper than any
//! recursion, names Linux cannot hold, destinations that are not files jail
//! owns, closed output streams, killed runs. Each case runs the real `jail`
//! binary and checks its exit code, what it wrote and what it left behind.

mod common;
mod pack_support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{jail, run, text};
use jail::digest::Digest;
use pack_support::fresh;

/// One tar entry: a PAX `path` record carries the name (any bytes, any
/// length), the ustar name is a placeholder.
fn entry(out: &mut Vec<u8>, name: &[u8], kind: u8, data: &[u8]) {
    let mut rec = Vec::new();
    let body_len = " path=".len() + name.len() + 1;
    // The length counts its own digits.
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    rec.extend_from_slice(format!("{len} path=").as_bytes());
    rec.extend_from_slice(name);
    rec.push(b'\n');
    block(out, b"pax", b'x', &rec);
    block(out, b"placeholder", kind, data);
}

fn block(out: &mut Vec<u8>, name: &[u8], kind: u8, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    t.resize(t.len() + 1024, 0);
    t
}

/// A layer of regular files.
fn files(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, data) in entries {
        entry(&mut t, name, b'0', data);
    }
    finish(t)
}

/// An OCI layout at `dir` with uncompressed layers; `diff_ids` default to
/// the layers' digests. Returns the layers' blob paths.
fn oci(dir: &Path, layers: &[Vec<u8>], diff_ids: Option<Vec<String>>) -> Vec<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| -> (String, usize, PathBuf) {
        let d = Digest::of(bytes);
        let p = dir.join("blobs/sha256").join(d.hex());
        fs::write(&p, bytes).unwrap();
        (d.to_string(), bytes.len(), p)
    };
    let mut descs = Vec::new();
    let mut paths = Vec::new();
    for l in layers {
        let (d, n, p) = put(l);
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}));
        paths.push(p);
    }
    let diff_ids =
        diff_ids.unwrap_or_else(|| layers.iter().map(|l| Digest::of(l).to_string()).collect());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cn, _) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs
    });
    let (md, mn, _) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    paths
}

/// A layout directory with a docker manifest.json and no index.json (its
/// `oci-layout` file makes it an image, not a tree, to `report` and `diff`)
/// whose manifest names `layer` as its only layer, with the given diff_id.
fn docker_dir(dir: &Path, layer: &str, diff_id: &Digest) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    });
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": ["x:y"], "Layers": [layer]}]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

/// `jail report SRC` with its own TMPDIR (the unpack root's parent), ended
/// by SIGKILL if it has not exited after `guard` (a hang is a failure, the
/// guard only keeps the suite from hanging with it).
fn report(src: &Path, tmp: &Path, guard: Duration) -> Output {
    fs::create_dir_all(tmp).unwrap();
    guarded(jail().arg("report").arg(src).env("TMPDIR", tmp), guard)
}

/// Run `cmd`, killing it with SIGKILL if it has not exited after `guard`.
fn guarded(cmd: &mut Command, guard: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        if rx.recv_timeout(guard).is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let o = child.wait_with_output().unwrap();
    let _ = tx.send(());
    killer.join().unwrap();
    o
}

#[track_caller]
fn assert_exit(o: &Output, code: i32, says: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit {:?} (want {code}); stderr: {}",
        o.status,
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains(says),
        "stderr does not say {says:?}: {}",
        text(&o.stderr)
    );
}

#[track_caller]
fn assert_empty(tmp: &Path) {
    let left: Vec<_> = fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
}

const GUARD: Duration = Duration::from_secs(60);

/// Seen 3: a layout's manifest naming `/abs/host.tar` or `../host.tar`, or
/// a blob that is a symlink to a host file, reads nothing from the host.
#[test]
fn layer_names_and_blob_symlinks_cannot_leave_the_image() {
    let base = fresh("untrusted", "confined");
    let secret = files(&[(b"host-secret", b"from the host\n")]);
    let host_tar = base.join("host.tar");
    fs::write(&host_tar, &secret).unwrap();
    let d = Digest::of(&secret);

    let abs = base.join("abs");
    docker_dir(&abs, host_tar.to_str().unwrap(), &d);
    let o = report(&abs, &base.join("tmp"), GUARD);
    assert_exit(&o, 2, "absolute path");
    assert!(!text(&o.stdout).contains("host-secret"));

    let dotdot = base.join("img");
    docker_dir(&dotdot, "../host.tar", &d);
    let o = report(&dotdot, &base.join("tmp"), GUARD);
    assert_exit(&o, 2, "`..`");
    assert!(!text(&o.stdout).contains("host-secret"));

    // A blob that is a symlink to the host file (absolute, then relative).
    let layout = base.join("oci");
    let blobs = oci(&layout, std::slice::from_ref(&secret), None);
    for target in [host_tar.clone(), PathBuf::from("../../../host.tar")] {
        fs::remove_file(&blobs[0]).unwrap();
        std::os::unix::fs::symlink(&target, &blobs[0]).unwrap();
        let o = report(&layout, &base.join("tmp"), GUARD);
        assert_exit(&o, 2, "outside");
        assert!(!text(&o.stdout).contains("host-secret"));
    }
    assert_empty(&base.join("tmp"));
}

/// Seen 4: a blob that is /dev/zero (through a symlink inside the layout),
/// a FIFO, or a device node is refused at once instead of read forever.
#[test]
fn device_and_fifo_blobs_are_refused_not_read() {
    let base = fresh("untrusted", "devices");
    let layer = files(&[(b"f", b"x")]);
    let layout = base.join("oci");
    let blobs = oci(&layout, std::slice::from_ref(&layer), None);
    let tmp = base.join("tmp");

    // /dev/zero bound into the layout: a symlink inside it to a node made here.
    let zero = layout.join("zero");
    nix::sys::stat::mknod(
        &zero,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    )
    .unwrap();
    fs::remove_file(&blobs[0]).unwrap();
    std::os::unix::fs::symlink("../../zero", &blobs[0]).unwrap();
    let o = report(&layout, &tmp, GUARD);
    assert_exit(&o, 2, "not a regular file");

    fs::remove_file(&blobs[0]).unwrap();
    nix::unistd::mkfifo(&blobs[0], nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let o = report(&layout, &tmp, GUARD);
    assert_exit(&o, 2, "not a regular file");

    // A FIFO as a docker layout's index file.
    let dir = base.join("fifo-manifest");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    nix::unistd::mkfifo(
        &dir.join("manifest.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let o = report(&dir, &tmp, GUARD);
    assert_exit(&o, 2, "not a regular file");
    assert_empty(&tmp);
}

/// A chain of `depth` one-letter directories ending in a file, as one PAX
/// entry.
fn deep_name(depth: usize) -> Vec<u8> {
    let mut name = b"a/".repeat(depth);
    name.push(b'f');
    name
}

/// Seen 5: 10,000 and 20,000 nested directories (then a layer replacing
/// the top one) end with exit 2, quickly, and the unpack root is removed.
#[test]
fn any_depth_is_exit_2_and_the_unpack_root_goes() {
    let base = fresh("untrusted", "deep");
    let tmp = base.join("tmp");
    for depth in [10_000, 20_000] {
        let deep = files(&[(&deep_name(depth), b"x")]);
        let top = files(&[(b"a", b"the top, now a file")]);
        let layout = base.join(format!("oci-{depth}"));
        oci(&layout, &[deep, top], None);
        let o = report(&layout, &tmp, GUARD);
        assert_exit(&o, 2, "PATH_MAX");
        assert_empty(&tmp);
    }
    // Deep (1,500 levels, within PATH_MAX with the unpack root in front),
    // replaced by a later layer: unpacks, and the old tree is removed.
    let deep = files(&[(&deep_name(1_500), b"x")]);
    let top = files(&[(b"a", b"the top, now a file")]);
    let layout = base.join("oci-legal");
    oci(&layout, &[deep, top], None);
    let o = report(&layout, &tmp, GUARD);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_empty(&tmp);
}

/// Seen 8: a component over 255 bytes or a NUL byte in a PAX path is bad
/// input (exit 2), as is a path longer than 4095 bytes that would unpack
/// and then be unreadable.
#[test]
fn names_linux_cannot_hold_are_exit_2() {
    let base = fresh("untrusted", "names");
    let tmp = base.join("tmp");
    let long = [b"d/".to_vec(), vec![b'n'; 256]].concat();
    let long_path = [b"x".repeat(200), b"/".to_vec()].concat().repeat(21);
    for (what, name, says) in [
        ("long", long, "255 bytes"),
        ("nul", b"etc/pass\0wd".to_vec(), "NUL"),
        ("path", long_path, "PATH_MAX"),
    ] {
        let layout = base.join(what);
        oci(&layout, &[files(&[(&name, b"x")])], None);
        let o = report(&layout, &tmp, GUARD);
        assert_exit(&o, 2, says);
        assert_empty(&tmp);
    }
}

/// Seen 8: a layer whose diff_id is wrong is refused before anything from
/// it is written: the digest error comes first, even for a layer whose
/// entries would be refused while extracting.
#[test]
fn a_layer_is_verified_before_it_is_extracted() {
    let base = fresh("untrusted", "verify-first");
    let tmp = base.join("tmp");
    let hostile = files(&[(b"../escape", b"x")]);
    let layout = base.join("oci");
    oci(
        &layout,
        &[hostile],
        Some(vec![Digest::of(b"something else").to_string()]),
    );
    let o = report(&layout, &tmp, GUARD);
    assert_exit(&o, 2, "diff_id is");
    assert!(
        !text(&o.stderr).contains("escape"),
        "the layer was extracted before its diff_id was checked: {}",
        text(&o.stderr)
    );
    assert_empty(&tmp);
}

/// A small tree to pack.
fn tree(base: &Path) -> PathBuf {
    let t = base.join("tree");
    fs::create_dir_all(t.join("etc")).unwrap();
    fs::write(t.join("etc/hello"), "hello\n").unwrap();
    t
}

fn pack(tree: &Path, out: &Path, extra: &[&str]) -> Output {
    run(jail()
        .arg("pack")
        .arg(tree)
        .arg("-o")
        .arg(out)
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH"))
}

/// Seen 6: `-o` never replaces a device node or a symlink (`/dev/stdout`),
/// and `--format oci-dir` replaces a non-empty unrelated directory only
/// with `--force` (a previous output is replaced without it).
#[test]
fn destinations_are_files_jail_owns() {
    let base = fresh("untrusted", "destinations");
    let t = tree(&base);

    let null = base.join("null");
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let o = pack(&t, &null, &[]);
    assert_exit(&o, 2, "is a device");
    assert!(fs::symlink_metadata(&null)
        .unwrap()
        .file_type()
        .is_char_device());

    let link = base.join("stdout");
    std::os::unix::fs::symlink(&null, &link).unwrap();
    let o = pack(&t, &link, &[]);
    assert_exit(&o, 2, "is a symlink");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    let mine = base.join("mine");
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("notes.txt"), "precious").unwrap();
    let o = pack(&t, &mine, &["--format", "oci-dir"]);
    assert_exit(&o, 2, "--force");
    assert_eq!(
        fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "precious"
    );
    let o = pack(&t, &mine, &["--format", "oci-dir", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!mine.join("notes.txt").exists());
    // Now a previous output: replaced without --force.
    let o = pack(&t, &mine, &["--format", "oci-dir"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(mine.join("index.json").is_file());
    // Nothing left beside it.
    let beside: Vec<_> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(beside.is_empty(), "staging left: {beside:?}");
}

/// Seen 8: a `.NAME.jail-*` staging directory a killed run left is removed
/// by the next run to that destination; one a live run holds is not.
#[test]
fn stale_staging_directories_are_removed_by_the_next_run() {
    let base = fresh("untrusted", "stale");
    let t = tree(&base);
    let out = base.join("out.tar");
    let stale = base.join(".out.tar.jail-KILLED");
    fs::create_dir_all(stale.join("blobs/sha256")).unwrap();
    fs::write(stale.join("blobs/sha256/layer.tmp"), "half a layer").unwrap();
    let live = base.join(".out.tar.jail-ALIVE");
    fs::create_dir_all(&live).unwrap();
    let held = nix::fcntl::Flock::lock(
        fs::File::open(&live).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let o = pack(&t, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        !stale.exists(),
        "the killed run's staging directory is still there"
    );
    assert!(live.exists(), "a live run's staging directory was removed");
    drop(held);
    fs::remove_dir_all(&live).unwrap();
    // And a real SIGKILL: the run's own staging directory goes next time.
    let big = base.join("big");
    fs::create_dir_all(&big).unwrap();
    let mut f = fs::File::create(big.join("data")).unwrap();
    f.write_all(&pack_support::pseudo_random(32 << 20)).unwrap();
    drop(f);
    let mut child = jail()
        .arg("pack")
        .arg(&big)
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..2000 {
        if !staging(&base).is_empty() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "never saw the staging directory of the run");
    let o = pack(&t, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(staging(&base), Vec::<String>::new());
}

fn staging(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.tar.jail-"))
        .collect();
    v.sort();
    v
}

/// Seen 7: closed stderr and stdout (`jail … 2>&1 | head -1`) end quietly:
/// exit 0 and the image written, no panic.
#[test]
fn closed_output_streams_are_not_a_panic() {
    let base = fresh("untrusted", "closed");
    let t = tree(&base);
    let out = base.join("out.tar");
    // Both streams a pipe whose reader is gone before jail writes.
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let w2 = w.try_clone().unwrap();
    let o = Command::new(common::jail_bin())
        .arg("pack")
        .arg(&t)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    assert!(out.is_file(), "no image written");
}

/// Seen 4: `jail trace -- sh -c 'sleep 100000 & exit 0'` ends once the
/// command has exited: what it left running is reported, traced for the
/// grace period, then killed (docs/tracing.md).
#[test]
fn trace_ends_when_the_command_exits_and_kills_what_it_left() {
    let base = fresh("untrusted", "left-running");
    let marker = base.join("marker");
    let script = format!("sleep 100000 & echo $! > {}; exit 0", marker.display());
    let o = guarded(
        jail()
            .args(["trace", "--no-image", "--", "sh", "-c", &script])
            .current_dir(&base),
        GUARD,
    );
    assert_exit(&o, 0, "left 1 process(es) running");
    assert!(text(&o.stderr).contains("killed what the command left running"));
    let bg: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    // Gone, or dead and waiting for its new parent (init) to reap it.
    let state = fs::read_to_string(format!("/proc/{bg}/stat"))
        .ok()
        .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
    assert!(
        matches!(state, None | Some('Z') | Some('X')),
        "the background sleep {bg} is still running (state {state:?})"
    );
}
