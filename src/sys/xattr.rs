//! Reading one extended attribute of a path without following a final
//! symlink (`lgetxattr(2)`). Only `security.capability` is kept in images.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The value of xattr `name` of `path` (not following a final symlink), or
/// `None` when the file has no such attribute or the filesystem does not
/// support xattrs.
pub fn lget(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })?;
    // Capabilities are at most 24 bytes (v3); start small and grow on ERANGE.
    let mut buf = vec![0u8; 64];
    loop {
        // SAFETY: both strings are NUL-terminated and live across the call;
        // `buf` is a valid writable buffer of `buf.len()` bytes, and the
        // kernel writes at most that many.
        let n = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Set xattr `name` of `path` (not following a final symlink).
pub fn lset(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })?;
    // SAFETY: both strings are NUL-terminated and live across the call;
    // `value` is a valid readable buffer of `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set xattr `name` of an open file (`fsetxattr(2)`), e.g. restoring
/// `security.capability` when unpacking a layer.
pub fn fset(fd: impl AsFd, name: &str, value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })?;
    // SAFETY: the fd is open for the duration of the call (borrowed), the
    // name is NUL-terminated, and `value` is valid for `value.len()` bytes,
    // which the kernel only reads.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_attribute_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(lget(&f, "security.capability").unwrap(), None);
        assert!(lget(&dir.path().join("nope"), "security.capability").is_err());
    }
}
