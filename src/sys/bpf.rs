//! Raw `bpf(2)` map calls on a `u32 → *` hash map, for code that must not
//! allocate or take locks (the guard of the ebpf backend runs in a forked
//! child of a multi-threaded jail): no loader, just the syscall.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// The map-element member of `union bpf_attr` (`map_fd`, `key`,
/// `value`/`next_key`, `flags`).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    next_key: u64,
    flags: u64,
}

fn call(cmd: libc::c_long, attr: &mut ElemAttr) -> Result<(), Errno> {
    // SAFETY: `attr` is a live, correctly laid out prefix of `union
    // bpf_attr` whose size is passed exactly (the kernel zero-extends a
    // shorter attr); the pointers in it point to `u32`s of the caller that
    // outlive the call. Async-signal-safe: one syscall, no allocation.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>() as libc::c_uint,
        )
    };
    Errno::result(r).map(drop)
}

/// The key after `key` in the map's iteration order (the first key for
/// `None`, or when `key` is no longer in the map); `None` at the end.
pub fn next_key_u32(map: BorrowedFd<'_>, key: Option<u32>) -> Result<Option<u32>, Errno> {
    let mut next: u32 = 0;
    let prev: u32 = key.unwrap_or(0);
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        // A null key asks for the first one.
        key: key.map_or(0, |_| &prev as *const u32 as u64),
        next_key: &mut next as *mut u32 as u64,
        ..ElemAttr::default()
    };
    match call(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(()) => Ok(Some(next)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key that comes first in the map's iteration order, `None` when the
/// map is empty.
pub fn first_key_u32(map: BorrowedFd<'_>) -> Result<Option<u32>, Errno> {
    next_key_u32(map, None)
}

/// Delete `key` from the map; `Ok(false)` when it was not there.
pub fn delete_u32(map: BorrowedFd<'_>, key: u32) -> Result<bool, Errno> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..ElemAttr::default()
    };
    match call(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
