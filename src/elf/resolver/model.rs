//! The resolver's data model: what the caller sets (`LoaderEnv`,
//! `Secure`) and what a closure is (`Closure`, `Object`, `Need`,
//! `Outcome`).

use super::*;

/// Secure-execution mode (glibc `__libc_enable_secure`, musl `libc.secure`):
/// `LD_LIBRARY_PATH` and `LD_PRELOAD` are ignored and `$ORIGIN` is
/// restricted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Secure {
    /// Secure when the main file is set-user-ID or set-group-ID (the kernel
    /// sets AT_SECURE when those change the ids, i.e. unless the caller
    /// already has them, such as root running a set-user-ID-root program).
    #[default]
    Auto,
    Always,
    Never,
}

/// Everything outside the files themselves that changes what the loader
/// loads: the process environment and the machine.
#[derive(Clone, Debug)]
pub struct LoaderEnv {
    /// `LD_LIBRARY_PATH` of the process.
    pub ld_library_path: Option<OsString>,
    /// `LD_PRELOAD` of the process.
    pub ld_preload: Option<OsString>,
    /// The working directory (in the root) that relative names, relative
    /// `DT_RPATH` entries and empty `LD_LIBRARY_PATH` elements resolve
    /// against, as they do in ld.so.
    pub cwd: PathBuf,
    pub secure: Secure,
    /// The CPU that will run the program: glibc-hwcaps levels, `$PLATFORM`.
    pub cpu: Cpu,
    /// Force these glibc build facts instead of reading them from the
    /// interpreter found in the root.
    pub glibc: Option<GlibcBuild>,
}

impl LoaderEnv {
    /// No loader variables, `/` as working directory, this machine's CPU.
    pub fn host() -> LoaderEnv {
        LoaderEnv {
            ld_library_path: None,
            ld_preload: None,
            cwd: PathBuf::from("/"),
            secure: Secure::Auto,
            cpu: Cpu::host(),
            glibc: None,
        }
    }

    /// Take the loader variables (`LD_LIBRARY_PATH`, `LD_PRELOAD`) from a
    /// process environment; other variables are ignored.
    pub fn with_env<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> LoaderEnv {
        for (k, v) in vars {
            match k.as_ref().as_bytes() {
                b"LD_LIBRARY_PATH" => self.ld_library_path = Some(v.as_ref().to_os_string()),
                b"LD_PRELOAD" => self.ld_preload = Some(v.as_ref().to_os_string()),
                _ => {}
            }
        }
        self
    }
}

impl Default for LoaderEnv {
    fn default() -> Self {
        LoaderEnv::host()
    }
}

/// Which loader resolves a closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// No loader: a static executable (or a non-loadable ELF file).
    None,
    /// glibc's ld.so, with the facts of its build.
    Glibc(GlibcBuild),
    /// musl's loader (`ld-musl-ARCH.so.1`).
    Musl { arch: String },
}

/// Why a dependency is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeedKind {
    /// `PT_INTERP` of the main program.
    Interpreter,
    /// `LD_PRELOAD` or `/etc/ld.so.preload` (a failure is only a warning).
    Preload,
    Needed,
    Filter,
    /// `DT_AUXILIARY` (a failure is silently ignored by the loader).
    Auxiliary,
}

impl From<DepKind> for NeedKind {
    fn from(k: DepKind) -> Self {
        match k {
            DepKind::Needed => NeedKind::Needed,
            DepKind::Filter => NeedKind::Filter,
            DepKind::Auxiliary => NeedKind::Auxiliary,
        }
    }
}

/// How an object was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// The file asked for.
    Main,
    /// `PT_INTERP`.
    Interpreter,
    /// The name contains a `/` and was opened as a path.
    Path,
    /// `DT_RPATH` of the object at this index (the loader or one of its
    /// loaders, or the main program).
    Rpath(usize),
    LdLibraryPath,
    /// `DT_RUNPATH` of the loader.
    Runpath,
    /// `/etc/ld.so.cache`.
    LdCache,
    /// The system directories (glibc), or musl's path file or default path.
    DefaultDirs,
}

impl FoundBy {
    /// A short name, as printed and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Main => "main",
            FoundBy::Interpreter => "interpreter",
            FoundBy::Path => "path",
            FoundBy::Rpath(_) => "rpath",
            FoundBy::LdLibraryPath => "ld-library-path",
            FoundBy::Runpath => "runpath",
            FoundBy::LdCache => "ld.so.cache",
            FoundBy::DefaultDirs => "default-dirs",
        }
    }
}

