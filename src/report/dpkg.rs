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
        db.versions = parse_status(&text);
        db.diversions = diversions;
        Ok(db)
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
fn physical(root: &Root, parents: &mut HashMap<PathBuf, PathBuf>, listed: &Path) -> PathBuf {
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

/// Versions from `status`, keyed both `name:arch` and `name` (the `.list`
/// files of `Multi-Arch: same` packages carry the architecture).
fn parse_status(bytes: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = HashMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut arch, mut version) = (None, None, None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            }
        }
        if let (Some(n), Some(v)) = (name, version) {
            if let Some(a) = arch {
                out.insert(format!("{n}:{a}"), v.to_string());
            }
            out.entry(n.to_string()).or_insert_with(|| v.to_string());
        }
    }
    out
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
