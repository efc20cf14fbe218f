//! The eBPF backend against the ptrace backend: the same access logs, file
//! sets and process trees for every tracer fixture, sh, python3 and setpriv
//! (inside an image's sandbox: tests/ebpf_sandbox.rs); the same handling of
//! a process left running, of exec failures and of 32-bit programs; the
//! command is never stopped; a fork storm loses nothing; SIGKILL leaves no
//! program attached; two runs at once see only their own command.
//!
//! Allowed differences are listed in docs/tracing.md ("The ebpf backend");
//! [`compare`] names each one it tolerates.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jail::manifest::Manifest;
use jail::paths::ImagePath;
use jail::trace::{AccessKind, AccessLog};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `jail trace --backend B --manifest M -- ARGS` in `cwd`; the log and
/// the file set's paths.
fn trace(backend: &str, cwd: &Path, args: &[&str]) -> (Output, AccessLog, BTreeSet<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.json");
    let out = run(jail()
        .current_dir(cwd)
        .args(["trace", "--no-image", "--keep-going", "--backend", backend])
        .arg("--manifest")
        .arg(&m)
        .arg("--")
        .args(args));
    assert!(
        m.exists(),
        "{backend}: no manifest\nstderr:\n{}",
        text(&out.stderr)
    );
    let man = Manifest::read(&m).unwrap();
    let set = man
        .fileset
        .as_ref()
        .map(|f| f.entries.keys().map(|k| k.0.clone()).collect())
        .unwrap_or_default();
    (out, man.trace.unwrap(), set)
}

type Summary = BTreeMap<PathBuf, (BTreeSet<AccessKind>, bool)>;

/// The log's paths with their kinds and `existed`; `/proc/PID/…` paths
/// as `/proc/PID/…` (two runs have different pids).
fn summary(log: &AccessLog) -> Summary {
    log.files
        .iter()
        .map(|(p, a)| {
            let mut path = p.0.clone();
            if let Ok(rest) = p.0.strip_prefix("/proc") {
                let mut c = rest.components();
                if let Some(first) = c.next() {
                    if first
                        .as_os_str()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                    {
                        path = Path::new("/proc/PID").join(c.as_path());
                    }
                }
            }
            (path, (a.kinds.clone(), a.existed))
        })
        .collect()
}