/// What became of one dependency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeedResult {
    /// The object at this index in [`Closure::objects`].
    Loaded(usize),
    /// Nothing usable anywhere. `other_class`: a file of the other ELF class
    /// was skipped on the way (glibc then says "wrong ELF class").
    NotFound { other_class: bool },
    /// The loader would stop with an error (a non-ELF file, a directory, a
    /// foreign byte order, `$ORIGIN` in a secure program's `DT_NEEDED`…).
    Failed {
        path: Option<PathBuf>,
        reason: String,
    },
}

/// One dependency of an object.
#[derive(Clone, Debug)]
pub struct Need {
    /// The name as written (for `DT_NEEDED`, after token expansion).
    pub name: OsString,
    pub kind: NeedKind,
    pub result: NeedResult,
}

impl Need {
    /// The loader fails when this need fails (interpreter, needed, filter).
    pub fn is_required(&self) -> bool {
        matches!(
            self.kind,
            NeedKind::Interpreter | NeedKind::Needed | NeedKind::Filter
        )
    }

    /// Human text for a failed result ("not found", or the loader's error).
    pub fn failure(&self) -> Option<String> {
        match &self.result {
            NeedResult::Loaded(_) => None,
            NeedResult::NotFound { other_class: false } => Some("not found".into()),
            NeedResult::NotFound { other_class: true } => {
                Some("not found (only files of the wrong ELF class)".into())
            }
            NeedResult::Failed {
                path: Some(p),
                reason,
            } => Some(format!("{}: {reason}", p.display())),
            NeedResult::Failed { path: None, reason } => Some(reason.clone()),
        }
    }
}

/// One loaded object.
#[derive(Clone, Debug)]
pub struct Object {
    /// The name the loader gives it: the path it opened (`l_name`), or the
    /// path asked for (main), or `PT_INTERP` (interpreter).
    pub name: OsString,
    /// Its physical path inside the root (no symlink left).
    pub path: PathBuf,
    pub found_by: FoundBy,
    /// Its dependencies in order: for the main object the interpreter and
    /// preloads first, then `DT_NEEDED`/`DT_FILTER`/`DT_AUXILIARY`.
    pub needs: Vec<Need>,
    pub elf: Arc<ElfFile>,
}

/// A dependency that failed, with the object that needed it.
#[derive(Clone, Copy, Debug)]
pub struct Unresolved<'a> {
    pub needed_by: &'a Object,
    pub need: &'a Need,
}

/// The ELF closure of one file.
#[derive(Clone, Debug)]
pub struct Closure {
    pub flavor: Flavor,
    /// Secure-execution mode was applied.
    pub secure: bool,
    /// Every object, in load order; `objects[0]` is the file asked for.
    pub objects: Vec<Object>,
    /// Every symlink met on the way to a file of the closure, in the order
    /// met, each once.
    pub links: Vec<Link>,
    /// Files the loader reads that are not objects: `/etc/ld.so.cache` when
    /// a library was found through it, `/etc/ld.so.preload`, musl's path
    /// file (physical paths).
    pub loader_files: Vec<PathBuf>,
}

impl Closure {
    /// The file asked for.
    pub fn main(&self) -> &Object {
        &self.objects[0]
    }

    /// The interpreter (`PT_INTERP`), when found.
    pub fn interpreter(&self) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.found_by == FoundBy::Interpreter)
    }

    /// Every required dependency that failed, with who needed it.
    pub fn unresolved(&self) -> Vec<Unresolved<'_>> {
        let mut out = Vec::new();
        for o in &self.objects {
            for n in o
                .needs
                .iter()
                .filter(|n| n.is_required() && !matches!(n.result, NeedResult::Loaded(_)))
            {
                out.push(Unresolved {
                    needed_by: o,
                    need: n,
                });
            }
        }
        out
    }

    /// Preloads that failed (the loader warns and goes on).
    pub fn failed_preloads(&self) -> impl Iterator<Item = &Need> {
        self.objects
            .iter()
            .flat_map(|o| &o.needs)
            .filter(|n| n.kind == NeedKind::Preload && !matches!(n.result, NeedResult::Loaded(_)))
    }

    /// Every path a jail needs for this closure: each object and loader file,
    /// and each symlink on the way (the link itself, not its target).
    pub fn paths(&self) -> BTreeSet<PathBuf> {
        let mut out: BTreeSet<PathBuf> = self.objects.iter().map(|o| o.path.clone()).collect();
        out.extend(self.loader_files.iter().cloned());
        out.extend(self.links.iter().map(|l| l.path.clone()));
        out
    }
}

/// The result of asking for a file's closure.
#[derive(Clone, Debug)]
pub enum Outcome {
    Elf(Closure),
    /// Not an ELF file (a script, data, a directory): nothing for the ELF
    /// stage to add. `path` is physical, `links` the symlinks met.
    NotElf {
        path: PathBuf,
        links: Vec<Link>,
        kind: NotElf,
    },
}
