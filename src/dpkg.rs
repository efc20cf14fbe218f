//! Which Debian package owns a file, from a root's dpkg database:
//! `var/lib/dpkg/info/*.list` (the paths each package installed),
//! `var/lib/dpkg/status` (versions) and `var/lib/dpkg/diversions`.
//!
//! dpkg records paths as the package shipped them (`/bin/ls`), while on a
//! merged-/usr system the file is at `/usr/bin/ls`. Every listed path is
//! therefore resolved through the root's symlinks (all but the last
//! component, which may itself be a packaged symlink) and indexed by the
//! physical path, the form the file set uses. A diverted path belongs to the
//! diverting package at its original place, and to the other packages that
//! ship it at the diverted-to place, which is where dpkg put their copy.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::resolve::{Follow, Root};

/// Where the database lives inside a root.
pub const DPKG_DIR: &str = "/var/lib/dpkg";

/// Why a package database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("cannot read the package database {}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// One diversion: `from` is moved to `to` for every package but `by`
/// (`None`: a local diversion, for every package).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diversion {
    pub from: PathBuf,
    pub to: PathBuf,
    pub by: Option<String>,
}

/// The package database of one root.
#[derive(Debug, Default)]
pub struct PackageDb {
    /// The root's host directory.
    pub root: PathBuf,
    /// How the report names the root (default: the directory).
    pub label: String,
    owners: HashMap<PathBuf, Vec<String>>,
    versions: HashMap<String, String>,
    stanzas: HashMap<String, Stanza>,
    /// The database directory on the host (`…/var/lib/dpkg`).
    dir: PathBuf,
    packages: usize,
    pub diversions: Vec<Diversion>,
}

impl PackageDb {
    /// Whether `root` (a host directory) has a dpkg database.
    pub fn present(root: &Root) -> bool {
        root.canonicalize(&Path::new(DPKG_DIR).join("status"))
            .and_then(|p| root.lstat(&p).ok())
            .is_some_and(|m| m.is_file())
    }

