//! Atomic file writes: a leaf module, so every stage that writes a small
//! output file (manifest, digest cache, report, profile) can use it without
//! depending on the stage that owns the format.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` through a temporary sibling and a rename, so a
/// reader never sees half a file and an interrupted write leaves none. No
/// fsync: a manifest needs atomicity, not durability across a power loss,
/// and the sync cost more than the whole trace of a small command.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".jail-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
