//! The ldd job (`jail ldd`): the ELF dependency closure of files, as the
//! loader would resolve it, without running anything; its outputs (a tree,
//! the sorted `--list`, the `--json` document of docs/elf.md).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::elf::{
    Closure, Cpu, ElfError, Flavor, FoundBy, LoaderEnv, NeedKind, NeedResult, NotElf, Outcome,
    Resolver,
};
use crate::paths::{encode, ImagePath};
use crate::resolve::Root;

use super::Failure;

/// `jail ldd`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct LddRequest {
    /// Resolve inside this root (the files are paths inside it).
    pub root: Option<PathBuf>,
    /// `K=V` variables of the program's environment.
    pub env: Vec<OsString>,
    pub ld_library_path: Option<OsString>,
    /// `host`, `none`, or a list of glibc-hwcaps levels.
    pub hwcaps: String,
    /// Working directory inside the root.
    pub cwd: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// A refused `jail ldd` flag.
#[derive(Debug, thiserror::Error)]
pub enum LddError {
    #[error("--root {}", .dir.display())]
    Root {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--env {0}: expected K=V")]
    Env(String),
    #[error("--cwd {}: must be absolute (inside the root)", .0.display())]
    Cwd(PathBuf),
    #[error("current directory")]
    CurrentDir(#[source] io::Error),
    #[error(
        "--hwcaps: unknown level {0:?} (expected x86-64-v2, x86-64-v3, x86-64-v4, host or none)"
    )]
    Hwcaps(String),
}

/// The closures of every file.
pub struct Ldd {
    pub root: Root,
    pub results: Vec<(PathBuf, Result<Outcome, ElfError>)>,
}

/// Something to say about one file: errors make `jail ldd` exit 2,
/// unresolved needs 1, ignored preloads nothing.
pub enum Diagnostic<'a> {
    Error(&'a ElfError),
    NotElf(&'a Path, NotElf),
    Unresolved(&'a Path, crate::elf::Unresolved<'a>),
    Preload(&'a Path, &'a crate::elf::Need),
}

impl Diagnostic<'_> {
    /// The exit code it calls for.
    pub fn code(&self) -> i32 {
        match self {
            Diagnostic::Error(_) | Diagnostic::NotElf(..) => 2,
            Diagnostic::Unresolved(..) => 1,
            Diagnostic::Preload(..) => 0,
        }
    }
}

impl fmt::Display for Diagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::Error(e) => write!(f, "error: {}", crate::error::Chain(*e)),
            Diagnostic::NotElf(file, kind) => write!(
                f,
                "error: {}: not an ELF file{}",
                file.display(),
                if *kind == NotElf::Script {
                    " (a script)"
                } else {
                    ""
                }
            ),
            Diagnostic::Unresolved(file, u) => write!(
                f,
                "{}: {} (needed by {}): {}",
                file.display(),
                u.need.name.to_string_lossy(),
                u.needed_by.name.to_string_lossy(),
                u.need.failure().unwrap_or_default()
            ),
            Diagnostic::Preload(file, n) => write!(
                f,
                "warning: {}: preload {} ignored: {}",
                file.display(),
                n.name.to_string_lossy(),
                n.failure().unwrap_or_default()
            ),
        }
    }
}

/// Resolve every file's closure (in parallel).
pub fn ldd(req: &LddRequest) -> Result<Ldd, Failure> {
    let root = match &req.root {
        Some(dir) => Root::new(dir).map_err(|source| {
            Failure::usage(LddError::Root {
                dir: dir.clone(),
                source,
            })
        })?,
        None => Root::host(),
    };
    let env = loader_env(req).map_err(Failure::usage)?;
    let resolver = Resolver::new(&root, env);
    let results = req
        .files
        .par_iter()
        .map(|f| (f.clone(), resolver.closure(f)))
        .collect();
    Ok(Ldd { root, results })
}

fn loader_env(req: &LddRequest) -> Result<LoaderEnv, LddError> {
    let mut vars = Vec::new();
    for kv in &req.env {
        let b = kv.as_bytes();
        let eq = b
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| LddError::Env(kv.to_string_lossy().into_owned()))?;
        vars.push((
            OsString::from(OsStr::from_bytes(&b[..eq])),
            OsString::from(OsStr::from_bytes(&b[eq + 1..])),
        ));
    }
    if let Some(p) = &req.ld_library_path {
        vars.push(("LD_LIBRARY_PATH".into(), p.clone()));
    }
    let mut env = LoaderEnv::host().with_env(vars);
    env.cwd = match (&req.cwd, &req.root) {
        (Some(dir), _) if dir.is_absolute() => dir.clone(),
        (Some(dir), _) => return Err(LddError::Cwd(dir.clone())),
        (None, Some(_)) => PathBuf::from("/"),
        (None, None) => std::env::current_dir().map_err(LddError::CurrentDir)?,
    };
    env.cpu = match req.hwcaps.as_str() {
        "host" => env.cpu,
        "none" => Cpu {
            hwcaps: Vec::new(),
            isa_level: 0,
            ..env.cpu
        },
        list => {
            let levels: Vec<String> = list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let mut isa_level = 0;
            for l in &levels {
                isa_level = isa_level.max(match l.as_str() {
                    "x86-64-v2" => 1,
                    "x86-64-v3" => 2,
                    "x86-64-v4" => 3,
                    other => return Err(LddError::Hwcaps(other.to_string())),
                });
            }
            Cpu {
                hwcaps: levels,
                isa_level,
                ..env.cpu
            }
        }
    };
    Ok(env)
}

