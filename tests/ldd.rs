//! `jail ldd` and the ELF resolver against the real loader: every dynamic
//! ELF file of this machine compared with `ldd`, and fixtures compiled at
//! test time for each search rule, checked against ldd and by running them.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{jail, ok, require, run, text};
use jail::elf::{self, LdCache, LoaderEnv, Outcome, Parsed, Resolver, Secure};
use jail::resolve::Root;
use rayon::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers

/// A scratch directory where fixtures are compiled into a layout of
/// directories; world-readable, so a set-user-ID fixture can read it.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        require("gcc", "gcc");
        let dir = tempfile::Builder::new()
            .prefix("jail-ldd")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Lab { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Compile `tests/fixtures/SRC.c` to `rel` with `flags`.
    fn cc(&self, rel: &str, src: &str, flags: &[&str]) -> PathBuf {
        let out = self.path(rel);
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{src}.c"));
        let o = run(Command::new("gcc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(flags)
            .current_dir(self.dir.path()));
        assert!(
            o.status.success(),
            "gcc {}: {}",
            src.display(),
            text(&o.stderr)
        );
        out
    }

    /// `libleaf.so` returning `value`, at `rel`.
    fn leaf(&self, rel: &str, value: u32) -> PathBuf {
        self.cc(
            rel,
            "elf_leaf",
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libleaf.so",
                &format!("-DLEAF={value}"),
            ],
        )
    }

    /// `libmid.so` (needing libleaf.so, found in `leaf_dir` at link time) at
    /// `rel`, with extra link flags.
    fn mid(&self, rel: &str, leaf_dir: &str, flags: &[&str]) -> PathBuf {
        let mut f = vec![
            "-shared",
            "-fPIC",
            "-Wl,-soname,libmid.so",
            "-Wl,--no-as-needed",
        ];
        let l = format!("-L{leaf_dir}");
        f.push(&l);
        f.push("-lleaf");
        f.extend_from_slice(flags);
        self.cc(rel, "elf_mid", &f)
    }

    /// The main program (needing libmid.so in `mid_dir`, whose libleaf.so is
    /// in `leaf_dir`) at `rel`, with extra link flags.
    fn main(&self, rel: &str, mid_dir: &str, leaf_dir: &str, flags: &[&str]) -> PathBuf {
        let (l, rl) = (
            format!("-L{mid_dir}"),
            format!("-Wl,-rpath-link,{leaf_dir}"),
        );
        let mut f = vec!["-Wl,--no-as-needed", l.as_str(), "-lmid", rl.as_str()];
        f.extend_from_slice(flags);
        self.cc(rel, "elf_main", &f)
    }
}

/// What `ldd` prints: the real paths of the objects it lists, and the names
/// it reports "not found".
#[derive(Debug)]
struct Ldd {
    paths: BTreeSet<PathBuf>,
    not_found: BTreeSet<String>,
    raw: String,
}

fn ldd(file: &Path, env: &[(&str, &str)]) -> Ldd {
    let mut cmd = Command::new("ldd");
    cmd.arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = run(&mut cmd);
    let raw = format!("{}{}", text(&o.stdout), text(&o.stderr));
    let mut paths = BTreeSet::new();
    let mut not_found = BTreeSet::new();
    for line in text(&o.stdout).lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once(" => ") {
            if rest.starts_with("not found") {
                not_found.insert(name.to_string());
            } else if let Some((p, _)) = rest.split_once(" (0x") {
                paths.insert(fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)));
            }
        } else if line.starts_with('/') {
            if let Some((p, _)) = line.split_once(" (0x") {
                paths.insert(fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)));
            }
        }
    }
    Ldd {
        paths,
        not_found,
        raw,
    }
}

/// Run a fixture program with an environment.
fn exec(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(file);
    cmd.env_remove("LD_LIBRARY_PATH").env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// `jail ldd --json ARGS… FILE`: the entry of FILE, and the exit code.
fn ours(file: &Path, args: &[&str]) -> (Value, i32) {
    let o = run(jail().arg("ldd").arg("--json").args(args).arg(file));
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)));
    (doc["files"][0].clone(), o.status.code().unwrap_or(-1))
}

