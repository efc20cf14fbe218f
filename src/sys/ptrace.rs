//! ptrace pieces nix does not wrap safely: the syscall-info union as an enum,
//! PTRACE_LISTEN, and reading tracee memory in as few syscalls as possible.

use std::io::IoSliceMut;

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// The syscall a tracee is stopped at, from PTRACE_GET_SYSCALL_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallInfo {
    /// A seccomp stop (SECCOMP_RET_TRACE): the syscall has not run yet.
    Seccomp {
        arch: u32,
        nr: u64,
        args: [u64; 6],
        ret_data: u32,
    },
    /// A syscall-entry stop (PTRACE_SYSCALL).
    Entry { arch: u32, nr: u64, args: [u64; 6] },
    /// A syscall-exit stop: the return value, and whether it is an error.
    Exit { rval: i64, is_error: bool },
    /// Not a syscall stop.
    None,
}

/// Read what the tracee `pid` is stopped at.
pub fn syscall_info(pid: Pid) -> nix::Result<SyscallInfo> {
    let raw = nix::sys::ptrace::syscall_info(pid)?;
    // SAFETY: the kernel fills the union member that `op` names; each arm
    // reads only that member.
    let info = unsafe {
        match raw.op {
            libc::PTRACE_SYSCALL_INFO_SECCOMP => {
                let s = raw.u.seccomp;
                SyscallInfo::Seccomp {
                    arch: raw.arch,
                    nr: s.nr,
                    args: s.args,
                    ret_data: s.ret_data,
                }
            }
            libc::PTRACE_SYSCALL_INFO_ENTRY => {
                let e = raw.u.entry;
                SyscallInfo::Entry {
                    arch: raw.arch,
                    nr: e.nr,
                    args: e.args,
                }
            }
            libc::PTRACE_SYSCALL_INFO_EXIT => {
                let x = raw.u.exit;
                SyscallInfo::Exit {
                    rval: x.sval,
                    is_error: x.is_error != 0,
                }
            }
            _ => SyscallInfo::None,
        }
    };
    Ok(info)
}

/// PTRACE_LISTEN: leave a tracee in group-stop, but let it report the next
/// event (e.g. SIGCONT) — how job control keeps working under a tracer.
pub fn listen(pid: Pid) -> nix::Result<()> {
    // SAFETY: PTRACE_LISTEN takes no addr/data pointers; the kernel validates
    // the pid and the tracee state.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_LISTEN,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Read up to `out.len()` bytes at `addr` in the tracee. Returns how many
/// bytes were read (short when the range runs into unmapped memory).
pub fn read_mem(pid: Pid, addr: u64, out: &mut [u8]) -> nix::Result<usize> {
    if out.is_empty() {
        return Ok(0);
    }
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: out.len(),
    }];
    process_vm_readv(pid, &mut [IoSliceMut::new(out)], &remote)
}

const PAGE: u64 = 4096;
/// The longest string read from a tracee (PATH_MAX).
pub const MAX_STR: usize = 4096;

/// Read the NUL-terminated string at `addr` into `buf` (cleared first),
/// without the NUL. Usually one `process_vm_readv`: the first read goes to
/// the end of the page (a read past it could fault on an unmapped page), and
/// only a string crossing the page boundary needs another.
pub fn read_cstr(pid: Pid, addr: u64, buf: &mut Vec<u8>) -> nix::Result<()> {
    buf.clear();
    let mut at = addr;
    while buf.len() < MAX_STR {
        let chunk = ((PAGE - at % PAGE) as usize).min(MAX_STR - buf.len());
        let start = buf.len();
        buf.resize(start + chunk, 0);
        let n = read_mem(pid, at, &mut buf[start..])?;
        buf.truncate(start + n);
        if let Some(i) = buf[start..].iter().position(|&b| b == 0) {
            buf.truncate(start + i);
            return Ok(());
        }
        if n < chunk {
            return Err(Errno::EFAULT);
        }
        at += n as u64;
    }
    Err(Errno::ENAMETOOLONG)
}

/// Read a NULL-terminated array of pointers (an argv) at `addr`, then each
/// string; at most `max` entries.
pub fn read_argv(pid: Pid, addr: u64, max: usize) -> nix::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    let mut ptrs = [0u8; 8 * 32];
    let mut at = addr;
    'outer: while out.len() < max {
        let n = read_mem(pid, at, &mut ptrs)?;
        if n < 8 {
            return Err(Errno::EFAULT);
        }
        for p in ptrs[..n - n % 8].chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(p);
            let ptr = u64::from_ne_bytes(b);
            if ptr == 0 || out.len() >= max {
                break 'outer;
            }
            let mut s = Vec::new();
            read_cstr(pid, ptr, &mut s)?;
            out.push(s);
        }
        at += (n - n % 8) as u64;
    }
    Ok(out)
}

/// Read one `u64` from the tracee (e.g. `open_how.flags`).
pub fn read_u64(pid: Pid, addr: u64) -> nix::Result<u64> {
    let mut b = [0u8; 8];
    if read_mem(pid, addr, &mut b)? != 8 {
        return Err(Errno::EFAULT);
    }
    Ok(u64::from_ne_bytes(b))
}

/// The registers of a stopped tracee (to read clone flags at a clone event).
pub fn regs(pid: Pid) -> nix::Result<libc::user_regs_struct> {
    nix::sys::ptrace::getregs(pid)
}
