//! Proving a jail works: run a command inside the finished tree as a
//! container runtime would run the image, and compare its exit status and
//! stdout with what is expected (the traced run's, or a config test's). A
//! difference is a failure that shows the difference and, when it can, why:
//! a path the jail lacks, or a program whose output is not deterministic.
//!
//! "As a runtime would" (docs/fidelity.md): exactly the image's Env (plus
//! `HOME` from the image's passwd when the Env has none, as runc does), its
//! User and WorkingDir, stdin from /dev/null, a hostname of its own, /proc,
//! /dev and /sys from the sandbox, nothing of jail's own environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::resolve::Root;
use crate::sandbox::{self, SandboxError, Spec, User};
use crate::trace::{self, AccessKind, SandboxRun, TraceOptions};

/// The hostname checks run with (podman gives each container its own).
pub const HOSTNAME: &str = "jail";

/// What a run inside the jail must produce.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// Shown in messages (`the traced run`, `test "sqlite3 version"`).
    pub label: String,
    pub argv: Vec<OsString>,
    /// The whole environment (the image's Env).
    pub env: Vec<(OsString, OsString)>,
    /// In-root working directory.
    pub cwd: PathBuf,
    /// `USER[:GROUP]`, resolved in the tree as a runtime does; root when
    /// `None`.
    pub user: Option<String>,
    /// The network it runs with (none unless the program needs to reach
    /// a server).
    pub network: sandbox::Network,
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

impl Expectation {
    /// The sandbox spec that runs this check in `tree` as a runtime would.
    pub fn spec(&self, tree: &Path) -> Result<Spec, SandboxError> {
        let mut spec = Spec::new(tree, self.argv.iter().cloned());
        spec.env = self.env.clone();
        spec.cwd = self.cwd.clone();
        spec.user = match &self.user {
            Some(u) => Some(User::lookup(tree, u)?),
            None => None,
        };
        let uid = spec.user.as_ref().map_or(0, |u| u.uid);
        sandbox::add_runtime_home(&mut spec.env, tree, uid);
        spec.hostname = Some(HOSTNAME.into());
        spec.network = self.network;
        let null =
            std::fs::File::open("/dev/null").map_err(|source| SandboxError::ReadRootFile {
                path: PathBuf::from("/dev/null"),
                source,
            })?;
        spec.stdin = Some(Arc::new(null.into()));
        Ok(spec)
    }
}

/// Run `exp.argv` in `tree` (private namespaces, no network) and compare.
/// `root` is where the jail's files came from: when the check fails, the
/// run is traced once more to name the paths the jail lacks.
pub fn check(tree: &Path, root: Option<&Root>, exp: &Expectation) -> Result<Outcome, SandboxError> {
    let mut spec = exp.spec(tree)?;
    // podman and docker set no no_new_privs: setuid programs and file
    // capabilities work in the image. Honoured when the tree holds this
    // machine's own files (`jail trace`); a tree slimmed from an image
    // keeps no_new_privs, as the run it was traced from had it.
    spec.setuid = root.is_some_and(Root::is_host);
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
    if !problems.is_empty() {
        if let Some(root) = root {
            problems.push(hint(tree, root, &spec));
        }
    }
    Ok(Outcome {
        label: exp.label.clone(),
        failure: (!problems.is_empty()).then(|| problems.join("\n")),
    })
}

/// Why a check failed, as far as a traced re-run in the jail can tell: the
/// paths it looked up and did not find that exist in `root` (the jail lacks
/// them), the directories it listed that the jail holds only in part, or
/// neither (the output differs although nothing was missing).
fn hint(tree: &Path, root: &Root, spec: &Spec) -> String {
    let lacking = match lacking(tree, root, spec) {
        Ok(l) => l,
        Err(e) => {
            return format!("hint: cannot trace the run in the jail to look for missing paths: {e}")
        }
    };
    if lacking.missing.is_empty() && lacking.partial_dirs.is_empty() {
        return "hint: the run in the jail looked for nothing that the jail lacks and listed no directory the jail holds only in part; the output differs anyway, so the program is probably not deterministic (time, randomness, pids, hostname) or depends on the network (the check runs without one unless `--network host`): compare two native runs, or check a config test with `stdout_contains`".to_string();
    }
    let mut hints = Vec::new();
    let missing = &lacking.missing;
    if !missing.is_empty() {
        let mut s = format!(
            "hint: the jail lacks {} path{} that the program looked for and that exist{} in {}; add {} with --include (or a config `include`), or exercise that code path in another traced run:",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "s" } else { "" },
            root.dir().display(),
            if missing.len() == 1 { "it" } else { "them" },
        );
        push_list(&mut s, missing.iter().map(|p| p.display().to_string()));
        hints.push(s);
    }
    let partial = &lacking.partial_dirs;
    if !partial.is_empty() {
        let mut s = format!(
            "hint: the program listed {} that the jail holds only in part (a jail keeps the entries the traced run used, not every entry of a directory it read); if what it prints depends on what {} hold{}, add {} with --include 'DIR/*' (or a config `include`):",
            if partial.len() == 1 { "a directory".to_string() } else { format!("{} directories", partial.len()) },
            if partial.len() == 1 { "it" } else { "they" },
            if partial.len() == 1 { "s" } else { "" },
            if partial.len() == 1 { "its entries" } else { "their entries" },
        );
        push_list(
            &mut s,
            partial.iter().map(|d| {
                format!(
                    "{} ({} of {} entries in the jail)",
                    d.path.display(),
                    d.in_jail,
                    d.in_root
                )
            }),
        );
        hints.push(s);
    }
    hints.join("\n")
}

