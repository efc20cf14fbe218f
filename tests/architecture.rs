//! The module structure (docs/ARCHITECTURE.md): the library's top-level
//! modules import each other as a DAG, checked by scripts/module-dag.py.

mod common;

use std::path::Path;
use std::process::Command;

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
        .args(["probe-runner", "--pid", "1", "--timeout", "1", "--stop-signal", "TERM"])
        .output()
        .unwrap();
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("required arguments were not provided"), "{err}");
}
