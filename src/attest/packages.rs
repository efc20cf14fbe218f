//! Which package each kept file came from, and the package database jail
//! writes into the image for the packages with kept files.
//!
//! The source is the root's own database. Today that is dpkg, read two
//! ways: a full database (`/var/lib/dpkg/status` and `info/*.list`), or
//! the one a jail (or distroless) image carries (`status.d/NAME` stanzas,
//! plus the embedded manifest for per-path attribution), so slimming a jail
//! image keeps the package truth of the image it came from. An apk or rpm
//! root would add a variant of [`PackageSource`] and its own
//! [`Attribution::database`] writer.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use md5::Digest as _;

use super::{AttestError, Evidence, PackageRecord, PackageRef, STATUS_D};
use crate::digest::Digest;
use crate::dpkg::{parse_stanza, PackageDb, Stanza};
use crate::fileset::{Entry, FileSet, Reason};
use crate::paths::ImagePath;
use crate::resolve::{FileType, Follow, Root};

/// A root's package database.
pub enum PackageSource {
    /// A full dpkg database.
    Dpkg(Box<PackageDb>),
    /// A jail image's: `status.d` stanzas and its embedded manifest.
    Carried {
        evidence: Box<Evidence>,
        stanzas: Vec<Stanza>,
    },
}

/// The attribution of a file set.
#[derive(Default)]
pub struct Attribution {
    /// The package of each attributed path (regular files and symlinks).
    pub files: BTreeMap<ImagePath, PackageRef>,
    /// The packages with kept files, sorted by name and architecture.
    pub packages: Vec<PackageRecord>,
    /// Each package's stanza text, in the order of `packages`.
    stanzas: Vec<String>,
    /// The dpkg architecture of the root.
    pub architecture: Option<String>,
}

impl PackageSource {
    /// The package database of `root`, if it has one.
    pub fn open(root: &Root) -> Result<Option<PackageSource>, AttestError> {
        if PackageDb::present(root) {
            return Ok(Some(PackageSource::Dpkg(Box::new(PackageDb::load(root)?))));
        }
        let dir = root.host_path(Path::new(STATUS_D));
        if !dir.is_dir() {
            return Ok(None);
        }
        let Some(evidence) = Evidence::read_from_root(root.dir())? else {
            // A distroless-style database without jail's manifest: no
            // per-path attribution to carry.
            return Ok(None);
        };
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|source| AttestError::Read {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_none_or(|x| x != "md5sums"))
            .collect();
        names.sort();
        let mut stanzas = Vec::new();
        for p in names {
            let text = fs::read(&p).map_err(|source| AttestError::Read {
                path: p.clone(),
                source,
            })?;
            if let Some(s) = parse_stanza(&String::from_utf8_lossy(&text)) {
                stanzas.push(s);
            }
        }
        Ok(Some(PackageSource::Carried {
            evidence: Box::new(evidence),
            stanzas,
        }))
    }

    /// Attribute every regular file and symlink of `fs` (read from `root`).
    pub fn attribute(&self, root: &Root, fs: &FileSet) -> Attribution {
        let mut out = Attribution::default();
        let mut kept: BTreeMap<String, u64> = BTreeMap::new();
        let mut refs: BTreeMap<String, (PackageRef, &Stanza)> = BTreeMap::new();
        for (path, e) in &fs.entries {
            // os-release kept as evidence is a package's file like any
            // other; the package database is not.
            if !matches!(e.file_type, FileType::File | FileType::Symlink)
                || e.reasons.contains(&Reason::PackageDatabase)
            {
                continue;
            }
            // A symlink to a directory (usr-merge's /lib → usr/lib) is a
            // directory to every package that lists it: nobody's file.
            if e.file_type == FileType::Symlink
                && root.resolve(path.as_path(), Follow::Yes).outcome == Ok(FileType::Dir)
            {
                continue;
            }
            let found = match self {
                PackageSource::Dpkg(db) => db
                    .owners(path.as_path())
                    .iter()
                    .find_map(|key| db.stanza(key).map(|s| (key.clone(), s))),
                PackageSource::Carried { evidence, stanzas } => {
                    evidence.files.get(path).and_then(|rec| {
                        let same = rec.entry.file_type == e.file_type
                            && rec.entry.sha256 == e.sha256
                            && rec.entry.target == e.target;
                        let r = rec.package.as_ref().filter(|_| same)?;
                        let s = stanzas.iter().find(|s| {
                            s.name == r.name
                                && s.version == r.version
                                && s.architecture == r.architecture
                        })?;
                        Some((key_of(s), s))
                    })
                }
            };
            let Some((key, stanza)) = found else {
                continue;
            };
            let r = PackageRef {
                name: stanza.name.clone(),
                version: stanza.version.clone(),
                architecture: stanza.architecture.clone(),
            };
            out.files.insert(path.clone(), r.clone());
            *kept.entry(key.clone()).or_default() += 1;
            refs.entry(key).or_insert((r, stanza));
        }
        let mut records: Vec<(PackageRecord, String)> = refs
            .iter()
            .map(|(key, (r, s))| {
                let (licenses, total) = match self {
                    PackageSource::Dpkg(db) => (
                        licenses(root, &s.name),
                        db.paths_of(key)
                            .into_iter()
                            .filter(|p| {
                                root.lstat(p).is_ok_and(|m| !m.is_dir()) && *p != Path::new("/")
                            })
                            .count() as u64,
                    ),
                    PackageSource::Carried { evidence, .. } => evidence
                        .package(r)
                        .map(|p| (p.licenses.clone(), p.files_total))
                        .unwrap_or_default(),
                };
                let n = kept.get(key).copied().unwrap_or(0);
                (
                    PackageRecord {
                        name: s.name.clone(),
                        version: s.version.clone(),
                        architecture: s.architecture.clone(),
                        source: s.source.clone(),
                        source_version: s.source_version.clone(),
                        manager: "dpkg".into(),
                        licenses,
                        files_kept: n,
                        files_total: total.max(n),
                    },
                    s.text.clone(),
                )
            })
            .collect();
        records.sort_by(|a, b| (&a.0.name, &a.0.architecture).cmp(&(&b.0.name, &b.0.architecture)));
        (out.packages, out.stanzas) = records.into_iter().unzip();
        out.architecture = match self {
            PackageSource::Dpkg(db) => db
                .stanza("dpkg")
                .and_then(|s| s.architecture.clone())
                .or_else(|| {
                    fs::read_to_string(root.host_path(Path::new("/var/lib/dpkg/arch")))
                        .ok()
                        .and_then(|t| t.lines().next().map(str::to_string))
                }),
            PackageSource::Carried { evidence, .. } => evidence.origin.dpkg_architecture.clone(),
        };
        out
    }
}

