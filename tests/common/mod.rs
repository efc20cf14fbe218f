//! Shared test support: the built binary, C fixtures compiled at test time,
//! required tools (a missing one fails the test with how to install it), and a
//! podman wrapper that never touches the machine's image store.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The `jail` binary built for this test run.
pub fn jail_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jail"))
}

/// A `Command` for the `jail` binary.
pub fn jail() -> Command {
    Command::new(jail_bin())
}

/// Fail (never skip) when `tool` is missing, saying which package has it.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "this test needs `{tool}`: install it with `apt-get install -y {package}` (scripts/test.sh does this)");
}

/// Directory for build products of the tests, under target/.
pub fn test_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-data")
        .join(name);
    std::fs::create_dir_all(&d).expect("create target/test-data");
    d
}

static COMPILE: Mutex<()> = Mutex::new(());

/// Compile `tests/fixtures/<name>.c` (once per source change) and return the
/// executable. `flags` go to gcc after the source (e.g. `-pthread`).
pub fn fixture(name: &str, flags: &[&str]) -> PathBuf {
    require("gcc", "gcc");
    let _g = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let out = test_dir("fixtures").join(name);
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        let o = Command::new("gcc")
            .args(["-O1", "-g", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .args(flags)
            .output()
            .expect("run gcc");
        assert!(
            o.status.success(),
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    out
}

/// Run a command, returning its output; panics with stderr when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Output as text (lossy), for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Assert success, showing stdout and stderr otherwise.
#[track_caller]
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// podman with a private store under a temp dir, runc, and the explicit
/// ulimits this machine needs (docs: ENVIRONMENT.md).
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        require("podman", "podman");
        require("runc", "runc");
        let dir = tempfile::Builder::new()
            .prefix("jail-podman")
            .tempdir()
            .expect("tempdir");
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\n",
        )
        .expect("write containers.conf");
        Podman { dir }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"));
        c.arg("--root").arg(self.dir.path().join("root"));
        c.arg("--runroot").arg(self.dir.path().join("runroot"));
        // libpod's per-boot directory (exit files of running containers,
        // the `alive` marker) is /run/libpod for every instance unless set:
        // one test's `system reset` (in Drop) deleted it under another
        // test's `podman run --rm`, which then failed with "no such exit
        // code (container in state running)".
        c.arg("--tmpdir").arg(self.dir.path().join("tmp"));
        c.arg("--storage-driver").arg("vfs");
        c
    }

    /// `podman load -i FILE`, returning the loaded image reference(s).
    pub fn load(&self, archive: &Path) -> String {
        let o = run(self.cmd().arg("load").arg("-i").arg(archive));
        ok(&o);
        text(&o.stdout)
    }

    /// `podman run --rm --network none IMAGE ARGS…`.
    pub fn run<I, S>(&self, image: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self
            .cmd()
            .args(["run", "--rm", "--network", "none"])
            .arg(image)
            .args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers may hold read-only dirs; podman's own cleanup first.
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
    }
}

/// `apt-get install PACKAGES` inside a Debian root (with the host's
/// resolv.conf and /proc while it runs), then `apt-get clean`.
pub fn apt_install_in(root: &Path, packages: &[&str]) {
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).expect("resolv.conf");
    let proc_ = root.join("proc");
    ok(&run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(&proc_)));
    let install = run(Command::new("chroot")
        .arg(root)
        .args(["apt-get", "install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let _ = run(Command::new("chroot").arg(root).args(["apt-get", "clean"]));
    let _ = run(Command::new("umount").arg(&proc_));
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));
    assert!(
        install.status.success(),
        "apt-get install {} in the debootstrap root {} failed:\n{}",
        packages.join(" "),
        root.display(),
        text(&install.stderr)
    );
}

/// A Debian bookworm minbase root with python3, made with debootstrap once
/// and cached under target/test-data (building it takes about a minute and
/// needs the Debian mirror this machine uses). Returns the root directory.
pub fn debian_root() -> PathBuf {
    require("debootstrap", "debootstrap");
    let dir = test_dir("debian-bookworm-python3");
    let root = dir.join("root");
    let done = dir.join(".complete");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    if done.exists() {
        return root;
    }
    if root.exists() {
        let _ = std::fs::remove_dir_all(&root);
    }
    let mirror = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("URIs:")
                    .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
            })
        })
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let o = run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(&mirror));
    assert!(
        o.status.success(),
        "debootstrap failed:\n{}",
        text(&o.stderr)
    );
    apt_install_in(&root, &["python3"]);
    std::fs::write(&done, "").expect("mark the root complete");
    root
}

