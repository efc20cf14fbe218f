//! `jail ldd`: the ELF dependency closure of files, as the loader would
//! resolve it, without running anything. A tree by default, `--list` for the
//! paths a jail needs, `--json` for programs (schema: docs/elf.md).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::{CmdResult, Failure};
use jail::elf::{
    Closure, Cpu, ElfError, Flavor, Linking, LoaderEnv, NeedKind, NeedResult, NotElf, Outcome,
    Resolver,
};
use jail::paths::{encode, ImagePath};
use jail::resolve::Root;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Resolve inside DIR as if chrooted there (FILE is a path inside DIR).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print the closure: every file and every symlink on the way, sorted.
    #[arg(long, conflicts_with = "json")]
    list: bool,
    /// Print the closures as JSON (schema in docs/elf.md).
    #[arg(long)]
    json: bool,
    /// A variable of the program's environment (LD_LIBRARY_PATH, LD_PRELOAD); repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<OsString>,
    /// The program's LD_LIBRARY_PATH.
    #[arg(long, value_name = "PATHS")]
    ld_library_path: Option<OsString>,
    /// glibc-hwcaps levels of the CPU: `host`, `none`, or a list such as `x86-64-v3,x86-64-v2`.
    #[arg(long, value_name = "LIST", default_value = "host")]
    hwcaps: String,
    /// Working directory (inside the root) for relative names [default: the
    /// current directory, or `/` with --root].
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// The files to examine.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: Args) -> CmdResult {
    let root = match &args.root {
        Some(dir) => Root::new(dir)
            .with_context(|| format!("--root {}", dir.display()))
            .map_err(Failure::usage)?,
        None => Root::host(),
    };
    let env = loader_env(&args).map_err(Failure::usage)?;
    let resolver = Resolver::new(&root, env);
    let results: Vec<(&PathBuf, Result<Outcome, ElfError>)> = args
        .files
        .par_iter()
        .map(|f| (f, resolver.closure(f)))
        .collect();

    // Diagnostics first, on stderr; the exit code follows from them.
    let mut code = 0;
    for (file, r) in &results {
        match r {
            Err(e) => {
                eprintln!("jail: error: {}", jail::error::Chain(e));
                code = 2;
            }
            Ok(Outcome::NotElf { kind, .. }) => {
                eprintln!(
                    "jail: error: {}: not an ELF file{}",
                    file.display(),
                    if *kind == NotElf::Script {
                        " (a script)"
                    } else {
                        ""
                    }
                );
                code = 2;
            }
            Ok(Outcome::Elf(c)) => {
                for u in c.unresolved() {
                    eprintln!(
                        "jail: {}: {} (needed by {}): {}",
                        file.display(),
                        u.need.name.to_string_lossy(),
                        u.needed_by.name.to_string_lossy(),
                        u.need.failure().unwrap_or_default()
                    );
                    code = code.max(1);
                }
                for n in c.failed_preloads() {
                    super::warn(format_args!(
                        "{}: preload {} ignored: {}",
                        file.display(),
                        n.name.to_string_lossy(),
                        n.failure().unwrap_or_default()
                    ));
                }
            }
        }
    }

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = if args.json {
        let doc = json_doc(&root, &results);
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else if args.list {
        print_list(&mut out, &results)
    } else {
        results.iter().try_for_each(|(file, r)| match r {
            Ok(Outcome::Elf(c)) => print_tree(&mut out, file, c),
            _ => Ok(()),
        })
    };
    written
        .and_then(|()| out.flush())
        .map_err(Failure::failed)?;
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::silent(code))
    }
}