/// Up to 20 lines of a list, indented, and how many more.
fn push_list(s: &mut String, items: impl ExactSizeIterator<Item = String>) {
    let n = items.len();
    for item in items.take(20) {
        s.push_str(&format!("\n    {item}"));
    }
    if n > 20 {
        s.push_str(&format!("\n    … and {} more", n - 20));
    }
}

/// What a traced re-run in the jail found the jail lacks.
#[derive(Debug, Default)]
pub struct Lacking {
    /// Paths the run looked up and did not find that exist in the root
    /// (outside /proc, /sys, /dev and /run).
    pub missing: Vec<PathBuf>,
    /// Directories the run listed that have fewer entries in the jail than
    /// in the root.
    pub partial_dirs: Vec<PartialDir>,
}

/// A directory the jail holds only some entries of.
#[derive(Debug)]
pub struct PartialDir {
    /// In-root path.
    pub path: PathBuf,
    pub in_jail: usize,
    pub in_root: usize,
}

/// Trace the check's run in the jail; return the paths it found missing
/// there that exist in `root` (outside /proc, /sys, /dev and /run).
pub fn missing_paths(
    tree: &Path,
    root: &Root,
    spec: &Spec,
) -> Result<Vec<PathBuf>, trace::TraceError> {
    Ok(lacking(tree, root, spec)?.missing)
}

/// Trace the check's run in the jail; return what it found missing there
/// that exists in `root`, and the directories it listed that the jail holds
/// only in part.
pub fn lacking(tree: &Path, root: &Root, spec: &Spec) -> Result<Lacking, trace::TraceError> {
    let mut opts = TraceOptions::new(spec.argv.clone());
    opts.env = spec.env.clone();
    opts.cwd = Some(spec.cwd.clone());
    // Its output was shown by the failed check already.
    let null: Arc<std::os::fd::OwnedFd> = Arc::new(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|e| trace::TraceError::BadArgument(format!("cannot open /dev/null: {e}")))?
            .into(),
    );
    opts.stdout = Some(null.clone());
    opts.sandbox_stderr = Some(null);
    opts.sandbox = Some(SandboxRun {
        root: tree.to_path_buf(),
        user: spec.user.clone(),
        network: spec.network,
        started: None,
    });
    let log = trace::trace(&opts)?;
    let runtime = ["/proc", "/sys", "/dev", "/run"];
    let outside = |p: &Path, dirs: &[&str]| !dirs.iter().any(|r| p.starts_with(r));
    let missing = log
        .with_kind(AccessKind::Missing)
        .filter(|(p, a)| !a.existed && outside(p, &runtime))
        .filter(|(p, _)| root.lstat(p).is_ok())
        .map(|(p, _)| p.to_path_buf())
        .collect();
    let jail = Root::new(tree).map_err(|e| {
        trace::TraceError::BadArgument(format!("cannot open the jail {}: {e}", tree.display()))
    })?;
    let partial_dirs = log
        .with_kind(AccessKind::List)
        // /tmp is the jail's own (empty), the root's holds the host's files.
        .filter(|(p, _)| outside(p, &runtime) && !p.starts_with("/tmp"))
        .filter_map(|(p, _)| {
            let in_jail = entries(&jail, p)?;
            let in_root = entries(root, p)?;
            (in_root.difference(&in_jail).next().is_some()).then(|| PartialDir {
                path: p.to_path_buf(),
                in_jail: in_jail.len(),
                in_root: in_root.len(),
            })
        })
        .collect();
    Ok(Lacking {
        missing,
        partial_dirs,
    })
}

/// The names in an in-root directory (`None` when it cannot be read).
fn entries(root: &Root, dir: &Path) -> Option<std::collections::BTreeSet<OsString>> {
    let rd = std::fs::read_dir(root.host_path(dir)).ok()?;
    Some(rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
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
