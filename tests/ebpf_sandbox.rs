//! The ebpf backend run through the library, in the test process: inside
//! an image's sandbox (`jail slim`'s way of running a command), where paths
//! are in-root and the same as ptrace's, and beside another thread that
//! forks. A test binary of its own: the tracer runs in the test process and
//! reaps every child of it, which would steal other tests' children.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use jail::trace::{AccessKind, AccessLog};

type Summary = BTreeMap<PathBuf, (BTreeSet<AccessKind>, bool)>;

fn summary(log: &AccessLog) -> Summary {
    log.files
        .iter()
        .map(|(p, a)| (p.0.clone(), (a.kinds.clone(), a.existed)))
        .collect()
}

/// The tracer reaps every child of this process: the tests that trace here
/// and the one that runs child processes take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn inside_an_image_sandbox_paths_are_in_root() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A root with one static program: no loader, no libraries.
    let root = test_dir("ebpf-sandbox-root");
    let ops = root.join("ops");
    if !ops.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trace_ops.c");
        ok(&run(Command::new("gcc")
            .args(["-O1", "-static", "-o"])
            .arg(&ops)
            .arg(&src)));
    }
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/data.txt"), "in the image\n").unwrap();
    let argv = [
        "/ops",
        "open",
        "/sub/data.txt",
        "chdir",
        "/sub",
        "open-rel",
        "data.txt",
        "stat",
        "/not-there",
    ];
    let mut logs = Vec::new();
    let mut trees = Vec::new();
    for backend in [jail::trace::Backend::Ptrace, jail::trace::Backend::Ebpf] {
        let mut o = jail::trace::TraceOptions::new(argv.iter().map(Into::into).collect());
        o.backend = backend;
        o.env = vec![("PATH".into(), "/".into())];
        o.cwd = Some("/".into());
        o.sandbox = Some(jail::trace::SandboxRun {
            root: root.clone(),
            user: None,
            network: jail::sandbox::Network::None,
            started: None,
        });
        let log = jail::trace::trace(&o).unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert!(log.exit.success(), "{backend:?}: {}", log.exit);
        logs.push(summary(&log));
        trees.push(process_tree(&log));
    }
    // The one allowed difference: ptrace's filter is installed before the
    // sandbox's payload changes to its working directory, so ptrace records
    // that chdir (`/`, stat); the ebpf backend starts at the exec.
    assert_eq!(
        logs[0].remove(Path::new("/")),
        Some(([AccessKind::Stat].into(), true))
    );
    assert_eq!(logs[0], logs[1]);
    // The same tree: the sandbox's init (no exec), the command below it.
    assert_eq!(trees[0], trees[1]);
    assert!(trees[1].contains("/ops"), "{}", trees[1]);
    let data = logs[1]
        .get(Path::new("/sub/data.txt"))
        .expect("in-root path");
    assert_eq!(data.0, [AccessKind::Read].into());
    assert!(logs[1].contains_key(Path::new("/not-there")));
    // Nothing of the sandbox's own setup (host paths) leaked in.
    assert!(
        !logs[1].keys().any(|p| p.starts_with(&root)),
        "{:?}",
        logs[1].keys()
    );
}

/// The kernel side claims the first fork of the thread that launches the
/// command, not of any thread of jail's process: another thread forking in
/// a loop meanwhile never becomes the command.
#[test]
fn another_threads_fork_is_not_the_command() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let forker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // The tracer may reap this child first: its status is moot.
                let _ = Command::new("/bin/true").status();
            }
        })
    };
    for _ in 0..5 {
        let mut o = jail::trace::TraceOptions::new(vec!["/bin/echo".into(), "traced".into()]);
        o.backend = jail::trace::Backend::Ebpf;
        o.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
        o.cwd = Some("/".into());
        let log = jail::trace::trace(&o).unwrap_or_else(|e| panic!("{e}"));
        let tree = process_tree(&log);
        assert_eq!(log.processes.len(), 1, "{tree}");
        assert!(tree.contains("echo"), "{tree}");
        assert!(!tree.contains("true"), "{tree}");
        assert!(
            !log.files.keys().any(|p| p.0.ends_with("true")),
            "another thread's child was traced: {tree}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    forker.join().unwrap();
}

/// The environment variable that makes [`sigkill_body`] run.
const SIGKILL_ROOT: &str = "JAIL_TEST_EBPF_SIGKILL_ROOT";

/// Not a test on its own: the jail that [`sigkill_of_jail_kills_the_sandbox`]
/// runs in a child process of this binary and kills. Without the variable it
/// returns at once.
#[test]
#[ignore = "run by sigkill_of_jail_kills_the_sandbox in a child process"]
fn sigkill_body() {
    let Some(root) = std::env::var_os(SIGKILL_ROOT) else {
        return;
    };
    let argv = ["/usr/bin/sh", "-c", "sleep 30 & sleep 30"];
    let mut o = jail::trace::TraceOptions::new(argv.iter().map(Into::into).collect());
    o.backend = jail::trace::Backend::Ebpf;
    o.env = vec![("PATH".into(), "/usr/bin".into())];
    o.cwd = Some("/".into());
    o.sandbox = Some(jail::trace::SandboxRun {
        root: root.into(),
        user: None,
        network: jail::sandbox::Network::None,
        started: None,
    });
    let _ = jail::trace::trace(&o);
}

/// jail killed with SIGKILL while tracing in a sandbox: the sandbox's init
/// (PR_SET_PDEATHSIG), the command and its background child all end.
#[test]
fn sigkill_of_jail_kills_the_sandbox() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A root with sh and sleep: jail's own tree of them (made once).
    let root = test_dir("ebpf-sandbox-sh").join("root");
    if !root.join("usr/bin/sleep").exists() {
        let _ = fs::remove_dir_all(&root);
        ok(&run(jail()
            .args(["trace", "--no-image", "--tree"])
            .arg(&root)
            .args(["--", "/usr/bin/sh", "-c", "sleep 0 & sleep 0"])));
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sigkill_body",
            "--exact",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(SIGKILL_ROOT, &root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Bounded: init, sh below it, and both sleeps below sh.
    let deadline = Instant::now() + Duration::from_secs(30);
    let procs = loop {
        let found = children(pid).into_iter().find_map(|init| {
            let sh = *children(init).first()?;
            let sleeps = children(sh);
            (sleeps.len() == 2).then(|| [vec![init, sh], sleeps].concat())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "the sandbox never ran sh");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = procs.iter().copied().filter(|&p| running(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after jail was killed: {left:?} of {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
