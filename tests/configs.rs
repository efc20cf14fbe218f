//! Every shipped jail config (`jail-configs/*.yaml`), end to end: `jail trace
//! -c` traces its runs, builds the tree and runs the config's tests inside it
//! (failing on any difference); then `jail run` runs the first test again in
//! the tree, as a user would. Plus: every config file has a test here, and
//! every config parses.
//!
//! `jail` runs with a clean environment (only `PATH`): the traced runs then
//! see what the tests see (`PATH` and the config's `env`), whatever the
//! environment of the machine running the tests.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use jail::config::{Config, Test};
use jail::manifest::Manifest;
use jail::sandbox::DEFAULT_PATH;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jail-configs")
}

/// The names (file stems) of the config files shipped.
fn shipped() -> BTreeSet<String> {
    std::fs::read_dir(configs_dir())
        .expect("read jail-configs/")
        .map(|e| e.expect("read jail-configs/").path())
        .filter(|p| p.extension() == Some(OsStr::new("yaml")))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// `jail` with nothing of this environment but `PATH`.
fn clean_jail() -> Command {
    let mut c = jail();
    c.env_clear().env("PATH", DEFAULT_PATH);
    c
}

/// Fail (never skip) without a program (a name on PATH or an absolute
/// path), saying which package has it.
fn need(what: &str, package: &str) {
    if what.starts_with('/') {
        assert!(
            Path::new(what).exists(),
            "this test needs {what}: install it with `apt-get install -y {package}` (scripts/test.sh does this)"
        );
    } else {
        require(what, package);
    }
}

/// One `#[test]` per config (so a failure names it), and the list of the
/// configs tested, which `every_config_has_a_test` checks against the files.
macro_rules! configs {
    ($($test:ident = $name:literal needs [$($what:literal from $pkg:literal),* $(,)?];)*) => {
        const TESTED: &[&str] = &[$($name),*];
        $(
            #[test]
            fn $test() {
                $(need($what, $pkg);)*
                check_config($name, "ptrace");
            }
        )*
        /// Every config also works when traced with fanotify (issue 8).
        mod fanotify_backend {
            use super::*;
            $(
                #[test]
                fn $test() {
                    $(need($what, $pkg);)*
                    check_config($name, "fanotify");
                }
            )*
        }
    };
}

configs! {
    sh_coreutils = "sh-coreutils" needs ["/bin/sh" from "dash", "sort" from "coreutils", "grep" from "grep"];
    python3_stdlib = "python3-stdlib" needs ["/usr/bin/python3" from "python3", "/sbin/ldconfig" from "libc-bin"];
    perl = "perl" needs ["/usr/bin/perl" from "perl", "/usr/share/perl/5.36/JSON/PP.pm" from "perl-modules-5.36"];
    git = "git" needs ["/usr/bin/git" from "git", "mktemp" from "coreutils"];
    openssl = "openssl" needs ["openssl" from "openssl"];
    sqlite3 = "sqlite3" needs ["sqlite3" from "sqlite3"];
    gzip_xz = "gzip-xz" needs ["gzip" from "gzip", "xz" from "xz-utils", "cmp" from "diffutils"];
    iconv = "iconv" needs ["iconv" from "libc-bin", "/usr/lib/x86_64-linux-gnu/gconv/EUC-JP.so" from "libc6"];
    getent = "getent" needs ["getent" from "libc-bin"];
    date_tz = "date-tz" needs ["/usr/share/zoneinfo/US/Eastern" from "tzdata"];
    gcc = "gcc" needs ["gcc" from "gcc", "/usr/include/stdio.h" from "libc6-dev"];
}

/// Trace `jail-configs/NAME.yaml` into a tree, check its tests passed in
/// the jail, then run its first test with `jail run`.
fn check_config(name: &str, backend: &str) {
    let file = configs_dir().join(format!("{name}.yaml"));
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::Builder::new()
        .prefix(&format!("jail-config-{name}-"))
        .tempdir()
        .expect("tempdir");
    let tree = dir.path().join("tree");
    let manifest = dir.path().join("m.json");

    let out = run(clean_jail()
        .args(["trace", "--no-image", "--backend", backend, "-c"])
        .arg(&file)
        .arg("--tree")
        .arg(&tree)
        .arg("--manifest")
        .arg(&manifest));
    ok(&out);
    let stderr = text(&out.stderr);
    let passed = stderr
        .lines()
        .filter(|l| l.starts_with("jail: ok: test "))
        .count();
    assert_eq!(
        passed,
        config.tests.len(),
        "{name}: every test must report ok in the jail\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("FAILED"), "{name}:\n{stderr}");
    let fileset = Manifest::read(&manifest)
        .expect("manifest")
        .fileset
        .expect("the manifest holds the file set");
    assert!(
        fileset.contains(Path::new("/tmp")),
        "{name}: the jail has /tmp"
    );

    // The same tree under `jail run`, with the config's environment.
    let first = &config.tests[0];
    let mut cmd = clean_jail();
    cmd.arg("run").arg(&tree);
    for (k, v) in &config.env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    if let Some(w) = &config.workdir {
        cmd.arg("-w").arg(w);
    }
    let got = run(cmd.arg("--").args(&first.command));
    assert_eq!(
        got.status.code(),
        Some(first.status),
        "{name}: `jail run` of {:?}\nstdout:\n{}\nstderr:\n{}",
        first.command,
        text(&got.stdout),
        text(&got.stderr)
    );
    let got = text(&got.stdout);
    if let Some(want) = expected_stdout(&config, first) {
        assert_eq!(got, want, "{name}: `jail run` of {:?}", first.command);
    }
    if let Some(needle) = &first.stdout_contains {
        assert!(
            got.contains(needle.as_str()),
            "{name}: `jail run` of {:?} printed {got:?}, lacking {needle:?}",
            first.command
        );
    }
}

/// What a test must print exactly: its `stdout`, or for `same_as_host`
/// what the command prints here with the test's environment.
fn expected_stdout(config: &Config, t: &Test) -> Option<String> {
    if !t.same_as_host {
        return t.stdout.clone();
    }
    let host = run(Command::new(&t.command[0])
        .args(&t.command[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(&config.env)
        .current_dir(config.workdir.as_deref().unwrap_or(Path::new("/"))));
    Some(text(&host.stdout))
}

#[test]
fn every_config_has_a_test() {
    let tested: BTreeSet<String> = TESTED.iter().map(|s| s.to_string()).collect();
    let shipped = shipped();
    let untested: Vec<_> = shipped.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "jail-configs/ has configs without a test in tests/configs.rs: {untested:?}; add them to `configs!`"
    );
    let missing: Vec<_> = tested.difference(&shipped).collect();
    assert!(
        missing.is_empty(),
        "tests/configs.rs tests configs that are not in jail-configs/: {missing:?}"
    );
}

#[test]
fn every_config_parses_and_has_tests() {
    let names = shipped();
    assert!(names.len() >= 11, "jail-configs/ lost configs: {names:?}");
    for name in names {
        let file = configs_dir().join(format!("{name}.yaml"));
        let c = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.name,
            name,
            "{}: `name` must be the file's name",
            file.display()
        );
        assert!(
            c.description.is_some(),
            "{}: give a `description`",
            file.display()
        );
        assert!(
            !c.tests.is_empty(),
            "{}: a config needs tests",
            file.display()
        );
        for t in &c.tests {
            assert!(
                t.stdout.is_some() || t.stdout_contains.is_some() || t.same_as_host,
                "{}: test {:?} checks no output",
                file.display(),
                t.name.as_deref().unwrap_or(&t.command.join(" "))
            );
        }
    }
    // Nothing else hides in jail-configs/ (a `.yml` would go untested).
    for e in std::fs::read_dir(configs_dir()).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(
            p.extension(),
            Some(OsStr::new("yaml")),
            "{}: jail-configs/ holds only NAME.yaml configs",
            p.display()
        );
    }
}

/// A config's own runs start in its `workdir`, or `/` (where its tests
/// run), never in the caller's directory: that directory would otherwise
/// end up in the jail as its working directory.
#[test]
fn config_runs_start_in_root_not_the_callers_directory() {
    let dir = tempfile::tempdir().unwrap();
    let here = std::fs::canonicalize(dir.path()).unwrap().join("caller");
    std::fs::create_dir(&here).unwrap();
    let config = here.join("pwd.yaml");
    std::fs::write(
        &config,
        "name: pwd\ndescription: pwd\ncommand: [/bin/sh, -c, pwd]\ntests:\n  - command: [/bin/sh, -c, pwd]\n    stdout: \"/\\n\"\n",
    )
    .unwrap();
    let tree = dir.path().join("tree");
    let out = run(clean_jail()
        .current_dir(&here)
        .args(["trace", "--no-image", "--verify", "-c"])
        .arg(&config)
        .arg("--tree")
        .arg(&tree));
    ok(&out);
    assert_eq!(text(&out.stdout), "/\n", "the traced run's pwd");
    let inside = tree.join(here.strip_prefix("/").unwrap());
    assert!(
        !inside.exists(),
        "the caller's directory {} is in the jail",
        here.display()
    );
}

/// A config test that prints something else fails the build (exit 1) and
/// shows the difference: the checks above are not vacuous.
#[test]
fn a_failing_config_test_fails_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "name: bad\ncommand: [/bin/sh, -c, 'echo one']\ntests:\n  - name: says two\n    command: [/bin/sh, -c, 'echo one']\n    stdout: \"two\\n\"\n  - name: status\n    command: [/bin/sh, -c, 'exit 3']\n    status: 4\n",
    )
    .unwrap();
    let out = run(clean_jail()
        .args(["trace", "--no-image", "-c"])
        .arg(&config));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FAILED: test \"says two\"")
            && stderr.contains("- two")
            && stderr.contains("+ one"),
        "{stderr}"
    );
    assert!(stderr.contains("exit status 3, expected 4"), "{stderr}");
}

/// `workdir` is where the traced runs and the tests start: a relative path
/// in the traced run resolves there (and so is recorded and copied), and
/// the run inside the jail finds it there too.
#[test]
fn config_workdir_is_where_runs_and_tests_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("workdir.yaml");
    std::fs::write(
        &config,
        "name: workdir\nworkdir: /etc\ncommand: &c [/bin/sh, -c, 'pwd && wc -c < os-release']\ntests:\n  - command: *c\n    same_as_host: true\n",
    )
    .unwrap();
    let tree = dir.path().join("tree");
    let manifest = dir.path().join("m.json");
    let out = run(clean_jail()
        .args(["trace", "--no-image", "--verify", "-c"])
        .arg(&config)
        .arg("--tree")
        .arg(&tree)
        .arg("--manifest")
        .arg(&manifest));
    ok(&out);
    assert!(
        text(&out.stdout).starts_with("/etc\n"),
        "the traced run's pwd: {}",
        text(&out.stdout)
    );
    let fileset = Manifest::read(&manifest).unwrap().fileset.unwrap();
    assert!(
        fileset.contains(Path::new("/etc/os-release")),
        "the relative `os-release` resolved in /etc is in the jail"
    );
    assert!(tree.join("etc/os-release").exists());
}
