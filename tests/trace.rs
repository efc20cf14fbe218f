//! The tracer against real programs: C fixtures for each hard case, sh and
//! python3 end to end, and jail's own exit and signal behaviour.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jail::manifest::Manifest;
use jail::paths::ImagePath;
use jail::trace::{AccessKind, AccessLog, FileAccess};

/// Run `jail trace --no-image --manifest M -- ARGS` and parse the manifest.
fn trace(args: &[&str]) -> (Output, AccessLog) {
    trace_in(None, args)
}

fn trace_in(cwd: Option<&Path>, args: &[&str]) -> (Output, AccessLog) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.json");
    let mut cmd = jail();
    cmd.args(["trace", "--no-image", "--keep-going", "--manifest"])
        .arg(&m)
        .arg("--")
        .args(args);
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    let out = run(&mut cmd);
    assert!(
        m.exists(),
        "no manifest written\nstderr:\n{}",
        text(&out.stderr)
    );
    let log = Manifest::read(&m)
        .unwrap()
        .trace
        .expect("manifest has the trace");
    (out, log)
}

/// A temp dir with `sub/data.txt`, canonicalized.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(d.path()).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/data.txt"), "data\n").unwrap();
    (d, root)
}

#[track_caller]
fn entry<'a>(log: &'a AccessLog, path: &Path) -> &'a FileAccess {
    log.files
        .get(&ImagePath(path.to_path_buf()))
        .unwrap_or_else(|| {
            let near: Vec<_> = log
                .files
                .keys()
                .filter(|k| k.0.starts_with(path.parent().unwrap_or(Path::new("/"))))
                .map(|k| k.0.display().to_string())
                .collect();
            panic!(
                "{} not in the manifest; entries nearby: {near:#?}",
                path.display()
            )
        })
}

#[track_caller]
fn assert_kinds(log: &AccessLog, path: &Path, want: &[AccessKind]) {
    let got = &entry(log, path).kinds;
    let want: BTreeSet<AccessKind> = want.iter().copied().collect();
    assert_eq!(got, &want, "kinds of {}", path.display());
}

#[track_caller]
fn assert_has_kind(log: &AccessLog, path: &Path, kind: AccessKind) {
    let e = entry(log, path);
    assert!(
        e.kinds.contains(&kind),
        "{} has {:?}, expected {kind:?}",
        path.display(),
        e.kinds
    );
}

