//! Building a file set from an access log (SPEC "What goes into the jail").
//!
//! The union of: the traced files that existed before the run, every
//! symlink met, the `#!` interpreter chains of executed scripts, the ELF
//! closure of every executed or opened ELF object, config includes and all
//! their parent directories; minus files the run created, /proc /sys /dev and
//! /run contents, secrets, and config excludes; plus `/tmp` (1777).
//! `/etc/passwd` and `/etc/group` are reduced by evidence (root, the run user,
//! the ids the run used or that own kept files, system accounts).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::digest::Digest;
use crate::elf;
use crate::paths::ImagePath;
use crate::resolve::{FileType, Follow, Root};
use crate::trace::exec::{self as execinfo, Image, MAX_INTERP_DEPTH};
use crate::trace::{AccessKind, AccessLog};

use super::digests::DigestCache;
use super::{Entry, FileSet, Reason};

/// How to build the file set.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Glob patterns (in-root absolute paths; `*` stays within a component,
    /// `**` crosses them) whose matches are added.
    pub include: Vec<String>,
    /// Glob patterns whose matches are left out, whatever added them.
    pub exclude: Vec<String>,
    /// Keep `/etc/passwd` and `/etc/group` whole instead of reducing them.
    pub keep_passwd: bool,
    /// Files the container runtime reads from the image to start the
    /// command (`ImageSpec::runtime_reads`), kept when the root has them.
    pub runtime_reads: Vec<PathBuf>,
    /// Put `/etc/shadow` and `/etc/gshadow`, when the run read them, into
    /// the jail generated: the kept accounts, every hash replaced. Off by
    /// default: SPEC leaves them out unless asked for (a finding says so).
    pub redacted_shadow: bool,
    /// The uid and gid the image runs as, kept in the reduced passwd/group
    /// (root is always kept).
    pub user: Option<(u32, u32)>,
    /// Remembered digests (a fresh in-memory cache when `None`).
    pub digests: Option<std::sync::Arc<DigestCache>>,
}

pub use super::finding::Finding;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid {what} pattern {pattern:?}")]
    Pattern {
        what: &'static str,
        pattern: String,
        source: globset::Error,
    },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file set, and what the build has to say about it.
#[derive(Debug)]
pub struct Built {
    pub fileset: FileSet,
    pub findings: Vec<Finding>,
}

/// Paths the runtime provides: their contents never go into a jail.
/// glibc's C library, by its SONAME, and the unwinder it `dlopen`s at a
/// thread's exit or cancellation ([`Builder::elf_closure`]).
const GLIBC_LIBC: &str = "libc.so.6";
const GLIBC_UNWINDER: &str = "libgcc_s.so.1";

const RUNTIME_DIRS: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// Secrets, never copied unless explicitly included (SPEC).
const SECRET_PATTERNS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/**",
    "**/.ssh/**",
    "**/.aws/**",
    "**/.docker/config.json",
    "**/.netrc",
    "**/.config/gcloud/**",
    "**/.gnupg/**",
    "**/.kube/config",
    "**/.git-credentials",
];

/// Secrets whose only secret is a field: `/etc/shadow` and `/etc/gshadow`
/// go into the jail generated, with the kept accounts and no password
/// hashes, because PAM's account checks (`su`, `runuser`, `login`, cron)
/// read them; their backups (`shadow-`) stay out.
const REDACTED: [&[u8]; 2] = [b"/etc/shadow", b"/etc/gshadow"];

/// Files this small are also checked for a PEM private key by content…
const KEY_SNIFF_MAX: u64 = 64 * 1024;
/// …in their first bytes.
const KEY_SNIFF_HEAD: u64 = 16 * 1024;

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn globset(what: &'static str, patterns: &[impl AsRef<str>]) -> Result<GlobSet, BuildError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.as_ref();
        b.add(glob(p).map_err(|source| BuildError::Pattern {
            what,
            pattern: p.to_string(),
            source,
        })?);
    }
    b.build().map_err(|source| BuildError::Pattern {
        what,
        pattern: String::new(),
        source,
    })
}

struct Builder<'a> {
    root: &'a Root,
    reasons: BTreeMap<PathBuf, BTreeSet<Reason>>,
    exclude: GlobSet,
    secrets: GlobSet,
    /// Paths added by an explicit include: they bypass the secret rule.
    explicit: BTreeSet<PathBuf>,
    findings: Vec<Finding>,
}

