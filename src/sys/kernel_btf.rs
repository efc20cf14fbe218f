//! The kernel's BTF, mapped read-only instead of copied.
//!
//! Reading `/sys/kernel/btf/vmlinux` (about 5 MB) into a buffer costs a
//! copy and the page faults of a fresh buffer, a few milliseconds on every
//! `--backend ebpf` start; kernels since 6.16 let the file be mapped, which
//! maps the kernel's own read-only pages. Older kernels refuse the mapping
//! and the caller reads the file instead.

use std::fs::File;
use std::io;
use std::ptr::NonNull;

/// The file, and the only one this module maps: its contents are the
/// kernel's BTF, fixed for the life of the kernel (never written nor
/// truncated), which is what makes a long-lived mapping of it sound.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// A read-only private mapping of [`VMLINUX`]; unmapped on drop.
pub struct Mapped {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for Mapped {}
// SAFETY: as above: shared references only read immutable memory.
unsafe impl Sync for Mapped {}

/// Map [`VMLINUX`]; an error when the kernel does not allow it (then read
/// the file).
pub fn map_vmlinux() -> io::Result<Mapped> {
    let file = File::open(VMLINUX)?;
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too large"))?;
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty"));
    }
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh read-only private mapping of an open file, at an
    // address the kernel chooses; nothing else refers to that range. The
    // file's contents never change (see VMLINUX), so the slice made from
    // it below stays valid and unchanged until munmap in Drop.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapped { ptr, len })
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes (made in
        // map_vmlinux, unmapped only in Drop), of contents that never change.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in map_vmlinux, unmapped once; no slice
        // borrowed from it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mapping_is_the_file() {
        let read = std::fs::read(super::VMLINUX).expect("the kernel's BTF");
        match super::map_vmlinux() {
            Ok(m) => assert!(*m == *read),
            // Kernels before 6.16 refuse: the caller reads instead.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
        }
    }
}