/// How `jail ldd` prints the closures.
#[derive(Debug, Clone, Copy)]
pub enum LddOutput {
    /// lddtree-like.
    Tree,
    /// `--list`.
    List,
    /// `--json`.
    Json,
}

impl Ldd {
    /// Print the closures.
    pub fn write(&self, out: &mut dyn Write, how: LddOutput) -> io::Result<()> {
        match how {
            LddOutput::Tree => self.write_tree(out),
            LddOutput::List => self.write_list(out),
            LddOutput::Json => {
                serde_json::to_writer_pretty(&mut *out, &self.json()).map_err(io::Error::from)?;
                writeln!(out)
            }
        }
    }

    /// What to say about each file, in order.
    pub fn diagnostics(&self) -> Vec<Diagnostic<'_>> {
        let mut out = Vec::new();
        for (file, r) in &self.results {
            match r {
                Err(e) => out.push(Diagnostic::Error(e)),
                Ok(Outcome::NotElf { kind, .. }) => out.push(Diagnostic::NotElf(file, *kind)),
                Ok(Outcome::Elf(c)) => {
                    out.extend(
                        c.unresolved()
                            .into_iter()
                            .map(|u| Diagnostic::Unresolved(file, u)),
                    );
                    out.extend(c.failed_preloads().map(|n| Diagnostic::Preload(file, n)));
                }
            }
        }
        out
    }

    /// lddtree-like: each object's dependencies indented under it,
    /// expanded at their first appearance only.
    pub fn write_tree(&self, out: &mut dyn Write) -> io::Result<()> {
        for (file, r) in &self.results {
            let Ok(Outcome::Elf(c)) = r else { continue };
            let main = c.main();
            let note = match (&main.elf.linking, c.interpreter()) {
                (crate::elf::Linking::Static, _) => " (statically linked)".to_string(),
                (crate::elf::Linking::StaticPie, _) => " (static-pie)".to_string(),
                (_, Some(i)) => format!(" (interpreter => {})", i.name.to_string_lossy()),
                _ => String::new(),
            };
            writeln!(out, "{}{note}", file.display())?;
            let mut expanded = vec![false; c.objects.len()];
            expanded[0] = true;
            write_needs(out, c, 0, 1, &mut expanded)?;
        }
        Ok(())
    }

    /// The union of every closure's paths, bytewise sorted, one per line.
    pub fn write_list(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut all: BTreeSet<ImagePath> = BTreeSet::new();
        for (_, r) in &self.results {
            if let Ok(Outcome::Elf(c)) = r {
                all.extend(c.paths().into_iter().map(ImagePath));
            }
        }
        for p in all {
            out.write_all(p.as_path().as_os_str().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The `--json` document (docs/elf.md).
    pub fn json(&self) -> LddJson {
        let mut union = Vec::new();
        let files = self
            .results
            .iter()
            .map(|(file, r)| match r {
                Err(e) => FileJson::Error {
                    file: encode(file),
                    error: crate::error::Chain(e).to_string(),
                },
                Ok(Outcome::NotElf { path, kind, .. }) => FileJson::NotElf {
                    file: encode(file),
                    path: encode(path),
                    error: if *kind == NotElf::Script {
                        "not an ELF file (a script)"
                    } else {
                        "not an ELF file"
                    },
                },
                Ok(Outcome::Elf(c)) => {
                    union.extend(c.paths());
                    FileJson::Closure(Box::new(closure_json(file, c)))
                }
            })
            .collect();
        LddJson {
            root: encode(self.root.dir()),
            files,
            paths: sorted(union),
        }
    }
}

fn write_needs(
    out: &mut dyn Write,
    c: &Closure,
    idx: usize,
    depth: usize,
    expanded: &mut [bool],
) -> io::Result<()> {
    let pad = "    ".repeat(depth);
    for need in &c.objects[idx].needs {
        let name = need.name.to_string_lossy();
        let ignored = match need.kind {
            NeedKind::Preload => " (preload, ignored)",
            NeedKind::Auxiliary => " (auxiliary, ignored)",
            _ => "",
        };
        match &need.result {
            NeedResult::Loaded(_) if need.kind == NeedKind::Interpreter => {}
            NeedResult::Loaded(dep) => {
                writeln!(
                    out,
                    "{pad}{name} => {}",
                    c.objects[*dep].name.to_string_lossy()
                )?;
                if !expanded[*dep] {
                    expanded[*dep] = true;
                    write_needs(out, c, *dep, depth + 1, expanded)?;
                }
            }
            NeedResult::NotFound { .. } => writeln!(out, "{pad}{name} => not found{ignored}")?,
            NeedResult::Failed { .. } => writeln!(
                out,
                "{pad}{name} => error: {}{ignored}",
                need.failure().unwrap_or_default()
            )?,
        }
    }
    Ok(())
}

fn sorted(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    let set: BTreeSet<ImagePath> = paths.into_iter().map(ImagePath).collect();
    set.iter().map(|p| encode(p.as_path())).collect()
}

/// `jail ldd --json`.
#[derive(Serialize)]
pub struct LddJson {
    pub root: String,
    pub files: Vec<FileJson>,
    /// The union of every closure's paths, sorted.
    pub paths: Vec<String>,
}

/// One file of `jail ldd --json`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum FileJson {
    Error {
        file: String,
        error: String,
    },
    NotElf {
        file: String,
        path: String,
        error: &'static str,
    },
    Closure(Box<ClosureJson>),
}

/// A file's closure.
#[derive(Serialize)]
pub struct ClosureJson {
    pub file: String,
    pub path: String,
    /// `none`, `glibc` or `musl`.
    pub loader: &'static str,
    pub glibc: Option<GlibcJson>,
    pub secure: bool,
    pub objects: Vec<ObjectJson>,
    pub unresolved: Vec<UnresolvedJson>,
    pub links: Vec<LinkJson>,
    pub loader_files: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Serialize)]