/// Build the file set of a traced run. `root` is the root the command ran in.
pub fn from_access_log(
    log: &AccessLog,
    root: &Root,
    opts: &BuildOptions,
) -> Result<Built, BuildError> {
    let mut b = Builder {
        root,
        reasons: BTreeMap::new(),
        exclude: globset("exclude", &opts.exclude)?,
        secrets: globset("secret", SECRET_PATTERNS)?,
        explicit: BTreeSet::new(),
        findings: Vec::new(),
    };

    // 1. What the run touched and found.
    let mut redacted: Vec<(PathBuf, i32)> = Vec::new();
    let mut elf_candidates = Vec::new();
    let mut executed = Vec::new();
    for (path, acc) in &log.files {
        let path = path.as_path();
        if acc.created() {
            // An output stays out, but the directory it was made in must be
            // there for the program to make it again.
            if let Some(dir) = output_dir(log, root, path) {
                b.add_exact(&dir, Reason::OutputDir);
            }
            continue;
        }
        if !acc.existed || is_runtime(path) {
            continue;
        }
        let reasons: BTreeSet<Reason> = acc
            .kinds
            .iter()
            .filter_map(|k| match k {
                AccessKind::Read => Some(Reason::TracedRead),
                AccessKind::Exec => Some(Reason::Exec),
                AccessKind::Stat => Some(Reason::Stat),
                AccessKind::List => Some(Reason::List),
                AccessKind::Write => Some(Reason::Write),
                AccessKind::Symlink => Some(Reason::SymlinkChain),
                AccessKind::Create | AccessKind::Delete | AccessKind::Missing => None,
            })
            .collect();
        if reasons.is_empty() {
            continue;
        }
        if b.is_secret(path) {
            if opts.redacted_shadow
                && REDACTED.contains(&path.as_os_str().as_bytes())
                && acc.file_type == Some(FileType::File)
            {
                // Generated without its password hashes in step 7.
                redacted.push((path.to_path_buf(), acc.first_pid));
            } else {
                b.findings.push(Finding::SecretExcluded {
                    path: path.to_path_buf(),
                    pid: acc.first_pid,
                });
            }
            continue;
        }
        if acc.file_type == Some(FileType::File)
            && (reasons.contains(&Reason::Exec) || reasons.contains(&Reason::TracedRead))
        {
            elf_candidates.push(path.to_path_buf());
            if reasons.contains(&Reason::Exec) {
                executed.push(path.to_path_buf());
            }
        }
        for r in reasons {
            b.add_exact(path, r);
        }
    }

    // Sources of imported Python bytecode, and the landmark (`os.py`) by
    // which Python finds its prefix (see `Reason::Companion`).
    let companions: BTreeSet<PathBuf> = b
        .reasons
        .keys()
        .filter_map(|p| pyc_source(p).or_else(|| python_landmark(p)))
        .collect();
    for src in companions {
        if root.lstat(&src).is_ok() {
            b.add_resolved(&src, Reason::Companion);
        }
    }

    // 2. Interpreters of executed scripts (`/usr/bin/env NAME` along PATH).
    let path_var = log
        .env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for exe in &executed {
        for interp in b.interpreters(exe, &path_var) {
            elf_candidates.push(interp);
        }
    }

    // The working directory the command started in.
    b.add_resolved(&log.cwd, Reason::Workdir);
    // What the runtime reads to start it (reduced below like any passwd).
    for p in &opts.runtime_reads {
        if root.lstat(p).is_ok() {
            b.add_resolved(p, Reason::Runtime);
        }
    }

    // 3. Config includes.
    for pattern in &opts.include {
        for p in expand(root, pattern)? {
            b.explicit.insert(p.clone());
            if let Some(real) = b.add_resolved(&p, Reason::ConfigInclude) {
                elf_candidates.push(real);
            }
        }
    }

    // 4. The ELF closure of every executed or opened ELF object, as the
    // loader resolves it with the traced LD_LIBRARY_PATH / LD_PRELOAD.
    let mut loader = elf::LoaderEnv::host().with_env(log.env.iter());
    loader.cwd = log.cwd.clone();
    let threads = log.processes.iter().any(|p| p.threads > 0);
    b.elf_closure(&elf_candidates, loader, threads);

    // fanotify reports the file opened, never the name used to open it:
    // bring back the symlinks near included files that lead to them.
    if log.backend == "fanotify" {
        b.nearby_symlinks();
    }

    // 5. Every parent directory.
    let all: Vec<PathBuf> = b.reasons.keys().cloned().collect();
    for p in all {
        let mut cur = p.parent();
        while let Some(dir) = cur {
            if dir == Path::new("/") {
                break;
            }
            b.reasons
                .entry(dir.to_path_buf())
                .or_default()
                .insert(Reason::ParentDir);
            cur = dir.parent();
        }
    }

    // 6. Metadata and content digests, in parallel.
    let mut fileset = FileSet::new(root.dir());
    let cache = opts
        .digests
        .clone()
        .unwrap_or_else(|| std::sync::Arc::new(DigestCache::in_memory()));
    let metas: Vec<(PathBuf, Result<Option<Entry>, String>)> = b
        .reasons
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(p, r)| {
            let e = entry_for(root, &p, r, &cache);
            (p, e)
        })
        .collect();
    cache.save();
    let mut findings = b.findings;
    for (path, e) in metas {
        match e {
            Ok(Some(entry)) => {
                if entry.file_type == FileType::File
                    && !b.explicit.contains(&path)
                    && entry.size <= KEY_SNIFF_MAX
                    && holds_private_key(&root.host_path(&path))
                {
                    // A private key found by its content: name the process
                    // that read it, as for the secrets known by name.
                    let pid = log
                        .files
                        .get(&ImagePath(path.clone()))
                        .map_or(0, |a| a.first_pid);
                    findings.push(Finding::SecretExcluded { path, pid });
                    continue;
                }
                fileset.entries.insert(ImagePath(path), entry);
            }
            Ok(None) => {}
            Err(why) => findings.push(Finding::Skipped { path, why }),
        }
    }

    // 7. passwd/group, shadow/gshadow without their hashes, and the
    // runtime skeleton.
    let kept = if opts.keep_passwd {
        None
    } else {
        let (kept, dropped) = reduce_accounts(&mut fileset, root, log, opts.user);
        findings.extend(dropped);
        Some(kept)
    };
    for (path, pid) in redacted {
        if fileset.entries.contains_key(&ImagePath(path.clone())) {
            // Explicitly included (step 3): the real file, as asked.
            continue;
        }
        match redacted_entry(root, &path, kept.as_ref()) {
            Ok(entry) => {
                fileset.entries.insert(ImagePath(path.clone()), entry);
                findings.push(Finding::SecretRedacted { path, pid });
            }
            Err(why) => findings.push(Finding::Skipped { path, why }),
        }
    }
    add_skeleton(&mut fileset);
    Ok(Built { fileset, findings })
}