fn ops() -> PathBuf {
    fixture("trace_ops", &[])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn threads_share_a_cwd_changed_by_another_thread() {
    let (_d, root) = data_dir();
    let bin = fixture("trace_threads_cwd", &["-pthread"]);
    let (out, log) = trace(&[s(&bin), s(&root.join("sub"))]);
    ok(&out);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
    // Nothing resolved against the old cwd.
    assert!(!log
        .files
        .keys()
        .any(|k| k.0.ends_with("data.txt") && k.0 != root.join("sub/data.txt")));
    assert_eq!(log.processes.len(), 1);
    assert_eq!(log.processes[0].threads, 2);
}

#[test]
fn exec_from_a_non_leader_thread() {
    let (_d, root) = data_dir();
    let bin = fixture("trace_thread_exec", &["-pthread"]);
    let data = root.join("sub/data.txt");
    let (out, log) = trace(&[s(&bin), "/bin/cat", s(&data)]);
    ok(&out);
    assert_eq!(text(&out.stdout), "data\n");
    assert_has_kind(&log, Path::new("/usr/bin/cat"), AccessKind::Exec);
    assert_kinds(&log, &data, &[AccessKind::Read]);
    // One process: the exec kept the leader's pid, and both execs are its.
    assert_eq!(log.processes.len(), 1, "{:#?}", log.processes);
    let execs: Vec<_> = log.processes[0]
        .execs
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(execs, [bin.clone(), PathBuf::from("/usr/bin/cat")]);
    assert_eq!(log.processes[0].execs[1].argv, ["/bin/cat", s(&data)]);
    // cat read the file as the same process.
    assert_eq!(entry(&log, &data).first_pid, log.processes[0].pid);
}

#[test]
fn vfork_exec_and_posix_spawn() {
    let (_d, root) = data_dir();
    fs::write(root.join("sub/two.txt"), "two\n").unwrap();
    let bin = fixture("trace_vfork", &[]);
    let one = root.join("sub/data.txt");
    let two = root.join("sub/two.txt");
    let (out, log) = trace(&[s(&bin), "/bin/cat", s(&one), s(&two)]);
    ok(&out);
    assert_eq!(text(&out.stdout), "data\ntwo\n");
    assert_kinds(&log, &one, &[AccessKind::Read]);
    assert_kinds(&log, &two, &[AccessKind::Read]);
    assert_eq!(log.processes.len(), 3, "{:#?}", log.processes);
    let parent = log.processes[0].pid;
    for child in &log.processes[1..] {
        assert_eq!(child.ppid, parent);
        assert_eq!(child.execs.last().unwrap().path, Path::new("/usr/bin/cat"));
    }
    assert_ne!(entry(&log, &one).first_pid, parent);
}

#[test]
fn openat_with_a_real_dirfd_and_openat2() {
    let (_d, root) = data_dir();
    fs::write(root.join("sub/two.txt"), "two\n").unwrap();
    let (out, log) = trace(&[
        s(&ops()),
        "openat",
        s(&root),
        "sub/data.txt",
        "openat2",
        s(&root.join("sub")),
        "two.txt",
    ]);
    ok(&out);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
    assert_kinds(&log, &root.join("sub/two.txt"), &[AccessKind::Read]);
    // Not resolved against the cwd (the fixture chdir's to / first).
    assert!(!log.files.contains_key(&ImagePath("/sub/data.txt".into())));
    assert!(!log.files.contains_key(&ImagePath("/two.txt".into())));
}

#[test]
fn statx_follows_or_not() {
    let (_d, root) = data_dir();
    std::os::unix::fs::symlink("sub/data.txt", root.join("ln")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("ln2")).unwrap();
    let (out, log) = trace(&[
        s(&ops()),
        "statx",
        s(&root.join("ln")),
        "statx-nofollow",
        s(&root.join("ln2")),
    ]);
    ok(&out);
    assert_kinds(&log, &root.join("ln"), &[AccessKind::Symlink]);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Stat]);
    // The no-follow statx looked at the link only.
    assert_kinds(&log, &root.join("ln2"), &[AccessKind::Stat]);
    assert!(log
        .files
        .get(&ImagePath(root.join("sub")))
        .is_none_or(|e| !e.kinds.contains(&AccessKind::Stat)));
}

#[test]
fn fchdir_then_relative_open() {
    let (_d, root) = data_dir();
    let (out, log) = trace(&[
        s(&ops()),
        "fchdir",
        s(&root.join("sub")),
        "open-rel",
        "data.txt",
    ]);
    ok(&out);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
}

#[test]
fn chdir_then_relative_open_and_dotdot() {
    let (_d, root) = data_dir();
    fs::create_dir(root.join("other")).unwrap();
    fs::write(root.join("other/o.txt"), "o").unwrap();
    let (out, log) = trace(&[
        s(&ops()),
        "chdir",
        s(&root.join("sub")),
        "open-rel",
        "data.txt",
        "open-rel",
        "../other/o.txt",
    ]);
    ok(&out);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
    assert_kinds(&log, &root.join("other/o.txt"), &[AccessKind::Read]);
}

#[test]
fn relative_paths_use_the_starting_cwd() {
    let (_d, root) = data_dir();
    let (out, log) = trace_in(Some(&root), &[s(&ops()), "open-rel", "sub/data.txt"]);
    ok(&out);
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
}

