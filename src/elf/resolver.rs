//! The dependency closure of one file, found the way its loader would find
//! it, inside a [`Root`], without running anything.
//!
//! glibc (ld.so 2.36, `_dl_map_object` and `_dl_map_object_deps`): a
//! breadth-first walk from the main object, each name matched first against
//! the objects already loaded (by the names they were loaded as, by
//! `DT_SONAME`, and after opening by inode), then searched in `DT_RPATH` of
//! the loader and its loaders (unless the loader has `DT_RUNPATH`), the
//! main program's `DT_RPATH`, `LD_LIBRARY_PATH`, the loader's `DT_RUNPATH`,
//! `/etc/ld.so.cache`, and the system directories; each directory with its
//! hwcaps subdirectories first. musl follows its own, shorter rules. The
//! full description, with what differs from ld.so and why, is docs/elf.md.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use goblin::elf::header::{
    ELFOSABI_GNU, ELFOSABI_SYSV, EM_386, EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC,
};

use super::dst::{self, Tokens};
use super::file::{
    self, ByteOrder, Class, DepKind, ElfFile, HeaderCheck, Linking, NotElf, ParseError, Parsed,
};
use super::ldcache::{Flags, LdCache, Legacy, Query};
use super::platform::{Cpu, GlibcBuild};
use super::ElfError;
use crate::resolve::{FileType, Follow, Link, Resolved, Root, Stamp};

mod glibc;
mod model;
mod musl;

pub use model::*;
use musl::musl_arch;

/// glibc's `LIBC_ABI_MAX` (2.36): the highest `EI_ABIVERSION` + 1 it loads
/// for `ELFOSABI_GNU` objects.
const LIBC_ABI_MAX: u8 = 4;
const LD_SO_CACHE: &str = "/etc/ld.so.cache";
const LD_SO_PRELOAD: &str = "/etc/ld.so.preload";

/// Resolves ELF closures inside one root, caching what it parsed.
///
/// Parsed files are cached per (device, inode) and re-read when their size,
/// mtime or ctime change, so one resolver serves thousands of calls; it is
/// `Sync`, so calls may run in parallel.
#[derive(Debug)]
pub struct Resolver<'r> {
    root: &'r Root,
    env: LoaderEnv,
    parsed: Mutex<HashMap<(u64, u64), (Stamp, Parsed)>>,
    ld_cache: Mutex<Option<(Stamp, Option<Arc<LdCache>>)>>,
    builds: Mutex<HashMap<Stamp, Arc<GlibcBuild>>>,
}

/// Why a file could not be used by the loader (internal).
enum Failure {
    NotFound {
        other_class: bool,
    },
    Fatal {
        path: Option<PathBuf>,
        reason: String,
    },
}

impl Failure {
    fn fatal(path: &Path, reason: impl Into<String>) -> Failure {
        Failure::Fatal {
            path: Some(path.to_path_buf()),
            reason: reason.into(),
        }
    }

    fn into_result(self) -> NeedResult {
        match self {
            Failure::NotFound { other_class } => NeedResult::NotFound { other_class },
            Failure::Fatal { path, reason } => NeedResult::Failed { path, reason },
        }
    }
}

/// A file that passed the loader's checks.
struct Candidate {
    realname: Vec<u8>,
    resolved: Resolved,
    stamp: Stamp,
    elf: Arc<ElfFile>,
    found_by: FoundBy,
}

/// The outcome of trying one path.
enum Try {
    Miss,
    Skip { other_class: bool },
    Hit(Box<Candidate>),
    Fatal(Failure),
}

