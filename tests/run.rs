//! `jail run` and the sandbox library: real commands in real trees (a static
//! busybox tree, and a tree of host files for the dynamic /bin/sh), checking
//! what the command sees and that nothing of it reaches the host.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child as Proc, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use jail::sandbox::{self, Hooks, SandboxError, Spec};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------- trees ---

/// An empty directory `target/test-data/run/NAME`.
fn fresh(name: &str) -> PathBuf {
    let dir = test_dir("run").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove old tree");
    }
    std::fs::create_dir_all(&dir).expect("create tree");
    dir
}

fn mkdir_tmp(tree: &Path) {
    let tmp = tree.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
}

/// A tree with the static busybox as /bin/busybox and every applet linked to
/// it, plus /tmp (1777). No /proc, /dev or /sys: the sandbox provides them.
fn busybox_tree(name: &str) -> PathBuf {
    require("busybox", "busybox-static");
    let busybox = Path::new("/bin/busybox");
    let file = run(Command::new("file").arg("-L").arg(busybox));
    assert!(
        text(&file.stdout).contains("statically linked"),
        "/bin/busybox must be the static one: apt-get install -y busybox-static"
    );
    let tree = fresh(name);
    std::fs::create_dir(tree.join("bin")).unwrap();
    std::fs::copy(busybox, tree.join("bin/busybox")).unwrap();
    let list = run(Command::new(busybox).arg("--list"));
    for applet in text(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    mkdir_tmp(&tree);
    tree
}

/// The shared read-only busybox tree (tests that write use their own).
fn busybox() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| busybox_tree("busybox"))
}

/// A tree of host files: /bin/sh is the host's dash, with the libraries and
/// the ELF interpreter `ldd` names, at the paths it names.
fn dash_tree(name: &str, with_interpreter: bool) -> PathBuf {
    let dash = Path::new("/usr/bin/dash");
    assert!(
        dash.exists(),
        "this test needs /usr/bin/dash: apt-get install -y dash"
    );
    let tree = fresh(name);
    std::fs::create_dir(tree.join("bin")).unwrap();
    std::fs::copy(dash, tree.join("bin/sh")).unwrap();
    let ldd = run(Command::new("ldd").arg(dash));
    ok(&ldd);
    let mut copied = 0;
    for line in text(&ldd.stdout).lines() {
        let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else {
            continue;
        };
        if !with_interpreter && path.contains("ld-linux") {
            continue;
        }
        let dest = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(path).unwrap(), &dest).unwrap();
        copied += 1;
    }
    assert!(
        copied >= 1,
        "ldd named no libraries:\n{}",
        text(&ldd.stdout)
    );
    mkdir_tmp(&tree);
    tree
}

/// Everything about a tree that a run could change: per path the type,
/// mode, owner, size, mtime, symlink target and content hash.
fn snapshot(tree: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(tree).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(e.path()).unwrap().display())
        } else if m.is_file() {
            format!(
                "file {:x}",
                Sha256::digest(std::fs::read(e.path()).unwrap())
            )
        } else {
            "dir".to_string()
        };
        let rel = e.path().strip_prefix(tree).unwrap().to_path_buf();
        out.insert(
            rel,
            format!(
                "{what} mode={:o} owner={}:{} size={} mtime={}.{}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ),
        );
    }
    out
}

// -------------------------------------------------------------- helpers ---

fn jail_run<I, S>(tree: &Path, opts: &[&str], cmd: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(jail().arg("run").arg(tree).args(opts).arg("--").args(cmd))
}

fn sh(tree: &Path, opts: &[&str], script: &str) -> Output {
    jail_run(tree, opts, ["sh", "-c", script])
}

#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Kill a spawned process if a test hangs, so that it fails instead.
fn watchdog(proc: &Proc, secs: u64) {
    let pid = proc.id() as i32;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    });
}

// ---------------------------------------------------------------- tests ---

