//! The module structure (docs/ARCHITECTURE.md): the library's top-level
//! modules import each other as a DAG, checked by scripts/module-dag.py.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dag(src: Option<&Path>) -> std::process::Output {
    common::require("python3", "python3");
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/module-dag.py"));
    if let Some(src) = src {
        cmd.arg("--src").arg(src);
    }
    cmd.output().expect("run python3 scripts/module-dag.py")
}

#[test]
fn library_modules_form_a_dag() {
    let out = dag(None);
    assert!(
        out.status.success(),
        "scripts/module-dag.py found a cycle: {}",
        common::text(&out.stderr)
    );
}

#[test]
fn the_dag_check_names_a_cycle() {
    let src = common::test_dir("architecture-cycle");
    std::fs::create_dir_all(src.join("alpha")).unwrap();
    std::fs::write(src.join("alpha/mod.rs"), "use crate::beta::B;\n").unwrap();
    std::fs::write(
        src.join("beta.rs"),
        "// crate::gamma in a comment is no import\npub fn f() { crate::alpha::g() }\n",
    )
    .unwrap();
    std::fs::write(src.join("gamma.rs"), "use crate::{alpha, beta};\n").unwrap();
    let out = dag(Some(&src));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        common::text(&out.stderr).trim(),
        "module-dag: import cycle: alpha -> beta -> alpha"
    );
}

#[test]
fn the_probe_runner_without_probes_is_a_usage_error_not_a_panic() {
    let out = common::jail()
        .args([
            "probe-runner",
            "--pid",
            "1",
            "--timeout",
            "1",
            "--stop-signal",
            "TERM",
        ])
        .output()
        .unwrap();
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("required arguments were not provided"),
        "{err}"
    );
}

/// The binary stays thin (issue 13): `src/cli/*.rs` parse flags and print
/// what the library's pipeline returns, under 1,000 lines together.
#[test]
fn the_cli_stays_under_a_thousand_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut sizes: Vec<(String, usize)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| {
            let lines = std::fs::read_to_string(&p).unwrap().lines().count();
            (p.file_name().unwrap().to_string_lossy().into_owned(), lines)
        })
        .collect();
    sizes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let total: usize = sizes.iter().map(|(_, n)| n).sum();
    assert!(
        total < 1000,
        "src/cli/*.rs have {total} lines (largest: {sizes:?}); move the policy into src/pipeline/"
    );
    assert!(sizes.len() > 5, "src/cli/ was not found: {sizes:?}");
}

/// A job checks its destinations before any work (the pipeline's
/// `resolve`): slim refuses an output in a missing directory before it
/// unpacks or traces anything, as trace does before tracing.
#[test]
fn slim_and_trace_refuse_a_missing_destination_directory_first() {
    let dir = common::test_dir("architecture-destinations");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "x\n").unwrap();
    let image = dir.join("tiny.tar");
    common::ok(&common::run(
        common::jail().arg("pack").arg(&tree).arg("-o").arg(&image),
    ));
    let want = "jail: error: image destination /nonexistent/dir/out.tar: the directory /nonexistent/dir does not exist; create it or choose another path\n";
    let image = image.to_str().unwrap();
    let (code, err) = fails(&[
        "slim",
        image,
        "-o",
        "/nonexistent/dir/out.tar",
        "--",
        "/bin/true",
    ]);
    // Nothing was unpacked or traced: the error is the only line.
    assert_eq!(err, want);
    assert_eq!(code, Some(2));
    let (code, err) = fails(&["trace", "-o", "/nonexistent/dir/out.tar", "--", "true"]);
    assert_eq!(err, want);
    assert_eq!(code, Some(2));
}

// ------------------------------------------------ errors said once ---

/// `jail ARGS…`: (exit code, stderr).
fn fails(args: &[&str]) -> (Option<i32>, String) {
    let out = common::jail().args(args).output().unwrap();
    (out.status.code(), common::text(&out.stderr))
}

#[test]
fn a_missing_config_is_named_with_its_cause_once() {
    let (code, err) = fails(&["trace", "-c", "/nonexistent.yaml", "--", "true"]);
    assert_eq!(
        err,
        "jail: error: cannot read jail config /nonexistent.yaml: No such file or directory (os error 2)\n"
    );
    assert_eq!(code, Some(2));
}

#[test]
fn an_invalid_config_names_the_key_once() {
    let dir = common::test_dir("architecture-config");
    let config = dir.join("bad.yaml");
    std::fs::write(&config, "name: x\ncommand: [/bin/true]\nincludes: [/x]\n").unwrap();
    let (code, err) = fails(&["trace", "-c", config.to_str().unwrap(), "--", "true"]);
    let prefix = format!(
        "jail: error: invalid jail config {}: unknown field `includes`",
        config.display()
    );
    assert!(err.starts_with(&prefix), "{err}");
    assert_eq!(err.matches("unknown field").count(), 1, "{err}");
    assert_eq!(code, Some(2));
}