/// The nearest directory above an output that the run did not create
/// itself (it existed before the run), when it still exists.
fn output_dir(log: &AccessLog, root: &Root, output: &Path) -> Option<PathBuf> {
    let mut dir = output.parent()?;
    loop {
        let made_by_run = log
            .files
            .get(&ImagePath(dir.to_path_buf()))
            .is_some_and(|a| a.created());
        if !made_by_run {
            let real = root.canonicalize(dir)?;
            return (root.lstat(&real).ok()?.is_dir() && real != Path::new("/")).then_some(real);
        }
        dir = dir.parent()?;
    }
}

/// `D/__pycache__/NAME.TAG[.opt-N].pyc` → `D/NAME.py`.
fn pyc_source(pyc: &Path) -> Option<PathBuf> {
    let cache = pyc.parent()?;
    if cache.file_name() != Some(OsStr::new("__pycache__")) {
        return None;
    }
    let name = pyc.file_name()?.as_bytes();
    let stem = name.split(|&b| b == b'.').next()?;
    Some(
        cache
            .parent()?
            .join(format!("{}.py", String::from_utf8_lossy(stem))),
    )
}

/// `…/lib/pythonX.Y/<anything>` → `…/lib/pythonX.Y/os.py`, the file Python
/// stats to find its prefix (in 3.11 `os` itself is frozen, never opened).
fn python_landmark(path: &Path) -> Option<PathBuf> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let name = d.file_name()?.as_bytes();
        if name.starts_with(b"python3.")
            && d.parent().and_then(Path::file_name) == Some(OsStr::new("lib"))
        {
            return Some(d.join("os.py"));
        }
        dir = d.parent();
    }
    None
}

fn is_runtime(path: &Path) -> bool {
    RUNTIME_DIRS
        .iter()
        .any(|d| path.starts_with(d) && path != Path::new(d))
}