/// The physical paths of every object but the main one.
fn dep_paths(entry: &Value) -> BTreeSet<PathBuf> {
    entry["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .skip(1)
        .map(|o| PathBuf::from(o["path"].as_str().unwrap()))
        .collect()
}

fn unresolved(entry: &Value) -> BTreeSet<String> {
    entry["unresolved"]
        .as_array()
        .expect("unresolved")
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect()
}

/// The object a dependency named `name` resolved to, as (path, found_by).
fn resolved(entry: &Value, name: &str) -> Option<(PathBuf, String)> {
    let objects = entry["objects"].as_array()?;
    for o in objects {
        for n in o["needs"].as_array()? {
            if n["name"] == name {
                let i = n["object"].as_u64()? as usize;
                return Some((
                    PathBuf::from(objects[i]["path"].as_str()?),
                    objects[i]["found_by"].as_str()?.to_string(),
                ));
            }
        }
    }
    None
}

fn canon(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap()
}

/// Assert the fixture agrees with ldd: same objects, same missing names.
#[track_caller]
fn assert_agrees(file: &Path, entry: &Value, env: &[(&str, &str)]) {
    let l = ldd(file, env);
    assert_eq!(
        dep_paths(entry),
        l.paths,
        "objects differ from ldd for {}:\n{}",
        file.display(),
        l.raw
    );
    assert_eq!(
        unresolved(entry),
        l.not_found,
        "missing libraries differ from ldd for {}:\n{}",
        file.display(),
        l.raw
    );
}

// ---------------------------------------------------------------------------
// This machine against ldd

/// Documented cases where ldd, not the loader, is wrong (docs/elf.md,
/// "Where ldd is wrong"). Each returns the reason when the difference for
/// `file` is exactly that case.
fn ldd_is_wrong(
    resolver_secure_off: &Resolver,
    file: &Path,
    ours: &elf::Closure,
    only_ours: &BTreeSet<PathBuf>,
    only_ldd: &BTreeSet<PathBuf>,
) -> Option<&'static str> {
    // 1. ldd lists the interpreter only when a DT_NEEDED names it; the
    //    kernel loads it anyway.
    if only_ldd.is_empty()
        && only_ours.len() == 1
        && ours
            .interpreter()
            .is_some_and(|i| only_ours.contains(&i.path))
    {
        return Some("interpreter not named by any DT_NEEDED");
    }
    // 2. ldd runs ld.so directly, which never enables secure-execution mode:
    //    for a set-user-ID/set-group-ID program it is wrong exactly when
    //    resolving without secure mode makes the difference vanish.
    if ours.secure {
        if let Ok(Outcome::Elf(c)) = resolver_secure_off.closure(file) {
            let insecure: BTreeSet<PathBuf> =
                c.objects.iter().skip(1).map(|o| o.path.clone()).collect();
            let mine: BTreeSet<PathBuf> = ours
                .objects
                .iter()
                .skip(1)
                .map(|o| o.path.clone())
                .collect();
            let ldds: BTreeSet<PathBuf> = mine
                .difference(only_ours)
                .chain(only_ldd)
                .cloned()
                .collect();
            if insecure == ldds {
                return Some("secure-execution program");
            }
        }
    }
    None
}

#[test]
fn agrees_with_ldd_on_every_dynamic_elf_file_of_this_machine() {
    require("ldd", "libc-bin");
    let mut files = BTreeSet::new();
    for dir in ["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"] {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name();
            if dir.ends_with("-gnu") && !name.to_string_lossy().contains(".so") {
                continue;
            }
            if let Ok(p) = fs::canonicalize(e.path()) {
                if p.is_file() {
                    files.insert(p);
                }
            }
        }
    }
    let root = Root::host();
    let env = LoaderEnv::host();
    let resolver = Resolver::new(&root, env.clone());
    let insecure = Resolver::new(
        &root,
        LoaderEnv {
            secure: Secure::Never,
            ..env
        },
    );
    let dynamic: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| match resolver.inspect(f) {
            Ok((_, Parsed::Elf(e))) => matches!(
                e.linking,
                elf::Linking::Dynamic | elf::Linking::SharedObject
            ),
            _ => false,
        })
        .collect();
    assert!(
        dynamic.len() > 500,
        "only {} dynamic ELF files found",
        dynamic.len()
    );

    let results: Vec<(PathBuf, String)> = dynamic
        .par_iter()
        .filter_map(|f| {
            let l = ldd(f, &[]);
            let Ok(Outcome::Elf(c)) = resolver.closure(f) else { return Some((f.clone(), "not resolved as ELF".to_string())) };
            let mine: BTreeSet<PathBuf> = c.objects.iter().skip(1).map(|o| o.path.clone()).collect();
            let missing: BTreeSet<String> = c.unresolved().iter().map(|u| u.need.name.to_string_lossy().into_owned()).collect();
            if mine == l.paths && missing == l.not_found {
                return None;
            }
            let only_ours: BTreeSet<PathBuf> = mine.difference(&l.paths).cloned().collect();
            let only_ldd: BTreeSet<PathBuf> = l.paths.difference(&mine).cloned().collect();
            if missing == l.not_found {
                if let Some(why) = ldd_is_wrong(&insecure, f, &c, &only_ours, &only_ldd) {
                    return Some((f.clone(), format!("ALLOWED ({why})")));
                }
            }
            Some((f.clone(), format!("only ours {only_ours:?}, only ldd {only_ldd:?}, missing ours {missing:?}, ldd {:?}\n{}", l.not_found, l.raw)))
        })
        .collect();
    let (allowed, wrong): (Vec<_>, Vec<_>) =
        results.iter().partition(|(_, m)| m.starts_with("ALLOWED"));
    for (f, m) in &allowed {
        eprintln!("{}: {m}", f.display());
    }
    let report: Vec<String> = wrong
        .iter()
        .map(|(f, m)| format!("{}: {m}", f.display()))
        .collect();
    assert!(
        report.is_empty(),
        "{} of {} files differ from ldd:\n{}",
        report.len(),
        dynamic.len(),
        report.join("\n")
    );
    eprintln!(
        "{} dynamic ELF files compared with ldd, {} documented ldd errors",
        dynamic.len(),
        allowed.len()
    );
}

// ---------------------------------------------------------------------------
// Fixtures