#[test]
fn stdout_stderr_and_exit_status_pass_through() {
    for tree in [busybox().to_path_buf(), dash_tree("dash", true)] {
        let o = sh(&tree, &[], "echo out; echo err >&2; exit 7");
        code(&o, 7);
        assert_eq!(text(&o.stdout), "out\n");
        assert_eq!(text(&o.stderr), "err\n");
    }
    // stdin too.
    let mut p = jail()
        .args(["run"])
        .arg(busybox())
        .args(["--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    watchdog(&p, 30);
    p.stdin.take().unwrap().write_all(b"hello jail\n").unwrap();
    let o = p.wait_with_output().unwrap();
    ok(&o);
    assert_eq!(text(&o.stdout), "HELLO JAIL\n");
}

#[test]
fn a_command_killed_by_signal_n_exits_128_plus_n() {
    code(&sh(busybox(), &[], "kill -KILL $$"), 128 + 9);
    code(&sh(busybox(), &[], "kill -SEGV $$"), 128 + 11);
}

#[test]
fn sigterm_and_sigint_sent_to_jail_reach_the_command() {
    for (sig, name, want) in [(Signal::SIGTERM, "TERM", 3), (Signal::SIGINT, "INT", 4)] {
        let script = format!(
            "trap 'echo got {name}; exit {want}' {name}; echo ready; while :; do sleep 0.1; done"
        );
        let mut p = jail()
            .arg("run")
            .arg(busybox())
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        watchdog(&p, 30);
        let mut out = BufReader::new(p.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        kill(Pid::from_raw(p.id() as i32), sig).unwrap();
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        let status = p.wait().unwrap();
        assert_eq!(rest, format!("got {name}\n"));
        assert_eq!(status.code(), Some(want), "{name}");
    }
}

#[test]
fn the_command_is_pid_2_and_sees_only_the_sandbox_processes() {
    let o = sh(busybox(), &[], "echo $$; ls /proc; true");
    ok(&o);
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "the payload is pid 2 (init is 1)");
    let pids: Vec<u32> = lines.filter_map(|l| l.parse().ok()).collect();
    // init, sh, ls
    assert_eq!(pids, vec![1, 2, 3], "{out}");
    assert!(!out.lines().any(|l| l == std::process::id().to_string()));
}

#[test]
fn network_none_has_only_loopback_and_cannot_reach_host_services() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // `-e true`: connect, run `true` on the connection, exit 0.
    let script = format!("cat /proc/net/dev; if nc -w 1 127.0.0.1 {port} -e true; then echo CONNECTED; else echo REFUSED; fi");

    let o = sh(busybox(), &[], &script);
    ok(&o);
    let out = text(&o.stdout);
    let ifaces: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(i, _)| i.trim())
        .filter(|i| !i.contains('|'))
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{out}");
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the jail reached the host's loopback"
    );
    // The inside loopback is up and usable.
    let o = sh(busybox(), &[], "nc -l -p 7777 >/tmp/got & sleep 0.3; nc -w 1 127.0.0.1 7777 -e echo hi; sleep 0.3; cat /tmp/got");
    assert!(
        text(&o.stdout).contains("hi"),
        "loopback inside: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    // Control: with the host's network, the same connection succeeds.
    let o = sh(busybox(), &["--network", "host"], &script);
    assert!(
        text(&o.stdout).contains("CONNECTED"),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(listener.accept().is_ok());
}

#[test]
fn dev_has_working_nodes() {
    let o = sh(
        busybox(),
        &[],
        "head -c 4 /dev/urandom | wc -c; head -c 4 /dev/random | wc -c; echo x > /dev/null && echo null-ok; \
         head -c 3 /dev/zero | od -An -tx1; echo x > /dev/full || echo full-ok; test -c /dev/tty && echo tty-ok; \
         ls /dev/fd/ >/dev/null && echo fd-ok; touch /dev/shm/x && echo shm-ok",
    );
    ok(&o);
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        vec!["4", "4", "null-ok", "00 00 00", "full-ok", "tty-ok", "fd-ok", "shm-ok"],
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn sys_is_read_only() {
    let o = sh(busybox(), &[], "test -d /sys/class/net/lo && echo lo; touch /sys/x 2>/dev/null || echo ro; ls /sys/class/net");
    ok(&o);
    assert_eq!(text(&o.stdout), "lo\nro\nlo\n", "{}", text(&o.stderr));
}

#[test]
fn user_option_sets_the_ids() {
    let o = sh(
        busybox(),
        &["--user", "1000:1000"],
        "id -u; id -g; touch /tmp/mine; ls -n /tmp/mine",
    );
    ok(&o);
    let out = text(&o.stdout);
    assert!(out.starts_with("1000\n1000\n"), "{out}");
    assert!(
        out.contains(" 1000 "),
        "a file created by the user is theirs: {out}"
    );

    // Names come from the tree's own /etc/passwd and /etc/group.
    let tree = busybox_tree("busybox-users");
    std::fs::create_dir(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\napp:x:1234:4321::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/group"), "app:x:4321:\nextra:x:555:app\n").unwrap();
    let o = sh(&tree, &["--user", "app"], "id -u; id -g; id -G");
    ok(&o);
    assert_eq!(text(&o.stdout), "1234\n4321\n4321 555\n");
    let o = sh(&tree, &["--user", "nosuchuser"], "true");
    code(&o, 2);
    assert!(
        text(&o.stderr).contains("no user \"nosuchuser\""),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn env_is_only_path_plus_given_values_and_workdir_applies() {
    let o = jail_run(
        busybox(),
        &["--env", "GREETING=hi there", "--workdir", "/bin"],
        ["env"],
    );
    ok(&o);
    let mut vars: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    vars.sort();
    assert_eq!(
        vars,
        vec![
            "GREETING=hi there".to_string(),
            format!("PATH={}", sandbox::DEFAULT_PATH)
        ]
    );
    let o = jail_run(busybox(), &["--workdir", "/bin"], ["pwd"]);
    assert_eq!(text(&o.stdout), "/bin\n");
    let o = jail_run(busybox(), &["--hostname", "jailed"], ["hostname"]);
    assert_eq!(text(&o.stdout), "jailed\n");
    // The command has a UTS namespace of its own, and no CAP_SYS_ADMIN to
    // rename it (as in a container): the host's name stays.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let o = sh(
        busybox(),
        &[],
        "hostname renamed-inside 2>/dev/null && echo renamed || echo refused",
    );
    assert_eq!(text(&o.stdout), "refused\n", "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host
    );
    let o = jail_run(busybox(), &["--workdir", "/nonexistent"], ["pwd"]);
    code(&o, 2);
    assert!(
        text(&o.stderr).contains("/nonexistent"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn the_tree_is_unchanged_by_a_run_that_writes() {
    let tree = busybox_tree("busybox-untouched");
    let before = snapshot(&tree);
    let o = sh(
        &tree,
        &[],
        "echo hi > /tmp/new && echo x > /newfile && mkdir /d && rm /bin/cat && chmod 700 /bin && touch /bin/sh && \
         mkdir -p /proc/../etc && echo seen: $(busybox cat /newfile /tmp/new)",
    );
    ok(&o);
    assert_eq!(
        text(&o.stdout),
        "seen: x hi\n",
        "the run sees its own writes"
    );
    assert_eq!(snapshot(&tree), before, "the tree changed");
    for dir in ["proc", "dev", "sys", "etc", "d"] {
        assert!(!tree.join(dir).exists(), "{dir} was created in the tree");
    }
}

#[test]
fn writable_writes_through_to_the_tree() {
    let tree = busybox_tree("busybox-writable");
    let o = sh(
        &tree,
        &["--writable"],
        "echo hi > /written && rm /bin/cat && ls /proc/self >/dev/null",
    );
    ok(&o);
    assert_eq!(
        std::fs::read_to_string(tree.join("written")).unwrap(),
        "hi\n"
    );
    assert!(!tree.join("bin/cat").exists());
    // The mount points it needed are gone again.
    for dir in ["proc", "dev", "sys"] {
        assert!(!tree.join(dir).exists(), "{dir} left in the tree");
    }
}

/// Mount table lines that would betray a sandbox mount outside it.
fn sandbox_lines(mountinfo: &str, markers: &[&str]) -> Vec<String> {
    mountinfo
        .lines()
        .filter(|l| markers.iter().any(|m| l.contains(m)))
        .map(str::to_string)
        .collect()
}

#[test]
fn no_mount_leaks_to_the_host() {
    let tree = busybox();
    let tmp = test_dir("run/leak-tmp");
    let tree_s = tree.to_string_lossy().into_owned();
    let tmp_s = tmp.to_string_lossy().into_owned();
    let markers = [
        tree_s.as_str(),
        tmp_s.as_str(),
        "jail-scratch",
        "jail-dev",
        " - overlay jail ",
    ];

    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let o = run(jail().env("TMPDIR", &tmp).arg("run").arg(tree).args([
        "--",
        "sh",
        "-c",
        "mount | wc -l",
    ]));
    ok(&o);
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        sandbox_lines(&after, &markers).is_empty(),
        "{:?}",
        sandbox_lines(&after, &markers)
    );
    assert_eq!(
        before.lines().count(),
        after.lines().count(),
        "the host mount table changed"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "scratch directory left in TMPDIR"
    );

    // Even where / propagates mounts (shared), nothing comes back out.
    require("unshare", "util-linux");
    let script =
        r#"mount --make-rshared / && "$JAIL" run "$TREE" -- true && cat /proc/self/mountinfo"#;
    let o = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "unchanged",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("JAIL", jail_bin())
        .env("TREE", tree)
        .env("TMPDIR", &tmp));
    ok(&o);
    let table = text(&o.stdout);
    assert!(
        table.contains("shared:"),
        "the test needs a shared root:\n{table}"
    );
    assert!(
        sandbox_lines(&table, &markers).is_empty(),
        "{:?}",
        sandbox_lines(&table, &markers)
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "scratch directory left in TMPDIR"
    );
}

#[test]
fn a_missing_command_exits_127_naming_it() {
    let o = jail_run(busybox(), &[], ["no-such-program"]);
    code(&o, 127);
    let err = text(&o.stderr);
    assert!(
        err.contains("no-such-program")
            && err.contains("not found")
            && err.contains(&*busybox().to_string_lossy()),
        "{err}"
    );
    let o = jail_run(busybox(), &[], ["/usr/bin/nope"]);
    code(&o, 127);
    assert!(text(&o.stderr).contains("/usr/bin/nope"));
    // A program whose ELF interpreter is not in the tree says so.
    let tree = dash_tree("dash-no-ld", false);
    let o = jail_run(&tree, &[], ["sh", "-c", "true"]);
    code(&o, 127);
    assert!(
        text(&o.stderr).contains("interpreter"),
        "{}",
        text(&o.stderr)
    );
    // A file that is not executable: 126.
    let tree = busybox_tree("busybox-noexec");
    std::fs::write(tree.join("bin/data"), "not a program").unwrap();
    let o = jail_run(&tree, &[], ["/bin/data"]);
    code(&o, 126);
    assert!(text(&o.stderr).contains("/bin/data"), "{}", text(&o.stderr));
}

#[test]
fn bad_usage_exits_2() {
    let missing = test_dir("run").join("no-such-tree");
    let o = run(jail().arg("run").arg(&missing).args(["--", "true"]));
    code(&o, 2);
    assert!(
        text(&o.stderr).contains("no-such-tree"),
        "{}",
        text(&o.stderr)
    );
    let file = test_dir("run").join("a-file");
    std::fs::write(&file, "x").unwrap();
    // A file that is not a tree is read as an image, and is not one.
    let o = run(jail().arg("run").arg(&file).args(["--", "true"]));
    code(&o, 2);
    assert!(
        text(&o.stderr).contains("is not an image"),
        "{}",
        text(&o.stderr)
    );
    let o = run(jail().arg("run").arg(busybox()));
    code(&o, 2);
    assert!(text(&o.stderr).contains("CMD"), "{}", text(&o.stderr));
    let o = run(jail()
        .arg("run")
        .arg(busybox())
        .args(["--network", "bogus", "--", "true"]));
    code(&o, 2);
}

#[test]
fn a_non_root_user_runs_through_a_user_namespace() {
    require("setpriv", "util-linux");
    // The tree belongs to the user: a user namespace maps only the caller's
    // ids, and overlayfs cannot copy up files of unmapped owners.
    let tree = busybox_tree("busybox-nobody");
    for e in walkdir::WalkDir::new(&tree) {
        std::os::unix::fs::lchown(e.unwrap().path(), Some(65534), Some(65534)).unwrap();
    }
    let before = snapshot(&tree);
    let as_nobody = |opts: &[&str], script: &str| {
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(jail_bin())
            .arg("run")
            .arg(&tree)
            .args(opts)
            .args(["--", "sh", "-c", script]))
    };
    let o = as_nobody(&[], "id -u; echo $$; echo hi > /tmp/x && cat /tmp/x; grep -c : /proc/net/dev; test -c /dev/null && echo dev");
    ok(&o);
    assert_eq!(text(&o.stdout), "0\n2\nhi\n1\ndev\n", "{}", text(&o.stderr));
    let o = as_nobody(&["--user", "1000:1000"], "id -u; id -g");
    ok(&o);
    assert_eq!(text(&o.stdout), "1000\n1000\n");
    let o = as_nobody(&["--network", "host"], "test -d /sys/class && echo sys");
    ok(&o);
    assert_eq!(text(&o.stdout), "sys\n");
    assert_eq!(snapshot(&tree), before);
}

// ------------------------------------------------------ library & hooks ---

/// A pipe whose write end a hook can use without allocating.
fn marker_pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe().unwrap();
    (std::fs::File::from(r), std::fs::File::from(w))
}

fn write_hook(file: std::fs::File, what: &'static [u8]) -> sandbox::Hook {
    // SAFETY: the hook only writes static bytes to a pipe (one write
    // syscall; a short write to an empty pipe cannot happen), no allocation.
    unsafe { sandbox::Hook::new(move || (&file).write_all(what).map_err(|_| Errno::EIO)) }
}

#[test]
fn run_returns_the_exact_exit_status() {
    use std::os::unix::process::ExitStatusExt;
    let s = sandbox::run(&Spec::new(busybox(), ["sh", "-c", "exit 137"])).unwrap();
    assert_eq!((s.code(), s.signal()), (Some(137), None));
    let s = sandbox::run(&Spec::new(busybox(), ["sh", "-c", "kill -KILL $$"])).unwrap();
    assert_eq!((s.code(), s.signal()), (None, Some(9)));
    assert_eq!(sandbox::exit_code(&s), 137);
    let e = sandbox::run(&Spec::new(busybox(), ["nope"])).unwrap_err();
    assert!(matches!(e, SandboxError::CommandNotFound { .. }), "{e}");
    assert_eq!(e.exit_code(), 127);
}

#[test]
fn hooks_run_in_order_and_a_tracer_can_follow_the_payload_from_birth() {
    let (mut r, w) = marker_pipe();
    let hooks = Hooks {
        before_payload: Some(write_hook(w.try_clone().unwrap(), b"before;")),
        pre_exec: Some(write_hook(w, b"pre_exec;")),
    };
    let spec = Spec::new(busybox(), ["/bin/sh", "-c", "exit 5"]);
    let mut child = sandbox::spawn(&spec, hooks).unwrap();
    let init = child.pid();

    // Set up but held: init has no child yet.
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    assert_eq!(children.trim(), "", "the payload started before start()");

    let opts = ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_EXITKILL;
    ptrace::seize(init, opts).unwrap();
    child.start().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let st = waitpid(init, Some(WaitPidFlag::__WALL)).unwrap();
    let WaitStatus::PtraceEvent(_, _, ev) = st else {
        panic!("expected init's fork event, got {st:?}")
    };
    assert_eq!(ev, libc::PTRACE_EVENT_FORK);
    let payload = Pid::from_raw(ptrace::getevent(init).unwrap() as i32);
    ptrace::cont(init, None).unwrap();

    // The payload's first stop comes before it ran anything of its own.
    let st = waitpid(payload, Some(WaitPidFlag::__WALL)).unwrap();
    assert!(
        matches!(st, WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP)),
        "{st:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{payload}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t2"), "payload is pid 2 inside: {nspid}");
    ptrace::cont(payload, None).unwrap();

    let mut saw_exec = false;
    loop {
        assert!(Instant::now() < deadline, "timed out");
        match waitpid(payload, Some(WaitPidFlag::__WALL)).unwrap() {
            WaitStatus::PtraceEvent(p, _, libc::PTRACE_EVENT_EXEC) => {
                saw_exec = true;
                ptrace::cont(p, None).unwrap();
            }
            WaitStatus::PtraceEvent(p, _, _) => ptrace::cont(p, None).unwrap(),
            WaitStatus::Stopped(p, sig) => ptrace::cont(p, sig).unwrap(),
            WaitStatus::Exited(_, code) => {
                assert_eq!(code, 5);
                break;
            }
            other => panic!("payload: {other:?}"),
        }
    }
    assert!(
        saw_exec,
        "no exec event: the payload was not traced through its exec"
    );
    let init_status = loop {
        assert!(Instant::now() < deadline, "timed out");
        match waitpid(init, Some(WaitPidFlag::__WALL)).unwrap() {
            s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break s,
            WaitStatus::Stopped(p, sig) => ptrace::cont(p, sig).unwrap(),
            WaitStatus::PtraceEvent(p, _, _) => ptrace::cont(p, None).unwrap(),
            other => panic!("init: {other:?}"),
        }
    };
    assert_eq!(child.finish(init_status).unwrap().code(), Some(5));

    let mut marks = String::new();
    r.read_to_string(&mut marks).unwrap();
    assert_eq!(
        marks, "before;pre_exec;",
        "hooks ran out of order, or not at all"
    );
}

#[test]
fn a_failing_hook_is_reported() {
    let hooks = Hooks {
        // SAFETY: the hook returns an error without any work.
        pre_exec: Some(unsafe { sandbox::Hook::new(|| Err(Errno::EPERM)) }),
        ..Hooks::default()
    };
    let mut child = sandbox::spawn(&Spec::new(busybox(), ["true"]), hooks).unwrap();
    child.start().unwrap();
    let e = child.wait().unwrap_err();
    assert!(
        matches!(
            e,
            SandboxError::Hook {
                hook: "pre_exec",
                errno: Errno::EPERM
            }
        ),
        "{e}"
    );
}

#[test]
fn dropping_an_unstarted_child_kills_the_sandbox() {
    let (mut r, w) = marker_pipe();
    let child = sandbox::spawn(
        &Spec::new(busybox(), ["true"]),
        Hooks {
            before_payload: Some(write_hook(w, b"ran")),
            ..Hooks::default()
        },
    )
    .unwrap();
    let pid = child.pid();
    drop(child);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "init {pid} still exists"
    );
    let mut marks = String::new();
    r.read_to_string(&mut marks).unwrap();
    assert_eq!(marks, "", "the payload ran without start()");
}