pub struct GlibcJson {
    pub version: String,
    pub system_dirs: Vec<String>,
    pub lib: String,
}

#[derive(Serialize)]
pub struct ObjectJson {
    pub name: String,
    pub path: String,
    pub found_by: &'static str,
    pub rpath_of: Option<usize>,
    pub soname: Option<String>,
    pub linking: crate::elf::Linking,
    pub hardening: crate::elf::Hardening,
    pub needs: Vec<NeedJson>,
}

#[derive(Serialize)]
pub struct NeedJson {
    pub name: String,
    pub kind: NeedKind,
    /// The index of the object it loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<usize>,
    /// Why it did not load (present, possibly null, when it did not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Option<String>>,
}

#[derive(Serialize)]
pub struct UnresolvedJson {
    pub name: String,
    pub needed_by: String,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct LinkJson {
    pub path: String,
    pub target: String,
}

fn closure_json(file: &Path, c: &Closure) -> ClosureJson {
    let os = |s: &OsStr| encode(Path::new(s));
    let objects = c
        .objects
        .iter()
        .map(|o| ObjectJson {
            name: os(&o.name),
            path: encode(&o.path),
            found_by: o.found_by.as_str(),
            rpath_of: match o.found_by {
                FoundBy::Rpath(i) => Some(i),
                _ => None,
            },
            soname: o.elf.soname.as_deref().map(os),
            linking: o.elf.linking,
            hardening: o.elf.hardening,
            needs: o
                .needs
                .iter()
                .map(|n| {
                    let (object, error) = match &n.result {
                        NeedResult::Loaded(i) => (Some(*i), None),
                        _ => (None, Some(n.failure())),
                    };
                    NeedJson {
                        name: os(&n.name),
                        kind: n.kind,
                        object,
                        error,
                    }
                })
                .collect(),
        })
        .collect();
    let unresolved = c
        .unresolved()
        .iter()
        .map(|u| UnresolvedJson {
            name: os(&u.need.name),
            needed_by: encode(&u.needed_by.path),
            error: u.need.failure(),
        })
        .collect();
    let (loader, glibc) = match &c.flavor {
        Flavor::None => ("none", None),
        Flavor::Glibc(b) => (
            "glibc",
            Some(GlibcJson {
                version: format!("{}.{}", b.version.0, b.version.1),
                system_dirs: b.system_dirs.clone(),
                lib: b.lib.clone(),
            }),
        ),
        Flavor::Musl { .. } => ("musl", None),
    };
    ClosureJson {
        file: encode(file),
        path: encode(&c.main().path),
        loader,
        glibc,
        secure: c.secure,
        objects,
        unresolved,
        links: c
            .links
            .iter()
            .map(|l| LinkJson {
                path: encode(&l.path),
                target: encode(&l.target),
            })
            .collect(),
        loader_files: c.loader_files.iter().map(|p| encode(p)).collect(),
        paths: sorted(c.paths()),
    }
}
