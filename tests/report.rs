//! `jail report`: a fixture image with one of each risky thing (setuid,
//! cap_net_raw, a world-writable directory, a shell, a non-PIE binary…)
//! reviewed as an image and as a tree, text and JSON; `--against` on a
//! slimmed copy; the seccomp profile of a python3 trace run in podman, and
//! shown to restrict; package attribution against `dpkg -S`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// Compile tests/fixtures/report_hello.c into `out` with `flags`.
fn cc(out: &Path, flags: &[&str]) {
    require("gcc", "gcc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report_hello.c");
    let o = run(Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(out)
        .arg(&src)
        .args(flags));
    assert!(o.status.success(), "gcc: {}", text(&o.stderr));
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with one of each finding:
/// - `/usr/bin/suid_tool` setuid root (PIE);
/// - `/usr/bin/pinger` with `cap_net_raw+ep`;
/// - `/data` world-writable without the sticky bit, `/etc/motd` world-writable;
/// - `/usr/bin/dash` a shell by name, `/usr/libexec/impl` one by the
///   symlink `/bin/sh` leading to it;
/// - `/usr/bin/nopie` built with `-no-pie`;
/// - `/usr/bin/rpathy` with RUNPATH `lib:/data` (relative, world-writable);
/// - a dpkg database owning some of them.
fn fixture_tree(dir: &Path) -> PathBuf {
    require("setcap", "libcap2-bin");
    let t = dir.join("tree");
    for d in [
        "usr/bin",
        "usr/libexec",
        "bin",
        "etc",
        "data",
        "var/lib/dpkg/info",
    ] {
        fs::create_dir_all(t.join(d)).unwrap();
    }
    let bin = t.join("usr/bin");
    cc(&bin.join("suid_tool"), &[]);
    chmod(&bin.join("suid_tool"), 0o4755);
    cc(&bin.join("pinger"), &[]);
    let o = run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(bin.join("pinger")));
    assert!(o.status.success(), "setcap: {}", text(&o.stderr));
    cc(&bin.join("nopie"), &["-no-pie"]);
    cc(&bin.join("rpathy"), &["-Wl,-rpath,lib:/data"]);
    fs::copy("/usr/bin/dash", bin.join("dash")).unwrap();
    fs::copy("/usr/bin/dash", t.join("usr/libexec/impl")).unwrap();
    symlink("../usr/libexec/impl", t.join("bin/sh")).unwrap();
    chmod(&t.join("data"), 0o777);
    fs::write(t.join("etc/motd"), "hi\n").unwrap();
    chmod(&t.join("etc/motd"), 0o666);
    let info = t.join("var/lib/dpkg/info");
    fs::write(
        info.join("dash.list"),
        "/.\n/usr\n/usr/bin\n/usr/bin/dash\n",
    )
    .unwrap();
    fs::write(
        info.join("tools.list"),
        "/.\n/usr\n/usr/bin\n/usr/bin/nopie\n/usr/bin/pinger\n/usr/bin/suid_tool\n",
    )
    .unwrap();
    fs::write(
        t.join("var/lib/dpkg/status"),
        "Package: dash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.5.12-2\n\nPackage: tools\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n",
    )
    .unwrap();
    t
}

fn pack(tree: &Path, out: &Path) {
    let o = run(jail().arg("pack").arg(tree).arg("-o").arg(out));
    ok(&o);
}

fn report(args: &[&std::ffi::OsStr]) -> Output {
    run(jail().arg("report").args(args))
}

fn json_of(o: &Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("report --json is not JSON ({e}):\n{}", text(&o.stdout)))
}

fn file<'a>(r: &'a Value, path: &str) -> &'a Value {
    r["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the report"))
}

fn has_finding(r: &Value, kind: &str, path: &str) -> bool {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == kind && f["path"] == path)
}

/// Each (kind, path, detail) must be a finding in the JSON, a flag of the
/// file, and a line of the text's findings table.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("setuid", "/usr/bin/suid_tool", "mode 4755"),
    ("capability", "/usr/bin/pinger", "cap_net_raw+ep"),
    ("world-writable-dir", "/data", "mode 0777"),
    ("world-writable", "/etc/motd", "mode 0666"),
    ("shell", "/usr/bin/dash", "a shell"),
    ("shell", "/usr/libexec/impl", "reached as /bin/sh"),
    ("no-pie", "/usr/bin/nopie", "not position independent"),
    ("insecure-rpath", "/usr/bin/rpathy", "\"lib\": relative"),
    (
        "insecure-rpath",
        "/usr/bin/rpathy",
        "/data is world-writable",
    ),
];

