//! Security review of a jail (`jail report`, SPEC "Security review"): per
//! file why it is there, what it is and who installed it; flags for what a
//! reviewer must look at (setuid, capabilities, world-writable paths,
//! shells and other tools, ELF hardening, RPATHs, secrets left out); the
//! difference to the image it was slimmed from; and a seccomp profile from
//! the traced syscalls ([`seccomp`]). The JSON schema is docs/report.md.
//!
//! ```no_run
//! use jail::report::{self, Source};
//! let src = Source::parse("jail.tar")?;
//! let subject = report::load(&src, "jail.tar", None, &std::env::temp_dir(), &Default::default())?;
//! let review = report::review(&subject, None);
//! println!("{} findings", review.findings.len());
//! # Ok::<(), report::ReportError>(())
//! ```

pub mod caps;
pub use crate::dpkg;
pub mod names;
pub mod seccomp;
mod source;
mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

pub use source::{load, Loaded, Source, SourceKind};
pub use text::write_text;

use crate::digest::Digest;
use crate::elf::{self, Linking, Parsed, Relro};
use crate::fileset::finding::Finding as BuildFinding;
use crate::fileset::{Entry, Reason};
use crate::paths::{serde_opt_path, serde_path};
use crate::resolve::{FileType, Follow, Root};
use dpkg::PackageDb;
use names::Category;

/// Version of the JSON schema (docs/report.md).
pub const SCHEMA_VERSION: u32 = 1;

/// Why a subject could not be reviewed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Open(#[from] crate::input::OpenError),
    #[error(transparent)]
    Image(#[from] crate::image::read::ReadError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Tree(#[from] crate::fileset::DirError),
    #[error(transparent)]
    Dpkg(#[from] dpkg::DpkgError),
}

impl ReportError {
    /// The signal that stopped unpacking an image, if one did.
    pub fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        match self {
            ReportError::Image(e) => e.interrupted(),
            ReportError::Open(e) => crate::error::ExitCode::interrupted(e),
            _ => None,
        }
    }

    /// True when the input is at fault (exit 2) rather than the machine.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ReportError::Image(e) => e.is_bad_input(),
            ReportError::Open(e) => crate::error::ExitCode::is_bad_input(e),
            ReportError::Dpkg(_) => false,
            _ => true,
        }
    }
}

impl crate::error::ExitCode for ReportError {
    fn interrupted(&self) -> Option<crate::sys::interrupt::Interrupted> {
        ReportError::interrupted(self)
    }

    fn is_bad_input(&self) -> bool {
        ReportError::is_bad_input(self)
    }
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

/// What a finding is about. docs/report.md says how each is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Setuid,
    Setgid,
    Capability,
    WorldWritable,
    WorldWritableDir,
    InsecureRpath,
    ExecStack,
    SecretExcluded,
    Shell,
    Interpreter,
    PackageManager,
    NetworkTool,
    Compiler,
    NoPie,
    NoRelro,
    MissingLibrary,
    PartialRelro,
    NoStackProtector,
    NoFortify,
    Skipped,
    CredentialExcluded,
    AccountsDropped,
    /// A private key in the image (found by content, whatever its name).
    PrivateKey,
    /// A dotfile under a home directory: likely the build machine's
    /// (a `.gitconfig` traced from the host).
    HomeDotfile,
    /// The image config runs the command as root.
    RunsAsRoot,
}

impl Kind {
    pub fn severity(self) -> Severity {
        use Kind::*;
        match self {
            Setuid | Setgid | Capability | WorldWritable | WorldWritableDir | InsecureRpath
            | ExecStack | SecretExcluded | CredentialExcluded | PrivateKey => Severity::High,
            HomeDotfile | RunsAsRoot => Severity::Medium,
            Shell | Interpreter | PackageManager | NetworkTool | Compiler | NoPie | NoRelro
            | MissingLibrary => Severity::Medium,
            PartialRelro | NoStackProtector | NoFortify | Skipped | AccountsDropped => {
                Severity::Low
            }
        }
    }

