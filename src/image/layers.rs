//! How a file set is split into layers (docs/formats.md, "Layers").
//!
//! The split is a pure function of the file set and of the package each
//! file came from (the attribution `jail report` shows), so that
//!
//! - an image whose app changed differs only in its top layer, and
//! - the same package files kept in two images give the identical layer
//!   blob, whatever else the images hold.
//!
//! The rule, bottom to top:
//!
//! 1. One layer per *large* package (its kept files weigh at least
//!    [`LARGE_PACKAGE`] bytes), in package-name order. When there are more
//!    large packages than the budget allows (`budget - 2`), the heaviest
//!    keep their own layer (ties by name) and the others join step 2.
//! 2. One layer for every other package's files.
//! 3. The top layer: every file no package installed (the app, generated
//!    files such as `ld.so.cache` or the reduced `passwd`, the embedded
//!    manifest), symlinks between directories (`/lib → usr/lib`), and the
//!    directories no lower layer needs.
//!
//! A package's group also holds the byte-code Python wrote next to its
//! sources (`D/__pycache__/M.*.pyc` goes with the package of `D/M.py`)
//! and the `status.d/NAME` stanza and `NAME.md5sums` jail writes for it:
//! both depend only on that package's kept files.
//!
//! Each layer holds the parent directories of its paths, with the file
//! set's metadata when the file set has them (jail gives the directories it
//! adds one fixed metadata, `Entry::dir`), so a parent is the same entry in
//! every layer and every image. Empty layers are dropped; a budget of 1, or
//! a file set without attributed packages, gives one layer with every path,
//! byte for byte today's single-layer image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::fileset::FileSet;
use crate::paths::ImagePath;

/// Kept bytes from which a package gets a layer of its own.
pub const LARGE_PACKAGE: u64 = 1 << 20;

/// The default layer budget (`--layers`).
pub const DEFAULT_BUDGET: usize = 8;

/// The most layers jail writes (`--layers` above it is refused).
pub const MAX_BUDGET: usize = 16;

/// Where the package database entries jail writes live.
const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// How the writer splits the file set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layering {
    /// At most this many layers (1: one layer, as before layering).
    pub budget: usize,
    /// The package name of each attributed path (regular files and
    /// symlinks); paths not listed belong to no package. From the
    /// embedded manifest (`attest::Evidence::owners`).
    pub owners: BTreeMap<ImagePath, String>,
}

impl Default for Layering {
    fn default() -> Self {
        Layering {
            budget: DEFAULT_BUDGET,
            owners: BTreeMap::new(),
        }
    }
}

/// What a layer holds, for summaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// One package's files.
    Package(String),
    /// The files of the packages without a layer of their own.
    Packages(Vec<String>),
    /// Files from no package (or every file, in a single-layer image).
    Top,
    /// A layer of the `--base` image, reused as it is.
    Base,
}

impl LayerKind {
    /// A short description, for the config's history.
    pub fn describe(&self) -> String {
        match self {
            LayerKind::Package(p) => format!("package {p}"),
            LayerKind::Packages(ps) => format!("packages {}", ps.join(" ")),
            LayerKind::Top => "files from no package".into(),
            LayerKind::Base => "the base image's layer".into(),
        }
    }
}

/// One planned layer: the in-image paths it holds (parents included).
#[derive(Clone, Debug)]
pub struct PlannedLayer {
    pub kind: LayerKind,
    pub paths: BTreeSet<ImagePath>,
}

