//! The fanotify backend against real programs: what it sees that ptrace
//! cannot (io_uring), that other processes stay out, that a lost event is an
//! error, and that its jails work.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use jail::manifest::Manifest;
use jail::paths::ImagePath;
use jail::trace::{AccessKind, AccessLog};

/// fanotify tests share the system-wide queue setting: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn trace(backend: &str, args: &[&str]) -> (Output, AccessLog) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.json");
    let out = run(jail()
        .args([
            "trace",
            "--no-image",
            "--keep-going",
            "--backend",
            backend,
            "--manifest",
        ])
        .arg(&m)
        .arg("--")
        .args(args));
    assert!(m.exists(), "no manifest\nstderr:\n{}", text(&out.stderr));
    (out, Manifest::read(&m).unwrap().trace.unwrap())
}

fn has(log: &AccessLog, p: &Path, kind: AccessKind) -> bool {
    log.files
        .get(&ImagePath(p.to_path_buf()))
        .is_some_and(|e| e.kinds.contains(&kind))
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(d.path()).unwrap();
    fs::write(root.join("data.txt"), "through the ring\n").unwrap();
    (d, root)
}

#[test]
fn io_uring_opens_are_seen_by_fanotify_and_warned_by_ptrace() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, root) = data_dir();
    let bin = fixture("uring_open", &["-luring"]);
    let data = root.join("data.txt");

    let (out, log) = trace("fanotify", &[bin.to_str().unwrap(), data.to_str().unwrap()]);
    ok(&out);
    assert_eq!(text(&out.stdout), "through the ring\n");
    assert!(
        has(&log, &data, AccessKind::Read),
        "fanotify missed the io_uring open"
    );
    assert_eq!(log.backend, "fanotify");

    let (out, log) = trace("ptrace", &[bin.to_str().unwrap(), data.to_str().unwrap()]);
    ok(&out);
    assert!(
        !has(&log, &data, AccessKind::Read),
        "ptrace cannot see io_uring opens; the test is wrong if it does"
    );
    assert!(
        text(&out.stderr).contains("io_uring"),
        "no warning: {}",
        text(&out.stderr)
    );
}

#[test]
fn other_processes_stay_out() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, root) = data_dir();
    // An unrelated process keeps reading its own files during the trace.
    let noise = root.join("noise");
    fs::create_dir(&noise).unwrap();
    for i in 0..50 {
        fs::write(noise.join(format!("n{i}")), "x").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, noise) = (stop.clone(), noise.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..50 {
                    let _ = fs::read(noise.join(format!("n{i}")));
                    reads += 1;
                }
            }
            reads
        })
    };
    let data = root.join("data.txt");
    let (out, log) = trace(
        "fanotify",
        &[
            "sh",
            "-c",
            &format!(
                "cat {} && sleep 0.3 && cat {}",
                data.display(),
                data.display()
            ),
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    ok(&out);
    assert!(reads > 50, "the noise never ran");
    assert!(has(&log, &data, AccessKind::Read));
    let leaked: Vec<_> = log
        .files
        .keys()
        .filter(|k| k.0.starts_with(&noise))
        .collect();
    assert!(
        leaked.is_empty(),
        "another process's files leaked into the manifest: {leaked:?}"
    );
    // The forks of the shell were followed: cat and sleep are there.
    assert!(has(&log, Path::new("/usr/bin/cat"), AccessKind::Exec));
    assert!(has(&log, Path::new("/usr/bin/sleep"), AccessKind::Exec));
}

/// Restores a sysctl when dropped, also when the test panics.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, &self.old);
    }
}

#[test]
fn a_queue_overflow_is_an_error() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = "/proc/sys/fs/fanotify/max_queued_events";
    let old = fs::read_to_string(path).expect("fanotify sysctl (needs root)");
    let guard = Sysctl { path, old };
    // A group created now gets a queue of 4 events (jail normally asks for
    // an unlimited one; the variable makes it use the bounded default).
    fs::write(path, "4").unwrap();
    let (_d, root) = data_dir();
    let many = root.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..3000 {
        fs::write(many.join(format!("f{i}")), "x").unwrap();
    }
    let script = format!(
        "for f in {}/*; do cat \"$f\"; done > /dev/null",
        many.display()
    );
    let out = run(jail().env("JAIL_FANOTIFY_BOUNDED_QUEUE", "1").args([
        "trace",
        "--no-image",
        "--backend",
        "fanotify",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    drop(guard);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("overflowed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn python_jail_from_fanotify_works() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require("/usr/bin/python3", "python3");
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    let code = "import json, sqlite3, decimal; print(json.dumps([str(decimal.Decimal('1.1') * 2), sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0]]))";
    let out = run(jail()
        .args([
            "trace",
            "--no-image",
            "--backend",
            "fanotify",
            "--verify",
            "--tree",
        ])
        .arg(&tree)
        .args(["--", "/usr/bin/python3", "-c", code]));
    ok(&out);
    assert_eq!(text(&out.stdout), "[\"2.2\", 42]\n");
    assert!(
        text(&out.stderr).contains("ok: the traced run"),
        "{}",
        text(&out.stderr)
    );
    // The names fanotify cannot see were recovered: argv[0]'s symlink and
    // the ELF interpreter's chain.
    assert_eq!(
        fs::read_link(tree.join("usr/bin/python3")).unwrap(),
        Path::new("python3.11")
    );
    assert!(fs::symlink_metadata(tree.join("lib64"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn created_files_are_told_apart_by_birth_time() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, root) = data_dir();
    let out_file = root.join("out.txt");
    let data = root.join("data.txt");
    let (out, log) = trace(
        "fanotify",
        &[
            "sh",
            "-c",
            &format!(
                "cat {} > {} && cat {}",
                data.display(),
                out_file.display(),
                out_file.display()
            ),
        ],
    );
    ok(&out);
    let e = log
        .files
        .get(&ImagePath(out_file.clone()))
        .expect("output recorded");
    assert!(e.created(), "{e:?}");
    let e = log
        .files
        .get(&ImagePath(data.clone()))
        .expect("input recorded");
    assert!(e.existed && !e.created(), "{e:?}");
}