#[test]
fn a_setup_error_names_the_step_and_path() {
    // /proc in the tree is a symlink: the sandbox refuses to mount through it.
    let tree = busybox_tree("busybox-proc-link");
    std::os::unix::fs::symlink("/etc", tree.join("proc")).unwrap();
    let e = sandbox::spawn(&Spec::new(&tree, ["true"]), Hooks::default())
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, SandboxError::NotADirectory { path } if path == Path::new("/proc")),
        "{e}"
    );
    let o = jail_run(&tree, &[], ["true"]);
    code(&o, 1);
    assert!(
        text(&o.stderr).contains("/proc in the root is not a directory"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_user_switch_works_while_the_caller_has_other_threads() {
    // glibc's setuid() in a child cloned from a multi-threaded process waits
    // for the parent's threads to follow it, forever. The sandbox must drop
    // credentials per thread, whatever threads its caller has.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let helper = std::thread::spawn(move || stop_rx.recv().ok());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut spec = Spec::new(busybox(), ["sh", "-c", "id -u; id -g"]);
        spec.user = Some(sandbox::User::new(1000, 1000));
        done_tx
            .send(sandbox::run_captured(&spec).map(|c| (c.status.code(), c.stdout)))
            .ok();
    });
    let got = done_rx.recv_timeout(Duration::from_secs(60));
    stop_tx.send(()).unwrap();
    helper.join().unwrap();
    let (code, stdout) = got
        .expect("the sandboxed command did not finish within 60 s: the user switch hung")
        .unwrap();
    assert_eq!((code, text(&stdout)), (Some(0), "1000\n1000\n".to_string()));
}