#[test]
fn a_missing_input_is_named_once() {
    let (code, err) = fails(&["diff", "/nonexistent-a", "/nonexistent-b"]);
    assert_eq!(
        err,
        "jail: error: /nonexistent-a: no such file or directory: name an image (an archive, an OCI layout DIR, DIR:TAG, DIR@sha256:…, or a registry reference HOST/NAME[:TAG]), a directory tree, or a manifest (.yaml, .yml, .json)\n"
    );
    assert_eq!(code, Some(2));
    let (code, err) = fails(&["pack", "/nonexistent", "-o", "/tmp/never.tar"]);
    assert!(
        err.starts_with("jail: error: /nonexistent: ")
            && err.ends_with("`jail pack` needs a readable directory tree\n"),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(code, Some(2));
}

// ------------------------------------------- Ctrl-C gives 128+N ---

/// An uncompressed image with one 512 MiB incompressible file: seconds to
/// unpack (every byte is hashed). Built once, kept under target/.
fn big_image() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_big_image).clone()
}

fn build_big_image() -> PathBuf {
    let dir = common::test_dir("architecture-big");
    let img = dir.join("big.tar");
    if img.exists() {
        return img;
    }
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("tmp")).unwrap();
    common::ok(&common::run(Command::new("sh").arg("-c").arg(format!(
        "head -c 512M /dev/urandom > {}/tmp/random",
        tree.display()
    ))));
    let partial = dir.join("big.tar.partial");
    common::ok(&common::run(
        common::jail()
            .arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&partial)
            .args(["--compression", "none"]),
    ));
    std::fs::remove_dir_all(&tree).unwrap();
    std::fs::rename(&partial, &img).unwrap();
    img
}

/// Whether a file named `name` exists under `dir` (a few levels down).
fn has_file(dir: &Path, name: &str, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        (p.file_name().is_some_and(|n| n == name) && p.is_file())
            || (depth > 0 && p.is_dir() && !p.is_symlink() && has_file(&p, name, depth - 1))
    })
}

/// Start `jail ARGS…` with TMPDIR=`tmp`, SIGINT it once `ready` says so,
/// and return its exit code and stderr.
fn interrupt(args: &[&str], tmp: &Path, ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let child = common::jail()
        .args(args)
        .env("TMPDIR", tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..6000 {
        if ready() {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = common::text(&out.stderr);
    assert!(seen, "jail never got to the point to interrupt: {err}");
    (out.status.code(), err)
}

fn fresh_tmp(name: &str) -> PathBuf {
    let tmp = common::test_dir("architecture-tmp").join(name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

#[test]
fn ctrl_c_while_slim_unpacks_exits_130_and_leaves_nothing() {
    let img = big_image();
    let tmp = fresh_tmp("slim");
    let out = tmp.join("out.tar");
    let (code, err) = interrupt(
        &[
            "slim",
            img.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        &tmp,
        || has_file(&tmp, "random", 4),
    );
    assert_eq!(code, Some(130), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "left in TMPDIR"
    );
}

#[test]
fn ctrl_c_while_diff_unpacks_exits_130_and_leaves_nothing() {
    let img = big_image();
    let tmp = fresh_tmp("diff");
    let img = img.to_str().unwrap();
    let (code, err) = interrupt(&["diff", img, img], &tmp, || has_file(&tmp, "random", 4));
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "left in TMPDIR"
    );
}

#[test]
fn ctrl_c_during_a_trace_exits_130() {
    let tmp = fresh_tmp("trace");
    let pidfile = tmp.join("pid");
    let script = format!("echo $$ > {}; exec sleep 100", pidfile.display());
    let (code, err) = interrupt(
        &["trace", "--no-image", "--", "sh", "-c", &script],
        &tmp,
        || std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')),
    );
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("the traced command failed"), "{err}");
}

// ------------------------------------- one rule for image/tree/manifest ---

#[test]
fn one_rule_classifies_every_input() {
    use jail::image::read::ImageSource;
    use jail::input::{Input, Kind};
    let d = common::test_dir("architecture-input");
    let layout = d.join("layout");
    let tree = d.join("tree");
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    // index.json without oci-layout: an image for diff and report alike.
    std::fs::write(layout.join("index.json"), "{}").unwrap();
    std::fs::write(d.join("m.yaml"), "").unwrap();
    std::fs::write(d.join("a.tar"), "").unwrap();
    let kind = |p: &Path| Input::parse(p.to_str().unwrap()).unwrap().kind();
    assert_eq!(kind(&layout), Kind::Image);
    assert_eq!(kind(&tree), Kind::Tree);
    assert_eq!(kind(&d.join("m.yaml")), Kind::Manifest);
    assert_eq!(
        Input::parse(d.join("a.tar").to_str().unwrap()).unwrap(),
        Input::Image(ImageSource::Archive(d.join("a.tar")))
    );
    assert!(matches!(
        Input::parse("localhost:5000/app:1").unwrap(),
        Input::Image(ImageSource::Registry(_))
    ));
    assert!(matches!(
        Input::parse(d.join("nope").to_str().unwrap()),
        Err(jail::input::OpenError::Missing(_))
    ));
    // report's classification is the same one.
    assert_eq!(
        jail::report::Source::parse(layout.to_str().unwrap()).unwrap(),
        Input::parse(layout.to_str().unwrap()).unwrap()
    );
}

/// Errors say their cause once: a thiserror message never formats its
/// `source` field, which `source()` already returns and the CLI prints.
#[test]
fn no_error_message_formats_its_source() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[error(") && line.contains("{source") {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "error messages that repeat their cause:\n{}",
        found.join("\n")
    );
}