impl<'r> Resolver<'r> {
    pub fn new(root: &'r Root, env: LoaderEnv) -> Resolver<'r> {
        Resolver {
            root,
            env,
            parsed: Mutex::new(HashMap::new()),
            ld_cache: Mutex::new(None),
            builds: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Root {
        self.root
    }

    pub fn env(&self) -> &LoaderEnv {
        &self.env
    }

    /// Read one file of the root (following symlinks) as the loader would,
    /// without resolving its dependencies: for the hardening report, or to
    /// tell ELF files from others.
    pub fn inspect(&self, path: &Path) -> Result<(Resolved, Parsed), ElfError> {
        let path = self.absolute(path.as_os_str().as_bytes());
        let r = self.root.resolve(&path, Follow::Yes);
        match r.outcome {
            Err(_) => Err(ElfError::NotFound { path }),
            Ok(FileType::File) => {
                let (_, parsed) = self.load(&r.path).map_err(|e| match e {
                    ParseError::Io(source) => ElfError::Io {
                        path: r.path.clone(),
                        source,
                    },
                    ParseError::Malformed(reason) => ElfError::Malformed {
                        path: r.path.clone(),
                        reason,
                    },
                })?;
                Ok((r, parsed))
            }
            Ok(_) => Ok((r, Parsed::NotElf(NotElf::NotAFile))),
        }
    }

    /// The closure of `path` (inside the root; relative paths are taken from
    /// [`LoaderEnv::cwd`]), treating it as the program the loader starts.
    pub fn closure(&self, path: &Path) -> Result<Outcome, ElfError> {
        let (r, parsed) = self.inspect(path)?;
        let elf = match parsed {
            Parsed::Elf(e) => e,
            Parsed::NotElf(kind) => {
                return Ok(Outcome::NotElf {
                    path: r.path,
                    links: r.links,
                    kind,
                })
            }
        };
        let meta = self.root.lstat(&r.path).map_err(|source| ElfError::Io {
            path: r.path.clone(),
            source,
        })?;
        let stamp = Stamp::of(&meta);
        let secure = match self.env.secure {
            Secure::Auto => elf.setuid || elf.setgid,
            Secure::Always => true,
            Secure::Never => false,
        };
        let main = Object {
            name: path.as_os_str().to_os_string(),
            path: r.path.clone(),
            found_by: FoundBy::Main,
            needs: Vec::new(),
            elf: elf.clone(),
        };
        let mut walk = Walk::new(self, secure, &elf);
        walk.add(main, stamp, None, r.links, &[]);
        walk.run(elf.interp.clone());
        Ok(Outcome::Elf(walk.finish()))
    }

    /// `path` made absolute against the working directory.
    fn absolute(&self, path: &[u8]) -> PathBuf {
        if path.first() == Some(&b'/') {
            PathBuf::from(OsStr::from_bytes(path))
        } else {
            self.env.cwd.join(OsStr::from_bytes(path))
        }
    }

    /// Parse a physical path of the root, through the per-inode cache.
    fn load(&self, physical: &Path) -> Result<(Stamp, Parsed), ParseError> {
        let meta = self.root.lstat(physical)?;
        let stamp = Stamp::of(&meta);
        if let Some((s, p)) = lock(&self.parsed).get(&stamp.id()) {
            if *s == stamp {
                return Ok((stamp, p.clone()));
            }
        }
        // O_NOFOLLOW: the path was resolved inside the root; a symlink swapped
        // in since must not lead outside it.
        let f: File = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.root.host_path(physical))?;
        let meta = f.metadata()?;
        let stamp = Stamp::of(&meta);
        let parsed = file::parse(&f, &meta)?;
        lock(&self.parsed).insert(stamp.id(), (stamp, parsed.clone()));
        Ok((stamp, parsed))
    }

    /// The root's ld.so.cache, re-read when it changed.
    fn ld_cache(&self) -> (Option<Resolved>, Option<Arc<LdCache>>) {
        let r = self.root.resolve(Path::new(LD_SO_CACHE), Follow::Yes);
        if r.outcome != Ok(FileType::File) {
            return (None, None);
        }
        let Ok(meta) = self.root.lstat(&r.path) else {
            return (None, None);
        };
        let stamp = Stamp::of(&meta);
        let mut slot = lock(&self.ld_cache);
        if let Some((s, c)) = slot.as_ref() {
            if *s == stamp {
                return (Some(r), c.clone());
            }
        }
        let cache = std::fs::read(self.root.host_path(&r.path))
            .ok()
            .and_then(LdCache::parse)
            .map(Arc::new);
        *slot = Some((stamp, cache.clone()));
        (Some(r), cache)
    }

    /// The build facts of the glibc ld.so at `physical` (or the forced ones).
    fn glibc_build(&self, interp: Option<&Path>, machine: u16) -> GlibcBuild {
        if let Some(b) = &self.env.glibc {
            return b.clone();
        }
        let interp = interp
            .map(Path::to_path_buf)
            .or_else(|| default_interp(machine).and_then(|p| self.root.canonicalize(Path::new(p))));
        if let Some(p) = interp {
            if let Ok(meta) = self.root.lstat(&p) {
                let stamp = Stamp::of(&meta);
                if let Some(b) = lock(&self.builds).get(&stamp) {
                    return (**b).clone();
                }
                if let Some(b) = GlibcBuild::read(&self.root.host_path(&p)) {
                    lock(&self.builds).insert(stamp, Arc::new(b.clone()));
                    return b;
                }
            }
        }
        self.guess_build(machine)
    }

    /// Without a readable ld.so: Debian multiarch when the root has the
    /// triplet directory, else the lib64 layout (Fedora, SUSE) for 64-bit.
    fn guess_build(&self, machine: u16) -> GlibcBuild {
        let triplet = match machine {
            EM_X86_64 => "x86_64-linux-gnu",
            EM_386 => "i386-linux-gnu",
            EM_AARCH64 => "aarch64-linux-gnu",
            _ => "",
        };
        let exists =
            |p: &str| self.root.resolve(Path::new(p), Follow::Yes).outcome == Ok(FileType::Dir);
        if !triplet.is_empty()
            && (exists(&format!("/usr/lib/{triplet}")) || exists(&format!("/lib/{triplet}")))
        {
            return GlibcBuild::multiarch(triplet, (2, 36));
        }
        if exists("/usr/lib64") && machine != EM_386 {
            return GlibcBuild {
                version: (2, 36),
                system_dirs: vec!["/lib64/".into(), "/usr/lib64/".into()],
                lib: "lib64".into(),
            };
        }
        GlibcBuild {
            version: (2, 36),
            system_dirs: vec!["/lib/".into(), "/usr/lib/".into()],
            lib: "lib".into(),
        }
    }
}

/// The interpreter a shared object of this machine would run under.
fn default_interp(machine: u16) -> Option<&'static str> {
    match machine {
        EM_X86_64 => Some("/lib64/ld-linux-x86-64.so.2"),
        EM_386 => Some("/lib/ld-linux.so.2"),
        EM_AARCH64 => Some("/lib/ld-linux-aarch64.so.1"),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per-object search state.
struct ObjState {
    loader: Option<usize>,
    /// `$ORIGIN`: the directory of the name the object was loaded as.
    origin: Option<Vec<u8>>,
    /// Expanded `DT_RPATH` (only without `DT_RUNPATH`) and `DT_RUNPATH`
    /// directories, each ending with `/` (or empty for the working directory).
    rpath: Vec<Vec<u8>>,
    runpath: Vec<Vec<u8>>,
}

/// Loader-specific settings for one walk.
enum Rules {
    None,
    Glibc {
        build: GlibcBuild,
        cpu: Cpu,
        subdirs: Vec<String>,
        cache: Option<(Resolved, Option<Arc<LdCache>>)>,
        flags: Flags,
    },
    Musl {
        arch: String,
        interp_name: Vec<u8>,
        sys_path: Option<Vec<u8>>,
    },
}

impl Rules {
    /// The loader that will run the main object: its `PT_INTERP`, or for a
    /// shared library the glibc interpreter of its machine.
    fn for_main(res: &Resolver, main: &ElfFile) -> Rules {
        if let Some(i) = &main.interp {
            if let Some(arch) = musl_arch(i.as_bytes()) {
                return Rules::Musl {
                    arch,
                    interp_name: i.as_bytes().to_vec(),
                    sys_path: None,
                };
            }
        }
        if !matches!(main.linking, Linking::Dynamic | Linking::SharedObject) {
            return Rules::None;
        }
        let interp = main
            .interp
            .as_ref()
            .and_then(|i| res.root.canonicalize(&res.absolute(i.as_bytes())));
        let build = res.glibc_build(interp.as_deref(), main.machine);
        let cpu = if main.machine == EM_386 && res.env.cpu.platform != "i686" {
            i386_cpu()
        } else {
            res.env.cpu.clone()
        };
        let subdirs = cpu.subdirs(&build);
        let flags = Flags::for_machine(main.class == Class::Elf64, main.machine);
        Rules::Glibc {
            build,
            cpu,
            subdirs,
            cache: None,
            flags,
        }
    }
}

/// One closure being computed.
struct Walk<'a, 'r> {
    res: &'a Resolver<'r>,
    secure: bool,
    class: Class,
    byte_order: ByteOrder,
    machine: u16,
    rules: Rules,
    objects: Vec<Object>,
    state: Vec<ObjState>,
    /// Names an object answers to: loaded-as names, `l_name`, `DT_SONAME`.
    names: HashMap<Vec<u8>, usize>,
    ids: HashMap<(u64, u64), usize>,
    interp: Option<usize>,
    queue: Vec<usize>,
    queued: Vec<bool>,
    links: Vec<Link>,
    seen_links: HashSet<PathBuf>,
    loader_files: Vec<PathBuf>,
    used_cache: bool,
    /// Directories (with subdirectory) known to exist or not, this walk.
    dirs: HashMap<Vec<u8>, bool>,
    /// glibc: `LD_LIBRARY_PATH` split and expanded.
    ld_library_path: Vec<Vec<u8>>,
    /// musl: `LD_LIBRARY_PATH` as is.
    musl_env_path: Option<Vec<u8>>,
}

impl<'a, 'r> Walk<'a, 'r> {
    fn new(res: &'a Resolver<'r>, secure: bool, main: &ElfFile) -> Walk<'a, 'r> {
        Walk {
            res,
            secure,
            class: main.class,
            byte_order: main.byte_order,
            machine: main.machine,
            rules: Rules::for_main(res, main),
            objects: Vec::new(),
            state: Vec::new(),
            names: HashMap::new(),
            ids: HashMap::new(),
            interp: None,
            queue: Vec::new(),
            queued: Vec::new(),
            links: Vec::new(),
            seen_links: HashSet::new(),
            loader_files: Vec::new(),
            used_cache: false,
            dirs: HashMap::new(),
            ld_library_path: Vec::new(),
            musl_env_path: None,
        }
    }

    fn record_links(&mut self, links: &[Link]) {
        for l in links {
            if self.seen_links.insert(l.path.clone()) {
                self.links.push(l.clone());
            }
        }
    }

    /// Add an object; returns its index. `names` are further names it
    /// answers to.
    fn add(
        &mut self,
        obj: Object,
        stamp: Stamp,
        loader: Option<usize>,
        links: Vec<Link>,
        names: &[&[u8]],
    ) -> usize {
        let idx = self.objects.len();
        self.record_links(&links);
        self.ids.entry(stamp.id()).or_insert(idx);
        for n in names {
            self.names.entry(n.to_vec()).or_insert(idx);
        }
        if let Some(s) = &obj.elf.soname {
            // musl does not match by DT_SONAME.
            if !matches!(self.rules, Rules::Musl { .. }) {
                self.names.entry(s.as_bytes().to_vec()).or_insert(idx);
            }
        }
        let origin = if idx == 0 {
            // The kernel's /proc/self/exe: the physical path.
            obj.path.parent().map(|p| p.as_os_str().as_bytes().to_vec())
        } else {
            Some(self.origin_of(obj.name.as_bytes()))
        };
        self.objects.push(obj);
        self.state.push(ObjState {
            loader,
            origin,
            rpath: Vec::new(),
            runpath: Vec::new(),
        });
        self.queued.push(false);
        idx
    }

    /// glibc `_dl_new_object`: the name up to its last slash (keeping a
    /// lone leading slash), made absolute against the working directory.
    /// musl keeps everything before the last slash, even when empty.
    fn origin_of(&self, name: &[u8]) -> Vec<u8> {
        let abs = self.res.absolute(name);
        let b = abs.as_os_str().as_bytes();
        let cut = b.iter().rposition(|&c| c == b'/').unwrap_or(0);
        match self.rules {
            Rules::Musl { .. } => b[..cut].to_vec(),
            _ => b[..cut.max(1)].to_vec(),
        }
    }

    fn tokens(&self, idx: usize) -> Tokens<'_> {
        let (platform, lib, trusted) = match &self.rules {
            Rules::Glibc { build, cpu, .. } => (
                cpu.platform.as_str(),
                build.lib.as_str(),
                Some(build.system_dirs.as_slice()),
            ),
            _ => ("", "", None),
        };
        Tokens {
            origin: self.state[idx].origin.as_deref(),
            platform,
            lib,
            secure: self.secure,
            trusted: if idx == 0 { trusted } else { None },
        }
    }

    /// Split and expand a search path (glibc `fillin_rpath`): `seps` are the
    /// separators, empty elements mean the working directory, duplicates go.
    fn decompose(&self, path: &[u8], seps: &[u8], idx: usize) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        if path.is_empty() {
            return out;
        }
        for elem in path.split(|c| seps.contains(c)) {
            let mut dir = if elem.is_empty() {
                Vec::new()
            } else {
                let e = if dst::count(elem) > 0 {
                    dst::substitute(elem, &self.tokens(idx))
                } else {
                    elem.to_vec()
                };
                if e.is_empty() {
                    continue;
                }
                let mut e = e;
                while e.len() > 1 && e.last() == Some(&b'/') {
                    e.pop();
                }
                if e.last() != Some(&b'/') {
                    e.push(b'/');
                }
                e
            };
            if !out.contains(&dir) {
                out.push(std::mem::take(&mut dir));
            }
        }
        out
    }

    fn finish(self) -> Closure {
        let flavor = match self.rules {
            Rules::None => Flavor::None,
            Rules::Glibc { build, .. } => Flavor::Glibc(build),
            Rules::Musl { arch, .. } => Flavor::Musl { arch },
        };
        Closure {
            flavor,
            secure: self.secure,
            objects: self.objects,
            links: self.links,
            loader_files: self.loader_files,
        }
    }

    /// Load everything, breadth first.
    fn run(&mut self, interp_name: Option<OsString>) {
        if matches!(self.rules, Rules::None) {
            return;
        }
        let interp_res = interp_name.as_ref().map(|i| {
            self.res
                .root
                .resolve(&self.res.absolute(i.as_bytes()), Follow::Yes)
        });
        self.state[0].rpath = self.own_rpath(0);
        self.state[0].runpath = self.own_runpath(0);
        if !self.secure {
            if let Some(llp) = &self.res.env.ld_library_path {
                if self.is_musl() {
                    self.musl_env_path = Some(llp.as_bytes().to_vec());
                } else {
                    self.ld_library_path = self.decompose(llp.as_bytes(), b":;", 0);
                }
            }
        }

        if let (Some(name), Some(r)) = (interp_name, interp_res) {
            let result = self.load_interp(&name, r);
            self.objects[0].needs.push(Need {
                name,
                kind: NeedKind::Interpreter,
                result,
            });
        }
        self.queue.push(0);
        self.queued[0] = true;
        self.preload();

        let mut qi = 0;
        while qi < self.queue.len() {
            let idx = self.queue[qi];
            qi += 1;
            let deps = self.objects[idx].elf.deps.clone();
            for (kind, raw) in deps {
                let kind = NeedKind::from(kind);
                let result = match self.expand_needed(idx, raw.as_bytes()) {
                    Ok(name) => {
                        let r = self.map_object(Some(idx), &name);
                        (OsString::from_vec(name), r)
                    }
                    Err(f) => (raw.clone(), Err(f)),
                };
                let (name, r) = result;
                let result = match r {
                    Ok(dep) => {
                        if !self.queued[dep] {
                            self.queued[dep] = true;
                            self.queue.push(dep);
                        }
                        NeedResult::Loaded(dep)
                    }
                    Err(f) => f.into_result(),
                };
                self.objects[idx].needs.push(Need { name, kind, result });
            }
        }
        if self.used_cache {
            if let Rules::Glibc {
                cache: Some((r, _)),
                ..
            } = &self.rules
            {
                let (path, links) = (r.path.clone(), r.links.clone());
                self.record_links(&links);
                self.loader_files.push(path);
            }
        }
    }

    fn load_interp(&mut self, name: &OsStr, r: Resolved) -> NeedResult {
        let path = r.path.clone();
        match r.outcome {
            Err(_) => return NeedResult::NotFound { other_class: false },
            Ok(FileType::File) => {}
            Ok(_) => {
                return NeedResult::Failed {
                    path: Some(path),
                    reason: "not a regular file".into(),
                }
            }
        }
        match self.res.load(&path) {
            Ok((stamp, Parsed::Elf(elf))) => {
                let obj = Object {
                    name: name.to_os_string(),
                    path,
                    found_by: FoundBy::Interpreter,
                    needs: Vec::new(),
                    elf,
                };
                let idx = self.add(obj, stamp, None, r.links, &[name.as_bytes()]);
                self.interp = Some(idx);
                NeedResult::Loaded(idx)
            }
            Ok((_, Parsed::NotElf(_))) => NeedResult::Failed {
                path: Some(path),
                reason: "not an ELF file".into(),
            },
            Err(e) => NeedResult::Failed {
                path: Some(path),
                reason: parse_error_text(&e),
            },
        }
    }

    /// `LD_PRELOAD` (not in secure mode), then glibc's `/etc/ld.so.preload`,
    /// each loaded on behalf of the main program; failures are warnings.
    fn preload(&mut self) {
        let mut names: Vec<Vec<u8>> = Vec::new();
        if !self.secure {
            if let Some(p) = &self.res.env.ld_preload {
                names.extend(
                    p.as_bytes()
                        .split(|c| {
                            *c == b' ' || *c == b':' || (self.is_musl() && c.is_ascii_whitespace())
                        })
                        .filter(|s| !s.is_empty())
                        .map(<[u8]>::to_vec),
                );
            }
        }
        if !self.is_musl() {
            let r = self.res.root.resolve(Path::new(LD_SO_PRELOAD), Follow::Yes);
            if r.outcome == Ok(FileType::File) {
                if let Ok(text) = std::fs::read(self.res.root.host_path(&r.path)) {
                    self.record_links(&r.links);
                    self.loader_files.push(r.path.clone());
                    for line in text.split(|c| *c == b'\n') {
                        let line = line.split(|c| *c == b'#').next().unwrap_or(&[]);
                        names.extend(
                            line.split(|c| c.is_ascii_whitespace() || *c == b':')
                                .filter(|s| !s.is_empty())
                                .map(<[u8]>::to_vec),
                        );
                    }
                }
            }
        }
        for name in names {
            let loader = if self.is_musl() { None } else { Some(0) };
            let result = match self.map_object(loader, &name) {
                Ok(dep) => {
                    if !self.queued[dep] {
                        self.queued[dep] = true;
                        self.queue.push(dep);
                    }
                    NeedResult::Loaded(dep)
                }
                Err(f) => f.into_result(),
            };
            self.objects[0].needs.push(Need {
                name: OsString::from_vec(name),
                kind: NeedKind::Preload,
                result,
            });
        }
    }

    fn is_musl(&self) -> bool {
        matches!(self.rules, Rules::Musl { .. })
    }

    /// glibc `expand_dst` for `DT_NEEDED` and filters.
    fn expand_needed(&self, idx: usize, raw: &[u8]) -> Result<Vec<u8>, Failure> {
        if self.is_musl() || dst::count(raw) == 0 {
            return Ok(raw.to_vec());
        }
        let fatal = |reason: &str| Failure::Fatal {
            path: None,
            reason: reason.to_string(),
        };
        if self.secure {
            return Err(fatal("DST not allowed in SUID/SGID programs"));
        }
        let out = dst::substitute(raw, &self.tokens(idx));
        if out.is_empty() {
            return Err(fatal("empty dynamic string token substitution"));
        }
        Ok(out)
    }

    fn own_rpath(&self, idx: usize) -> Vec<Vec<u8>> {
        let elf = &self.objects[idx].elf;
        match (&self.rules, &elf.rpath, &elf.runpath) {
            (Rules::Musl { .. }, _, _) => Vec::new(),
            // DT_RUNPATH disables DT_RPATH.
            (_, Some(rp), None) => self.decompose(rp.as_bytes(), b":", idx),
            _ => Vec::new(),
        }
    }

    fn own_runpath(&self, idx: usize) -> Vec<Vec<u8>> {
        match (&self.rules, &self.objects[idx].elf.runpath) {
            (Rules::Musl { .. }, _) => Vec::new(),
            (_, Some(rp)) => self.decompose(rp.as_bytes(), b":", idx),
            _ => Vec::new(),
        }
    }

    /// glibc `_dl_map_object` / musl `load_library`.
    fn map_object(&mut self, loader: Option<usize>, name: &[u8]) -> Result<usize, Failure> {
        if self.is_musl() {
            return self.map_object_musl(loader, name);
        }
        if let Some(&i) = self.names.get(name) {
            return Ok(i);
        }
        let found = if name.contains(&b'/') {
            match self.try_path(name, FoundBy::Path) {
                Try::Hit(c) => Ok(c),
                Try::Skip { other_class } => Err(Failure::NotFound { other_class }),
                Try::Miss => Err(Failure::NotFound { other_class: false }),
                Try::Fatal(f) => Err(f),
            }
        } else {
            self.search_glibc(loader.unwrap_or(0), name)
        }?;
        self.add_found(*found, loader, name)
    }

    /// Adopt a file that passed the checks, unless the same inode is
    /// loaded already.
    fn add_found(
        &mut self,
        c: Candidate,
        loader: Option<usize>,
        name: &[u8],
    ) -> Result<usize, Failure> {
        if let Some(&i) = self.ids.get(&c.stamp.id()) {
            self.names.entry(name.to_vec()).or_insert(i);
            return Ok(i);
        }
        let path = c.resolved.path.clone();
        if !self.is_musl() {
            let e = &c.elf;
            let reason = if !e.has_load {
                Some("object file has no loadable segments")
            } else if e.elf_type == ET_EXEC {
                Some("cannot dynamically load executable")
            } else if !e.has_dynamic {
                Some("object file has no dynamic section")
            } else if e.is_pie_flagged() {
                Some("cannot dynamically load position-independent executable")
            } else {
                None
            };
            if let Some(r) = reason {
                return Err(Failure::fatal(&path, r));
            }
        }
        if c.found_by == FoundBy::LdCache {
            self.used_cache = true;
        }
        let obj = Object {
            name: OsString::from_vec(c.realname.clone()),
            path,
            found_by: c.found_by,
            needs: Vec::new(),
            elf: c.elf,
        };
        let idx = self.add(obj, c.stamp, loader, c.resolved.links, &[&c.realname, name]);
        self.state[idx].rpath = self.own_rpath(idx);
        self.state[idx].runpath = self.own_runpath(idx);
        Ok(idx)
    }

    /// Whether a search directory exists, remembered for this walk (glibc
    /// remembers the same in `r_search_path_elem.status`).
    fn dir_exists(&mut self, dir: &[u8]) -> bool {
        if let Some(&e) = self.dirs.get(dir) {
            return e;
        }
        let p = self.res.absolute(if dir.is_empty() { b"." } else { dir });
        let e = self.res.root.resolve(&p, Follow::Yes).outcome == Ok(FileType::Dir);
        self.dirs.insert(dir.to_vec(), e);
        e
    }

    /// glibc `open_verify` on one path.
    fn try_path(&mut self, realname: &[u8], found_by: FoundBy) -> Try {
        let path = self.res.absolute(realname);
        let r = self.res.root.resolve(&path, Follow::Yes);
        match r.outcome {
            Err(_) => return Try::Miss,
            Ok(FileType::File) => {}
            Ok(_) => {
                return Try::Fatal(Failure::fatal(
                    &r.path,
                    "cannot read file data: Is a directory or not a regular file",
                ))
            }
        }
        let (stamp, parsed) = match self.res.load(&r.path) {
            Ok(x) => x,
            Err(ParseError::Io(e)) if e.raw_os_error() == Some(libc::EACCES) => return Try::Miss,
            Err(e) => return Try::Fatal(Failure::fatal(&r.path, parse_error_text(&e))),
        };
        let elf = match parsed {
            Parsed::Elf(e) => e,
            Parsed::NotElf(NotElf::TooShort) => {
                return Try::Fatal(Failure::fatal(&r.path, "file too short"))
            }
            Parsed::NotElf(_) => {
                let reason = if self.is_musl() {
                    "Exec format error"
                } else {
                    "invalid ELF header"
                };
                return Try::Fatal(Failure::fatal(&r.path, reason));
            }
        };
        if self.is_musl() {
            // musl maps whatever it opened; a foreign file fails there.
            if elf.class != self.class
                || elf.machine != self.machine
                || elf.byte_order != self.byte_order
            {
                return Try::Fatal(Failure::fatal(
                    &r.path,
                    "Exec format error (wrong ELF class or machine)",
                ));
            }
        } else if let Some(t) = self.verify(&elf, &r.path) {
            return t;
        }
        Try::Hit(Box::new(Candidate {
            realname: realname.to_vec(),
            resolved: r,
            stamp,
            elf,
            found_by,
        }))
    }

    /// The header checks of glibc's `open_verify`: `Some` when the file is
    /// skipped or fatal.
    fn verify(&self, e: &ElfFile, path: &Path) -> Option<Try> {
        let fatal = |reason: &str| Some(Try::Fatal(Failure::fatal(path, reason)));
        if e.class != self.class {
            return Some(Try::Skip { other_class: true });
        }
        if e.byte_order != self.byte_order {
            return fatal(if self.byte_order == ByteOrder::Little {
                "ELF file data encoding not little-endian"
            } else {
                "ELF file data encoding not big-endian"
            });
        }
        match e.header_ok {
            HeaderCheck::BadIdentVersion => {
                return fatal("ELF file version ident does not match current one")
            }
            HeaderCheck::NonzeroPadding => return fatal("nonzero padding in e_ident"),
            _ => {}
        }
        if e.osabi != ELFOSABI_SYSV && e.osabi != ELFOSABI_GNU {
            return fatal("ELF file OS ABI invalid");
        }
        if !(e.abi_version == 0 || (e.osabi == ELFOSABI_GNU && e.abi_version < LIBC_ABI_MAX)) {
            return fatal("ELF file ABI version invalid");
        }
        if e.header_ok == HeaderCheck::BadVersion {
            return fatal("ELF file version does not match current one");
        }
        if e.machine != self.machine {
            return Some(Try::Skip { other_class: false });
        }
        if e.elf_type != ET_DYN && e.elf_type != ET_EXEC {
            return fatal("only ET_DYN and ET_EXEC can be loaded");
        }
        if e.header_ok == HeaderCheck::BadPhentsize {
            return fatal("ELF file's phentsize not the expected size");
        }
        if e.abi_tag.is_some_and(|t| t.os != 0) {
            return Some(Try::Skip { other_class: false });
        }
        None
    }
}

/// A 32-bit x86 program on an x86-64 machine: AT_PLATFORM is `i686`, and
/// glibc defines no hwcaps levels for it.
fn i386_cpu() -> Cpu {
    Cpu {
        hwcaps: Vec::new(),
        isa_level: 0,
        platform: "i686".into(),
        legacy_hwcaps: vec!["sse2".into()],
        legacy_hwcap_bits: 1,
    }
}

fn parse_error_text(e: &ParseError) -> String {
    match e {
        ParseError::Io(e) => format!("cannot read file data: {e}"),
        ParseError::Malformed(m) => format!("malformed ELF file: {m}"),
    }
}