#[test]
fn rpath_origin_and_inheritance_down_the_chain() {
    // bin/main: DT_RPATH $ORIGIN/../lib. lib/libmid.so has no path of its
    // own: its libleaf.so is found through main's inherited DT_RPATH.
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    lab.mid("lib/libmid.so", "lib", &[]);
    let main = lab.main(
        "bin/main",
        "lib",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"],
    );
    let (e, code) = ours(&main, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        resolved(&e, "libmid.so"),
        Some((canon(&lab.path("lib/libmid.so")), "rpath".into()))
    );
    assert_eq!(
        resolved(&e, "libleaf.so"),
        Some((canon(&lab.path("lib/libleaf.so")), "rpath".into()))
    );
    assert_agrees(&main, &e, &[]);
    assert_eq!(text(&exec(&main, &[]).stdout), "leaf=1\n");

    // A DT_RPATH of libmid.so itself comes before main's: lib2 holds another
    // libleaf.so.
    lab.leaf("lib2/libleaf.so", 2);
    lab.mid(
        "lib/libmid.so",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../lib2", "-Wl,--disable-new-dtags"],
    );
    let (e, _) = ours(&main, &[]);
    assert_eq!(
        resolved(&e, "libleaf.so").map(|r| r.0),
        Some(canon(&lab.path("lib2/libleaf.so")))
    );
    assert_agrees(&main, &e, &[]);
    assert_eq!(text(&exec(&main, &[]).stdout), "leaf=2\n");
}

#[test]
fn runpath_is_not_inherited_by_dependencies() {
    // bin/main: DT_RUNPATH $ORIGIN/../lib, which has libmid.so and
    // libleaf.so; libmid.so's own need must not use main's RUNPATH.
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    lab.mid("lib/libmid.so", "lib", &[]);
    let main = lab.main(
        "bin/main",
        "lib",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags"],
    );
    let (e, code) = ours(&main, &[]);
    assert_eq!(code, 1, "a missing library fails: {e}");
    assert_eq!(
        resolved(&e, "libmid.so").map(|r| r.1),
        Some("runpath".into())
    );
    assert_eq!(unresolved(&e), BTreeSet::from(["libleaf.so".to_string()]));
    assert_agrees(&main, &e, &[]);
    assert!(
        !exec(&main, &[]).status.success(),
        "the real loader fails too"
    );

    // LD_LIBRARY_PATH supplies it (and comes before RUNPATH).
    lab.leaf("other/libleaf.so", 7);
    let other = lab.path("other");
    let llp = other.to_str().unwrap();
    let (e, code) = ours(&main, &["--ld-library-path", llp]);
    assert_eq!(code, 0);
    assert_eq!(
        resolved(&e, "libleaf.so"),
        Some((
            canon(&lab.path("other/libleaf.so")),
            "ld-library-path".into()
        ))
    );
    assert_agrees(&main, &e, &[("LD_LIBRARY_PATH", llp)]);
    assert_eq!(
        text(&exec(&main, &[("LD_LIBRARY_PATH", llp)]).stdout),
        "leaf=7\n"
    );

    // A DT_RUNPATH on the loading object hides the DT_RPATH of its loaders:
    // main gets DT_RPATH to lib (with libleaf.so), libmid.so a DT_RUNPATH
    // to an empty directory.
    fs::create_dir_all(lab.path("empty")).unwrap();
    lab.mid(
        "lib/libmid.so",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../empty", "-Wl,--enable-new-dtags"],
    );
    let main = lab.main(
        "bin/main",
        "lib",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"],
    );
    let (e, code) = ours(&main, &[]);
    assert_eq!(code, 1);
    assert_eq!(unresolved(&e), BTreeSet::from(["libleaf.so".to_string()]));
    assert_agrees(&main, &e, &[]);
}

#[test]
fn lib_and_platform_tokens() {
    // $LIB is lib/x86_64-linux-gnu on Debian, $PLATFORM x86_64 (on this CPU).
    let lab = Lab::new();
    let lib = jail::elf::GlibcBuild::read(Path::new("/lib64/ld-linux-x86-64.so.2"))
        .expect("glibc ld.so")
        .lib;
    let platform = jail::elf::Cpu::host().platform;
    lab.leaf(&format!("bin/{platform}/libleaf.so"), 3);
    lab.mid(
        &format!("bin/{lib}/libmid.so"),
        &format!("bin/{platform}"),
        &[],
    );
    let main = lab.main(
        "bin/main",
        &format!("bin/{lib}"),
        &format!("bin/{platform}"),
        &[
            "-Wl,-rpath,$ORIGIN/$LIB:${ORIGIN}/${PLATFORM}",
            "-Wl,--disable-new-dtags",
        ],
    );
    let (e, code) = ours(&main, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        resolved(&e, "libmid.so").map(|r| r.0),
        Some(canon(&lab.path(&format!("bin/{lib}/libmid.so"))))
    );
    assert_eq!(
        resolved(&e, "libleaf.so").map(|r| r.0),
        Some(canon(&lab.path(&format!("bin/{platform}/libleaf.so"))))
    );
    assert_agrees(&main, &e, &[]);
    assert_eq!(text(&exec(&main, &[]).stdout), "leaf=3\n");
}

