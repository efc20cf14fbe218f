//! Adding the evidence to a file set before it is packed: `/etc/os-release`
//! (and the links to it), the `status.d` package database, and the
//! embedded manifest, which describes every other path.
//!
//! Deterministic: nothing here depends on pids, times or the host's name;
//! the same file set, root database and options give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::packages::{Attribution, PackageSource};
use super::{
    is_evidence_only, AttestError, BaseRecord, Build, Evidence, FileRecord, ImageRecord, Origin,
    PackageRecord, PackageRef, MANIFEST_PATH, SCHEMA,
};
use crate::digest::Digest;
use crate::fileset::{Entry, FileSet, Reason};
use crate::image::Base;
use crate::paths::ImagePath;
use crate::resolve::{FileType, Follow, Root};

/// What the evidence records besides the files.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    pub build: Build,
    /// `slim`: the source image's manifest digest (a jail image's own
    /// origin wins, see [`Origin::base_image`]).
    pub base_image: Option<String>,
    /// `--base`: the image whose layers go below; the manifest then
    /// describes its files too ([`below`]).
    pub base: Option<std::sync::Arc<Base>>,
}

/// Add the evidence to `fs` (whose content is read from `root`) and return
/// the embedded manifest. Evidence from an earlier build is replaced.
pub fn embed(
    fs: &mut FileSet,
    root: &Root,
    image: &ImageRecord,
    opts: &EmbedOptions,
) -> Result<Evidence, AttestError> {
    strip(fs);
    let os_release = add_os_release(fs, root)?;

    let source = if opts.build.package_db {
        PackageSource::open(root)?
    } else {
        None
    };
    let attribution = match &source {
        Some(s) => s.attribute(root, fs),
        None => Attribution::default(),
    };
    let base_image = match &source {
        Some(PackageSource::Carried { evidence, .. }) if evidence.origin.base_image.is_some() => {
            evidence.origin.base_image.clone()
        }
        _ => match super::Evidence::read_from_root(root.dir()) {
            // Slimming a jail image: its origin is the image it came from.
            Ok(Some(prev)) if opts.build.kind == super::BuildKind::Slim => prev
                .origin
                .base_image
                .clone()
                .or_else(|| opts.base_image.clone()),
            _ => opts.base_image.clone(),
        },
    };
    let below = match &opts.base {
        Some(base) => Some(below(base, fs, &attribution)?),
        None => None,
    };
    let sums = below.as_ref().map(|b| b.sums.clone()).unwrap_or_default();
    for (path, entry) in attribution.database(fs, &sums)? {
        fs.entries.insert(path, entry);
    }
    // `/var/lib/dpkg/status.d` and `/var/lib/jail` may be new to the root:
    // generated with the database (a rebuild makes them again).
    fs.add_missing_parents(&[Path::new(MANIFEST_PATH)], Reason::PackageDatabase);

    let mut files: BTreeMap<ImagePath, FileRecord> = fs
        .entries
        .iter()
        .map(|(p, e)| {
            let mut entry = e.clone();
            if is_evidence_only(e) && e.reasons.contains(&Reason::PackageDatabase) {
                // Regenerated from the root's database; the digest says
                // what it was.
                entry.content = None;
            }
            (
                p.clone(),
                FileRecord {
                    entry,
                    package: attribution.files.get(p).cloned(),
                },
            )
        })
        .collect();
    let mut packages = attribution.packages.clone();
    if let Some(b) = below {
        // The base's paths the image does not write again (the status.d
        // entries of the packages above were just written again).
        for (p, r) in b.files {
            if !fs.entries.contains_key(&p) && p.as_path() != Path::new(MANIFEST_PATH) {
                files.insert(p, r);
            }
        }
        for p in b.packages {
            if !packages
                .iter()
                .any(|q| q.name == p.name && q.architecture == p.architecture)
            {
                packages.push(p);
            }
        }
        packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
        // Kept files counted over the whole image.
        for p in &mut packages {
            let r = p.reference();
            p.files_kept = files
                .values()
                .filter(|f| {
                    f.package.as_ref() == Some(&r)
                        && matches!(f.entry.file_type, FileType::File | FileType::Symlink)
                })
                .count() as u64;
            p.files_total = p.files_total.max(p.files_kept);
        }
    }
    let evidence = Evidence {
        schema: SCHEMA.into(),
        jail: env!("CARGO_PKG_VERSION").into(),
        build: opts.build.clone(),
        origin: Origin {
            os_release,
            dpkg_architecture: attribution.architecture.clone(),
            base_image,
        },
        image: image.clone(),
        packages,
        files,
        base: opts.base.as_deref().map(BaseRecord::of),
    };
    let bytes = evidence.to_bytes()?;
    let text = String::from_utf8(bytes).map_err(|e| AttestError::Json {
        what: "the embedded manifest",
        msg: e.to_string(),
    })?;
    fs.entries.insert(
        ImagePath(PathBuf::from(MANIFEST_PATH)),
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
            reasons: [Reason::Evidence].into(),
        },
    );
    Ok(evidence)
}