fn check_findings(r: &Value, human: &str, label: &str) {
    for (kind, path, detail) in EXPECTED {
        let f = r["findings"].as_array().unwrap().iter().find(|f| {
            f["kind"] == *kind
                && f["path"] == *path
                && f["detail"].as_str().unwrap().contains(detail)
        });
        assert!(
            f.is_some(),
            "{label}: no {kind} finding for {path} ({detail}) in the JSON"
        );
        assert!(
            file(r, path)["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == *kind),
            "{label}: {path} is not flagged {kind}"
        );
        assert!(
            human
                .lines()
                .any(|l| l.contains(kind) && l.contains(path) && l.contains(detail)),
            "{label}: no `{kind} {path} … {detail}` line in the text:\n{human}"
        );
    }
    // Negative controls: a PIE binary is not no-pie, a plain file is not
    // world-writable, a shell's symlink is not a finding of its own.
    assert!(!has_finding(r, "no-pie", "/usr/bin/suid_tool"), "{label}");
    assert!(!has_finding(r, "no-pie", "/usr/bin/pinger"), "{label}");
    assert!(!has_finding(r, "shell", "/bin/sh"), "{label}");
    assert!(!has_finding(r, "setuid", "/usr/bin/nopie"), "{label}");
    // Per-file facts.
    let s = file(r, "/usr/bin/suid_tool");
    assert_eq!(
        (s["mode"].as_str(), s["uid"].as_u64()),
        (Some("4755"), Some(0))
    );
    assert_eq!(s["type"], "file");
    assert!(s["sha256"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(s["elf"]["pie"], true);
    assert_eq!(file(r, "/usr/bin/nopie")["elf"]["pie"], false);
    assert_eq!(file(r, "/usr/bin/pinger")["capability"], "cap_net_raw+ep");
    assert_eq!(file(r, "/bin/sh")["target"], "../usr/libexec/impl");
    assert_eq!(
        file(r, "/usr/bin/rpathy")["elf"]["runpath"],
        serde_json::json!(["lib", "/data"])
    );
    // The image's own dpkg database attributes files.
    assert_eq!(
        file(r, "/usr/bin/dash")["packages"],
        serde_json::json!(["dash"])
    );
    assert_eq!(r["summary"]["packages"]["packages"], 2, "{label}");
    assert_eq!(r["summary"]["packages"]["files"], 4, "{label}");
    assert!(
        human.contains("uses 4 files of 2 packages"),
        "{label}:\n{human}"
    );
    let counts = &r["summary"]["findings"];
    assert_eq!(counts["shell"], 2, "{label}");
    assert_eq!(counts["setuid"], 1, "{label}");
    // Summary before the table.
    let (sum, table) = (
        human.find("findings:").unwrap(),
        human.find("\nfiles\n").unwrap(),
    );
    assert!(sum < table, "{label}: the summary comes first");
    // No manifest: reasons unknown, and said so.
    assert_eq!(r["subject"]["reasons_known"], false);
    assert!(s["reasons"].is_null());
    assert!(human.contains("reasons unknown"), "{label}");
}

#[test]
fn fixture_image_findings_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let tree = fixture_tree(dir.path());
    let image = dir.path().join("fixture.tar");
    pack(&tree, &image);
    for (label, subject) in [("image", image.as_os_str()), ("tree", tree.as_os_str())] {
        let human = report(&[subject]);
        ok(&human);
        let r = json_of(&report(&[subject, "--json".as_ref()]));
        assert_eq!(r["version"], 1);
        assert_eq!(r["subject"]["kind"], label);
        if label == "image" {
            // Its own database, named by the image (not its temporary root).
            assert_eq!(r["subject"]["packages_from"], subject.to_str().unwrap());
        }
        check_findings(&r, &text(&human.stdout), label);
    }
}

#[test]
fn against_says_what_slimming_removed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let tree = fixture_tree(dir.path());
    let original = dir.path().join("fat.tar");
    pack(&tree, &original);
    // The slim jail keeps the capability binary and the non-PIE one; no
    // package database (a jail has none): the original's attributes it.
    let slim = dir.path().join("slim");
    fs::create_dir_all(slim.join("usr/bin")).unwrap();
    for f in ["pinger", "nopie"] {
        let to = slim.join("usr/bin").join(f);
        fs::copy(tree.join("usr/bin").join(f), &to).unwrap();
    }
    ok(&run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(slim.join("usr/bin/pinger"))));
    let slim_image = dir.path().join("slim.tar");
    pack(&slim, &slim_image);

    let args = [
        "--against".as_ref(),
        original.as_os_str(),
        slim_image.as_os_str(),
    ];
    let r = json_of(&report(&[&args[..], &["--json".as_ref()]].concat()));
    let a = &r["against"];
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        list(&a["kinds"]["shell"]["removed"]),
        ["/usr/bin/dash", "/usr/libexec/impl"]
    );
    assert!(list(&a["kinds"]["shell"]["kept"]).is_empty());
    assert_eq!(
        list(&a["kinds"]["setuid"]["removed"]),
        ["/usr/bin/suid_tool"]
    );
    assert_eq!(list(&a["kinds"]["capability"]["kept"]), ["/usr/bin/pinger"]);
    assert_eq!(
        list(&a["kinds"]["world-writable-dir"]["removed"]),
        ["/data"]
    );
    assert_eq!(list(&a["packages"]["removed"]), ["dash"]);
    assert_eq!(list(&a["packages"]["kept"]), ["tools"]);
    assert_eq!(a["paths"]["slim"], 4); // /usr, /usr/bin and two files
    assert_eq!(a["paths"]["kept"], 4);
    assert_eq!(
        a["paths"]["removed"].as_u64().unwrap() + 4,
        a["paths"]["original"].as_u64().unwrap()
    );
    // The slim image's files are attributed with the original's database.
    assert_eq!(r["subject"]["packages_from"], original.to_str().unwrap());
    assert_eq!(a["original"]["name"], original.to_str().unwrap());
    assert_eq!(
        file(&r, "/usr/bin/pinger")["packages"],
        serde_json::json!(["tools"])
    );

    let human = report(&args);
    ok(&human);
    let h = text(&human.stdout);
    for want in [
        "shell: removed 2 of 2 (/usr/bin/dash, /usr/libexec/impl); kept 0",
        "setuid: removed 1 of 1 (/usr/bin/suid_tool); kept 0",
        "capability: removed 0 of 1; kept 1 (/usr/bin/pinger)",
        "packages: kept 1 of 2 (tools); removed 1 (dash)",
    ] {
        assert!(h.contains(want), "no {want:?} in:\n{h}");
    }
}