/// A copy of `src` with e_machine patched to AArch64.
fn wrong_machine(src: &Path, dst: &Path) {
    let mut b = fs::read(src).unwrap();
    b[18..20].copy_from_slice(&183u16.to_le_bytes());
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    fs::write(dst, b).unwrap();
}

/// A minimal ELF32 shared object header (padded to 64 bytes, since glibc
/// reads a 64-bit header's worth before judging the class).
fn wrong_class(dst: &Path) {
    let mut h = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
    h.resize(16, 0);
    h.extend(3u16.to_le_bytes()); // ET_DYN
    h.extend(3u16.to_le_bytes()); // EM_386
    h.extend(1u32.to_le_bytes()); // EV_CURRENT
    h.extend([0u8; 12]); // entry, phoff, shoff
    h.extend(0u32.to_le_bytes()); // flags
    h.extend(52u16.to_le_bytes()); // ehsize
    h.extend([32, 0, 0, 0, 40, 0, 0, 0, 0, 0]); // phentsize, phnum, shentsize, shnum, shstrndx
    h.resize(64, 0);
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    fs::write(dst, h).unwrap();
}

#[test]
fn wrong_class_and_wrong_machine_candidates_are_skipped() {
    let lab = Lab::new();
    let good = lab.leaf("good/libleaf.so", 5);
    lab.mid("lib/libmid.so", "good", &[]);
    let main = lab.main(
        "bin/main",
        "lib",
        "good",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"],
    );
    wrong_class(&lab.path("class/libleaf.so"));
    wrong_machine(&good, &lab.path("machine/libleaf.so"));
    let llp = format!(
        "{}:{}:{}",
        lab.path("class").display(),
        lab.path("machine").display(),
        lab.path("good").display()
    );
    let (e, code) = ours(&main, &["--env", &format!("LD_LIBRARY_PATH={llp}")]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(resolved(&e, "libleaf.so").map(|r| r.0), Some(canon(&good)));
    assert_agrees(&main, &e, &[("LD_LIBRARY_PATH", &llp)]);
    assert_eq!(
        text(&exec(&main, &[("LD_LIBRARY_PATH", &llp)]).stdout),
        "leaf=5\n"
    );

    // Only wrong candidates: not found, and said so.
    let llp = format!(
        "{}:{}",
        lab.path("class").display(),
        lab.path("machine").display()
    );
    let (e, code) = ours(&main, &["--env", &format!("LD_LIBRARY_PATH={llp}")]);
    assert_eq!(code, 1);
    assert_eq!(unresolved(&e), BTreeSet::from(["libleaf.so".to_string()]));
    assert_agrees(&main, &e, &[("LD_LIBRARY_PATH", &llp)]);

    // A file that is not ELF at all stops the loader (glibc: "invalid ELF
    // header"); it is reported, not skipped.
    fs::create_dir_all(lab.path("junk")).unwrap();
    fs::write(lab.path("junk/libleaf.so"), [b'x'; 200]).unwrap();
    let llp = format!(
        "{}:{}",
        lab.path("junk").display(),
        lab.path("good").display()
    );
    let (e, code) = ours(&main, &["--env", &format!("LD_LIBRARY_PATH={llp}")]);
    assert_eq!(code, 1);
    let err = e["unresolved"][0]["error"].as_str().unwrap();
    assert!(err.contains("invalid ELF header"), "{err}");
    let o = exec(&main, &[("LD_LIBRARY_PATH", &llp)]);
    assert!(
        text(&o.stderr).contains("invalid ELF header"),
        "the real loader stops there too: {}",
        text(&o.stderr)
    );
}

#[test]
fn glibc_hwcaps_subdirectories() {
    let lab = Lab::new();
    lab.leaf("hw/libleaf.so", 1);
    let v2 = lab.leaf("hw/glibc-hwcaps/x86-64-v2/libleaf.so", 2);
    lab.mid("lib/libmid.so", "hw", &[]);
    let main = lab.main(
        "bin/main",
        "lib",
        "hw",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"],
    );
    let llp = lab.path("hw").display().to_string();
    assert!(
        jail::elf::Cpu::host()
            .hwcaps
            .iter()
            .any(|h| h == "x86-64-v2"),
        "this test needs an x86-64-v2 CPU"
    );
    let (e, code) = ours(&main, &["--ld-library-path", &llp]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(resolved(&e, "libleaf.so").map(|r| r.0), Some(canon(&v2)));
    assert_agrees(&main, &e, &[("LD_LIBRARY_PATH", &llp)]);
    assert_eq!(
        text(&exec(&main, &[("LD_LIBRARY_PATH", &llp)]).stdout),
        "leaf=2\n"
    );
    // A CPU without the level gets the plain copy; v3 alone skips v2.
    for hw in ["none", "x86-64-v3"] {
        let (e, _) = ours(&main, &["--ld-library-path", &llp, "--hwcaps", hw]);
        assert_eq!(
            resolved(&e, "libleaf.so").map(|r| r.0),
            Some(canon(&lab.path("hw/libleaf.so"))),
            "--hwcaps {hw}"
        );
    }
}

#[test]
fn origin_is_the_real_directory_of_a_symlinked_program() {
    // ldd takes $ORIGIN from the path it is given; the kernel (and so the
    // loader) from the real path. We follow the loader (docs/elf.md).
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    lab.mid("lib/libmid.so", "lib", &[]);
    let main = lab.main(
        "app/bin/main",
        "lib",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../../lib", "-Wl,--disable-new-dtags"],
    );
    // At another depth, so that $ORIGIN/../../lib from the link's directory
    // names no lib directory.
    fs::create_dir_all(lab.path("elsewhere")).unwrap();
    let link = lab.path("elsewhere/main");
    symlink(&main, &link).unwrap();
    let (e, code) = ours(&link, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        resolved(&e, "libmid.so").map(|r| r.0),
        Some(canon(&lab.path("lib/libmid.so")))
    );
    assert_eq!(
        text(&exec(&link, &[]).stdout),
        "leaf=1\n",
        "the real loader agrees"
    );
    assert!(
        ldd(&link, &[]).not_found.contains("libmid.so"),
        "ldd gets this wrong"
    );
    let links: Vec<&str> = e["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert!(
        links.contains(&link.to_str().unwrap()),
        "the symlink is part of the closure: {links:?}"
    );
}

#[test]
fn secure_execution_ignores_origin_outside_system_dirs_and_ld_library_path() {
    // A set-user-ID program (owned by nobody, so that root running it gets
    // AT_SECURE). ldd runs ld.so without secure mode and gets this wrong.
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    lab.mid("lib/libmid.so", "lib", &[]);
    let main = lab.main(
        "bin/main",
        "lib",
        "lib",
        &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"],
    );
    let status = Command::new("chown")
        .arg("nobody")
        .arg(&main)
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(&main, fs::Permissions::from_mode(0o4755)).unwrap();
    for dir in ["bin", "lib"] {
        fs::set_permissions(lab.path(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let llp = lab.path("lib").display().to_string();
    let (e, code) = ours(&main, &["--ld-library-path", &llp]);
    assert_eq!(code, 1, "{e}");
    assert_eq!(e["secure"], true);
    assert_eq!(unresolved(&e), BTreeSet::from(["libmid.so".to_string()]));
    let o = exec(&main, &[("LD_LIBRARY_PATH", &llp)]);
    assert!(
        text(&o.stderr).contains("libmid.so: cannot open shared object file"),
        "the real loader fails too: {}",
        text(&o.stderr)
    );
    assert!(
        ldd(&main, &[]).not_found.is_empty(),
        "ldd wrongly resolves it"
    );
}

#[test]
fn interpreter_is_part_of_the_closure_even_when_no_library_names_it() {
    // ldd says "statically linked"; the kernel still loads PT_INTERP.
    let lab = Lab::new();
    let prog = lab.cc("nolibc", "elf_nolibc", &["-nostdlib", "-pie"]);
    let (e, code) = ours(&prog, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        dep_paths(&e),
        BTreeSet::from([canon(Path::new("/lib64/ld-linux-x86-64.so.2"))])
    );
    assert!(ldd(&prog, &[]).paths.is_empty());
    ok(&exec(&prog, &[]));
}

#[test]
fn musl_root_uses_its_path_file_and_reserved_names() {
    // A root with a musl-style interpreter: libc.so names resolve to the
    // interpreter itself, other names through /etc/ld-musl-x86_64.path.
    let lab = Lab::new();
    let root = lab.path("root");
    lab.leaf("root/opt/lib/libleaf.so", 1);
    lab.mid("root/opt/lib/libmid.so", "root/opt/lib", &[]);
    let interp = "/lib/ld-musl-x86_64.so.1";
    lab.main(
        "root/app/main",
        "root/opt/lib",
        "root/opt/lib",
        &[&format!("-Wl,--dynamic-linker={interp}")],
    );
    // A stand-in for musl's loader (which is also its libc): no dependencies.
    lab.cc(
        "root/lib/ld-musl-x86_64.so.1",
        "elf_leaf",
        &[
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libc.musl-x86_64.so.1",
        ],
    );
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/ld-musl-x86_64.path"),
        "/nonexistent\n/opt/lib\n",
    )
    .unwrap();
    let (e, code) = ours(Path::new("/app/main"), &["--root", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["loader"], "musl");
    assert_eq!(
        resolved(&e, "libmid.so"),
        Some((PathBuf::from("/opt/lib/libmid.so"), "default-dirs".into()))
    );
    assert_eq!(
        resolved(&e, "libleaf.so").map(|r| r.0),
        Some(PathBuf::from("/opt/lib/libleaf.so"))
    );
    assert_eq!(
        resolved(&e, "libc.so.6").map(|r| r.0),
        Some(PathBuf::from(interp))
    );
    let loader_files: Vec<&str> = e["loader_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(loader_files, ["/etc/ld-musl-x86_64.path"]);
    // Without the path file, musl's default path (/lib:/usr/local/lib:/usr/lib).
    fs::remove_file(root.join("etc/ld-musl-x86_64.path")).unwrap();
    let (e, code) = ours(Path::new("/app/main"), &["--root", root.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(unresolved(&e), BTreeSet::from(["libmid.so".to_string()]));
}

#[test]
fn preloads_and_needed_paths() {
    // libmid.so linked by its path (no soname): DT_NEEDED is that path.
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    let mid = lab.cc(
        "lib/libmid-path.so",
        "elf_mid",
        &["-shared", "-fPIC", "-Llib", "-lleaf"],
    );
    let main = lab.cc(
        "bin/main",
        "elf_main",
        &[
            mid.to_str().unwrap(),
            "-Wl,-rpath-link,lib",
            "-Wl,-rpath,$ORIGIN/../lib",
            "-Wl,--disable-new-dtags",
        ],
    );
    let (e, code) = ours(&main, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        resolved(&e, mid.to_str().unwrap()),
        Some((canon(&mid), "path".into()))
    );
    assert_agrees(&main, &e, &[]);

    // A preloaded libleaf.so answers for the later need by its soname.
    let pre = lab.leaf("pre/libleaf.so", 9);
    let env = [("LD_PRELOAD", pre.to_str().unwrap())];
    let (e, code) = ours(&main, &["--env", &format!("LD_PRELOAD={}", pre.display())]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["objects"][0]["needs"][1]["kind"], "preload");
    assert_eq!(resolved(&e, "libleaf.so").map(|r| r.0), Some(canon(&pre)));
    assert_agrees(&main, &e, &env);
    assert_eq!(text(&exec(&main, &env).stdout), "leaf=9\n");

    // /etc/ld.so.preload of a root; a missing preload is only a warning.
    let root = lab.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("opt")).unwrap();
    fs::copy(&pre, root.join("opt/libleaf.so")).unwrap();
    fs::write(
        root.join("etc/ld.so.preload"),
        "# comment\n/opt/libleaf.so /opt/missing.so\n",
    )
    .unwrap();
    fs::copy(lab.path("lib/libleaf.so"), root.join("opt/libother.so")).unwrap();
    let o = run(jail()
        .args(["ldd", "--json", "--root"])
        .arg(&root)
        .arg("/opt/libother.so"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("preload /opt/missing.so ignored"),
        "{}",
        text(&o.stderr)
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &doc["files"][0];
    assert_eq!(e["objects"][1]["path"], "/opt/libleaf.so");
    assert!(e["loader_files"]
        .as_array()
        .unwrap()
        .contains(&Value::from("/etc/ld.so.preload")));
}

#[test]
fn missing_interpreter_is_reported() {
    let lab = Lab::new();
    let root = lab.path("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(
        lab.cc("nolibc", "elf_nolibc", &["-nostdlib", "-pie"]),
        root.join("bin/prog"),
    )
    .unwrap();
    let (e, code) = ours(Path::new("/bin/prog"), &["--root", root.to_str().unwrap()]);
    assert_eq!(code, 1, "{e}");
    assert_eq!(
        unresolved(&e),
        BTreeSet::from(["/lib64/ld-linux-x86-64.so.2".to_string()])
    );
    assert_eq!(e["unresolved"][0]["needed_by"], "/bin/prog");
}

// ---------------------------------------------------------------------------
// A foreign root

/// Copy a host file into the root at the same path, recreating the symlinks
/// on the way (absolute targets stay absolute: the root re-roots them).
fn copy_in(root: &Path, path: &Path) {
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path.components().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let meta = fs::symlink_metadata(&cur).unwrap();
        let dst = root.join(cur.strip_prefix("/").unwrap());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&cur).unwrap();
            if fs::symlink_metadata(&dst).is_err() {
                fs::create_dir_all(dst.parent().unwrap()).unwrap();
                symlink(&target, &dst).unwrap();
            }
            let rest: PathBuf = comps[i + 1..].iter().collect();
            let next = if target.is_absolute() {
                target
            } else {
                cur.parent().unwrap().join(target)
            };
            return copy_in(root, &next.join(rest));
        }
        if i + 1 == comps.len() {
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(&cur, &dst).unwrap();
        }
    }
}

#[test]
fn foreign_root_resolves_inside_the_root_only() {
    let lab = Lab::new();
    let root = lab.path("root");
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        fs::create_dir_all(root.join(target)).unwrap();
        symlink(target, root.join(link)).unwrap();
    }
    // python3 and all it needs except libexpat, which only the host has.
    let host_root = Root::host();
    let host = Resolver::new(&host_root, LoaderEnv::host());
    let Ok(Outcome::Elf(c)) = host.closure(Path::new("/usr/bin/python3")) else {
        panic!("python3 is ELF")
    };
    let mut copied = 0;
    for p in c.paths() {
        if !p.to_string_lossy().contains("libexpat")
            && !p.starts_with("/etc")
            && !fs::metadata(&p).unwrap().is_dir()
        {
            copy_in(&root, &p);
            copied += 1;
        }
    }
    assert!(copied >= 5, "{copied} files copied");
    copy_in(&root, Path::new("/usr/bin/python3"));
    copy_in(&root, Path::new("/lib64/ld-linux-x86-64.so.2"));

    let o = run(jail()
        .args(["ldd", "--root"])
        .arg(&root)
        .arg("--list")
        .arg("/usr/bin/python3"));
    assert_eq!(
        o.status.code(),
        Some(1),
        "libexpat is missing in the root: {}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("libexpat.so.1"),
        "{}",
        text(&o.stderr)
    );
    let list: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert!(
        list.contains(&"/usr/lib64/ld-linux-x86-64.so.2"),
        "{list:?}"
    );
    assert!(
        list.contains(&"/usr/lib/x86_64-linux-gnu/libc.so.6"),
        "{list:?}"
    );
    assert!(
        list.contains(&"/lib"),
        "the usr-merge symlink is listed: {list:?}"
    );
    for p in &list {
        let inside = root.join(p.trim_start_matches('/'));
        assert!(
            fs::symlink_metadata(&inside).is_ok(),
            "{p} is not in the root"
        );
        assert!(!p.starts_with(root.to_str().unwrap()), "{p} is a host path");
    }
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted, "--list is sorted");

    let (e, _) = ours(
        Path::new("/usr/bin/python3"),
        &["--root", root.to_str().unwrap()],
    );
    assert_eq!(
        unresolved(&e),
        BTreeSet::from(["libexpat.so.1".to_string()])
    );
    // The ld.so.cache of the root is not there: found in the default dirs.
    assert_eq!(
        resolved(&e, "libc.so.6").map(|r| r.1),
        Some("default-dirs".into())
    );
    // With the host's cache copied in, its entries resolve inside the root.
    copy_in(&root, Path::new("/etc/ld.so.cache"));
    let (e, _) = ours(
        Path::new("/usr/bin/python3"),
        &["--root", root.to_str().unwrap()],
    );
    assert_eq!(
        resolved(&e, "libc.so.6"),
        Some((
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            "ld.so.cache".into()
        ))
    );
    assert_eq!(
        unresolved(&e),
        BTreeSet::from(["libexpat.so.1".to_string()])
    );
}

// ---------------------------------------------------------------------------
// ld.so.cache against ldconfig

/// `ldconfig -p` of a cache file: (name, path) in file order.
fn ldconfig_print(cache: &Path) -> Vec<(String, String)> {
    let o = run(Command::new("ldconfig").arg("-p").arg("-C").arg(cache));
    ok(&o);
    text(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (left, path) = l.trim().split_once(" => ")?;
            Some((left.split(" (").next()?.to_string(), path.to_string()))
        })
        .collect()
}

#[test]
fn ld_so_cache_formats_match_ldconfig() {
    require("ldconfig", "libc-bin");
    let lab = Lab::new();
    // ldconfig indexes a library under its soname.
    for p in ["hw/libleaf.so.1", "hw/glibc-hwcaps/x86-64-v2/libleaf.so.1"] {
        lab.cc(
            p,
            "elf_leaf",
            &["-shared", "-fPIC", "-Wl,-soname,libleaf.so.1"],
        );
    }
    fs::write(
        lab.path("ld.so.conf"),
        format!("{}\n", lab.path("hw").display()),
    )
    .unwrap();
    for format in ["new", "old", "compat"] {
        let cache = lab.path(&format!("ld.so.cache.{format}"));
        let o = run(Command::new("ldconfig")
            .args(["-X", "-i", "-c", format, "-C"])
            .arg(&cache)
            .arg("-f")
            .arg(lab.path("ld.so.conf")));
        ok(&o);
        let parsed = LdCache::parse(fs::read(&cache).unwrap())
            .unwrap_or_else(|| panic!("{format} cache not parsed"));
        let mine: Vec<(String, String)> = parsed
            .entries()
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.key).into_owned(),
                    String::from_utf8_lossy(&e.value).into_owned(),
                )
            })
            .collect();
        assert_eq!(mine, ldconfig_print(&cache), "{format} format");
        let hwcaps = vec!["x86-64-v2".to_string()];
        let q = |h| jail::elf::ldcache::Query {
            flags: jail::elf::ldcache::Flags::for_machine(true, 62),
            hwcaps: h,
            isa_level: 1,
            legacy: None,
        };
        let plain = lab.path("hw/libleaf.so.1").display().to_string();
        let v2 = lab
            .path("hw/glibc-hwcaps/x86-64-v2/libleaf.so.1")
            .display()
            .to_string();
        if format == "old" {
            // No hwcaps in the old layout: the first entry of the name wins,
            // whatever the CPU.
            let first = ldconfig_print(&cache)
                .into_iter()
                .find(|(k, _)| k == "libleaf.so.1")
                .unwrap()
                .1;
            assert_eq!(
                parsed.lookup(b"libleaf.so.1", &q(&[])),
                Some(first.as_bytes())
            );
            assert_eq!(
                parsed.lookup(b"libleaf.so.1", &q(&hwcaps)),
                Some(first.as_bytes())
            );
        } else {
            assert_eq!(
                parsed.lookup(b"libleaf.so.1", &q(&[])),
                Some(plain.as_bytes()),
                "{format}"
            );
            assert_eq!(
                parsed.lookup(b"libleaf.so.1", &q(&hwcaps)),
                Some(v2.as_bytes()),
                "{format}"
            );
        }
        assert_eq!(
            parsed.lookup(b"libc.so.6", &q(&hwcaps)),
            Some(&b"/lib/x86_64-linux-gnu/libc.so.6"[..]),
            "{format}"
        );
    }
    // And the machine's own cache.
    let parsed = LdCache::parse(fs::read("/etc/ld.so.cache").unwrap()).unwrap();
    let mine: Vec<(String, String)> = parsed
        .entries()
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.key).into_owned(),
                String::from_utf8_lossy(&e.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(mine, ldconfig_print(Path::new("/etc/ld.so.cache")));
}