    /// The kebab-case name used in JSON and the text output.
    pub fn as_str(self) -> &'static str {
        use Kind::*;
        match self {
            Setuid => "setuid",
            Setgid => "setgid",
            Capability => "capability",
            WorldWritable => "world-writable",
            WorldWritableDir => "world-writable-dir",
            InsecureRpath => "insecure-rpath",
            ExecStack => "exec-stack",
            SecretExcluded => "secret-excluded",
            Shell => "shell",
            Interpreter => "interpreter",
            PackageManager => "package-manager",
            NetworkTool => "network-tool",
            Compiler => "compiler",
            NoPie => "no-pie",
            NoRelro => "no-relro",
            MissingLibrary => "missing-library",
            PartialRelro => "partial-relro",
            NoStackProtector => "no-stack-protector",
            NoFortify => "no-fortify",
            CredentialExcluded => "credential-excluded",
            AccountsDropped => "accounts-dropped",
            Skipped => "skipped",
            PrivateKey => "private-key",
            HomeDotfile => "home-dotfile",
            RunsAsRoot => "runs-as-root",
        }
    }

    /// The kinds `--against` compares (what slimming should remove).
    pub const COMPARED: [Kind; 10] = [
        Kind::Shell,
        Kind::Interpreter,
        Kind::PackageManager,
        Kind::NetworkTool,
        Kind::Compiler,
        Kind::Setuid,
        Kind::Setgid,
        Kind::Capability,
        Kind::WorldWritable,
        Kind::WorldWritableDir,
    ];
}

impl From<Category> for Kind {
    fn from(c: Category) -> Kind {
        match c {
            Category::Shell => Kind::Shell,
            Category::Interpreter => Kind::Interpreter,
            Category::PackageManager => Kind::PackageManager,
            Category::NetworkTool => Kind::NetworkTool,
            Category::Compiler => Kind::Compiler,
        }
    }
}

/// One thing a reviewer should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// The in-image path it is about.
    #[serde(with = "serde_path")]
    pub path: PathBuf,
    /// What exactly (the mode, the capabilities, the RPATH entry…).
    pub detail: String,
}

impl Finding {
    fn new(kind: Kind, path: &Path, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: kind.severity(),
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// ELF facts of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElfReport {
    pub linking: Linking,
    /// Position independent (only meaningful for executables).
    pub pie: bool,
    pub relro: Relro,
    pub nx_stack: bool,
    /// `None` for a file without dynamic symbols (static), where imports
    /// cannot tell.
    pub stack_protector: Option<bool>,
    pub fortify: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rpath: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runpath: Vec<String>,
}

/// One path of the jail.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileReport {
    #[serde(with = "serde_path")]
    pub path: PathBuf,
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Octal, with setuid/setgid/sticky: `"4755"`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: Option<Digest>,
    #[serde(with = "serde_opt_path")]
    pub target: Option<PathBuf>,
    /// Why it is in the jail; `None` when unknown (no manifest).
    pub reasons: Option<BTreeSet<Reason>>,
    /// Debian packages that installed it (empty: none, or no database).
    pub packages: Vec<String>,
    /// Decoded file capabilities (`cap_net_raw+ep`).
    pub capability: Option<String>,
    pub elf: Option<ElfReport>,
    /// The kinds of this path's findings.
    pub flags: Vec<Kind>,
    /// A directory, or a symlink to one (`/lib -> usr/lib`, which dpkg
    /// lists as a directory of every package with files below it).
    #[serde(skip)]
    dir_like: bool,
}

/// A package the jail uses files of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageUse {
    pub name: String,
    pub version: Option<String>,
    /// Non-directory paths of the jail it installed.
    pub files: usize,
}

/// What was reviewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubjectInfo {
    pub name: String,
    pub kind: SourceKind,
    #[serde(with = "serde_opt_path")]
    pub manifest: Option<PathBuf>,
    pub reasons_known: bool,
    /// Whose package database attributed the files: an image's name, or
    /// a root directory (`/`).
    pub packages_from: Option<String>,
}

/// Package counts of the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageSummary {
    /// Packages with at least one non-directory path in the jail.
    pub packages: usize,
    /// Non-directory paths some package installed (a symlink to a
    /// directory counts as a directory).
    pub files: usize,
    /// Non-directory paths no package installed (generated, local).
    pub unowned: usize,
}

/// Counts first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub paths: usize,
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub other: usize,
    /// Bytes of regular files.
    pub bytes: u64,
    /// `None` without a package database.
    pub packages: Option<PackageSummary>,
    pub findings: BTreeMap<Kind, usize>,
    pub severities: BTreeMap<Severity, usize>,
}