#[test]
fn execveat_with_at_empty_path() {
    let (_d, root) = data_dir();
    let bin = fixture("trace_execveat", &[]);
    let data = root.join("sub/data.txt");
    let (out, log) = trace(&[s(&bin), "/bin/cat", s(&data)]);
    ok(&out);
    assert_eq!(text(&out.stdout), "data\n");
    assert_has_kind(&log, Path::new("/usr/bin/cat"), AccessKind::Exec);
    assert_eq!(
        log.processes[0].execs.last().unwrap().path,
        Path::new("/usr/bin/cat")
    );
    assert_kinds(&log, &data, &[AccessKind::Read]);
}

#[test]
fn path_through_a_directory_symlink() {
    let (_d, root) = data_dir();
    std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
    let named = root.join("link/data.txt");
    let (out, log) = trace(&[s(&ops()), "open", s(&named)]);
    ok(&out);
    let l = entry(&log, &root.join("link"));
    assert_eq!(l.kinds, [AccessKind::Symlink].into());
    assert_eq!(l.target.as_deref(), Some(Path::new("sub")));
    assert_kinds(&log, &root.join("sub/data.txt"), &[AccessKind::Read]);
    assert_eq!(
        log.names.get(&ImagePath(named)).map(|p| p.0.clone()),
        Some(root.join("sub/data.txt"))
    );
}

#[test]
fn readlink_records_the_link_itself() {
    let (_d, root) = data_dir();
    std::os::unix::fs::symlink("sub/data.txt", root.join("ln")).unwrap();
    let (out, log) = trace(&[s(&ops()), "readlink", s(&root.join("ln"))]);
    ok(&out);
    let e = entry(&log, &root.join("ln"));
    assert_eq!(e.kinds, [AccessKind::Stat].into());
    assert_eq!(e.target.as_deref(), Some(Path::new("sub/data.txt")));
    // readlink does not follow: the target was not touched.
    assert!(!log
        .files
        .contains_key(&ImagePath(root.join("sub/data.txt"))));
}

#[test]
fn listing_a_directory() {
    let (_d, root) = data_dir();
    let (out, log) = trace(&[s(&ops()), "list", s(&root.join("sub"))]);
    ok(&out);
    assert_has_kind(&log, &root.join("sub"), AccessKind::List);
    // Listing does not touch the children.
    assert!(!log
        .files
        .contains_key(&ImagePath(root.join("sub/data.txt"))));
}

#[test]
fn a_failed_open_is_missing_with_its_errno() {
    let (_d, root) = data_dir();
    let (out, log) = trace(&[
        s(&ops()),
        "open",
        s(&root.join("sub/nope.txt")),
        "open",
        s(&root.join("sub/data.txt/x")),
    ]);
    ok(&out);
    let e = entry(&log, &root.join("sub/nope.txt"));
    assert_eq!(e.kinds, [AccessKind::Missing].into());
    assert_eq!(e.errno.as_deref(), Some("ENOENT"));
    assert!(!e.existed);
    let e = entry(&log, &root.join("sub/data.txt/x"));
    assert_eq!(e.errno.as_deref(), Some("ENOTDIR"));
}

#[test]
fn created_renamed_and_removed_is_created_not_read() {
    let (_d, root) = data_dir();
    let a = root.join("new.txt");
    let b = root.join("renamed.txt");
    let (out, log) = trace(&[
        s(&ops()),
        "creat",
        s(&a),
        "open",
        s(&a),
        "rename",
        s(&a),
        s(&b),
        "open",
        s(&b),
        "unlink",
        s(&b),
    ]);
    ok(&out);
    for p in [&a, &b] {
        let e = entry(&log, p);
        assert!(e.created(), "{} should be created: {e:?}", p.display());
        assert!(!e.existed);
    }
    assert_has_kind(&log, &a, AccessKind::Create);
    assert_has_kind(&log, &b, AccessKind::Create);
    assert_has_kind(&log, &b, AccessKind::Delete);
}