impl Builder<'_> {
    /// Symlinks whose target is an included path or one of its directories
    /// and that sit next to it: directly in any directory above an included
    /// path (`/usr/share/perl/5.36 → 5.36.0`, `/bin → usr/bin`), or within
    /// two levels below an included file's grandparent
    /// (`zoneinfo/US/Eastern → ../America/New_York`). An over-approximation,
    /// for backends blind to the names programs use.
    fn nearby_symlinks(&mut self) {
        let included: BTreeSet<PathBuf> = self.reasons.keys().cloned().collect();
        let mut wanted: BTreeSet<PathBuf> = included.clone();
        for p in &included {
            wanted.extend(p.ancestors().skip(1).map(Path::to_path_buf));
        }
        // Directory → how deep to look below it.
        let mut scan: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for p in &included {
            for a in p.ancestors().skip(1) {
                scan.entry(a.to_path_buf()).or_insert(1);
            }
            if let Some(g) = p
                .parent()
                .and_then(Path::parent)
                .filter(|g| *g != Path::new("/"))
            {
                scan.insert(g.to_path_buf(), 2);
            }
        }
        let mut found = Vec::new();
        for (dir, depth) in scan {
            let host = self.root.host_path(&dir);
            for e in walkdir::WalkDir::new(&host)
                .min_depth(1)
                .max_depth(depth)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .flatten()
            {
                if !e.path_is_symlink() {
                    continue;
                }
                let Ok(rel) = e.path().strip_prefix(&host) else {
                    continue;
                };
                let link = dir.join(rel);
                if let Some(target) = self.root.canonicalize(&link) {
                    if wanted.contains(&target) {
                        found.push(link);
                    }
                }
            }
        }
        for link in found {
            self.add_resolved(&link, Reason::SymlinkChain);
        }
    }

    fn is_secret(&self, path: &Path) -> bool {
        self.secrets.is_match(path)
    }

    /// Whether `path` may enter the file set (not excluded, not a runtime
    /// path, not a secret unless explicitly included).
    fn admissible(&mut self, path: &Path) -> bool {
        if is_runtime(path) || self.exclude.is_match(path) {
            return false;
        }
        !self.is_secret(path) || self.explicit.contains(path)
    }

    /// Add a physical path as it is.
    fn add_exact(&mut self, path: &Path, reason: Reason) {
        if self.admissible(path) {
            self.reasons
                .entry(path.to_path_buf())
                .or_default()
                .insert(reason);
        }
    }

    /// Resolve `path` in the root; add every symlink on the way and the file
    /// it leads to. Returns the physical path when it exists.
    fn add_resolved(&mut self, path: &Path, reason: Reason) -> Option<PathBuf> {
        let r = self.root.resolve(path, Follow::Yes);
        for link in &r.links {
            self.add_exact(&link.path, Reason::SymlinkChain);
        }
        if !r.exists() {
            return None;
        }
        self.add_exact(&r.path, reason);
        Some(r.path)
    }

    /// The `#!` chain of an executed file: every interpreter, added.
    fn interpreters(&mut self, exe: &Path, path_var: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut cur = exe.to_path_buf();
        for _ in 0..MAX_INTERP_DEPTH {
            let Ok(Image::Script { interpreter, arg }) =
                execinfo::inspect(&self.root.host_path(&cur))
            else {
                break;
            };
            let Some(real) = self.add_resolved(&interpreter, Reason::Interpreter) else {
                break;
            };
            out.push(real.clone());
            // `#!/usr/bin/env NAME`: NAME along PATH is the real interpreter.
            if real.file_name() == Some(OsStr::new("env")) {
                if let Some(name) = arg.as_deref().and_then(|a| {
                    a.split(|c| c.is_ascii_whitespace())
                        .find(|w| !w.is_empty() && w[0] != b'-')
                }) {
                    if let Some(found) = self.find_in_path(OsStr::from_bytes(name), path_var) {
                        out.push(found.clone());
                        cur = found;
                        continue;
                    }
                }
            }
            cur = real;
        }
        out
    }

    fn find_in_path(&mut self, name: &OsStr, path_var: &str) -> Option<PathBuf> {
        let cand = self.root.find_in_path(name, path_var.as_bytes())?;
        self.add_resolved(&cand, Reason::Interpreter)
    }

    /// Add the loader's closure of each ELF candidate (non-ELF candidates
    /// are skipped: scripts and data files are common among them).
    ///
    /// `threads`: the run started threads. glibc then may `dlopen`
    /// `libgcc_s.so.1` at any thread's `pthread_exit` or cancellation (to
    /// unwind; Python ends every thread with `pthread_exit`), and aborts
    /// without it; whether the traced run got that far is timing (a daemon
    /// thread still running at exit never does). So it is added, found
    /// next to the glibc `libc.so.6` the closure loads (where its
    /// ld.so.cache entry points on the distributions we know), with its
    /// own closure.
    fn elf_closure(&mut self, candidates: &[PathBuf], loader: elf::LoaderEnv, threads: bool) {
        let resolver = elf::Resolver::new(self.root, loader);
        let mut outcomes: Vec<_> = candidates
            .par_iter()
            .map(|c| (c.clone(), resolver.closure(c)))
            .collect();
        if threads {
            let libc_dirs: BTreeSet<PathBuf> = outcomes
                .iter()
                .filter_map(|(_, o)| match o {
                    Ok(elf::Outcome::Elf(c)) => Some(c),
                    _ => None,
                })
                .flat_map(|c| c.objects.iter())
                .filter(|o| o.elf.soname.as_deref() == Some(OsStr::new(GLIBC_LIBC)))
                .filter_map(|o| o.path.parent().map(Path::to_path_buf))
                .collect();
            for dir in libc_dirs {
                let unwinder = dir.join(GLIBC_UNWINDER);
                if self.root.lstat(&unwinder).is_ok() {
                    let outcome = resolver.closure(&unwinder);
                    if let Ok(elf::Outcome::Elf(_)) = &outcome {
                        self.add_resolved(&unwinder, Reason::ElfDependency);
                    }
                    outcomes.push((unwinder, outcome));
                }
            }
        }
        // What the traced processes had loaded: ld.so satisfies a
        // DT_NEEDED by an object already loaded under that SONAME (java's
        // libjava.so needs libjvm.so, which java dlopen'ed by its path and
        // no search path would find). The trace does not tell which process
        // mapped what, so any traced process counts (docs/fidelity.md).
        let mut loaded: BTreeSet<&[u8]> = BTreeSet::new();
        for (_, outcome) in &outcomes {
            if let Ok(elf::Outcome::Elf(c)) = outcome {
                for o in &c.objects {
                    if let Some(s) = &o.elf.soname {
                        loaded.insert(s.as_bytes());
                    }
                }
            }
        }
        let mut missing = Vec::new();
        for (candidate, outcome) in &outcomes {
            match outcome {
                Ok(elf::Outcome::Elf(c)) => {
                    for link in &c.links {
                        self.add_exact(&link.path, Reason::SymlinkChain);
                    }
                    for o in c.objects.iter().skip(1) {
                        self.add_exact(&o.path, Reason::ElfDependency);
                    }
                    for f in &c.loader_files {
                        self.add_exact(f, Reason::ElfDependency);
                    }
                    for u in c.unresolved() {
                        if u.need.kind == elf::NeedKind::Needed
                            && loaded.contains(u.need.name.as_bytes())
                        {
                            continue;
                        }
                        missing.push(Finding::MissingLibrary {
                            name: u.need.name.to_string_lossy().into_owned(),
                            needed_by: u.needed_by.path.clone(),
                        });
                    }
                }
                Ok(elf::Outcome::NotElf { .. }) => {}
                Err(e) => self.findings.push(Finding::Skipped {
                    path: candidate.clone(),
                    why: crate::error::Chain(e).to_string(),
                }),
            }
        }
        // One finding per library and the object that needs it, however
        // many candidates share that object.
        missing.sort_by(|a, b| format!("{a}").cmp(&format!("{b}")));
        missing.dedup();
        self.findings.extend(missing);
    }
}