/// Unpack the layers of an OCI archive written by jail, in order, into
/// `dir` (jail's layers hold no whiteouts).
#[allow(dead_code)]
pub fn unpack_layers(archive: &Path, dir: &Path) {
    let outer = dir.with_extension("outer");
    std::fs::create_dir_all(&outer).unwrap();
    ok(&run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&outer)));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outer.join("manifest.json")).unwrap()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for layer in m[0]["Layers"].as_array().unwrap() {
        ok(&run(Command::new("tar")
            .args(["--numeric-owner", "-xzf"])
            .arg(outer.join(layer.as_str().unwrap()))
            .arg("-C")
            .arg(dir)));
    }
    let _ = std::fs::remove_dir_all(&outer);
}

/// A traced run's process tree in a form two runs can be compared by: no
/// pids, each process as its execs (path, argv), thread count, exit and
/// ids, its children sorted below it. A `#!` script's argv[0] is left out:
/// the ebpf backend logs the script's path there, ptrace the caller's
/// argv[0] (docs/tracing.md, "The ebpf backend").
pub fn process_tree(log: &jail::trace::AccessLog) -> String {
    use std::collections::BTreeMap;
    let mut children: BTreeMap<i32, Vec<&jail::trace::log::Process>> = BTreeMap::new();
    let pids: std::collections::BTreeSet<i32> = log.processes.iter().map(|p| p.pid).collect();
    for p in &log.processes {
        let parent = if pids.contains(&p.ppid) { p.ppid } else { 0 };
        children.entry(parent).or_default().push(p);
    }
    fn node(
        p: &jail::trace::log::Process,
        children: &BTreeMap<i32, Vec<&jail::trace::log::Process>>,
        root: &Path,
    ) -> String {
        let execs: Vec<String> = p
            .execs
            .iter()
            .map(|e| {
                let host = root.join(e.path.strip_prefix("/").unwrap_or(&e.path));
                let script = std::fs::read(&host).is_ok_and(|b| b.starts_with(b"#!"));
                let argv = if script {
                    &e.argv[1.min(e.argv.len())..]
                } else {
                    &e.argv[..]
                };
                format!("{} {:?}", e.path.display(), argv)
            })
            .collect();
        let mut kids: Vec<String> = children
            .get(&p.pid)
            .map(|v| v.iter().map(|c| node(c, children, root)).collect())
            .unwrap_or_default();
        kids.sort();
        format!(
            "{{execs {execs:?} threads {} exit {:?} uids {:?} gids {:?} children [{}]}}",
            p.threads,
            p.exit,
            p.uids,
            p.gids,
            kids.join(", ")
        )
    }
    let mut roots: Vec<String> = children
        .get(&0)
        .map(|v| v.iter().map(|c| node(c, &children, &log.root)).collect())
        .unwrap_or_default();
    roots.sort();
    roots.join("\n")
}

/// A minimal static i386 ELF executable that calls exit(0) through int $0x80.
pub fn tiny_i386_elf() -> Vec<u8> {
    let code: &[u8] = &[0xb8, 1, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80]; // mov eax,1; xor ebx,ebx; int 0x80
    let base: u32 = 0x0804_8000;
    let (ehsize, phsize) = (52u16, 32u16);
    let total = u32::from(ehsize + phsize) + code.len() as u32;
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(base + u32::from(ehsize + phsize)).to_le_bytes()); // entry
    f.extend_from_slice(&u32::from(ehsize).to_le_bytes()); // phoff
    f.extend_from_slice(&0u32.to_le_bytes()); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [ehsize, phsize, 1, 40, 0, 0] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 0, base, base, total, total, 5, 0x1000] {
        f.extend_from_slice(&v.to_le_bytes()); // PT_LOAD, R+X
    }
    f.extend_from_slice(code);
    f
}

/// The children of `pid` (all its threads'), from /proc, sorted.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `pid` still runs (a zombie has ended; the test's pid 1 may not
/// reap the orphans).
pub fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rfind(')') {
        Some(i) => !stat[i + 1..].trim_start().starts_with(['Z', 'X']),
        None => false,
    }
}