/// The syscall names of a profile, every rule together.
fn allowed(profile: &Value) -> BTreeSet<String> {
    profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// `profile` with `keep` deciding which names stay.
fn filtered(profile: &Value, keep: impl Fn(&str, usize) -> bool) -> Value {
    let mut p = profile.clone();
    for (i, rule) in p["syscalls"].as_array_mut().unwrap().iter_mut().enumerate() {
        let names: Vec<Value> = rule["names"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| keep(n.as_str().unwrap(), i))
            .cloned()
            .collect();
        rule["names"] = Value::Array(names);
    }
    p
}

#[test]
fn seccomp_profile_runs_python_and_restricts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // stdout to a file: python fstat()s it, and that file must not join the jail.
    let out_file = d.join("stdout.txt");
    let o = run(jail()
        .current_dir(d)
        .args([
            "trace",
            "--syscalls",
            "--manifest",
            "m.json",
            "-o",
            "py.tar",
            "--",
        ])
        .args(["/usr/bin/python3", "-c", "print(1)"])
        .stdout(fs::File::create(&out_file).unwrap()));
    ok(&o);
    assert_eq!(fs::read_to_string(&out_file).unwrap(), "1\n");
    let m: Value = serde_json::from_slice(&fs::read(d.join("m.json")).unwrap()).unwrap();
    let counts = m["trace"]["syscalls"].as_object().expect("syscall counts");
    // The counts look like strace's for this command: every mmap, and the
    // fstat-like calls counted (as newfstatat) though not recorded as paths.
    assert!(counts["mmap"].as_u64().unwrap() >= 10, "{counts:?}");
    assert!(counts["newfstatat"].as_u64().unwrap() >= 20, "{counts:?}");
    assert_eq!(counts["execve"], 1);
    assert!(
        !m["trace"]["files"]
            .as_object()
            .unwrap()
            .contains_key(out_file.to_str().unwrap()),
        "the redirected stdout was recorded as a file of the run"
    );

    let profile_path = d.join("profile.json");
    let o = report(&[
        "--seccomp".as_ref(),
        profile_path.as_os_str(),
        d.join("m.json").as_os_str(),
    ]);
    ok(&o);
    let bytes = fs::read(&profile_path).unwrap();
    let profile: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(profile["defaultErrnoRet"], 1);
    assert_eq!(
        profile["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64"])
    );
    let names = allowed(&profile);
    for n in counts.keys() {
        assert!(names.contains(n), "traced {n} is not allowed");
    }
    for n in ["capset", "setgroups", "fstatfs", "getppid"] {
        assert!(names.contains(n), "runtime syscall {n} is missing");
    }
    assert!(!names.contains("ptrace") && !names.contains("mount") && !names.contains("socket"));
    // Canonical: the same manifest gives the same bytes.
    let again = d.join("again.json");
    ok(&report(&[
        "--seccomp".as_ref(),
        again.as_os_str(),
        d.join("m.json").as_os_str(),
    ]));
    assert_eq!(fs::read(&again).unwrap(), bytes);

    let podman = Podman::new();
    let loaded = podman.load(&d.join("py.tar"));
    let reference = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("no reference in {loaded:?}"))
        .trim()
        .to_string();
    let run_with = |p: &Path| {
        run(podman
            .cmd()
            .args(["run", "--rm", "--network", "none", "--security-opt"])
            .arg(format!("seccomp={}", p.display()))
            .arg(&reference))
    };
    let o = run_with(&profile_path);
    ok(&o);
    assert_eq!(text(&o.stdout), "1\n", "under the profile");

    // Without mmap the program cannot run: the profile is real.
    let no_mmap = d.join("no-mmap.json");
    fs::write(&no_mmap, filtered(&profile, |n, _| n != "mmap").to_string()).unwrap();
    let o = run_with(&no_mmap);
    assert!(
        !o.status.success() && text(&o.stdout) != "1\n",
        "python ran without mmap: {o:?}"
    );
    // Without the runtime's syscalls the container does not even start.
    let traced_only = d.join("traced-only.json");
    fs::write(
        &traced_only,
        filtered(&profile, |_, rule| rule == 0).to_string(),
    )
    .unwrap();
    let o = run_with(&traced_only);
    assert!(
        !o.status.success(),
        "runc started with the traced syscalls only: {o:?}"
    );

    // Only x86_64 is listed: a 32-bit syscall (int $0x80) kills the
    // process, though the same name is allowed for x86_64. Docker's three
    // architectures would let it through.
    let tree = d.join("int80");
    fs::create_dir_all(&tree).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trace_int80.c");
    let o = run(Command::new("gcc")
        .args(["-O1", "-static", "-o"])
        .arg(tree.join("int80"))
        .arg(&src));
    assert!(o.status.success(), "gcc -static: {}", text(&o.stderr));
    let int80 = d.join("int80.tar");
    ok(&run(jail()
        .arg("pack")
        .arg(&tree)
        .arg("-o")
        .arg(&int80)
        .args([
            "--entrypoint",
            "/int80",
            "--tag",
            "jail-test/int80:latest",
        ])));
    podman.load(&int80);
    let mut with_getpid = profile.clone();
    with_getpid["syscalls"][0]["names"]
        .as_array_mut()
        .unwrap()
        .push("getpid".into());
    let p64 = d.join("getpid.json");
    fs::write(&p64, with_getpid.to_string()).unwrap();
    let mut all_arches = with_getpid.clone();
    all_arches["architectures"] =
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let p3 = d.join("three-arches.json");
    fs::write(&p3, all_arches.to_string()).unwrap();
    let run_int80 = |p: &Path| {
        run(podman
            .cmd()
            .args(["run", "--rm", "--network", "none", "--security-opt"])
            .arg(format!("seccomp={}", p.display()))
            .arg("jail-test/int80:latest"))
    };
    let o = run_int80(&p3);
    ok(&o);
    assert!(text(&o.stdout).trim().parse::<i64>().unwrap() > 0, "{o:?}");
    let o = run_int80(&p64);
    assert_eq!(
        o.status.code(),
        Some(128 + libc::SIGSYS),
        "a 32-bit syscall was not killed: {o:?}"
    );
}