#[test]
fn other_path_syscalls() {
    let (_d, root) = data_dir();
    let data = root.join("sub/data.txt");
    let dir = root.join("made");
    let (out, log) = trace(&[
        s(&ops()),
        "access",
        s(&data),
        "xattr",
        s(&data),
        "statfs",
        s(&root),
        "chmod",
        s(&data),
        "truncate",
        s(&data),
        "mkdir",
        s(&dir),
        "rmdir",
        s(&dir),
        "symlink",
        "sub",
        s(&root.join("sl")),
        "link",
        s(&data),
        s(&root.join("hard")),
        "lstat",
        s(&root.join("sl")),
    ]);
    ok(&out);
    assert_kinds(&log, &data, &[AccessKind::Stat, AccessKind::Write]);
    assert_has_kind(&log, &root, AccessKind::Stat);
    assert!(entry(&log, &dir).created());
    assert_has_kind(&log, &dir, AccessKind::Delete);
    assert!(entry(&log, &root.join("sl")).created());
    assert!(entry(&log, &root.join("hard")).created());
}

#[test]
fn unix_socket_connect() {
    let (_d, root) = data_dir();
    let sock = root.join("s.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (out, log) = trace(&[s(&ops()), "connect", s(&sock)]);
    ok(&out);
    let e = entry(&log, &sock);
    assert_eq!(e.kinds, [AccessKind::Stat].into());
    assert_eq!(e.file_type, Some(jail::resolve::FileType::Socket));
}

#[test]
fn fork_storm_loses_nothing() {
    let (_d, root) = data_dir();
    let (procs, threads) = (40, 4);
    for p in 0..procs {
        for t in 0..threads {
            fs::write(root.join(format!("f-{p}-{t}")), "").unwrap();
        }
    }
    let bin = fixture("trace_storm", &["-pthread"]);
    let mut cmd = jail();
    let m = root.join("m.json");
    cmd.args(["trace", "--no-image", "--manifest"])
        .arg(&m)
        .arg("--")
        .arg(&bin)
        .arg(&root)
        .arg(procs.to_string())
        .arg(threads.to_string());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    ok(&out);
    let log = Manifest::read(&m).unwrap().trace.unwrap();
    for p in 0..procs {
        for t in 0..threads {
            assert_kinds(&log, &root.join(format!("f-{p}-{t}")), &[AccessKind::Read]);
        }
    }
    assert_eq!(log.processes.len(), procs + 1);
    assert!(
        log.processes
            .iter()
            .skip(1)
            .all(|p| p.threads == threads as u32),
        "{:?}",
        log.processes.iter().map(|p| p.threads).collect::<Vec<_>>()
    );
}

/// Run with a deadline; a hang is a test failure, not a stuck suite.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("timed out after {limit:?}\nstderr:\n{}", text(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sh_script_running_coreutils() {
    let (_d, root) = data_dir();
    let script = root.join("script.sh");
    fs::write(&script, "#!/bin/sh\nset -e\ncd \"$1\"\nls sub > listing.txt\nwc -l < sub/data.txt\nsort listing.txt | head -n1\n").unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (out, log) = trace(&[s(&script), s(&root)]);
    ok(&out);
    assert_eq!(text(&out.stdout), "1\ndata.txt\n");
    // The script, its interpreter as the kernel loaded it, and the tools.
    // Executed, and read by the shell for its commands.
    assert_kinds(&log, &script, &[AccessKind::Exec, AccessKind::Read]);
    assert_has_kind(&log, Path::new("/usr/bin/dash"), AccessKind::Exec);
    assert_has_kind(&log, Path::new("/bin"), AccessKind::Symlink);
    for tool in ["ls", "wc", "sort", "head"] {
        assert_has_kind(&log, &Path::new("/usr/bin").join(tool), AccessKind::Exec);
    }
    assert_has_kind(&log, &root.join("sub"), AccessKind::List);
    assert_has_kind(&log, &root.join("sub/data.txt"), AccessKind::Read);
    assert!(entry(&log, &root.join("listing.txt")).created());
    assert!(log.processes.len() >= 5, "{:#?}", log.processes);
    assert!(log
        .processes
        .iter()
        .all(|p| p.exit.as_deref() == Some("exit status 0")));
}