/// Expand an include pattern against the root: a literal path as itself, a
/// glob by walking its literal prefix.
fn expand(root: &Root, pattern: &str) -> Result<Vec<PathBuf>, BuildError> {
    let is_glob = pattern.contains(['*', '?', '[', '{']);
    if !is_glob {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let matcher = glob(pattern)
        .map_err(|source| BuildError::Pattern {
            what: "include",
            pattern: pattern.to_string(),
            source,
        })?
        .compile_matcher();
    // The directory before the first component with a wildcard.
    let mut base = PathBuf::from("/");
    for c in Path::new(pattern).components().skip(1) {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(c);
    }
    let Some(real_base) = root.canonicalize(&base) else {
        return Ok(Vec::new());
    };
    let host_base = root.host_path(&real_base);
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&host_base)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| BuildError::Io {
            path: host_base.clone(),
            source: e.into(),
        })?;
        let Ok(rel) = e.path().strip_prefix(&host_base) else {
            continue;
        };
        // Match against the pattern's own spelling of the base.
        let named = if rel.as_os_str().is_empty() {
            base.clone()
        } else {
            base.join(rel)
        };
        if matcher.is_match(&named) {
            out.push(named);
        }
    }
    Ok(out)
}

/// The entry for an in-root path, from the filesystem now. `Ok(None)` for
/// types a jail never carries (sockets, fifos, devices).
fn entry_for(
    root: &Root,
    path: &Path,
    reasons: BTreeSet<Reason>,
    digests: &DigestCache,
) -> Result<Option<Entry>, String> {
    let host = root.host_path(path);
    let meta =
        fs::symlink_metadata(&host).map_err(|e| format!("cannot stat it after the run: {e}"))?;
    let file_type = FileType::of(&meta);
    let mut e = Entry {
        file_type,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: 0,
        sha256: None,
        target: None,
        // Directory mtimes change with every file created in them, the
        // traced run's outputs included; no program depends on them, so a
        // traced file set gives directories mtime 0 (docs/formats.md).
        mtime: if file_type == FileType::Dir {
            0
        } else {
            meta.mtime()
        },
        capability: None,
        content: None,
        reasons,
    };
    match file_type {
        FileType::File => {
            e.size = meta.len();
            e.sha256 = Some(
                digests
                    .digest(&host, &meta)
                    .map_err(|e| format!("cannot read it: {e}"))?,
            );
            e.capability = crate::sys::xattr::lget(&host, "security.capability")
                .ok()
                .flatten();
        }
        FileType::Symlink => {
            e.target = Some(fs::read_link(&host).map_err(|e| format!("cannot read the link: {e}"))?)
        }
        FileType::Dir => {}
        _ => return Ok(None),
    }
    Ok(Some(e))
}

