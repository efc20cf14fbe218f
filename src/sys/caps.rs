//! Capabilities and no_new_privs: the calls the sandbox's payload makes to
//! give up privileges before it runs a command from an image. Everything here
//! runs in a cloned child and must not allocate (see `process::clone_into`).

use nix::errno::Errno;

/// A set of capabilities as a bit mask: bit N is capability N
/// (linux/capability.h numbering).
pub type CapSet = u64;

pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_KILL: u32 = 5;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_MODULE: u32 = 16;
pub const CAP_SYS_RAWIO: u32 = 17;
pub const CAP_SYS_CHROOT: u32 = 18;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_MKNOD: u32 = 27;
pub const CAP_AUDIT_WRITE: u32 = 29;
pub const CAP_SETFCAP: u32 = 31;

/// The highest capability number this code knows the kernel may have; the
/// bounding-set loop stops earlier at the kernel's own last one.
const CAP_MAX: u32 = 63;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Remove every capability not in `keep` from the calling thread's bounding
/// set (needs CAP_SETPCAP). Capabilities the kernel does not have end the
/// loop (EINVAL).
pub fn drop_bounding_except(keep: CapSet) -> nix::Result<()> {
    for cap in 0..=CAP_MAX {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match Errno::result(r) {
            Ok(_) => {}
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Empty the ambient set of the calling thread.
pub fn clear_ambient() -> nix::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn capget() -> nix::Result<[Data; 2]> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and the two-element `data` array are the layout
    // capget(2) expects for version 3; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    Errno::result(r).map(|_| data)
}

/// The calling thread's (effective, permitted, inheritable) sets.
pub fn current() -> nix::Result<(CapSet, CapSet, CapSet)> {
    let d = capget()?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(d[0].effective, d[1].effective),
        join(d[0].permitted, d[1].permitted),
        join(d[0].inheritable, d[1].inheritable),
    ))
}

/// Limit the calling thread's effective and permitted sets to `keep` (what
/// it has of it) and empty its inheritable set. Capabilities can only be
/// given up here, never gained.
pub fn limit_to(keep: CapSet) -> nix::Result<()> {
    let (effective, permitted, _) = current()?;
    let (e, p) = (effective & keep, permitted & keep);
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: 0,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: as in `capget`; the kernel only reads `data`.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    Errno::result(r).map(drop)
}
