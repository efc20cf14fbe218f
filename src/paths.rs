//! Paths as the rest of the crate sees them: byte strings, absolute inside a
//! root, compared bytewise.
//!
//! Tracee paths are bytes, not UTF-8. Manifests (YAML/JSON) need strings, so
//! a path is written as-is when it is valid UTF-8 without a backslash, and
//! otherwise with `\xNN` escapes for the bytes that are not UTF-8 and `\\`
//! for a backslash. The encoding is lossless (docs/formats.md).

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serializer};

/// Encode a path for a manifest (see the module docs).
pub fn encode(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\\') => s.to_string(),
        _ => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == '\\' {
                        out.push_str("\\\\");
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            out
        }
    }
}

/// Decode a path written by [`encode`]. A backslash not followed by `\\` or
/// `xNN` is kept literally, so hand-written manifests stay forgiving.
pub fn decode(s: &str) -> PathBuf {
    if !s.contains('\\') {
        return PathBuf::from(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// serde `with` helpers for a `PathBuf` field.
pub mod serde_path {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(p))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(decode(&String::deserialize(d)?))
    }
}

/// serde `with` helpers for an `Option<PathBuf>` field.
pub mod serde_opt_path {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&encode(p)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(|s| decode(&s)))
    }
}

/// serde `with` helpers for a `Vec<OsString>` (an argv).
pub mod serde_argv {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(v: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for a in v {
            seq.serialize_element(&encode(Path::new(a)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| decode(&s).into_os_string())
            .collect())
    }
}

/// A path key that sorts bytewise (`/a-b` before `/a/b`), the order of layer
/// tar entries. `Path`'s own `Ord` compares component by component, which is
/// not the same order.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ImagePath(pub PathBuf);

impl ImagePath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Ord for ImagePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .as_os_str()
            .as_bytes()
            .cmp(other.0.as_os_str().as_bytes())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<PathBuf> for ImagePath {
    fn from(p: PathBuf) -> Self {
        ImagePath(p)
    }
}

impl serde::Serialize for ImagePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for ImagePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ImagePath(decode(&String::deserialize(d)?)))
    }
}

/// Normalize an absolute path lexically: drop `.` and empty components,
/// apply `..` (never above `/`). Used for paths as a program *named* them;
/// physical resolution, where `..` follows symlinks, is `resolve`'s job.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Join `rel` onto the absolute `base`, unless `rel` is itself absolute.
pub fn absolutize(base: &Path, rel: &OsStr) -> PathBuf {
    let rel = Path::new(rel);
    if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// `true` when `path` is `dir` or lies below it (component-wise).
pub fn is_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_odd_bytes() {
        for raw in [
            &b"/plain/path"[..],
            b"/back\\slash",
            b"/bad\xff\xfeutf8",
            b"/x\\xff",
        ] {
            let p = PathBuf::from(OsString::from_vec(raw.to_vec()));
            let e = encode(&p);
            assert_eq!(decode(&e), p, "{e}");
        }
        assert_eq!(encode(Path::new("/usr/bin/python3")), "/usr/bin/python3");
        assert_eq!(encode(Path::new(OsStr::from_bytes(b"/a\xff"))), "/a\\xff");
    }

    #[test]
    fn image_paths_sort_bytewise() {
        let mut v: Vec<ImagePath> = ["/a/b", "/a-b", "/a", "/"]
            .iter()
            .map(|s| ImagePath(s.into()))
            .collect();
        v.sort();
        let got: Vec<_> = v.iter().map(|p| p.0.to_str().unwrap()).collect();
        assert_eq!(got, ["/", "/a", "/a-b", "/a/b"]);
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b//../c/")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../..")), Path::new("/"));
    }
}