#[test]
fn seccomp_needs_syscall_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&run(jail().current_dir(d).args([
        "trace",
        "--no-image",
        "--manifest",
        "m.yaml",
        "--",
        "/bin/true",
    ])));
    let out = d.join("p.json");
    let o = report(&[
        "--seccomp".as_ref(),
        out.as_os_str(),
        d.join("m.yaml").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        text(&o.stderr).contains("jail trace --syscalls"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists(), "a profile was written anyway");

    let o = report(&[d.join("nope.tar").as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(text(&o.stderr).contains("nope.tar"), "{}", text(&o.stderr));
}

/// Listed paths of every package on this machine, with the diverted ones
/// (whose owner `dpkg -S` cannot tell) left out.
fn dpkg_lists(admin: &Path) -> BTreeMap<String, Vec<String>> {
    let diversions: BTreeSet<String> = fs::read_to_string(admin.join("diversions"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut out = BTreeMap::new();
    let mut names: Vec<_> = fs::read_dir(admin.join("info"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".list"))
        .collect();
    names.sort();
    for n in names {
        let Ok(body) = fs::read_to_string(admin.join("info").join(&n)) else {
            continue;
        };
        let paths: Vec<String> = body
            .lines()
            .filter(|p| p.starts_with('/') && !diversions.contains(*p))
            .map(str::to_string)
            .collect();
        out.insert(n.trim_end_matches(".list").to_string(), paths);
    }
    out
}

/// 50 files spread over the packages, 10 of them named through a
/// usr-merge symlink (`/bin/…`, `/lib/…`): deterministic for a given
/// machine. Each is (listed path, physical path).
fn sample(lists: &BTreeMap<String, Vec<String>>, root: &Path) -> Vec<(String, PathBuf)> {
    let on_host = |p: &str| root.join(p.trim_start_matches('/'));
    let usable = |p: &str| {
        !p.contains(['*', '?', '[', '\\', ' '])
            && !["/dev/", "/run/", "/proc/", "/sys/", "/tmp/", "/etc/ssl/private"]
                .iter()
                .any(|x| p.starts_with(x))
            // Not a directory, nor a symlink to one (`/lib` on merged /usr).
            && fs::metadata(on_host(p)).is_ok_and(|m| !m.is_dir())
    };
    let merged = |p: &str| {
        ["/bin/", "/sbin/", "/lib/", "/lib64/"].iter().any(|top| {
            p.starts_with(top)
                && fs::symlink_metadata(on_host(top.trim_end_matches('/')))
                    .is_ok_and(|m| m.file_type().is_symlink())
        })
    };
    let physical = |p: &str| -> PathBuf {
        let p = Path::new(p);
        let parent = fs::canonicalize(on_host(p.parent().unwrap().to_str().unwrap())).unwrap();
        Path::new("/")
            .join(parent.strip_prefix(root).unwrap())
            .join(p.file_name().unwrap())
    };
    let pick = |want: usize, cands: Vec<(&String, Vec<&String>)>, taken: &mut BTreeSet<PathBuf>| {
        let mut got = Vec::new();
        if cands.is_empty() {
            return got;
        }
        // Evenly spaced packages first, then any other, the middle file of each.
        let step = (cands.len() as f64 / want as f64).max(1.0);
        let spaced = (0..want).map(|k| (k as f64 * step) as usize);
        for i in spaced.chain(0..cands.len()) {
            if got.len() == want {
                break;
            }
            let Some((_, files)) = cands.get(i) else {
                continue;
            };
            let p = files[files.len() / 2];
            let ph = physical(p);
            if taken.insert(ph.clone()) {
                got.push((p.clone(), ph));
            }
        }
        got
    };
    let mut taken = BTreeSet::new();
    let by_pkg = |f: &dyn Fn(&str) -> bool| -> Vec<(&String, Vec<&String>)> {
        lists
            .iter()
            .map(|(k, v)| (k, v.iter().filter(|p| f(p)).collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let mut out = pick(10, by_pkg(&|p| usable(p) && merged(p)), &mut taken);
    // The rest outside /usr/share/doc and man pages, which most packages
    // have and which would otherwise make most of the sample.
    let plain = |p: &str| {
        usable(p)
            && !merged(p)
            && !p.starts_with("/usr/share/doc/")
            && !p.starts_with("/usr/share/man/")
    };
    out.extend(pick(50 - out.len(), by_pkg(&plain), &mut taken));
    out
}

/// `dpkg -S` for each path: listed path → owning packages.
fn dpkg_s(admin: &Path, paths: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let o = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .arg("-S")
        .args(paths));
    let mut out = BTreeMap::new();
    for line in text(&o.stdout).lines() {
        if line.starts_with("diversion by") {
            continue;
        }
        let (pkgs, path) = line.split_once(": ").expect("dpkg -S line");
        out.insert(
            path.to_string(),
            pkgs.split(", ").map(str::to_string).collect(),
        );
    }
    out
}

/// The report's packages of each sampled physical path, against `dpkg -S`
/// of the listed path.
fn check_attribution(r: &Value, samples: &[(String, PathBuf)], admin: &Path) {
    let listed: Vec<&str> = samples.iter().map(|(l, _)| l.as_str()).collect();
    let want = dpkg_s(admin, &listed);
    let mut merged = 0;
    for (l, ph) in samples {
        let got: BTreeSet<String> = file(r, ph.to_str().unwrap())["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let expected = want
            .get(l)
            .unwrap_or_else(|| panic!("dpkg -S says nothing of {l}"));
        assert_eq!(&got, expected, "{l} (physically {})", ph.display());
        if Path::new(l) != ph {
            merged += 1;
        }
    }
    assert!(
        merged >= 5,
        "only {merged} of the sampled paths were usr-merge aliases"
    );
    eprintln!(
        "attribution: {} files compared with dpkg -S, {merged} through usr-merge symlinks: {:?}",
        samples.len(),
        samples.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
}

#[test]
fn attribution_matches_dpkg_s_on_this_machine() {
    require("dpkg-query", "dpkg");
    let admin = Path::new("/var/lib/dpkg");
    let lists = dpkg_lists(admin);
    let samples = sample(&lists, Path::new("/"));
    assert_eq!(samples.len(), 50, "{samples:?}");
    // A jail made from this machine of exactly those files: `stat` names
    // each (lstat: a packaged symlink stays a symlink).
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    let o = run(jail()
        .args(["trace", "--no-image", "--manifest"])
        .arg(&manifest)
        .args(["--", "/usr/bin/stat", "-c", "%n"])
        .args(samples.iter().map(|(l, _)| l)));
    ok(&o);
    let r = json_of(&report(&[manifest.as_os_str(), "--json".as_ref()]));
    assert_eq!(r["subject"]["packages_from"], "/");
    check_attribution(&r, &samples, admin);
    let human = report(&[manifest.as_os_str()]);
    let h = text(&human.stdout);
    let line = h
        .lines()
        .find(|l| l.contains("packages: uses "))
        .unwrap_or_else(|| panic!("{h}"));
    assert!(
        line.contains(" files of ") && line.contains(" packages"),
        "{line}"
    );
}

#[test]
fn attribution_matches_dpkg_s_on_the_debian_root() {
    require("dpkg-query", "dpkg");
    // A debootstrap root reviewed as a tree: its own database attributes
    // its files, through its own usr-merge symlinks.
    let root = debian_root();
    let admin = root.join("var/lib/dpkg");
    let lists = dpkg_lists(&admin);
    let samples = sample(&lists, &root);
    assert_eq!(samples.len(), 50, "{samples:?}");
    let r = json_of(&report(&[root.as_os_str(), "--json".as_ref()]));
    assert_eq!(r["subject"]["kind"], "tree");
    check_attribution(&r, &samples, &admin);
    let p = &r["summary"]["packages"];
    assert!(p["packages"].as_u64().unwrap() > 80, "{p}");
}

#[test]
fn secrets_the_jail_left_out_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("home/.ssh/id_test");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    fs::write(&key, "not really a key\n").unwrap();
    let manifest = d.join("m.yaml");
    ok(&run(jail()
        .args(["trace", "--no-image", "--manifest"])
        .arg(&manifest)
        .args(["--", "/bin/cat"])
        .arg(&key)));
    let r = json_of(&report(&[manifest.as_os_str(), "--json".as_ref()]));
    assert!(
        has_finding(&r, "secret-excluded", key.to_str().unwrap()),
        "{:#}",
        r["findings"]
    );
    assert_eq!(r["summary"]["severities"]["high"], 1);
    assert!(r["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["path"] != key.to_str().unwrap()));
    let human = text(&report(&[manifest.as_os_str()]).stdout);
    assert!(
        human
            .lines()
            .any(|l| l.contains("secret-excluded") && l.contains("id_test")),
        "{human}"
    );
    // The reasons come from the manifest.
    assert_eq!(r["subject"]["reasons_known"], true);
    let exec = Value::from("exec");
    assert!(file(&r, "/usr/bin/cat")["reasons"]
        .as_array()
        .unwrap()
        .contains(&exec));
    assert_eq!(
        file(&r, "/bin")["reasons"],
        serde_json::json!(["symlink-chain"])
    );
    assert!(
        human
            .lines()
            .any(|l| l.ends_with(" /usr/bin/cat") && l.contains("exec")),
        "{human}"
    );
}