/// The review of one subject.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub subject: SubjectInfo,
    pub summary: Summary,
    /// Sorted by severity, kind, path.
    pub findings: Vec<Finding>,
    /// Sorted by name.
    pub packages: Vec<PackageUse>,
    /// Sorted by path (bytewise).
    pub files: Vec<FileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Comparison>,
    /// The image config (an image subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigInfo>,
    pub notes: Vec<String>,
}

/// A non-directory path under `/root` or `/home/USER` with a component
/// starting with `.` (`.gitconfig`, `.ssh/id_ed25519`).
fn home_dotfile(path: &Path) -> bool {
    let rest = if let Ok(r) = path.strip_prefix("/root") {
        r
    } else if let Ok(r) = path.strip_prefix("/home") {
        let mut c = r.components();
        if c.next().is_none() {
            return false;
        }
        c.as_path()
    } else {
        return false;
    };
    rest.components()
        .any(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'))
}

/// The image config a report shows (an image subject only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConfigInfo {
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
}

impl ConfigInfo {
    /// Whether the command runs as root: no User, or user 0 / root.
    pub fn runs_as_root(&self) -> bool {
        let user = self.user.as_deref().unwrap_or("");
        let name = user.split(':').next().unwrap_or("");
        name.is_empty() || name == "root" || name == "0"
    }
}

/// Review `subject`, attributing files with `packages` when given.
pub fn review(subject: &Loaded, packages: Option<&PackageDb>) -> Report {
    let set = &subject.fileset;
    let root = Root::new(&set.root).ok();
    let mut notes = subject.notes.clone();

    // Symlinks of the set leading to each regular file: a shell reached as
    // `/bin/sh` is a shell whatever its file is called.
    let mut aliases: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    if let Some(root) = &root {
        for (p, e) in &set.entries {
            if e.file_type != FileType::Symlink {
                continue;
            }
            if let Some(t) = root.canonicalize(p.as_path()) {
                if set.get(&t).is_some_and(|te| te.file_type == FileType::File) {
                    aliases.entry(t).or_default().push(p.0.clone());
                }
            }
        }
    }

    let ctx = Ctx {
        subject,
        root: root.as_ref(),
        aliases: &aliases,
        packages,
    };
    let analysed: Vec<(FileReport, Vec<Finding>, bool)> = set
        .entries
        .par_iter()
        .map(|(p, e)| ctx.file(p.as_path(), e))
        .collect();
    let unreadable = analysed.iter().filter(|(_, _, missing)| *missing).count();
    if unreadable > 0 {
        notes.push(format!(
            "{unreadable} files have no readable content under {}: their ELF facts are unknown",
            set.root.display()
        ));
    }
    let mut findings: Vec<Finding> = Vec::new();
    let mut files = Vec::with_capacity(analysed.len());
    for (f, fnd, _) in analysed {
        files.push(f);
        findings.extend(fnd);
    }
    if let Some(m) = &subject.manifest {
        findings.extend(m.findings.iter().map(build_finding));
    }
    if let Some(c) = subject.config.as_ref().filter(|c| c.runs_as_root()) {
        findings.push(Finding::new(
            Kind::RunsAsRoot,
            Path::new("/"),
            format!(
                "User is {}: the command runs as root; set a user (--user)",
                c.user
                    .as_deref()
                    .map_or("unset".to_string(), |u| format!("{u:?}"))
            ),
        ));
    }
    findings.sort_by(|a, b| {
        (a.severity, a.kind, &a.path, &a.detail).cmp(&(b.severity, b.kind, &b.path, &b.detail))
    });

    // Packages.
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    let (mut owned, mut unowned) = (0, 0);
    for f in files.iter().filter(|f| !f.dir_like) {
        if f.packages.is_empty() {
            unowned += 1;
        } else {
            owned += 1;
        }
        for p in &f.packages {
            *uses.entry(p.clone()).or_insert(0) += 1;
        }
    }
    let package_uses: Vec<PackageUse> = uses
        .into_iter()
        .map(|(name, files)| PackageUse {
            version: packages
                .and_then(|db| db.version(&name))
                .map(str::to_string),
            name,
            files,
        })
        .collect();

    let count = |t: FileType| files.iter().filter(|f| f.file_type == t).count();
    let (nfiles, dirs, symlinks) = (
        count(FileType::File),
        count(FileType::Dir),
        count(FileType::Symlink),
    );
    let mut by_kind = BTreeMap::new();
    let mut by_severity = BTreeMap::new();
    for f in &findings {
        *by_kind.entry(f.kind).or_insert(0) += 1;
        *by_severity.entry(f.severity).or_insert(0) += 1;
    }
    let summary = Summary {
        paths: files.len(),
        files: nfiles,
        dirs,
        symlinks,
        other: files.len() - nfiles - dirs - symlinks,
        bytes: set.total_size(),
        packages: packages.map(|_| PackageSummary {
            packages: package_uses.len(),
            files: owned,
            unowned,
        }),
        findings: by_kind,
        severities: by_severity,
    };
    Report {
        version: SCHEMA_VERSION,
        subject: SubjectInfo {
            name: subject.name.clone(),
            kind: subject.kind,
            manifest: subject.manifest_path.clone(),
            reasons_known: subject.reasons_known,
            packages_from: packages.map(|db| db.label.clone()),
        },
        summary,
        findings,
        packages: package_uses,
        files,
        against: None,
        config: subject.config.clone(),
        notes,
    }
}