/// What a `--base` brings below the image, as the manifest records it.
struct Below {
    /// The base's paths the command's file set does not have: the base
    /// manifest's record (reasons, package) with reason `base` added; a
    /// path the base manifest does not list (a base that is not a jail
    /// image) as unpacked, without a package. Directories the base
    /// manifest does not list are implied, as in any manifest.
    files: BTreeMap<ImagePath, FileRecord>,
    /// The packages of those paths, as the base manifest records them.
    packages: Vec<PackageRecord>,
    /// The md5 of each of those regular files with a package, for the
    /// package's `status.d/NAME.md5sums`.
    sums: BTreeMap<ImagePath, (PackageRef, String)>,
}

fn below(base: &Base, fs: &FileSet, attribution: &Attribution) -> Result<Below, AttestError> {
    // The base's embedded manifest, when it is a jail image (read here, not
    // by `image::Base`: the image writer does not know the evidence).
    let base_ev = Evidence::read_from_root(base.dir())?;
    let ev = base_ev.as_ref();
    // A package described by both must be the same version: the image has
    // one status.d stanza for it.
    if let Some(ev) = ev {
        for p in &attribution.packages {
            if let Some(q) = ev.package(&p.reference()) {
                if q.version != p.version {
                    return Err(AttestError::BaseVersion {
                        base: base.name.clone(),
                        package: p.name.clone(),
                        in_base: q.version.clone(),
                        here: p.version.clone(),
                    });
                }
            }
        }
    }
    let mut out = Below {
        files: BTreeMap::new(),
        packages: Vec::new(),
        sums: BTreeMap::new(),
    };
    for (path, unpacked) in &base.files {
        if fs.entries.contains_key(path) || path.as_path() == Path::new("/") {
            continue;
        }
        let mut rec = match ev.and_then(|ev| ev.files.get(path)) {
            Some(r) => r.clone(),
            None if unpacked.file_type == FileType::Dir => continue,
            None => FileRecord {
                entry: unpacked.clone(),
                package: None,
            },
        };
        rec.entry.reasons.insert(Reason::Base);
        if let Some(owner) = &rec.package {
            if rec.entry.file_type == FileType::File {
                let host = base.host_path(path.as_path());
                out.sums.insert(
                    path.clone(),
                    (owner.clone(), super::packages::md5_file(&host)?),
                );
            }
            if let Some(p) = ev.and_then(|ev| ev.package(owner)) {
                if !out.packages.contains(p) {
                    out.packages.push(p.clone());
                }
            }
        }
        out.files.insert(path.clone(), rec);
    }
    Ok(out)
}

/// Remove evidence from an earlier build: entries that are only evidence go,
/// the evidence reasons of the others too.
pub fn strip(fs: &mut FileSet) {
    fs.entries.retain(|_, e| !is_evidence_only(e));
    for e in fs.entries.values_mut() {
        e.reasons.remove(&Reason::Evidence);
        e.reasons.remove(&Reason::PackageDatabase);
    }
}

/// Keep `/etc/os-release` and every link on the way to it; return its
/// fields. Nothing when the root has none.
fn add_os_release(fs: &mut FileSet, root: &Root) -> Result<BTreeMap<String, String>, AttestError> {
    let r = root.resolve(Path::new("/etc/os-release"), Follow::Yes);
    if r.outcome != Ok(FileType::File) {
        return Ok(BTreeMap::new());
    }
    let mut paths: BTreeSet<PathBuf> = r.links.iter().map(|l| l.path.clone()).collect();
    paths.insert(r.path.clone());
    for p in &paths {
        let key = ImagePath(p.clone());
        if let Some(e) = fs.entries.get_mut(&key) {
            e.reasons.insert(Reason::Evidence);
            continue;
        }
        if let Some(e) = entry_from_root(root, p, [Reason::Evidence].into())? {
            fs.entries.insert(key, e);
        }
    }
    let host = root.host_path(&r.path);
    let text = fs::read(&host).map_err(|source| AttestError::Read { path: host, source })?;
    Ok(parse_os_release(&String::from_utf8_lossy(&text)))
}

/// `KEY=value` lines, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim().is_empty() && !k.trim_start().starts_with('#'))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The entry of an in-root path as it is now (`None` for sockets, fifos
/// and devices), with `reasons`.
pub fn entry_from_root(
    root: &Root,
    path: &Path,
    reasons: BTreeSet<Reason>,
) -> Result<Option<Entry>, AttestError> {
    let host = root.host_path(path);
    let rd = |source| AttestError::Read {
        path: host.clone(),
        source,
    };
    let meta = fs::symlink_metadata(&host).map_err(rd)?;
    let file_type = FileType::of(&meta);
    let mut e = Entry {
        file_type,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: 0,
        sha256: None,
        target: None,
        mtime: if file_type == FileType::Dir {
            0
        } else {
            meta.mtime()
        },
        capability: None,
        content: None,
        reasons,
    };
    match file_type {
        FileType::File => {
            e.size = meta.len();
            e.sha256 = Some(Digest::of_reader(fs::File::open(&host).map_err(rd)?).map_err(rd)?);
            e.capability = crate::sys::xattr::lget(&host, "security.capability")
                .ok()
                .flatten();
        }
        FileType::Symlink => e.target = Some(fs::read_link(&host).map_err(rd)?),
        FileType::Dir => {}
        _ => return Ok(None),
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_fields() {
        let m = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n# c\n\n",
        );
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["PRETTY_NAME"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(m.len(), 3);
    }
}