/// Trace the same command under both backends, each in a fresh copy of the
/// scene `setup` builds at the same path, and require the same logs (path,
/// kinds, existed) and the same file sets, the same stdout and exit status,
/// and the same process tree (ppid links, execs with argv, threads, exit
/// statuses, uids and gids: [`process_tree`]). Returns both logs.
fn compare(
    name: &str,
    setup: impl Fn(&Path),
    cwd: Option<&str>,
    args: &[&str],
) -> (AccessLog, AccessLog) {
    let base = test_dir("ebpf-compare").join(name);
    let mut results = Vec::new();
    for backend in ["ptrace", "ebpf"] {
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        setup(&base);
        let cwd = cwd.map_or(base.clone(), |c| base.join(c));
        let args: Vec<String> = args.iter().map(|a| a.replace("@", s(&base))).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        results.push(trace(backend, &cwd, &args));
    }
    let (p_out, p_log, p_set) = &results[0];
    let (e_out, e_log, e_set) = &results[1];
    assert_eq!(
        p_out.status.code(),
        e_out.status.code(),
        "{name}: exit codes\nptrace: {}\nebpf: {}",
        text(&p_out.stderr),
        text(&e_out.stderr)
    );
    assert_eq!(text(&p_out.stdout), text(&e_out.stdout), "{name}: stdout");
    assert_eq!(e_log.backend, "ebpf");
    let (p, e) = (summary(p_log), summary(e_log));
    let mut diffs = Vec::new();
    for k in p.keys().chain(e.keys()).collect::<BTreeSet<_>>() {
        if p.get(k) != e.get(k) {
            diffs.push(format!(
                "{}: ptrace {:?} ebpf {:?}",
                k.display(),
                p.get(k),
                e.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}: access logs differ:\n{}",
        diffs.join("\n")
    );
    assert_eq!(p_set, e_set, "{name}: file sets differ");
    assert_eq!(
        p_log.processes.len(),
        e_log.processes.len(),
        "{name}: process counts"
    );
    assert_eq!(
        process_tree(p_log),
        process_tree(e_log),
        "{name}: process trees (ptrace, then ebpf)"
    );
    (results[0].1.clone(), results[1].1.clone())
}

fn data(base: &Path) {
    fs::create_dir_all(base.join("sub")).unwrap();
    fs::write(base.join("sub/data.txt"), "data\n").unwrap();
    fs::write(base.join("sub/two.txt"), "two\n").unwrap();
    fs::write(base.join("sub/out.txt"), "to be overwritten\n").unwrap();
    fs::create_dir_all(base.join("other")).unwrap();
    fs::write(base.join("other/o.txt"), "o").unwrap();
}

#[test]
fn fixtures_give_the_same_logs_as_ptrace() {
    let ops = fixture("trace_ops", &[]);
    let ops = s(&ops);
    let with_links = |b: &Path| {
        data(b);
        std::os::unix::fs::symlink("sub/data.txt", b.join("ln")).unwrap();
        std::os::unix::fs::symlink("sub", b.join("ln2")).unwrap();
        std::os::unix::fs::symlink("sub", b.join("link")).unwrap();
    };
    let cases: &[(&str, Option<&str>, Vec<&str>)] = &[
        (
            "openat",
            None,
            vec![
                ops,
                "openat",
                "@",
                "sub/data.txt",
                "openat2",
                "@/sub",
                "two.txt",
                // Its flags are in struct open_how: a write, not a read.
                "openat2-write",
                "@/sub",
                "out.txt",
            ],
        ),
        (
            "fchdir",
            None,
            vec![ops, "fchdir", "@/sub", "open-rel", "data.txt"],
        ),
        (
            "chdir",
            None,
            vec![
                ops,
                "chdir",
                "@/sub",
                "open-rel",
                "data.txt",
                "open-rel",
                "../other/o.txt",
            ],
        ),
        ("relative", Some(""), vec![ops, "open-rel", "sub/data.txt"]),
        (
            "readlink-list",
            None,
            vec![
                ops,
                "readlink",
                "@/ln",
                "list",
                "@/sub",
                "statx",
                "@/ln",
                "statx-nofollow",
                "@/ln2",
                "open",
                "@/link/data.txt",
            ],
        ),
        (
            "missing",
            None,
            vec![
                ops,
                "open",
                "@/sub/nope.txt",
                "open",
                "@/sub/data.txt/x",
                "stat",
                "@/nothing/here",
            ],
        ),
        (
            "create-rename-remove",
            None,
            vec![
                ops,
                "creat",
                "@/new.txt",
                "open",
                "@/new.txt",
                "rename",
                "@/new.txt",
                "@/renamed.txt",
                "open",
                "@/renamed.txt",
                "unlink",
                "@/renamed.txt",
            ],
        ),
        // The kernel side sends a directory chain once and names it by its
        // cache slot afterwards: renaming an ancestor must not leave the
        // old names in the log. (The run makes the tree: a rename target
        // whose source predates the run is a documented difference.)
        (
            "chain-cache-rename",
            None,
            vec![
                ops,
                "mkdir",
                "@/tree",
                "mkdir",
                "@/tree/a",
                "mkdir",
                "@/tree/a/b",
                "creat",
                "@/tree/a/b/x.txt",
                "creat",
                "@/tree/a/b/y.txt",
                "hold",
                "@/tree/a/b",
                "at",
                "x.txt",
                "at",
                "y.txt",
                "rename",
                "@/tree",
                "@/moved",
                "at",
                "y.txt",
                "at",
                "z.txt",
                "hold",
                "@/moved/a",
                "at",
                "b/x.txt",
            ],
        ),
        (
            "other",
            None,
            vec![
                ops,
                "access",
                "@/sub/data.txt",
                "xattr",
                "@/sub/data.txt",
                "statfs",
                "@",
                "chmod",
                "@/sub/data.txt",
                "truncate",
                "@/sub/two.txt",
                "mkdir",
                "@/made",
                "rmdir",
                "@/made",
                "symlink",
                "sub",
                "@/sl",
                "link",
                "@/sub/data.txt",
                "@/hard",
                "lstat",
                "@/sl",
            ],
        ),
    ];
    for (name, cwd, args) in cases {
        compare(name, with_links, *cwd, args);
    }
    // Credentials: setpriv switches ids (setgroups, setresgid, setresuid)
    // and execs; ptrace sees the calls' arguments and /proc at the exec,
    // ebpf the kernel's credentials after each.
    let (_, e) = compare(
        "setpriv",
        data,
        None,
        &[
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/cat",
            "/etc/hostname",
        ],
    );
    let cat = e
        .processes
        .iter()
        .find(|p| {
            p.execs
                .iter()
                .any(|x| x.argv.first().is_some_and(|a| a == "/bin/cat"))
        })
        .expect("the cat exec is in the tree");
    assert!(
        cat.uids.contains(&65534) && cat.gids.contains(&65534),
        "{cat:?}"
    );
    let threads_cwd = fixture("trace_threads_cwd", &["-pthread"]);
    compare("threads-cwd", data, None, &[s(&threads_cwd), "@/sub"]);
    let thread_exec = fixture("trace_thread_exec", &["-pthread"]);
    compare(
        "thread-exec",
        data,
        None,
        &[s(&thread_exec), "/bin/cat", "@/sub/data.txt"],
    );
    let vfork = fixture("trace_vfork", &[]);
    compare(
        "vfork",
        data,
        None,
        &[s(&vfork), "/bin/cat", "@/sub/data.txt", "@/sub/two.txt"],
    );
    let execveat = fixture("trace_execveat", &[]);
    compare(
        "execveat",
        data,
        None,
        &[s(&execveat), "/bin/cat", "@/sub/data.txt"],
    );
    let signals = fixture("trace_signals", &[]);
    compare("signals", data, None, &[s(&signals)]);
}

/// Another process (the test, untraced) renames an ancestor of the
/// directory the command keeps open, between two opens relative to it: the
/// second open is logged under the new name, not from the kernel side's
/// cached chain of the old one.
#[test]
fn a_rename_by_another_process_is_seen() {
    let ops = fixture("trace_ops", &[]);
    let base = test_dir("ebpf-foreign-rename");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("t/a/b")).unwrap();
    fs::write(base.join("t/a/b/x.txt"), "x").unwrap();
    fs::write(base.join("t/a/b/y.txt"), "y").unwrap();
    let m = base.join("m.json");
    let at = |p: &str| format!("{}/{p}", s(&base));
    let child = jail()
        .args(["trace", "--no-image", "--backend", "ebpf", "--manifest"])
        .arg(&m)
        .arg("--")
        .arg(&ops)
        .args(["hold", &at("t/a/b"), "at", "x.txt", "creat", &at("ready")])
        .args(["wait", &at("go"), "at", "y.txt"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    within(30, "the command to get ready", || {
        base.join("ready")
            .exists()
            .then_some(())
            .ok_or_else(|| "no ready file yet".to_string())
    });
    fs::rename(base.join("t"), base.join("u")).unwrap();
    fs::write(base.join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = Manifest::read(&m).unwrap().trace.unwrap();
    let ours: Vec<_> = log
        .files
        .keys()
        .filter_map(|p| p.0.strip_prefix(&base).ok())
        .collect();
    let has = |p: &str| ours.contains(&Path::new(p));
    assert!(has("t/a/b/x.txt"), "{ours:?}");
    assert!(has("u/a/b/y.txt"), "{ours:?}");
    assert!(!has("t/a/b/y.txt"), "{ours:?}");
}

/// A decoder slower than the kernel side (here made slow on purpose with
/// the JAIL_EBPF_SLOW_DECODE testing aid): the events wait in memory, not
/// in the bounded ring, and none is lost. (Decoding in the thread that
/// drains the ring failed this with "the ring buffer was full".)
#[test]
fn a_slow_decoder_loses_nothing() {
    let burst = fixture("trace_burst", &[]);
    let base = test_dir("ebpf-burst");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let m = base.join("m.json");
    let n = 100_000;
    let out = run(jail()
        .env("JAIL_EBPF_SLOW_DECODE", "1")
        .args(["trace", "--no-image", "--backend", "ebpf", "--manifest"])
        .arg(&m)
        .arg("--")
        .arg(&burst)
        .arg(&base)
        .arg(n.to_string()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = Manifest::read(&m).unwrap().trace.unwrap();
    let probes = log.files.keys().filter(|p| p.0.starts_with(&base)).count();
    assert_eq!(probes, n, "every probe is in the log");
}

/// A command that leaves a process running: both backends report it, watch
/// it for the grace period, kill it, and log the same tree (its exit:
/// killed by SIGKILL).
#[test]
fn a_process_left_running_is_handled_as_ptrace_does() {
    let (p, e) = compare(
        "left-running",
        data,
        None,
        &["/bin/sh", "-c", "sleep 5 & echo hi"],
    );
    for (backend, log) in [("ptrace", &p), ("ebpf", &e)] {
        let has = |w: &str| log.warnings.iter().any(|x| x.contains(w));
        assert!(
            has("left 1 process(es) running") && has("killed what the command left running"),
            "{backend}: {:?}",
            log.warnings
        );
        let sleep = log
            .processes
            .iter()
            .find(|p| {
                p.execs
                    .iter()
                    .any(|x| x.argv.first().is_some_and(|a| a == "sleep"))
            })
            .expect("the sleep is in the tree");
        assert_eq!(
            sleep.exit.as_deref(),
            Some("killed by SIGKILL"),
            "{backend}"
        );
    }
}

/// A missing program and a file that is not executable: the same error
/// and exit code as ptrace.
#[test]
fn exec_failures_are_the_same_as_ptrace() {
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain.txt");
    fs::write(&plain, "not a program").unwrap();
    for prog in [d.path().join("missing"), plain] {
        let outs: Vec<Output> = ["ptrace", "ebpf"]
            .iter()
            .map(|b| {
                run(jail()
                    .args(["trace", "--no-image", "--backend", b, "--"])
                    .arg(&prog))
            })
            .collect();
        let error = |o: &Output| {
            text(&o.stderr)
                .lines()
                .find(|l| l.contains("error"))
                .map(str::to_string)
        };
        assert_eq!(outs[0].status.code(), Some(2), "{}", text(&outs[0].stderr));
        assert_eq!(
            outs[0].status.code(),
            outs[1].status.code(),
            "{}",
            prog.display()
        );
        assert!(error(&outs[0]).is_some(), "{}", text(&outs[0].stderr));
        assert_eq!(error(&outs[0]), error(&outs[1]), "{}", prog.display());
    }
}

/// The ebpf backend never stops the command: no syscall stop, and no
/// tracer attached to it or to its children (TracerPid, read from inside;
/// under ptrace the same command sees jail as its tracer).
#[test]
fn the_command_is_never_stopped() {
    let cmd = [
        "/bin/sh",
        "-c",
        "grep TracerPid /proc/self/status; grep TracerPid /proc/$$/status",
    ];
    let (out, log, _) = trace("ebpf", Path::new("/"), &cmd);
    ok(&out);
    assert_eq!(text(&out.stdout), "TracerPid:\t0\nTracerPid:\t0\n");
    assert_eq!(log.stats.syscall_stops, 0);
    assert!(log.stats.command_us > 0);
    let (out, _, _) = trace("ptrace", Path::new("/"), &cmd);
    assert!(
        !text(&out.stdout).contains("TracerPid:\t0"),
        "the control run is traced: {}",
        text(&out.stdout)
    );
}

/// An exec of a 32-bit program is refused as under ptrace.
#[test]
fn a_32bit_program_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("tiny32");
    fs::write(&bin, tiny_i386_elf()).unwrap();
    fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(jail()
        .args(["trace", "--no-image", "--backend", "ebpf", "--"])
        .arg(&bin));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("tiny32") && err.contains("32-bit (i386)") && err.contains("only x86_64"),
        "{err}"
    );
}

#[test]
fn unix_socket_connect_is_the_same() {
    let ops = fixture("trace_ops", &[]);
    let base = test_dir("ebpf-compare").join("socket");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let sock = base.join("s.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (_, p, _) = trace("ptrace", &base, &[s(&ops), "connect", s(&sock)]);
    let (_, e, _) = trace("ebpf", &base, &[s(&ops), "connect", s(&sock)]);
    let key = ImagePath(sock.clone());
    let (p, e) = (&p.files[&key], &e.files[&key]);
    assert_eq!(
        (&p.kinds, p.existed, p.file_type),
        (&e.kinds, e.existed, e.file_type)
    );
    assert_eq!(e.kinds, [AccessKind::Stat].into());
}

#[test]
fn sh_and_python_give_the_same_logs_as_ptrace() {
    let script = |b: &Path| {
        data(b);
        let sc = b.join("script.sh");
        fs::write(&sc, "#!/bin/sh\nset -e\ncd \"$1\"\nls sub > listing.txt\nwc -l < sub/data.txt\nsort listing.txt | head -n1\nrm listing.txt\n").unwrap();
        fs::set_permissions(&sc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    compare("sh", script, None, &["@/script.sh", "@"]);
    require("/usr/bin/python3", "python3");
    compare(
        "python3",
        data,
        None,
        &[
            "/usr/bin/python3",
            "-c",
            "import json, sqlite3, ssl, decimal; print('ok')",
        ],
    );
}

#[test]
fn fork_storm_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(d.path()).unwrap();
    let (procs, threads) = (40, 4);
    for p in 0..procs {
        for t in 0..threads {
            fs::write(root.join(format!("f-{p}-{t}")), "").unwrap();
        }
    }
    let bin = fixture("trace_storm", &["-pthread"]);
    let (out, log, _) = trace(
        "ebpf",
        &root,
        &[s(&bin), s(&root), &procs.to_string(), &threads.to_string()],
    );
    ok(&out);
    for p in 0..procs {
        for t in 0..threads {
            let f = root.join(format!("f-{p}-{t}"));
            let e = log.files.get(&ImagePath(f.clone()));
            assert_eq!(
                e.map(|e| e.kinds.clone()),
                Some([AccessKind::Read].into()),
                "{}",
                f.display()
            );
        }
    }
    assert_eq!(log.processes.len(), procs + 1);
}

#[test]
fn a_full_ring_buffer_fails_the_trace() {
    // JAIL_EBPF_TINY_RING: one page of ring, read only after the run.
    let out = run(jail()
        .env("JAIL_EBPF_TINY_RING", "1")
        .args([
            "trace",
            "--no-image",
            "--backend",
            "ebpf",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg("for i in 1 2 3 4 5 6 7 8; do cat /etc/hostname /etc/passwd > /dev/null; done"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("lost events") && err.contains("ring buffer was full"),
        "{err}"
    );
}

#[test]
fn io_uring_setup_warns() {
    let bin = fixture("trace_uring", &[]);
    let (_, log, _) = trace("ebpf", Path::new("/"), &[s(&bin)]);
    assert!(
        log.warnings.iter().any(|w| w.contains("io_uring")),
        "{:?}",
        log.warnings
    );
}

/// The BPF program and link ids held by a process's fds (from fdinfo).
/// The ids of the BPF programs, links and maps process `pid` holds (its
/// fdinfo).
fn bpf_ids(pid: u32) -> [Vec<u32>; 3] {
    let mut ids: [Vec<u32>; 3] = Default::default();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        let info = fs::read_to_string(e.path()).unwrap_or_default();
        for line in info.lines() {
            let mut f = line.split_whitespace();
            let slot = match f.next() {
                Some("prog_id:") => 0,
                Some("link_id:") => 1,
                Some("map_id:") => 2,
                _ => continue,
            };
            if let Some(id) = f.next().and_then(|v| v.parse().ok()) {
                ids[slot].push(id);
            }
        }
    }
    for v in &mut ids {
        v.sort();
        v.dedup();
    }
    ids
}

fn bpftool_has(what: &str, id: u32) -> bool {
    Command::new("bpftool")
        .args([what, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bpftool")
        .success()
}

/// The guard of a running ebpf jail: its child in a session of its own.
fn guard_of(jail: u32) -> Option<u32> {
    children(jail).into_iter().find(|&c| {
        let stat = fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
        let i = stat.rfind(')').unwrap_or(0);
        // Fields after the name: state ppid pgrp session.
        stat[i + 1..].split_whitespace().nth(3) == Some(&c.to_string())
    })
}

/// Poll `f` every 20 ms until it gives `Ok`, failing with `what` and the
/// last `Err` after `secs` seconds.
fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// jail dies ⇒ the command dies, as under ptrace's EXITKILL: the guard
/// (trace/ebpf/guard.rs) kills what the `traced` map holds, then lets the
/// map go; nothing of the run stays attached. A normal run's guard exits
/// with jail.
#[test]
fn sigkill_of_jail_leaves_no_program_attached() {
    require("bpftool", "bpftool");
    // A normal run: its guard is gone when jail has exited.
    let mut child = jail()
        .args([
            "trace",
            "--no-image",
            "--backend",
            "ebpf",
            "--",
            "sleep",
            "0.5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = within(30, "no guard process during a normal run", || {
        guard_of(child.id()).ok_or_else(|| format!("children: {:?}", children(child.id())))
    });
    assert!(child.wait().unwrap().success());
    within(10, "the guard of a normal run outlived jail", || {
        if running(guard) {
            Err(format!("guard {guard}"))
        } else {
            Ok(())
        }
    });

    let mut child = jail()
        .args([
            "trace",
            "--no-image",
            "--backend",
            "ebpf",
            "--",
            "sh",
            "-c",
            "sleep 30 & sleep 30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait (bounded) until it has attached its four programs and the shell
    // has started both sleeps.
    let ([progs, links, maps], command) = within(30, "jail never attached or never ran sh", || {
        let ids = bpf_ids(pid);
        if ids[1].len() < 4 {
            return Err(format!("{ids:?}"));
        }
        let sh = children(pid)
            .into_iter()
            .find(|&c| Some(c) != guard_of(pid))
            .ok_or("no sh")?;
        let sleeps = children(sh);
        if sleeps.len() != 2 {
            return Err(format!("children of sh: {sleeps:?}"));
        }
        Ok((ids, [vec![sh], sleeps].concat()))
    });
    assert!(progs.len() >= 4, "{progs:?}");
    assert!(!maps.is_empty());
    for &id in &links {
        assert!(bpftool_has("link", id), "link {id} not visible to bpftool");
    }
    let guard = guard_of(pid).expect("a guard process");
    child.kill().unwrap();
    child.wait().unwrap();
    // The guard kills the command's processes, then exits; the kernel
    // releases links from a work queue after the last fd closes: wait for
    // all that, bounded.
    within(10, "something of the run outlived jail", || {
        let left: Vec<String> = command
            .iter()
            .filter(|&&p| running(p))
            .map(|p| format!("process {p}"))
            .chain(running(guard).then(|| format!("guard {guard}")))
            .chain(
                [("link", &links), ("prog", &progs), ("map", &maps)]
                    .into_iter()
                    .flat_map(|(what, ids)| {
                        ids.iter()
                            .filter(move |&&id| bpftool_has(what, id))
                            .map(move |id| format!("{what} {id}"))
                    }),
            )
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

#[test]
fn two_runs_at_once_see_only_their_own_command() {
    let d = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(d.path()).unwrap();
    for f in ["a1", "a2", "b1", "b2"] {
        fs::write(root.join(f), f).unwrap();
    }
    // Each waits for the other to have started: the runs overlap.
    let script = |me: &str, other: &str| {
        format!(
            "cat {r}/{me}1; touch {r}/ready-{me}; while [ ! -e {r}/ready-{other} ]; do sleep 0.02; done; cat {r}/{me}2",
            r = s(&root)
        )
    };
    let spawn = |me: &str, other: &str| {
        let m = root.join(format!("{me}.json"));
        let child = jail()
            .args([
                "trace",
                "--no-image",
                "--keep-going",
                "--backend",
                "ebpf",
                "--manifest",
            ])
            .arg(&m)
            .args(["--", "sh", "-c", &script(me, other)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, m)
    };
    let (a, am) = spawn("a", "b");
    let (b, bm) = spawn("b", "a");
    for (c, m, mine, theirs) in [(a, am, "a", "b"), (b, bm, "b", "a")] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let log = Manifest::read(&m).unwrap().trace.unwrap();
        for n in ["1", "2"] {
            let f = ImagePath(root.join(format!("{mine}{n}")));
            assert!(
                log.files.contains_key(&f),
                "{mine}: {} missing",
                f.0.display()
            );
            let f = ImagePath(root.join(format!("{theirs}{n}")));
            assert!(!log.files.contains_key(&f), "{mine} saw {}", f.0.display());
        }
    }
}

/// Every shipped config gives the same file set under both backends (the
/// logs differ only in the random names of temp files the runs make and
/// remove, which no file set keeps).
#[test]
fn configs_give_the_same_file_sets() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("jail-configs");
    let mut names: Vec<PathBuf> = fs::read_dir(&configs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut diffs = Vec::new();
    for c in &names {
        let mut sets = Vec::new();
        for backend in ["ptrace", "ebpf"] {
            let m = dir.path().join(format!("{backend}.json"));
            let out = run(jail()
                .current_dir(dir.path())
                .args([
                    "trace",
                    "--no-image",
                    "--keep-going",
                    "--backend",
                    backend,
                    "-c",
                ])
                .arg(c)
                .arg("--manifest")
                .arg(&m));
            assert!(
                m.exists(),
                "{}: {backend}: {}",
                c.display(),
                text(&out.stderr)
            );
            let set: BTreeSet<PathBuf> = Manifest::read(&m)
                .unwrap()
                .fileset
                .unwrap()
                .entries
                .into_keys()
                .map(|k| k.0)
                .collect();
            sets.push(set);
        }
        if sets[0] != sets[1] {
            diffs.push(format!(
                "{}: only ptrace {:?}, only ebpf {:?}",
                c.display(),
                sets[0].difference(&sets[1]).collect::<Vec<_>>(),
                sets[1].difference(&sets[0]).collect::<Vec<_>>()
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