    /// Read the database of `root`.
    pub fn load(root: &Root) -> Result<PackageDb, DpkgError> {
        let dir = root
            .canonicalize(Path::new(DPKG_DIR))
            .map(|p| root.host_path(&p))
            .unwrap_or_else(|| root.host_path(Path::new(DPKG_DIR)));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DpkgError::Io { path, source }
        };
        let info = dir.join("info");
        let mut lists: Vec<(String, PathBuf)> = fs::read_dir(&info)
            .map_err(io_err(&info))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let stem = name.to_str()?.strip_suffix(".list")?.to_string();
                Some((stem, e.path()))
            })
            .collect();
        lists.sort();

        let div_path = dir.join("diversions");
        let diversions = match fs::read(&div_path) {
            Ok(b) => parse_diversions(&b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&div_path)(e)),
        };
        let by_from: HashMap<&Path, &Diversion> =
            diversions.iter().map(|d| (d.from.as_path(), d)).collect();

        let mut db = PackageDb {
            root: root.dir().to_path_buf(),
            dir: dir.clone(),
            label: root.dir().display().to_string(),
            packages: lists.len(),
            ..PackageDb::default()
        };
        // Parents are few and shared: resolve each once.
        let mut parents: HashMap<PathBuf, PathBuf> = HashMap::new();
        for (package, path) in &lists {
            let bytes = fs::read(path).map_err(io_err(path))?;
            for line in bytes.split(|&b| b == b'\n') {
                if line.first() != Some(&b'/') {
                    continue;
                }
                let listed = Path::new(OsStr::from_bytes(line));
                let placed = match by_from.get(listed) {
                    Some(d) if d.by.as_deref() != Some(package.as_str()) => d.to.as_path(),
                    _ => listed,
                };
                let physical = physical(root, &mut parents, placed);
                db.owners.entry(physical).or_default().push(package.clone());
            }
        }
        for owners in db.owners.values_mut() {
            owners.sort();
            owners.dedup();
        }

        let status = dir.join("status");
        let text = fs::read(&status).map_err(io_err(&status))?;
        db.stanzas = parse_stanzas(&text);
        db.versions = db
            .stanzas
            .iter()
            .map(|(k, s)| (k.clone(), s.version.clone()))
            .collect();
        db.diversions = diversions;
        Ok(db)
    }

    /// A database of per-path claims: `(physical path, package, version)`,
    /// as an image's embedded manifest records them (docs/verify.md).
    pub fn from_claims(
        root: &Path,
        label: String,
        claims: impl IntoIterator<Item = (PathBuf, String, String)>,
    ) -> PackageDb {
        let mut db = PackageDb {
            root: root.to_path_buf(),
            label,
            ..PackageDb::default()
        };
        for (path, name, version) in claims {
            db.owners.entry(path).or_default().push(name.clone());
            db.versions.insert(name, version);
        }
        db.packages = db.versions.len();
        db
    }

    /// The packages that installed the file at the physical in-root `path`
    /// (sorted; several for shared directories).
    pub fn owners(&self, path: &Path) -> &[String] {
        self.owners.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The installed version of a package, named as in its `.list` file
    /// (`coreutils`, `libc6:amd64`).
    pub fn version(&self, package: &str) -> Option<&str> {
        self.versions.get(package).map(String::as_str)
    }

    /// The status stanza of a package, named as in its `.list` file.
    pub fn stanza(&self, package: &str) -> Option<&Stanza> {
        self.stanzas.get(package)
    }

    /// The package's own checksums (`info/NAME.md5sums`): each listed path
    /// in its physical form (as [`PackageDb::owners`] keys it) with the md5
    /// as lowercase hex. Empty when the package has none (conffiles only,
    /// or a metapackage).
    pub fn md5sums(&self, package: &str) -> Result<Vec<(PathBuf, String)>, DpkgError> {
        let path = self.dir.join("info").join(format!("{package}.md5sums"));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(DpkgError::Io { path, source }),
        };
        let root = match Root::new(&self.root) {
            Ok(r) => r,
            Err(source) => {
                return Err(DpkgError::Io {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut parents = HashMap::new();
        let mut out = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            // `<32 hex>  <path relative to />`
            if line.len() < 35 || &line[32..34] != b"  " {
                continue;
            }
            let Ok(md5) = std::str::from_utf8(&line[..32]) else {
                continue;
            };
            let listed = Path::new("/").join(OsStr::from_bytes(&line[34..]));
            out.push((
                physical(&root, &mut parents, &listed),
                md5.to_ascii_lowercase(),
            ));
        }
        Ok(out)
    }

    /// Every package named as in its `.list` file, sorted.
    pub fn package_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.owners.values().flatten().map(String::as_str).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every physical path a package installed (from its `.list`).
    pub fn paths_of(&self, package: &str) -> Vec<&Path> {
        let mut v: Vec<&Path> = self
            .owners
            .iter()
            .filter(|(_, o)| o.iter().any(|p| p == package))
            .map(|(p, _)| p.as_path())
            .collect();
        v.sort_unstable();
        v
    }

    /// Number of packages with a file list.
    pub fn len(&self) -> usize {
        self.packages
    }

    pub fn is_empty(&self) -> bool {
        self.packages == 0
    }
}

/// The physical form of a listed path: every directory component resolved
/// in the root, the last one kept (it may be a packaged symlink). `/.`
/// (every package lists it) is the root.
pub fn physical(root: &Root, parents: &mut HashMap<PathBuf, PathBuf>, listed: &Path) -> PathBuf {
    let (Some(parent), Some(name)) = (listed.parent(), listed.file_name()) else {
        return PathBuf::from("/");
    };
    let dir = parents
        .entry(parent.to_path_buf())
        .or_insert_with(|| root.resolve(parent, Follow::Yes).path);
    dir.join(name)
}

/// `var/lib/dpkg/diversions`: three lines per diversion (from, to, package;
/// `:` for a local diversion).
fn parse_diversions(bytes: &[u8]) -> Vec<Diversion> {
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .chunks_exact(3)
        .map(|c| Diversion {
            from: PathBuf::from(OsStr::from_bytes(c[0])),
            to: PathBuf::from(OsStr::from_bytes(c[1])),
            by: (c[2] != b":").then(|| String::from_utf8_lossy(c[2]).into_owned()),
        })
        .collect()
}

/// One package's stanza of `status`: the fields jail uses, and the text
/// as dpkg wrote it (what `status.d/NAME` gets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    pub name: String,
    pub version: String,
    pub architecture: Option<String>,
    /// The source package (`Source:` without its version), or the name.
    pub source: String,
    /// The source version when `Source: name (version)` gives one.
    pub source_version: Option<String>,
    /// The stanza's lines, without the blank line that ends it.
    pub text: String,
}

/// Stanzas from `status` (only installed ones: `Status: … installed`, or
/// no Status field as in `status.d`), keyed both `name:arch` and `name`
/// (the `.list` files of `Multi-Arch: same` packages carry the
/// architecture).
pub fn parse_stanzas(bytes: &[u8]) -> HashMap<String, Stanza> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = HashMap::new();
    for raw in text.split("\n\n") {
        let Some(s) = parse_stanza(raw) else {
            continue;
        };
        if let Some(a) = &s.architecture {
            out.insert(format!("{}:{a}", s.name), s.clone());
        }
        out.entry(s.name.clone()).or_insert(s);
    }
    out
}