/// The root whose package database should attribute `subject`'s files,
/// and how to name it: the subject's own content root when that has one,
/// else the original's (a slimmed image keeps no database), else the root
/// the manifest was traced in.
pub fn package_root(subject: &Loaded, original: Option<&Loaded>) -> Option<(Root, String)> {
    let mut candidates = vec![(subject.fileset.root.clone(), subject.root_label())];
    if let Some(o) = original {
        candidates.push((o.fileset.root.clone(), o.root_label()));
    }
    if let Some(fs) = subject.manifest.as_ref().and_then(|m| m.fileset.as_ref()) {
        candidates.push((fs.root.clone(), fs.root.display().to_string()));
    }
    candidates
        .into_iter()
        .filter_map(|(c, label)| Some((Root::new(&c).ok()?, label)))
        .find(|(r, _)| PackageDb::present(r))
}

fn build_finding(f: &BuildFinding) -> Finding {
    match f {
        BuildFinding::SecretExcluded { path, pid } => Finding::new(
            Kind::SecretExcluded,
            path,
            format!("read by pid {pid} during the trace, left out of the jail; provide it at run time (a secret, a mounted file) rather than including it"),
        ),
        BuildFinding::SecretRedacted { path, pid } => Finding::new(
            Kind::SecretExcluded,
            path,
            format!("read by pid {pid} during the trace; the image has a generated copy without password hashes"),
        ),
        BuildFinding::MissingLibrary { name, needed_by } => Finding::new(
            Kind::MissingLibrary,
            needed_by,
            format!("needs {name}, which the loader would not find"),
        ),
        BuildFinding::Skipped { path, why } => Finding::new(Kind::Skipped, path, why.clone()),
        BuildFinding::CredentialExcluded { name } => Finding::new(
            Kind::CredentialExcluded,
            std::path::Path::new("/"),
            format!("the traced environment's {name} looks like a credential and was left out of the image's Env; pass it at run time"),
        ),
        BuildFinding::AccountsDropped { path, names } => Finding::new(
            Kind::AccountsDropped,
            path,
            format!("accounts left out: {}", names.join(", ")),
        ),
    }
}

/// Device nodes every runtime provides with mode 0666 (and mounts its own
/// /dev over the image's): not world-writable findings.
const STANDARD_DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/console",
];

/// Where an executable named like a tool is a hook or a template, not the
/// tool (`/etc/cron.daily/dpkg`, `/usr/share/bug/dpkg`).
const NOT_PROGRAM_DIRS: [&str; 2] = ["/etc", "/usr/share"];

struct Ctx<'a> {
    subject: &'a Loaded,
    root: Option<&'a Root>,
    aliases: &'a HashMap<PathBuf, Vec<PathBuf>>,
    packages: Option<&'a PackageDb>,
}

