//! `jail verify --packages --fetch`: check packaged files against the
//! `.deb` of the exact installed version, downloaded with apt, rather than
//! against the md5sums the root's own database claims (docs/verify.md).
//!
//! The local md5sums are written by the same dpkg that installed the files,
//! so a root whose database was edited along with its files passes them. A
//! `.deb` from the archive is checked by apt against the archive's signed
//! index, and its sha256 is compared here. apt is the host's: its sources,
//! keys and proxy settings (`APT_CONFIG` names another configuration). A
//! version the archive no longer carries cannot be fetched; it is listed,
//! and the check fails, because those files were not verified.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::rebuild::Difference;
use super::AttestError;
use crate::digest::Digest;
use crate::dpkg::{self, PackageDb};
use crate::fileset::FileSet;
use crate::resolve::Root;
use crate::sys::signals as interrupt;

/// A package whose `.deb` could not be had, and why (apt's last line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unfetched {
    pub package: String,
    pub version: String,
    pub why: String,
}

/// The outcome of comparing the image's packaged files with the `.deb`s.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchCheck {
    /// Packages whose `.deb` was downloaded and read.
    pub packages: usize,
    /// Files whose sha256 equals the `.deb`'s.
    pub verified: usize,
    pub mismatched: usize,
    pub mismatched_files: Vec<Difference>,
    pub unfetched: Vec<Unfetched>,
}

impl FetchCheck {
    /// Every packaged file was compared with its `.deb` and matched.
    pub fn ok(&self) -> bool {
        self.mismatched == 0 && self.unfetched.is_empty()
    }
}

/// Compare `files` (package → the image's files it owns, as in-image paths)
/// with the `.deb` of each package's installed version in `db`, read from
/// the unpacked image `image`. Downloads go to `scratch`.
pub fn compare_with_debs(
    db: &PackageDb,
    root: &Root,
    image: &FileSet,
    files: &BTreeMap<String, Vec<PathBuf>>,
    scratch: &Path,
) -> Result<FetchCheck, AttestError> {
    let mut out = FetchCheck::default();
    for (package, paths) in files {
        interrupt::check()?;
        let Some(stanza) = db.stanza(package) else {
            continue;
        };
        // `apt-get download NAME:ARCH=VERSION` (`all` packages have no arch qualifier).
        let name = stanza.name.split(':').next().unwrap_or(&stanza.name);
        let spec = match stanza.architecture.as_deref() {
            Some(arch) if arch != "all" => format!("{name}:{arch}={}", stanza.version),
            _ => format!("{name}={}", stanza.version),
        };
        let dir = scratch.join(format!("deb-{}", out.packages + out.unfetched.len()));
        std::fs::create_dir_all(&dir).map_err(|source| AttestError::Write {
            path: dir.clone(),
            source,
        })?;
        let deb = match download(&spec, &dir)? {
            Ok(deb) => deb,
            Err(why) => {
                out.unfetched.push(Unfetched {
                    package: name.to_string(),
                    version: stanza.version.clone(),
                    why,
                });
                continue;
            }
        };
        let shipped = deb_sha256s(&deb, root)?;
        out.packages += 1;
        for p in paths {
            let have = sha256_of(&image.host_path(p))?;
            match shipped.get(p) {
                Some(want) if *want == have => out.verified += 1,
                Some(want) => {
                    out.mismatched += 1;
                    out.mismatched_files.push(Difference {
                        path: p.clone(),
                        why: format!(
                            "sha256 {}, {}_{} from the archive has {}",
                            have.hex(),
                            name,
                            stanza.version,
                            want.hex()
                        ),
                    });
                }
                None => {
                    out.mismatched += 1;
                    out.mismatched_files.push(Difference {
                        path: p.clone(),
                        why: format!(
                            "{name}_{} from the archive does not ship this file",
                            stanza.version
                        ),
                    });
                }
            }
        }
        // The .deb is not kept: a large package set would fill the scratch dir.
        let _ = std::fs::remove_dir_all(&dir);
    }
    out.mismatched_files.sort();
    Ok(out)
}

fn sha256_of(path: &Path) -> Result<Digest, AttestError> {
    let f = std::fs::File::open(path).map_err(|source| AttestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Digest::of_reader(f).map_err(|source| AttestError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `apt-get download SPEC` in `dir`: the `.deb`'s path, or apt's reason
/// for not getting it. Err only when apt-get cannot be run at all.
fn download(spec: &str, dir: &Path) -> Result<Result<PathBuf, String>, AttestError> {
    let out = Command::new("apt-get")
        .args(["download", "-q", spec])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| AttestError::Tool {
            tool: "apt-get",
            hint: "install apt, or leave out --fetch",
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("apt-get download failed")
            .trim()
            .to_string();
        return Ok(Err(why));
    }
    let deb = std::fs::read_dir(dir)
        .map_err(|source| AttestError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    Ok(deb.ok_or_else(|| format!("apt-get download {spec} wrote no .deb")))
}

/// The sha256 of every regular file in a `.deb`'s data, keyed by physical
/// path in `root` (a package that ships `/lib/x` installs `/usr/lib/x` on a
/// merged-/usr root), as `dpkg::PackageDb::owners` keys them.
fn deb_sha256s(deb: &Path, root: &Root) -> Result<HashMap<PathBuf, Digest>, AttestError> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AttestError::Tool {
            tool: "dpkg-deb",
            hint: "install dpkg, or leave out --fetch",
            source,
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let read_err = |source| AttestError::Read {
        path: deb.to_path_buf(),
        source,
    };
    let mut parents = HashMap::new();
    let mut out = HashMap::new();
    let mut archive = tar::Archive::new(stdout);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let listed = Path::new("/").join(entry.path().map_err(read_err)?.components().as_path());
        let listed: PathBuf = listed
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        let digest = Digest::of_reader(&mut entry).map_err(read_err)?;
        out.insert(dpkg::physical(root, &mut parents, &listed), digest);
    }
    let status = child.wait_with_output().map_err(read_err)?;
    if !status.status.success() {
        return Err(AttestError::Read {
            path: deb.to_path_buf(),
            source: std::io::Error::other(
                String::from_utf8_lossy(&status.stderr).trim().to_string(),
            ),
        });
    }
    Ok(out)
}