/// One stanza, when it names an installed package with a version.
pub fn parse_stanza(raw: &str) -> Option<Stanza> {
    let raw = raw.trim_matches('\n');
    let (mut name, mut arch, mut version, mut source, mut status) = (None, None, None, None, None);
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("Package: ") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Architecture: ") {
            arch = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Version: ") {
            version = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Source: ") {
            source = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Status: ") {
            status = Some(v.trim());
        }
    }
    if status.is_some_and(|s| !s.ends_with(" installed")) {
        return None;
    }
    let (name, version) = (name?, version?);
    let (src, src_version) = match source {
        Some(s) => match s.split_once(' ') {
            Some((n, v)) => (
                n.to_string(),
                Some(v.trim_matches(|c| c == '(' || c == ')').to_string()),
            ),
            None => (s.to_string(), None),
        },
        None => (name.to_string(), None),
    };
    Some(Stanza {
        name: name.to_string(),
        version: version.to_string(),
        architecture: arch.map(str::to_string),
        source: src,
        source_version: src_version,
        text: raw.to_string(),
    })
}

/// The packages owning any of `paths` (for counts and summaries).
pub fn packages_of<'a>(
    db: &'a PackageDb,
    paths: impl IntoIterator<Item = &'a Path>,
) -> BTreeSet<&'a str> {
    paths
        .into_iter()
        .flat_map(|p| db.owners(p).iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A merged-/usr root with a diversion, the way bookworm has dash's
    /// `/bin/sh`.
    fn fake_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["usr/bin", "var/lib/dpkg/info"] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        symlink("usr/bin", r.join("bin")).unwrap();
        fs::write(r.join("usr/bin/ls"), b"ls").unwrap();
        fs::write(r.join("usr/bin/pg_config"), b"new").unwrap();
        fs::write(r.join("usr/bin/pg_config.libpq-dev"), b"old").unwrap();
        let info = r.join("var/lib/dpkg/info");
        fs::write(
            info.join("coreutils.list"),
            "/.\n/bin\n/bin/ls\n/usr\n/usr/bin\n",
        )
        .unwrap();
        fs::write(info.join("libc6:amd64.list"), "/.\n/usr\n/usr/bin\n").unwrap();
        fs::write(info.join("postgresql-common.list"), "/usr/bin/pg_config\n").unwrap();
        fs::write(info.join("libpq-dev.list"), "/usr/bin/pg_config\n").unwrap();
        fs::write(
            r.join("var/lib/dpkg/diversions"),
            "/usr/bin/pg_config\n/usr/bin/pg_config.libpq-dev\npostgresql-common\n",
        )
        .unwrap();
        fs::write(
            r.join("var/lib/dpkg/status"),
            "Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.1-1\nDescription: x\n more\n\nPackage: libc6\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn usr_merge_diversions_and_versions() {
        let d = fake_root();
        let root = Root::new(d.path()).unwrap();
        assert!(PackageDb::present(&root));
        let db = PackageDb::load(&root).unwrap();
        assert_eq!(db.len(), 4);
        assert_eq!(db.owners(Path::new("/usr/bin/ls")), ["coreutils"]);
        // `/bin` is listed as a directory; here it is the usr-merge symlink.
        assert_eq!(db.owners(Path::new("/bin")), ["coreutils"]);
        assert_eq!(
            db.owners(Path::new("/usr/bin")),
            ["coreutils", "libc6:amd64"]
        );
        assert_eq!(db.owners(Path::new("/")), ["coreutils", "libc6:amd64"]);
        assert_eq!(
            db.owners(Path::new("/usr/bin/pg_config")),
            ["postgresql-common"]
        );
        assert_eq!(
            db.owners(Path::new("/usr/bin/pg_config.libpq-dev")),
            ["libpq-dev"]
        );
        assert!(db.owners(Path::new("/usr/bin/nope")).is_empty());
        assert_eq!(db.version("coreutils"), Some("9.1-1"));
        assert_eq!(db.version("libc6:amd64"), Some("2.36-9"));
        assert_eq!(db.version("libpq-dev"), None);
    }

    #[test]
    fn no_database() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path()).unwrap();
        assert!(!PackageDb::present(&root));
        assert!(matches!(PackageDb::load(&root), Err(DpkgError::Io { .. })));
    }
}