/// The layers of `fs` under `layering`, bottom to top (never empty).
pub fn plan(fs: &FileSet, layering: &Layering) -> Vec<PlannedLayer> {
    let all = || PlannedLayer {
        kind: LayerKind::Top,
        paths: fs.entries.keys().cloned().collect(),
    };
    if layering.budget <= 1 {
        return vec![all()];
    }
    // Each package's group and its kept bytes.
    let mut groups: BTreeMap<String, BTreeSet<ImagePath>> = BTreeMap::new();
    for (path, e) in &fs.entries {
        if e.is_dir() {
            continue;
        }
        if let Some(pkg) = group_of(fs, path, layering) {
            groups.entry(pkg).or_default().insert(path.clone());
        }
    }
    if groups.is_empty() {
        return vec![all()];
    }
    let weight = |paths: &BTreeSet<ImagePath>| -> u64 {
        paths
            .iter()
            .filter_map(|p| fs.entries.get(p))
            .map(|e| e.size)
            .sum()
    };
    let mut large: Vec<(u64, &String)> = groups
        .iter()
        .map(|(name, paths)| (weight(paths), name))
        .filter(|(w, _)| *w >= LARGE_PACKAGE)
        .collect();
    // Heaviest first, ties by name; keep what the budget allows (one layer
    // for the other packages, one for the top).
    large.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    large.truncate(layering.budget.saturating_sub(2));
    let own: BTreeSet<&String> = large.into_iter().map(|(_, n)| n).collect();

    let mut layers = Vec::new();
    let mut rest = PlannedLayer {
        kind: LayerKind::Packages(Vec::new()),
        paths: BTreeSet::new(),
    };
    for (name, paths) in &groups {
        if own.contains(name) {
            layers.push(PlannedLayer {
                kind: LayerKind::Package(name.clone()),
                paths: paths.clone(),
            });
        } else {
            if let LayerKind::Packages(names) = &mut rest.kind {
                names.push(name.clone());
            }
            rest.paths.extend(paths.iter().cloned());
        }
    }
    // With a budget of 2 every package shares one layer.
    if layering.budget == 2 {
        for l in layers.drain(..) {
            if let (LayerKind::Packages(names), LayerKind::Package(n)) = (&mut rest.kind, l.kind) {
                names.push(n);
            }
            rest.paths.extend(l.paths);
        }
        if let LayerKind::Packages(names) = &mut rest.kind {
            names.sort();
        }
    }
    if !rest.paths.is_empty() {
        layers.push(rest);
    }
    // Parents of each lower layer's paths, from the file set when it has
    // them (else the pack step adds its fixed parent entries).
    let mut below: BTreeSet<ImagePath> = BTreeSet::new();
    for l in &mut layers {
        let parents: Vec<ImagePath> = l
            .paths
            .iter()
            .flat_map(|p| ancestors(p.as_path()))
            .filter(|d| fs.entries.contains_key(d))
            .collect();
        l.paths.extend(parents);
        below.extend(l.paths.iter().cloned());
    }
    let mut top = PlannedLayer {
        kind: LayerKind::Top,
        paths: BTreeSet::new(),
    };
    for path in fs.entries.keys() {
        if !below.contains(path) {
            top.paths.insert(path.clone());
        }
    }
    // The top layer's own parents.
    let parents: Vec<ImagePath> = top
        .paths
        .iter()
        .flat_map(|p| ancestors(p.as_path()))
        .filter(|d| fs.entries.contains_key(d))
        .collect();
    top.paths.extend(parents);
    if !top.paths.is_empty() {
        layers.push(top);
    }
    layers
}

/// The package whose layer a non-directory path goes to, if any. By path
/// only (not by how the file set found it), so an unpacked image packs
/// back into the same layers.
fn group_of(fs: &FileSet, path: &ImagePath, layering: &Layering) -> Option<String> {
    if let Some(p) = layering.owners.get(path) {
        return Some(p.clone());
    }
    let p = path.as_path();
    if p.parent() == Some(Path::new(STATUS_D)) {
        // status.d/NAME[:ARCH] and NAME[:ARCH].md5sums: with NAME's files.
        let file = p.file_name()?.to_str()?;
        let stem = file.strip_suffix(".md5sums").unwrap_or(file);
        let name = stem.split_once(':').map_or(stem, |(n, _)| n);
        let owned = layering.owners.values().any(|o| o == name);
        return owned.then(|| name.to_string());
    }
    // D/__pycache__/M.TAG.pyc: with the package of D/M.py.
    let file = p.file_name()?.to_str()?;
    let cache = p.parent()?;
    if cache.file_name()? != "__pycache__" || !file.ends_with(".pyc") {
        return None;
    }
    let module = file.split('.').next()?;
    let source = ImagePath(cache.parent()?.join(format!("{module}.py")));
    if !fs.entries.contains_key(&source) {
        return None;
    }
    layering.owners.get(&source).cloned()
}

