//! Proving a jail works: run a command inside the finished tree and compare
//! its exit status and stdout with what is expected (the traced run's, or a
//! config test's). A difference is a failure that shows the difference.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::sandbox::{self, SandboxError, Spec};

/// What a run inside the jail must produce.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// Shown in messages (`the traced run`, `test "sqlite3 version"`).
    pub label: String,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// In-root working directory.
    pub cwd: PathBuf,
    pub status: i32,
    /// Exact stdout.
    pub stdout: Option<Vec<u8>>,
    /// A string stdout must contain.
    pub stdout_contains: Option<String>,
}

/// How a check went.
#[derive(Debug)]
pub struct Outcome {
    pub label: String,
    /// `None` when everything matched; otherwise what differed.
    pub failure: Option<String>,
}

/// Run `exp.argv` in `tree` (private namespaces, no network) and compare.
pub fn check(tree: &Path, exp: &Expectation) -> Result<Outcome, SandboxError> {
    let mut spec = Spec::new(tree, exp.argv.iter().cloned());
    spec.env = exp.env.clone();
    spec.cwd = exp.cwd.clone();
    let got = sandbox::run_captured(&spec)?;
    let status = sandbox::exit_code(&got.status);
    let mut problems = Vec::new();
    if status != exp.status {
        problems.push(format!("exit status {status}, expected {}", exp.status));
    }
    if let Some(want) = &exp.stdout {
        if *want != got.stdout {
            problems.push(format!("stdout differs:\n{}", diff(want, &got.stdout)));
        }
    }
    if let Some(needle) = &exp.stdout_contains {
        if !String::from_utf8_lossy(&got.stdout).contains(needle.as_str()) {
            problems.push(format!("stdout lacks {needle:?}:\n{}", indent(&got.stdout)));
        }
    }
    if !problems.is_empty() && !got.stderr.is_empty() {
        problems.push(format!("stderr in the jail:\n{}", indent(&got.stderr)));
    }
    Ok(Outcome {
        label: exp.label.clone(),
        failure: (!problems.is_empty()).then(|| problems.join("\n")),
    })
}

fn indent(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    let mut out: String = text
        .lines()
        .take(40)
        .map(|l| format!("    {l}\n"))
        .collect();
    if text.lines().count() > 40 {
        out.push_str("    …\n");
    }
    out
}

/// A line diff: the common prefix is skipped, then up to 20 lines of each
/// side from the first difference.
pub fn diff(want: &[u8], got: &[u8]) -> String {
    let w = String::from_utf8_lossy(want);
    let g = String::from_utf8_lossy(got);
    let wl: Vec<&str> = w.lines().collect();
    let gl: Vec<&str> = g.lines().collect();
    let first = wl.iter().zip(&gl).take_while(|(a, b)| a == b).count();
    let mut out = format!("    (first difference at line {})\n", first + 1);
    for l in wl.iter().skip(first).take(20) {
        out.push_str(&format!("  - {l}\n"));
    }
    for l in gl.iter().skip(first).take(20) {
        out.push_str(&format!("  + {l}\n"));
    }
    if wl.len() == gl.len() && first == wl.len() {
        out.push_str("    (same lines; the difference is in line endings or a final newline)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_first_difference() {
        let d = diff(b"a\nb\nc\n", b"a\nx\nc\n");
        assert!(
            d.contains("line 2") && d.contains("- b") && d.contains("+ x"),
            "{d}"
        );
        let d = diff(b"a\n", b"a");
        assert!(d.contains("final newline"), "{d}");
    }
}