/// How a stanza is keyed in `status.d`: by name, as distroless does.
fn key_of(s: &Stanza) -> String {
    s.name.clone()
}

impl Attribution {
    /// The database entries to add to the image: `status.d/NAME` (the
    /// stanza) and `status.d/NAME.md5sums` (the md5 of every kept regular
    /// file of the package, as in dpkg's own lists: path relative to `/`).
    /// `below` holds the regular files of a `--base` below the image that
    /// the file set does not have, with their package and md5: a package's
    /// list names them too, so it describes every file of the image.
    pub fn database(
        &self,
        fs: &FileSet,
        below: &BTreeMap<ImagePath, (PackageRef, String)>,
    ) -> Result<Vec<(ImagePath, Entry)>, AttestError> {
        let mut out = Vec::new();
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        for (p, stanza) in self.packages.iter().zip(&self.stanzas) {
            let mut name = p.name.clone();
            let n = used.entry(name.clone()).or_default();
            *n += 1;
            if *n > 1 {
                if let Some(a) = &p.architecture {
                    name = format!("{name}:{a}");
                }
            }
            let mut text = stanza.trim_end_matches('\n').to_string();
            text.push('\n');
            out.push((ImagePath(Path::new(STATUS_D).join(&name)), generated(text)));
            let r = p.reference();
            let mut lines: BTreeMap<&ImagePath, String> = BTreeMap::new();
            for (path, owner) in &self.files {
                if *owner != r {
                    continue;
                }
                let Some(e) = fs.entries.get(path) else {
                    continue;
                };
                if e.file_type != FileType::File {
                    continue;
                }
                lines.insert(path, md5_of(fs, path.as_path(), e)?);
            }
            for (path, (owner, md5)) in below {
                if *owner == r && !fs.entries.contains_key(path) {
                    lines.insert(path, md5.clone());
                }
            }
            let mut sums = String::new();
            for (path, md5) in lines {
                let rel = path.as_path().strip_prefix("/").unwrap_or(path.as_path());
                sums.push_str(&format!("{md5}  {}\n", rel.display()));
            }
            if !sums.is_empty() {
                out.push((
                    ImagePath(Path::new(STATUS_D).join(format!("{name}.md5sums"))),
                    generated(sums),
                ));
            }
        }
        Ok(out)
    }
}

/// A root-owned 0644 file jail writes, mtime 0.
fn generated(text: String) -> Entry {
    Entry {
        file_type: FileType::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: text.len() as u64,
        sha256: Some(Digest::of(text.as_bytes())),
        target: None,
        mtime: 0,
        capability: None,
        content: Some(text),
        reasons: [Reason::PackageDatabase].into(),
    }
}

/// The md5 of an entry's content (generated or read from the root).
pub fn md5_of(fs: &FileSet, path: &Path, e: &Entry) -> Result<String, AttestError> {
    if let Some(c) = &e.content {
        return Ok(hex(&md5::Md5::digest(c.as_bytes())));
    }
    md5_file(&fs.host_path(path))
}

/// The md5 of a file, lowercase hex.
pub fn md5_file(host: &Path) -> Result<String, AttestError> {
    let mut f = fs::File::open(host).map_err(|source| AttestError::Read {
        path: host.to_path_buf(),
        source,
    })?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|source| AttestError::Read {
            path: host.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The licenses a package's DEP-5 copyright file names (`License:` fields,
/// first word of the value), sorted; empty when it has none.
fn licenses(root: &Root, package: &str) -> Vec<String> {
    let p = Path::new("/usr/share/doc").join(package).join("copyright");
    let Some(real) = root.canonicalize(&p) else {
        return Vec::new();
    };
    let Ok(text) = fs::read(root.host_path(&real)) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&text);
    if !text.starts_with("Format:") {
        return Vec::new();
    }
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("License:"))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_generated_content() {
        let mut e = generated("abc".into());
        e.reasons = [Reason::Generated].into();
        let fs = FileSet::new("/nonexistent");
        assert_eq!(
            md5_of(&fs, Path::new("/x"), &e).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
