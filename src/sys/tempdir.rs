//! Private temporary directories, the file-system primitive the sandbox, the
//! image reader and the output share: the unpack root of an image (which
//! holds the image's setuid files and world-writable directories), the
//! sandbox's scratch and the staging directory of an output live under a
//! parent that only its owner can enter.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Create `PREFIX*` in `parent`, mode 0700 whatever the umask, owned by the
/// caller (root when jail runs as root). Nothing below it is reachable by
/// another local user, whatever the modes inside.
pub fn private(
    parent: &Path,
    prefix: impl AsRef<std::ffi::OsStr>,
) -> io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix.as_ref())
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)?;
    // The umask can only take bits away; set the mode anyway, so that the
    // guarantee does not rest on that.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
    let meta = fs::symlink_metadata(dir.path())?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a private directory of this user after creating it",
            dir.path().display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_whatever_the_umask() {
        let parent = tempfile::tempdir().unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let d = private(parent.path(), "x-");
        nix::sys::stat::umask(old);
        let d = d.unwrap();
        let meta = fs::metadata(d.path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    }
}