#[test]
fn python3_startup() {
    require("/usr/bin/python3", "python3");
    let (out, log) = trace(&[
        "/usr/bin/python3",
        "-c",
        "import json, sqlite3, ssl, decimal; print('ok')",
    ]);
    ok(&out);
    assert_eq!(text(&out.stdout), "ok\n");
    let py = entry(&log, Path::new("/usr/bin/python3"));
    assert!(py.kinds.contains(&AccessKind::Symlink));
    assert_eq!(py.target.as_deref(), Some(Path::new("python3.11")));
    assert_has_kind(&log, Path::new("/usr/bin/python3.11"), AccessKind::Exec);
    // The ELF interpreter, loaded by the kernel (no syscall names it).
    assert_eq!(
        log.names
            .get(&ImagePath("/lib64/ld-linux-x86-64.so.2".into()))
            .map(|p| p.0.clone()),
        Some(PathBuf::from(
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        ))
    );
    assert_has_kind(
        &log,
        Path::new("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        AccessKind::Exec,
    );
    assert_has_kind(&log, Path::new("/lib64"), AccessKind::Symlink);
    assert_has_kind(
        &log,
        Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6"),
        AccessKind::Read,
    );
    assert_has_kind(
        &log,
        Path::new("/usr/lib/python3.11/encodings"),
        AccessKind::List,
    );
    assert_has_kind(
        &log,
        Path::new("/usr/lib/python3.11/encodings/__init__.py"),
        AccessKind::Stat,
    );
    let dynload = Path::new("/usr/lib/python3.11/lib-dynload");
    assert_has_kind(
        &log,
        &dynload.join("_ssl.cpython-311-x86_64-linux-gnu.so"),
        AccessKind::Read,
    );
    assert_has_kind(
        &log,
        &dynload.join("_sqlite3.cpython-311-x86_64-linux-gnu.so"),
        AccessKind::Read,
    );
    // dlopen'd dependencies of the extension modules.
    assert_has_kind(
        &log,
        Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        AccessKind::Read,
    );
    // Only path syscalls stopped the tracee (python makes thousands more).
    assert!(
        log.stats.syscall_stops < 2000,
        "{} stops",
        log.stats.syscall_stops
    );
}

#[test]
fn the_programs_own_signals_still_work() {
    let bin = fixture("trace_signals", &[]);
    let (out, log) = trace(&[s(&bin)]);
    ok(&out);
    assert_eq!(text(&out.stdout), "alarms=1 chld=1 child=3\n");
    assert_eq!(log.processes.len(), 2);
}

#[test]
fn command_failure_exits_1_and_says_the_status() {
    let out = run(jail().args(["trace", "--no-image", "--", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exit status 3"),
        "{}",
        text(&out.stderr)
    );
    let out = run(jail().args([
        "trace",
        "--no-image",
        "--keep-going",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(jail().args(["trace", "--no-image", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("SIGTERM"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_usage_exits_2() {
    let out = run(jail().args(["trace", "--no-image", "--", "/no/such/command"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/no/such/command"),
        "{}",
        text(&out.stderr)
    );
    let out = run(jail().args(["trace", "--no-image", "--", "no-such-command-xyz"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("command not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run(jail().args(["trace", "--no-image"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(jail().args(["trace", "--bogus-flag", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_summary_on_stdout() {
    let out = run(jail().args(["trace", "--no-image", "--json", "--", "/bin/true"]));
    ok(&out);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["exit"]["code"], 0);
    assert_eq!(v["processes"], 1);
    assert!(v["kinds"]["exec"].as_u64().unwrap() >= 2, "{v}");
}

#[test]
fn yaml_manifest_by_default() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m.yaml");
    let out = run(jail()
        .args(["trace", "--no-image", "--manifest"])
        .arg(&m)
        .args(["--", "/bin/true"]));
    ok(&out);
    let y = fs::read_to_string(&m).unwrap();
    assert!(y.starts_with("version: 1\n"), "{y}");
    assert!(y.contains("/usr/bin/true:"), "{y}");
    assert!(Manifest::read(&m).unwrap().trace.is_some());
}

/// The pid written by the traced shell into `file`, once it appears.
fn wait_pid_file(file: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(s) = fs::read_to_string(file) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn state(pid: i32) -> char {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

#[test]
fn sigkill_to_jail_leaves_no_traced_process() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
    let mut child = jail()
        .args(["trace", "--no-image", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = wait_pid_file(&pidfile);
    assert!(alive(sleeper));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let start = Instant::now();
    while alive(sleeper) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "traced sleep (pid {sleeper}) survived jail's death"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under the ptrace backend and under ebpf (whose own wait loop forwards).
#[test]
fn sigint_is_forwarded_to_the_command() {
    for backend in ["ptrace", "ebpf"] {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let script = format!(
            "trap 'echo got-int; exit 5' INT; echo $$ > {}; while :; do sleep 0.05; done",
            pidfile.display()
        );
        let child = jail()
            .args([
                "trace",
                "--no-image",
                "--backend",
                backend,
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_pid_file(&pidfile);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(text(&out.stdout), "got-int\n", "{backend}");
        assert_eq!(out.status.code(), Some(1), "{backend}");
        assert!(
            text(&out.stderr).contains("exit status 5"),
            "{backend}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn kill_stop_keeps_the_command_stopped_until_sigcont() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let script = format!(
        "echo $$ > {}; kill -STOP $$; echo resumed",
        pidfile.display()
    );
    let child = jail()
        .args(["trace", "--no-image", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_pid_file(&pidfile);
    let start = Instant::now();
    while state(pid) != 't' && state(pid) != 'T' {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never stopped: state {}",
            state(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A tracer that resumed group-stops would let it run on by itself.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(state(pid), 't' | 'T'),
        "resumed without SIGCONT: state {}",
        state(pid)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "resumed\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_32bit_syscall_is_refused_not_misread() {
    let bin = fixture("trace_int80", &[]);
    let out = run(jail().args(["trace", "--no-image", "--"]).arg(&bin));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("32-bit (i386)") && err.contains("only x86_64"),
        "{err}"
    );
    // The process was stopped before the call ran (ptrace) or killed as it
    // returned (ebpf): it printed nothing.
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn a_32bit_program_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("tiny32");
    fs::write(&bin, tiny_i386_elf()).unwrap();
    fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(jail().args(["trace", "--no-image", "--"]).arg(&bin));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("tiny32") && err.contains("32-bit (i386)"),
        "{err}"
    );
}

#[test]
fn io_uring_setup_warns() {
    let bin = fixture("trace_uring", &[]);
    let (out, log) = trace(&[s(&bin)]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("io_uring"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        log.warnings
            .iter()
            .any(|w| w.contains("io_uring") && w.contains("fanotify")),
        "{:?}",
        log.warnings
    );
}

#[test]
fn one_cpu_pins_the_command_and_sees_the_same_files() {
    // With --one-cpu the command runs with a one-CPU affinity mask (what the
    // flag promises and documents); without it, with the caller's. The
    // trace is the same either way.
    let script = "nproc; cat /etc/hostname >/dev/null";
    let mine = text(&run(Command::new("sh").args(["-c", "nproc"])).stdout);
    let (plain, log) = trace(&["/bin/sh", "-c", script]);
    ok(&plain);
    assert_eq!(text(&plain.stdout), mine);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.json");
    let pinned = run(jail()
        .args(["trace", "--one-cpu", "--no-image", "--manifest"])
        .arg(&m)
        .args(["--", "/bin/sh", "-c", script]));
    ok(&pinned);
    assert_eq!(text(&pinned.stdout), "1\n");
    let pinned_log = Manifest::read(&m).unwrap().trace.unwrap();
    let paths = |l: &AccessLog| l.files.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(paths(&pinned_log), paths(&log));
    assert_has_kind(&pinned_log, Path::new("/etc/hostname"), AccessKind::Read);
}