/// The directories above `p`, but `/`.
fn ancestors(p: &Path) -> impl Iterator<Item = ImagePath> + '_ {
    p.ancestors()
        .skip(1)
        .filter(|d| *d != Path::new("/") && !d.as_os_str().is_empty())
        .map(|d| ImagePath(d.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileset::{Entry, Reason};
    use crate::resolve::FileType;

    fn file(fs: &mut FileSet, path: &str, size: u64) {
        let mut e = Entry::dir(0o644, 0, 0, Reason::TracedRead);
        e.file_type = FileType::File;
        e.size = size;
        fs.entries.insert(ImagePath(path.into()), e);
    }

    fn layering(budget: usize, owners: &[(&str, &str)]) -> Layering {
        Layering {
            budget,
            owners: owners
                .iter()
                .map(|(p, o)| (ImagePath((*p).into()), o.to_string()))
                .collect(),
        }
    }

    fn paths(l: &PlannedLayer) -> Vec<String> {
        l.paths
            .iter()
            .map(|p| p.as_path().display().to_string())
            .collect()
    }

    #[test]
    fn packages_below_the_rest_on_top() {
        let mut fs = FileSet::new("/nonexistent");
        fs.entries.insert(
            ImagePath("/usr".into()),
            Entry::dir(0o755, 0, 0, Reason::ParentDir),
        );
        file(&mut fs, "/usr/lib/libc.so.6", 2 << 20);
        file(&mut fs, "/usr/lib/libz.so.1", 100_000);
        file(&mut fs, "/usr/lib/py/json.py", 1000);
        file(&mut fs, "/usr/lib/py/__pycache__/json.cpython-311.pyc", 900);
        file(&mut fs, "/var/lib/dpkg/status.d/libc6", 10);
        file(&mut fs, "/var/lib/dpkg/status.d/libc6.md5sums", 10);
        file(&mut fs, "/app/main.py", 10);
        let owners = [
            ("/usr/lib/libc.so.6", "libc6"),
            ("/usr/lib/libz.so.1", "zlib1g"),
            ("/usr/lib/py/json.py", "python"),
        ];
        let plan = plan(&fs, &layering(8, &owners));
        let kinds: Vec<&LayerKind> = plan.iter().map(|l| &l.kind).collect();
        assert_eq!(
            kinds,
            [
                &LayerKind::Package("libc6".into()),
                &LayerKind::Packages(vec!["python".into(), "zlib1g".into()]),
                &LayerKind::Top
            ]
        );
        // The parent /usr (in the file set) in each layer that needs it;
        // status.d with its package; byte-code with its source.
        assert_eq!(
            paths(&plan[0]),
            [
                "/usr",
                "/usr/lib/libc.so.6",
                "/var/lib/dpkg/status.d/libc6",
                "/var/lib/dpkg/status.d/libc6.md5sums"
            ]
        );
        assert!(paths(&plan[1]).contains(&"/usr/lib/py/__pycache__/json.cpython-311.pyc".into()));
        assert_eq!(paths(&plan[2]), ["/app/main.py"]);

        // Budget 1, or no attribution: one layer with everything.
        for l in [layering(1, &owners), layering(8, &[])] {
            let p = super::plan(&fs, &l);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].paths.len(), fs.entries.len());
        }
        // Budget 2: every package in one layer.
        let p = super::plan(&fs, &layering(2, &owners));
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].kind,
            LayerKind::Packages(vec!["libc6".into(), "python".into(), "zlib1g".into()])
        );
    }

    #[test]
    fn a_large_package_layer_does_not_depend_on_the_rest() {
        let mut a = FileSet::new("/nonexistent");
        file(&mut a, "/lib/libc.so.6", 2 << 20);
        file(&mut a, "/app/a", 5);
        let mut b = a.clone();
        file(&mut b, "/lib/libssl.so.3", 3 << 20);
        file(&mut b, "/lib/libz.so.1", 10);
        file(&mut b, "/app/b", 5);
        let owners = [
            ("/lib/libc.so.6", "libc6"),
            ("/lib/libssl.so.3", "libssl3"),
            ("/lib/libz.so.1", "zlib1g"),
        ];
        let pa = plan(&a, &layering(8, &owners));
        let pb = plan(&b, &layering(8, &owners));
        let libc = |p: &[PlannedLayer]| {
            p.iter()
                .find(|l| l.kind == LayerKind::Package("libc6".into()))
                .map(|l| l.paths.clone())
        };
        assert!(libc(&pa).is_some());
        assert_eq!(libc(&pa), libc(&pb));
        // Over budget (3: one own layer): the heaviest keeps its own.
        let p3 = plan(&b, &layering(3, &owners));
        assert_eq!(p3[0].kind, LayerKind::Package("libssl3".into()));
        assert_eq!(
            p3[1].kind,
            LayerKind::Packages(vec!["libc6".into(), "zlib1g".into()])
        );
    }
}
