//! Installing a classic-BPF seccomp filter, and the few BPF building blocks
//! the tracer's filter needs.

use nix::errno::Errno;

pub use libc::sock_filter as Insn;

pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
/// Fail the call with the errno in the low 16 bits, without running it.
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// Syscall numbers of the x32 ABI have this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data`.
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;

/// Offset of the low 32 bits of argument `n` (little-endian).
pub const fn off_arg_low(n: u32) -> u32 {
    16 + 8 * n
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Load the 32-bit word at `off` of `seccomp_data`.
pub fn load(off: u32) -> Insn {
    Insn {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k: off,
    }
}

/// `if A == k goto +jt else goto +jf`.
pub fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// `if A >= k goto +jt else goto +jf`.
pub fn jge(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: BPF_JGE_K,
        jt,
        jf,
        k,
    }
}

/// `if A & k != 0 goto +jt else goto +jf`.
pub fn jset(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: BPF_JSET_K,
        jt,
        jf,
        k,
    }
}

/// Return `k`.
pub fn ret(k: u32) -> Insn {
    Insn {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Install `prog` on the calling thread (inherited by its children and
/// across exec). Without CAP_SYS_ADMIN the kernel requires no_new_privs,
/// which the caller sets.
pub fn install(prog: &[Insn]) -> nix::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut Insn,
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program and validates every instruction.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}