fn loader_env(args: &Args) -> anyhow::Result<LoaderEnv> {
    let mut vars = Vec::new();
    for kv in &args.env {
        let b = kv.as_bytes();
        let eq = b
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| anyhow!("--env {}: expected K=V", kv.to_string_lossy()))?;
        vars.push((
            OsString::from(std::ffi::OsStr::from_bytes(&b[..eq])),
            OsString::from(std::ffi::OsStr::from_bytes(&b[eq + 1..])),
        ));
    }
    if let Some(p) = &args.ld_library_path {
        vars.push(("LD_LIBRARY_PATH".into(), p.clone()));
    }
    let mut env = LoaderEnv::host().with_env(vars);
    env.cwd = match (&args.cwd, &args.root) {
        (Some(dir), _) if dir.is_absolute() => dir.clone(),
        (Some(dir), _) => {
            return Err(anyhow!(
                "--cwd {}: must be absolute (inside the root)",
                dir.display()
            ))
        }
        (None, Some(_)) => PathBuf::from("/"),
        (None, None) => std::env::current_dir().context("current directory")?,
    };
    env.cpu = match args.hwcaps.as_str() {
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
                match l.as_str() {
                    "x86-64-v2" => isa_level = isa_level.max(1),
                    "x86-64-v3" => isa_level = isa_level.max(2),
                    "x86-64-v4" => isa_level = isa_level.max(3),
                    other => return Err(anyhow!("--hwcaps: unknown level {other:?} (expected x86-64-v2, x86-64-v3, x86-64-v4, host or none)")),
                }
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

/// lddtree-like: each object's dependencies indented under it, expanded at
/// their first appearance only.
fn print_tree(out: &mut impl Write, file: &Path, c: &Closure) -> io::Result<()> {
    let main = c.main();
    let note = match (&main.elf.linking, c.interpreter()) {
        (Linking::Static, _) => " (statically linked)".to_string(),
        (Linking::StaticPie, _) => " (static-pie)".to_string(),
        (_, Some(i)) => format!(" (interpreter => {})", i.name.to_string_lossy()),
        _ => String::new(),
    };
    writeln!(out, "{}{note}", file.display())?;
    let mut expanded = vec![false; c.objects.len()];
    expanded[0] = true;
    print_needs(out, c, 0, 1, &mut expanded)
}

fn print_needs(
    out: &mut impl Write,
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
                    print_needs(out, c, *dep, depth + 1, expanded)?;
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

/// The union of every closure's paths, bytewise sorted, one per line.
fn print_list(
    out: &mut impl Write,
    results: &[(&PathBuf, Result<Outcome, ElfError>)],
) -> io::Result<()> {
    let mut all: BTreeSet<ImagePath> = BTreeSet::new();
    for (_, r) in results {
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

fn sorted(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    let set: BTreeSet<ImagePath> = paths.into_iter().map(ImagePath).collect();
    set.iter().map(|p| encode(p.as_path())).collect()
}

fn json_doc(root: &Root, results: &[(&PathBuf, Result<Outcome, ElfError>)]) -> Value {
    let mut union = Vec::new();
    let files: Vec<Value> = results
        .iter()
        .map(|(file, r)| match r {
            Err(e) => json!({ "file": encode(file), "error": jail::error::Chain(e).to_string() }),
            Ok(Outcome::NotElf { path, kind, .. }) => json!({
                "file": encode(file),
                "path": encode(path),
                "error": if *kind == NotElf::Script { "not an ELF file (a script)" } else { "not an ELF file" },
            }),
            Ok(Outcome::Elf(c)) => {
                union.extend(c.paths());
                json_closure(file, c)
            }
        })
        .collect();
    json!({ "root": encode(root.dir()), "files": files, "paths": sorted(union) })
}

fn json_closure(file: &Path, c: &Closure) -> Value {
    let os = |s: &std::ffi::OsStr| encode(Path::new(s));
    let objects: Vec<Value> = c
        .objects
        .iter()
        .map(|o| {
            let needs: Vec<Value> = o
                .needs
                .iter()
                .map(|n| match &n.result {
                    NeedResult::Loaded(i) => {
                        json!({ "name": os(&n.name), "kind": n.kind, "object": i })
                    }
                    _ => json!({ "name": os(&n.name), "kind": n.kind, "error": n.failure() }),
                })
                .collect();
            let rpath_of = match o.found_by {
                jail::elf::FoundBy::Rpath(i) => Some(i),
                _ => None,
            };
            json!({
                "name": os(&o.name),
                "path": encode(&o.path),
                "found_by": o.found_by.as_str(),
                "rpath_of": rpath_of,
                "soname": o.elf.soname.as_deref().map(os),
                "linking": o.elf.linking,
                "hardening": o.elf.hardening,
                "needs": needs,
            })
        })
        .collect();
    let unresolved: Vec<Value> = c
        .unresolved()
        .iter()
        .map(|u| json!({ "name": os(&u.need.name), "needed_by": encode(&u.needed_by.path), "error": u.need.failure() }))
        .collect();
    let (loader, glibc) = match &c.flavor {
        Flavor::None => ("none", Value::Null),
        Flavor::Glibc(b) => (
            "glibc",
            json!({ "version": format!("{}.{}", b.version.0, b.version.1), "system_dirs": b.system_dirs, "lib": b.lib }),
        ),
        Flavor::Musl { .. } => ("musl", Value::Null),
    };
    json!({
        "file": encode(file),
        "path": encode(&c.main().path),
        "loader": loader,
        "glibc": glibc,
        "secure": c.secure,
        "objects": objects,
        "unresolved": unresolved,
        "links": c.links.iter().map(|l| json!({ "path": encode(&l.path), "target": encode(&l.target) })).collect::<Vec<_>>(),
        "loader_files": c.loader_files.iter().map(|p| encode(p)).collect::<Vec<_>>(),
        "paths": sorted(c.paths()),
    })
}