/// A PEM private key block (`-----BEGIN … PRIVATE KEY-----`) near the
/// start of the file: where a key file has it.
fn holds_private_key(host: &Path) -> bool {
    let mut buf = Vec::with_capacity(KEY_SNIFF_HEAD as usize);
    if fs::File::open(host)
        .and_then(|f| f.take(KEY_SNIFF_HEAD).read_to_end(&mut buf))
        .is_err()
    {
        return false;
    }
    memchr::memmem::find(&buf, b"PRIVATE KEY-----").is_some()
        && memchr::memmem::find(&buf, b"-----BEGIN").is_some()
}

/// The ids that must keep their accounts: root, the run user, every id a
/// traced process ran as, every owner of a path in the file set.
#[derive(Debug, Default)]
struct Evidence {
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
}

impl Evidence {
    fn gather(fs_: &FileSet, log: &AccessLog, user: Option<(u32, u32)>) -> Evidence {
        let mut e = Evidence::default();
        e.uids.insert(0);
        e.gids.insert(0);
        if let Some((u, g)) = user {
            e.uids.insert(u);
            e.gids.insert(g);
        }
        for p in &log.processes {
            e.uids.extend(&p.uids);
            e.gids.extend(&p.gids);
        }
        for entry in fs_.entries.values() {
            e.uids.insert(entry.uid);
            e.gids.insert(entry.gid);
        }
        e
    }
}

/// The highest system uid and gid of a root, from its `/etc/login.defs`
/// (`SYS_UID_MAX`, else `UID_MIN` - 1; 999 when it says neither).
fn system_id_max(root: &Root) -> (u32, u32) {
    let text = fs::read_to_string(root.host_path(Path::new("/etc/login.defs"))).unwrap_or_default();
    let value = |key: &str| -> Option<u32> {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
        })
    };
    let uid = value("SYS_UID_MAX").or_else(|| value("UID_MIN").map(|m| m.saturating_sub(1)));
    let gid = value("SYS_GID_MAX").or_else(|| value("GID_MIN").map(|m| m.saturating_sub(1)));
    (uid.unwrap_or(999), gid.unwrap_or(999))
}

/// `nobody` and `nogroup`: system accounts by convention, above the range.
const OVERFLOW_ID: u32 = 65534;

/// The account names a reduced passwd and group keep (what
/// `/etc/shadow` and `/etc/gshadow` are reduced to as well).
#[derive(Debug, Default)]
struct KeptAccounts {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

/// Reduce `/etc/passwd` and `/etc/group` (when in the file set) by
/// evidence: keep root, the run user, every id a traced process ran as,
/// every owner of a kept path, the root's system accounts, and the groups
/// of kept users (primary, or listing them); drop the rest (human
/// accounts), and say which. The names are decided from the root's files
/// even when the run did not read them, for the shadow files.
fn reduce_accounts(
    fs_: &mut FileSet,
    root: &Root,
    log: &AccessLog,
    user: Option<(u32, u32)>,
) -> (KeptAccounts, Vec<Finding>) {
    let evidence = Evidence::gather(fs_, log, user);
    let (sys_uid, sys_gid) = system_id_max(root);
    let mut findings = Vec::new();
    let mut kept = KeptAccounts::default();
    // The primary groups of kept users (passwd is read first).
    let mut primary: BTreeSet<u32> = BTreeSet::new();
    for file in ["/etc/passwd", "/etc/group"] {
        let is_group = file == "/etc/group";
        let key = ImagePath(PathBuf::from(file));
        let Ok(text) = fs::read_to_string(root.host_path(Path::new(file))) else {
            continue;
        };
        let mut out = String::new();
        let mut dropped = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let Some(id) = fields.get(2).and_then(|s| s.parse::<u32>().ok()) else {
                // Not an account line (comments, NIS `+`): keep as it is.
                out.push_str(line);
                out.push('\n');
                continue;
            };
            let keep = if is_group {
                evidence.gids.contains(&id)
                    || primary.contains(&id)
                    || id <= sys_gid
                    || id == OVERFLOW_ID
                    || fields
                        .get(3)
                        .is_some_and(|m| m.split(',').any(|n| kept.users.contains(n)))
            } else {
                evidence.uids.contains(&id) || id <= sys_uid || id == OVERFLOW_ID
            };
            if keep {
                if is_group {
                    kept.groups.insert(fields[0].to_string());
                } else {
                    kept.users.insert(fields[0].to_string());
                    primary.extend(fields.get(3).and_then(|g| g.parse::<u32>().ok()));
                }
                out.push_str(line);
                out.push('\n');
            } else {
                dropped.push(fields[0].to_string());
            }
        }
        let Some(entry) = fs_
            .entries
            .get_mut(&key)
            .filter(|e| e.file_type == FileType::File)
        else {
            continue;
        };
        if !dropped.is_empty() {
            findings.push(Finding::AccountsDropped {
                path: PathBuf::from(file),
                names: dropped,
            });
        }
        entry.size = out.len() as u64;
        entry.sha256 = Some(Digest::of(out.as_bytes()));
        entry.content = Some(out);
        entry.reasons.insert(Reason::Generated);
    }
    (kept, findings)
}