impl Ctx<'_> {
    /// The report of one path, its findings, and whether its content was
    /// expected but missing.
    /// A PEM private key block near the start of the file (as the
    /// file-set build's secrets rule sniffs).
    fn holds_private_key(&self, path: &Path, e: &Entry) -> bool {
        use std::io::Read;
        let head: Vec<u8> = match &e.content {
            Some(c) => c.as_bytes().iter().take(64 * 1024).copied().collect(),
            None => {
                let mut buf = Vec::new();
                let host = self.subject.fileset.host_path(path);
                let Ok(f) = std::fs::File::open(host) else {
                    return false;
                };
                if f.take(64 * 1024).read_to_end(&mut buf).is_err() {
                    return false;
                }
                buf
            }
        };
        memchr::memmem::find(&head, b"PRIVATE KEY-----").is_some()
            && memchr::memmem::find(&head, b"-----BEGIN").is_some()
    }

    fn file(&self, path: &Path, e: &Entry) -> (FileReport, Vec<Finding>, bool) {
        let mut found = Vec::new();
        let is_file = e.file_type == FileType::File;
        if is_file && e.mode & 0o4000 != 0 {
            found.push(Finding::new(
                Kind::Setuid,
                path,
                format!("mode {:04o}: runs as uid {}", e.mode, e.uid),
            ));
        }
        if is_file && e.mode & 0o2000 != 0 && e.mode & 0o010 != 0 {
            found.push(Finding::new(
                Kind::Setgid,
                path,
                format!("mode {:04o}: runs as gid {}", e.mode, e.gid),
            ));
        }
        let capability = e.capability.as_ref().map(|raw| match caps::decode(raw) {
            Ok(c) => c.to_string(),
            Err(err) => format!("undecodable ({err})"),
        });
        if let Some(c) = &capability {
            found.push(Finding::new(Kind::Capability, path, c.clone()));
        }
        match e.file_type {
            FileType::Symlink => {}
            FileType::Dir if e.mode & 0o002 != 0 && e.mode & 0o1000 == 0 => {
                found.push(Finding::new(
                    Kind::WorldWritableDir,
                    path,
                    format!("mode {:04o}: anyone can create, replace or remove its entries (no sticky bit)", e.mode),
                ));
            }
            FileType::Dir => {}
            FileType::CharDevice if STANDARD_DEVICES.iter().any(|d| path == Path::new(d)) => {}
            _ if e.mode & 0o002 != 0 => found.push(Finding::new(
                Kind::WorldWritable,
                path,
                format!("mode {:04o}: anyone can change it", e.mode),
            )),
            _ => {}
        }
        if is_file && self.holds_private_key(path, e) {
            found.push(Finding::new(
                Kind::PrivateKey,
                path,
                "a PEM private key block: anyone with the image has the key",
            ));
        }
        if e.file_type != FileType::Dir && home_dotfile(path) {
            found.push(Finding::new(
                Kind::HomeDotfile,
                path,
                "a dotfile in a home directory: probably the build machine's; leave it out with --exclude unless the program needs it",
            ));
        }
        let program_dir = !NOT_PROGRAM_DIRS.iter().any(|d| path.starts_with(d));
        if is_file && e.mode & 0o111 != 0 && program_dir {
            if let Some(f) = self.category(path) {
                found.push(f);
            }
        }
        let (elf, missing) = if is_file && e.content.is_none() {
            self.elf(path, &mut found)
        } else {
            (None, false)
        };
        let packages = self
            .packages
            .map(|db| db.owners(path).to_vec())
            .unwrap_or_default();
        let dir_like = match e.file_type {
            FileType::Dir => true,
            FileType::Symlink => self
                .root
                .is_some_and(|r| matches!(r.resolve(path, Follow::Yes).outcome, Ok(FileType::Dir))),
            _ => false,
        };
        let mut flags: Vec<Kind> = found.iter().map(|f| f.kind).collect();
        flags.sort();
        flags.dedup();
        let report = FileReport {
            path: path.to_path_buf(),
            file_type: e.file_type,
            mode: format!("{:04o}", e.mode),
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            sha256: e.sha256,
            target: e.target.clone(),
            reasons: self.subject.reasons_of(path).cloned(),
            packages,
            capability,
            elf,
            flags,
            dir_like,
        };
        (report, found, missing)
    }

    /// A shell, interpreter… by the file's name or a symlink's leading to it.
    fn category(&self, path: &Path) -> Option<Finding> {
        if let Some(c) = path.file_name().and_then(names::categorize) {
            return Some(Finding::new(c.into(), path, describe_category(c)));
        }
        let aliases = self.aliases.get(path)?;
        aliases.iter().find_map(|a| {
            let c = a.file_name().and_then(names::categorize)?;
            Some(Finding::new(
                c.into(),
                path,
                format!("{} (reached as {})", describe_category(c), a.display()),
            ))
        })
    }

    /// ELF facts and hardening findings; `true` when the content is missing.
    fn elf(&self, path: &Path, found: &mut Vec<Finding>) -> (Option<ElfReport>, bool) {
        let Some(root) = self.root else {
            return (None, false);
        };
        let host = root.host_path(path);
        let parsed = match elf::ElfFile::read(&host) {
            Ok(Parsed::Elf(e)) => e,
            Ok(Parsed::NotElf(_)) => return (None, false),
            Err(elf::file::ParseError::Io(_)) => return (None, true),
            Err(elf::file::ParseError::Malformed(_)) => return (None, false),
        };
        if parsed.linking == Linking::Other {
            return (None, false);
        }
        let h = parsed.hardening;
        let executable = matches!(
            parsed.linking,
            Linking::Dynamic | Linking::Static | Linking::StaticPie
        );
        let dynamic = parsed.has_dynamic;
        if executable && !h.pie {
            found.push(Finding::new(
                Kind::NoPie,
                path,
                "not position independent: loaded at a fixed address (no ASLR for its code)",
            ));
        }
        if !h.nx_stack {
            found.push(Finding::new(
                Kind::ExecStack,
                path,
                "executable stack (PT_GNU_STACK with PF_X, or none)",
            ));
        }
        match h.relro {
            Relro::None => found.push(Finding::new(
                Kind::NoRelro,
                path,
                "no RELRO: relocations and the GOT stay writable",
            )),
            Relro::Partial => found.push(Finding::new(
                Kind::PartialRelro,
                path,
                "partial RELRO: the GOT stays writable (no BIND_NOW)",
            )),
            Relro::Full => {}
        }
        if dynamic && !h.stack_protector {
            found.push(Finding::new(
                Kind::NoStackProtector,
                path,
                "imports no __stack_chk_fail",
            ));
        }
        if dynamic && !h.fortify {
            found.push(Finding::new(
                Kind::NoFortify,
                path,
                "imports no __*_chk function (_FORTIFY_SOURCE)",
            ));
        }
        let split = |v: &Option<std::ffi::OsString>| -> Vec<String> {
            v.as_ref()
                .map(|s| s.to_string_lossy().split(':').map(str::to_string).collect())
                .unwrap_or_default()
        };
        let rpath = split(&parsed.rpath);
        let runpath = split(&parsed.runpath);
        for (tag, entries) in [("RPATH", &rpath), ("RUNPATH", &runpath)] {
            for entry in entries {
                if let Some(why) = self.rpath_problem(root, path, entry) {
                    found.push(Finding::new(
                        Kind::InsecureRpath,
                        path,
                        format!("{tag} entry {entry:?}: {why}"),
                    ));
                }
            }
        }
        let report = ElfReport {
            linking: parsed.linking,
            pie: h.pie,
            relro: h.relro,
            nx_stack: h.nx_stack,
            stack_protector: dynamic.then_some(h.stack_protector),
            fortify: dynamic.then_some(h.fortify),
            rpath,
            runpath,
        };
        (Some(report), false)
    }

    /// Why an RPATH/RUNPATH entry lets someone else plant a library, if it
    /// does: it is relative (resolved against the process's working
    /// directory), or the directory it names — or a parent of it — is
    /// world-writable in the jail.
    fn rpath_problem(&self, root: &Root, file: &Path, entry: &str) -> Option<String> {
        if entry.is_empty() {
            return Some("empty: the loader searches the current directory".into());
        }
        let rest = entry
            .strip_prefix("$ORIGIN")
            .or_else(|| entry.strip_prefix("${ORIGIN}"));
        let dir = match rest {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                let origin = file.parent().unwrap_or(Path::new("/"));
                PathBuf::from(format!("{}{rest}", origin.display()))
            }
            _ if entry.starts_with('/') => PathBuf::from(entry),
            _ => {
                return Some(
                    "relative: the loader resolves it against the current directory".into(),
                )
            }
        };
        let physical = root.resolve(&dir, Follow::Yes).path;
        let set = &self.subject.fileset;
        let mut cur = Some(physical.as_path());
        let mut first = true;
        while let Some(d) = cur {
            if let Some(e) = set.get(d) {
                let ww = e.mode & 0o002 != 0;
                if ww && (first || e.mode & 0o1000 == 0) {
                    return Some(format!(
                        "{} is world-writable (mode {:04o}): anyone can plant a library there",
                        d.display(),
                        e.mode
                    ));
                }
            }
            first = false;
            cur = d.parent();
        }
        None
    }
}