// ---------------------------------------------------------------------------
// The command line

#[test]
fn cli_reports_missing_libraries_and_bad_input() {
    let lab = Lab::new();
    lab.leaf("lib/libleaf.so", 1);
    lab.mid("lib/libmid.so", "lib", &[]);
    let main = lab.main("bin/main", "lib", "lib", &[]);
    // Tree: the missing library is printed, and said on stderr; exit 1.
    let o = run(jail().arg("ldd").arg(&main));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("    libmid.so => not found"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stdout).contains("libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("libmid.so (needed by"),
        "{}",
        text(&o.stderr)
    );
    // --list still lists what was found.
    let o = run(jail().arg("ldd").arg("--list").arg(&main));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l == "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        "{}",
        text(&o.stdout)
    );

    // Missing file, not ELF: exit 2, naming the path.
    let o = run(jail().args(["ldd", "/nonexistent/file"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("/nonexistent/file"),
        "{}",
        text(&o.stderr)
    );
    let script = lab.path("script.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let o = run(jail().arg("ldd").arg(&script));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("script.sh: not an ELF file"),
        "{}",
        text(&o.stderr)
    );
    let o = run(jail().args(["ldd", "--root", "/nonexistent/root", "/bin/ls"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("/nonexistent/root"),
        "{}",
        text(&o.stderr)
    );
    let o = run(jail().args(["ldd", "--env", "NOEQUALS", "/bin/ls"]));
    assert_eq!(o.status.code(), Some(2));

    // A good file: exit 0, tree with the interpreter.
    let o = run(jail().args(["ldd", "/bin/ls"]));
    ok(&o);
    assert!(
        text(&o.stdout).starts_with("/bin/ls (interpreter => /lib64/ld-linux-x86-64.so.2)\n"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn json_lists_objects_links_and_paths() {
    let (e, code) = ours(Path::new("/bin/ls"), &[]);
    assert_eq!(code, 0);
    assert_eq!(e["loader"], "glibc");
    assert_eq!(e["path"], "/usr/bin/ls");
    assert_eq!(e["objects"][0]["found_by"], "main");
    assert_eq!(e["objects"][0]["needs"][0]["kind"], "interpreter");
    let links: Vec<(&str, &str)> = e["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["path"].as_str().unwrap(), l["target"].as_str().unwrap()))
        .collect();
    assert!(links.contains(&("/bin", "usr/bin")), "{links:?}");
    let paths: Vec<&str> = e["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        "/bin",
        "/usr/bin/ls",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/etc/ld.so.cache",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let libc = e["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["soname"] == "libc.so.6")
        .expect("libc");
    assert_eq!(libc["found_by"], "ld.so.cache");
}

#[test]
fn hardening_facts() {
    let lab = Lab::new();
    let hard = lab.cc(
        "hard",
        "elf_hard",
        &[
            "-O2",
            "-D_FORTIFY_SOURCE=2",
            "-fstack-protector-all",
            "-pie",
            "-fPIE",
            "-Wl,-z,relro,-z,now",
        ],
    );
    let soft = lab.cc(
        "soft",
        "elf_hard",
        &[
            "-O0",
            "-fno-stack-protector",
            "-no-pie",
            "-Wl,-z,norelro",
            "-Wl,-z,execstack",
        ],
    );
    let partial = lab.cc("partial", "elf_hard", &["-O0", "-Wl,-z,relro,-z,lazy"]);
    let root = Root::host();
    let r = Resolver::new(&root, LoaderEnv::host());
    let h = |p: &Path| match r.inspect(p).unwrap().1 {
        Parsed::Elf(e) => e.hardening,
        _ => panic!("{} is ELF", p.display()),
    };
    let (hard, soft, partial) = (h(&hard), h(&soft), h(&partial));
    assert_eq!(
        (
            hard.pie,
            hard.relro,
            hard.nx_stack,
            hard.stack_protector,
            hard.fortify
        ),
        (true, elf::Relro::Full, true, true, true)
    );
    assert_eq!(
        (
            soft.pie,
            soft.relro,
            soft.nx_stack,
            soft.stack_protector,
            soft.fortify
        ),
        (false, elf::Relro::None, false, false, false)
    );
    assert_eq!(partial.relro, elf::Relro::Partial);

    // Without section headers the dynamic symbols are counted from the hash
    // tables, GNU or SysV, as a loader counts them.
    for style in ["gnu", "sysv"] {
        let full = lab.cc(
            &format!("hard-{style}"),
            "elf_hard",
            &[
                "-O2",
                "-D_FORTIFY_SOURCE=2",
                "-fstack-protector-all",
                &format!("-Wl,--hash-style={style}"),
            ],
        );
        let mut b = fs::read(&full).unwrap();
        b[40..48].fill(0); // e_shoff
        b[60..64].fill(0); // e_shnum, e_shstrndx
        let stripped = lab.path(&format!("hard-{style}-noshdr"));
        fs::write(&stripped, b).unwrap();
        let (a, b) = (h(&full), h(&stripped));
        assert!(a.stack_protector && a.fortify, "{style}: {a:?}");
        assert_eq!(a, b, "{style}: same facts without section headers");
    }
}