/// `/etc/shadow` or `/etc/gshadow` as the jail gets it: the accounts of
/// the reduced passwd/group (every account when `kept` is `None`), each
/// password hash replaced by `*` (`!` when the account was locked), every
/// other field (ages, expiry, group admins and members) as in the root;
/// the file's mode, owner and mtime as in the root. The hashes are the
/// secret: an account check (PAM's `pam_unix` account stage, which `su`
/// and `login` run even for root) needs the entry, and no password works
/// in the jail.
fn redacted_entry(root: &Root, path: &Path, kept: Option<&KeptAccounts>) -> Result<Entry, String> {
    let host = root.host_path(path);
    let meta =
        fs::symlink_metadata(&host).map_err(|e| format!("cannot stat it after the run: {e}"))?;
    let text = fs::read_to_string(&host).map_err(|e| format!("cannot read it: {e}"))?;
    let names = kept.map(|k| {
        if path == Path::new("/etc/gshadow") {
            &k.groups
        } else {
            &k.users
        }
    });
    let out = redact_shadow(&text, names);
    Ok(Entry {
        file_type: FileType::File,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: out.len() as u64,
        sha256: Some(Digest::of(out.as_bytes())),
        target: None,
        mtime: meta.mtime(),
        capability: None,
        content: Some(out),
        reasons: BTreeSet::from([Reason::TracedRead, Reason::Generated]),
    })
}

/// The lines of a shadow file for `names` (all when `None`), without
/// password hashes. A field that holds no hash (empty, `*`, `!`, `!!`,
/// `!*`, `x`) stays; lines that are not `name:password:…` are dropped.
fn redact_shadow(text: &str, names: Option<&BTreeSet<String>>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 2 || fields[0].is_empty() {
            continue;
        }
        if names.is_some_and(|n| !n.contains(fields[0])) {
            continue;
        }
        if !matches!(fields[1], "" | "*" | "!" | "!!" | "!*" | "x") {
            fields[1] = if fields[1].starts_with('!') { "!" } else { "*" };
        }
        out.push_str(&fields.join(":"));
        out.push('\n');
    }
    out
}