fn describe_category(c: Category) -> String {
    match c {
        Category::Shell => "a shell: runs arbitrary commands",
        Category::Interpreter => "an interpreter: runs arbitrary code",
        Category::PackageManager => "a package manager: installs software",
        Category::NetworkTool => "a network tool: fetches or sends data",
        Category::Compiler => "a compiler or linker: builds new programs",
    }
    .to_string()
}

/// Kept / removed / added paths of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindChange {
    pub original: usize,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub added: Vec<String>,
}

/// Counts of the original, the slim image and what they share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PathCounts {
    pub original: usize,
    pub slim: usize,
    pub kept: usize,
    pub removed: usize,
    pub added: usize,
}

/// What slimming removed and kept (`--against ORIGINAL`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub original: SubjectInfo,
    pub paths: PathCounts,
    /// Bytes of regular files: original, slim.
    pub bytes: [u64; 2],
    /// For each compared kind ([`Kind::COMPARED`]), the flagged paths.
    pub kinds: BTreeMap<Kind, KindChange>,
    /// Packages with files in each (`None` without a package database).
    pub packages: Option<KindChange>,
}

/// Compare a slim jail's report with its original's.
pub fn compare(original: &Report, slim: &Report) -> Comparison {
    let paths =
        |r: &Report| -> BTreeSet<PathBuf> { r.files.iter().map(|f| f.path.clone()).collect() };
    let (op, sp) = (paths(original), paths(slim));
    let flagged = |r: &Report, k: Kind| -> BTreeSet<String> {
        r.findings
            .iter()
            .filter(|f| f.kind == k)
            .map(|f| crate::paths::encode(&f.path))
            .collect()
    };
    let change = |o: BTreeSet<String>, s: BTreeSet<String>| KindChange {
        original: o.len(),
        kept: o.intersection(&s).cloned().collect(),
        removed: o.difference(&s).cloned().collect(),
        added: s.difference(&o).cloned().collect(),
    };
    let kinds = Kind::COMPARED
        .iter()
        .map(|&k| (k, change(flagged(original, k), flagged(slim, k))))
        .collect();
    let names =
        |r: &Report| -> BTreeSet<String> { r.packages.iter().map(|p| p.name.clone()).collect() };
    let packages = (original.summary.packages.is_some() && slim.summary.packages.is_some())
        .then(|| change(names(original), names(slim)));
    Comparison {
        original: original.subject.clone(),
        paths: PathCounts {
            original: op.len(),
            slim: sp.len(),
            kept: op.intersection(&sp).count(),
            removed: op.difference(&sp).count(),
            added: sp.difference(&op).count(),
        },
        bytes: [original.summary.bytes, slim.summary.bytes],
        kinds,
        packages,
    }
}

impl Report {
    /// JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// "uses 212 files of 9 packages", when packages are known.
    pub fn package_line(&self) -> Option<String> {
        let p = self.summary.packages.as_ref()?;
        Some(format!(
            "uses {} file{} of {} package{}{}",
            p.files,
            if p.files == 1 { "" } else { "s" },
            p.packages,
            if p.packages == 1 { "" } else { "s" },
            if p.unowned > 0 {
                format!("; {} of no package", p.unowned)
            } else {
                String::new()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_dotfiles() {
        assert!(home_dotfile(Path::new("/root/.gitconfig")));
        assert!(home_dotfile(Path::new("/home/ann/.ssh/id_ed25519")));
        assert!(!home_dotfile(Path::new("/home/ann/notes.txt")));
        assert!(!home_dotfile(Path::new("/home/.x")));
        assert!(!home_dotfile(Path::new("/etc/.pwd.lock")));
        assert!(!home_dotfile(Path::new("/rootfs/.x")));
    }

    #[test]
    fn root_users() {
        let c = |u: Option<&str>| ConfigInfo {
            user: u.map(str::to_string),
            ..ConfigInfo::default()
        };
        assert!(c(None).runs_as_root());
        assert!(c(Some("0:0")).runs_as_root());
        assert!(c(Some("root")).runs_as_root());
        assert!(!c(Some("1000:1000")).runs_as_root());
        assert!(!c(Some("app")).runs_as_root());
    }
}