/// `/tmp` with mode 1777, as every program expects.
fn add_skeleton(fs_: &mut FileSet) {
    let e = fs_
        .entries
        .entry(ImagePath(PathBuf::from("/tmp")))
        .or_insert_with(|| Entry::dir(0o1777, 0, 0, Reason::Skeleton));
    if e.file_type == FileType::Dir {
        e.mode = 0o1777;
    }
    e.reasons.insert(Reason::Skeleton);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_patterns_match_what_they_should() {
        let s = globset("secret", SECRET_PATTERNS).unwrap();
        for p in [
            "/etc/shadow",
            "/root/.ssh/id_ed25519",
            "/home/a/.aws/credentials",
            "/root/.docker/config.json",
            "/etc/ssh/ssh_host_rsa_key",
            "/home/u/.config/gcloud/x/y",
        ] {
            assert!(s.is_match(p), "{p}");
        }
        for p in [
            "/etc/passwd",
            "/etc/ssh/ssh_host_rsa_key.pub",
            "/etc/shadowsocks",
            "/usr/share/doc/ssh",
        ] {
            assert!(!s.is_match(p), "{p}");
        }
    }

    #[test]
    fn shadow_keeps_the_kept_accounts_without_hashes() {
        let text = "root:$y$j9T$salt$hash:20228:0:99999:7:::\nwww-data:*:20228:0:99999:7:::\nlocked:!$6$s$h:20228:0:99999:7::20300:\nnopw::20228::::::\nalice:$6$s$h:20228:0:99999:7:::\nbroken\n";
        let names: BTreeSet<String> = ["root", "www-data", "locked", "nopw"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            redact_shadow(text, Some(&names)),
            "root:*:20228:0:99999:7:::\nwww-data:*:20228:0:99999:7:::\nlocked:!:20228:0:99999:7::20300:\nnopw::20228::::::\n"
        );
        assert!(redact_shadow(text, None).contains("alice:*:"));
        assert!(!redact_shadow(text, None).contains('$'));
    }

    #[test]
    fn pyc_sources() {
        assert_eq!(
            pyc_source(Path::new("/l/json/__pycache__/decoder.cpython-311.pyc")),
            Some(PathBuf::from("/l/json/decoder.py"))
        );
        assert_eq!(
            pyc_source(Path::new("/l/__pycache__/x.cpython-311.opt-1.pyc")),
            Some(PathBuf::from("/l/x.py"))
        );
        assert_eq!(pyc_source(Path::new("/l/x.pyc")), None);
        assert_eq!(
            python_landmark(Path::new("/usr/lib/python3.11/json/__init__.py")),
            Some(PathBuf::from("/usr/lib/python3.11/os.py"))
        );
        assert_eq!(
            python_landmark(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
            None
        );
    }

    /// A root with accounts of every kind, and a file set holding its
    /// passwd and group plus one file owned by `owner`.
    fn accounts_root(owner: (u32, u32)) -> (tempfile::TempDir, Root, FileSet) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/login.defs"),
            "UID_MIN 1000\nSYS_UID_MAX 499\nGID_MIN 1000\nSYS_GID_MAX 499\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nsvc:x:600:600::/:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\ncarol:x:1002:1002::/home/carol:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nsvc:x:600:\nalice:x:1000:\nbob:x:1001:\ncarol:x:1002:\nstaff:x:1500:alice\nnogroup:x:65534:\n",
        )
        .unwrap();
        let root = Root::new(d.path()).unwrap();
        let mut set = FileSet::new(d.path());
        let entry = |uid, gid| Entry {
            file_type: FileType::File,
            mode: 0o644,
            uid,
            gid,
            size: 0,
            sha256: None,
            target: None,
            mtime: 0,
            capability: None,
            content: None,
            reasons: BTreeSet::new(),
        };
        for p in ["/etc/passwd", "/etc/group"] {
            set.entries.insert(ImagePath(p.into()), entry(0, 0));
        }
        set.entries
            .insert(ImagePath("/data".into()), entry(owner.0, owner.1));
        (d, root, set)
    }

    fn log_with_ids(uids: &[u32], gids: &[u32]) -> AccessLog {
        AccessLog {
            command: vec!["x".into()],
            root: "/".into(),
            cwd: "/".into(),
            backend: "ptrace".into(),
            env: BTreeMap::new(),
            exit: crate::trace::ExitStatus::Code { code: 0 },
            processes: vec![crate::trace::log::Process {
                pid: 1,
                ppid: 0,
                execs: Vec::new(),
                threads: 0,
                exit: None,
                uids: uids.iter().copied().collect(),
                gids: gids.iter().copied().collect(),
            }],
            files: BTreeMap::new(),
            names: BTreeMap::new(),
            syscalls: None,
            warnings: Vec::new(),
            stats: Default::default(),
        }
    }

    #[test]
    fn accounts_are_kept_by_evidence() {
        // bob owns a kept file; a process ran as uid 1000 (alice); carol
        // has no evidence. svc (600) is above SYS_UID_MAX 499: human.
        let (_d, root, mut set) = accounts_root((1001, 1001));
        let log = log_with_ids(&[1000], &[]);
        let (_, findings) = reduce_accounts(&mut set, &root, &log, None);
        assert_eq!(
            names_of(&set, "/etc/passwd"),
            ["root", "www-data", "alice", "bob", "nobody"]
        );
        // A kept user's primary group, and a group that lists one.
        assert_eq!(
            names_of(&set, "/etc/group"),
            ["root", "www-data", "alice", "bob", "staff", "nogroup"]
        );
        assert!(findings.contains(&Finding::AccountsDropped {
            path: "/etc/passwd".into(),
            names: vec!["svc".into(), "carol".into()],
        }));
        // The run user, and a gid a process switched to.
        let (_d, root, mut set) = accounts_root((0, 0));
        let log = log_with_ids(&[], &[600]);
        reduce_accounts(&mut set, &root, &log, Some((1002, 1002)));
        assert_eq!(
            names_of(&set, "/etc/passwd"),
            ["root", "www-data", "carol", "nobody"]
        );
        assert_eq!(
            names_of(&set, "/etc/group"),
            ["root", "www-data", "svc", "carol", "nogroup"]
        );
    }

    fn names_of(set: &FileSet, p: &str) -> Vec<String> {
        set.get(Path::new(p))
            .unwrap()
            .content
            .as_deref()
            .unwrap()
            .lines()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn runtime_dirs_keep_only_themselves() {
        assert!(is_runtime(Path::new("/proc/self/maps")));
        assert!(is_runtime(Path::new("/run/nscd/socket")));
        assert!(!is_runtime(Path::new("/run")));
        assert!(!is_runtime(Path::new("/devices")));
    }
}
