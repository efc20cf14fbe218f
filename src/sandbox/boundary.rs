//! The boundary between a command in the sandbox and the host, modelled on
//! what runc does with docker's default profile: the payload gives up every
//! capability outside [`KEEP`] (bounding, effective, permitted, inheritable
//! and ambient sets), sets no_new_privs, and installs a seccomp filter that
//! fails the calls of [`DENIED_X86_64`] / [`DENIED_I386`] with EPERM (and
//! `clone3` with ENOSYS, so that libc falls back to `clone`, whose namespace
//! flags the filter can see). docs/sandbox.md has the list and the reasons.
//!
//! The filter coexists with the tracer's: the kernel runs every installed
//! filter and takes the most restrictive answer, so a denied call fails with
//! EPERM whether or not the tracer's filter asked for a stop (ERRNO ranks
//! above TRACE), and every other call is traced as before.

use crate::sys::caps::{self, CapSet};
use crate::sys::seccomp::{self, Insn};

const fn bit(cap: u32) -> CapSet {
    1 << cap
}

/// The capabilities an image's command keeps when it runs as root: docker's
/// default set (which runc applies) without CAP_MKNOD, since the sandbox has
/// no device cgroup to make a new device node harmless.
pub const KEEP: CapSet = bit(caps::CAP_CHOWN)
    | bit(caps::CAP_DAC_OVERRIDE)
    | bit(caps::CAP_FOWNER)
    | bit(caps::CAP_FSETID)
    | bit(caps::CAP_KILL)
    | bit(caps::CAP_SETGID)
    | bit(caps::CAP_SETUID)
    | bit(caps::CAP_SETPCAP)
    | bit(caps::CAP_NET_BIND_SERVICE)
    | bit(caps::CAP_NET_RAW)
    | bit(caps::CAP_SYS_CHROOT)
    | bit(caps::CAP_AUDIT_WRITE)
    | bit(caps::CAP_SETFCAP);

/// Calls that reach beyond the sandbox (mounts, namespaces, kernel modules,
/// kexec, the clock, keyrings, BPF, io_uring, raw I/O ports, file handles
/// that bypass the mount tree), x86_64 numbers. Most need a capability the
/// command no longer has; the filter refuses them even so, as runtimes do.
pub const DENIED_X86_64: [u32; 51] = [
    libc::SYS_mount as u32,
    libc::SYS_umount2 as u32,
    libc::SYS_pivot_root as u32,
    libc::SYS_swapon as u32,
    libc::SYS_swapoff as u32,
    libc::SYS_reboot as u32,
    libc::SYS_acct as u32,
    libc::SYS_init_module as u32,
    libc::SYS_finit_module as u32,
    libc::SYS_delete_module as u32,
    174, // create_module
    177, // get_kernel_syms
    178, // query_module
    libc::SYS_kexec_load as u32,
    320, // kexec_file_load
    libc::SYS_bpf as u32,
    libc::SYS_perf_event_open as u32,
    libc::SYS_userfaultfd as u32,
    libc::SYS_unshare as u32,
    libc::SYS_setns as u32,
    libc::SYS_open_by_handle_at as u32,
    libc::SYS_add_key as u32,
    libc::SYS_request_key as u32,
    libc::SYS_keyctl as u32,
    428, // open_tree
    429, // move_mount
    430, // fsopen
    431, // fsconfig
    432, // fsmount
    433, // fspick
    442, // mount_setattr
    467, // open_tree_attr
    425, // io_uring_setup
    426, // io_uring_enter
    427, // io_uring_register
    libc::SYS_settimeofday as u32,
    libc::SYS_clock_settime as u32,
    libc::SYS_clock_adjtime as u32,
    libc::SYS_adjtimex as u32,
    libc::SYS_syslog as u32,
    libc::SYS_lookup_dcookie as u32,
    libc::SYS_quotactl as u32,
    443, // quotactl_fd
    180, // nfsservctl
    libc::SYS_iopl as u32,
    libc::SYS_ioperm as u32,
    134, // uselib
    136, // ustat
    139, // sysfs
    156, // _sysctl
    libc::SYS_vhangup as u32,
];

/// The same calls under the i386 ABI (a 32-bit program on a 64-bit kernel).
pub const DENIED_I386: [u32; 56] = [
    21,  // mount
    22,  // umount
    52,  // umount2
    217, // pivot_root
    87,  // swapon
    115, // swapoff
    88,  // reboot
    51,  // acct
    128, // init_module
    350, // finit_module
    129, // delete_module
    127, // create_module
    130, // get_kernel_syms
    167, // query_module
    283, // kexec_load
    357, // bpf
    336, // perf_event_open
    374, // userfaultfd
    310, // unshare
    346, // setns
    342, // open_by_handle_at
    286, // add_key
    287, // request_key
    288, // keyctl
    428, // open_tree
    429, // move_mount
    430, // fsopen
    431, // fsconfig
    432, // fsmount
    433, // fspick
    442, // mount_setattr
    467, // open_tree_attr
    425, // io_uring_setup
    426, // io_uring_enter
    427, // io_uring_register
    79,  // settimeofday
    25,  // stime
    264, // clock_settime
    404, // clock_settime64
    343, // clock_adjtime
    405, // clock_adjtime64
    124, // adjtimex
    103, // syslog
    253, // lookup_dcookie
    131, // quotactl
    443, // quotactl_fd
    169, // nfsservctl
    110, // iopl
    101, // ioperm
    166, // vm86
    113, // vm86old
    86,  // uselib
    62,  // ustat
    135, // sysfs
    149, // _sysctl
    111, // vhangup
];

const CLONE_X86_64: u32 = libc::SYS_clone as u32;
const CLONE3_X86_64: u32 = libc::SYS_clone3 as u32;
const CLONE_I386: u32 = 120;
const CLONE3_I386: u32 = 435;

/// The namespace flags of `clone(2)` (CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET). CLONE_NEWTIME shares its bit with the
/// exit signal in `clone`, and is only honoured by `unshare`/`clone3`.
const CLONE_NAMESPACES: u32 = 0x7e02_0000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    X86_64,
    I386,
    Clone,
    Eperm,
    Enosys,
}

enum Op {
    Load(u32),
    /// Jump to the label when the accumulator equals k.
    JeqTo(u32, Label),
    /// Jump to the label when the accumulator has a bit of k.
    JsetTo(u32, Label),
    Ret(u32),
    Here(Label),
}

/// The deny-list filter.
pub fn filter() -> Vec<Insn> {
    use seccomp::*;
    let mut ops = vec![
        Op::Load(OFF_ARCH),
        Op::JeqTo(AUDIT_ARCH_X86_64, Label::X86_64),
        Op::JeqTo(AUDIT_ARCH_I386, Label::I386),
        Op::Ret(SECCOMP_RET_ALLOW),
        Op::Here(Label::X86_64),
        Op::Load(OFF_NR),
        // x32 calls would reach the same kernel code under other numbers.
        Op::JsetTo(X32_SYSCALL_BIT, Label::Enosys),
        Op::JeqTo(CLONE_X86_64, Label::Clone),
        Op::JeqTo(CLONE3_X86_64, Label::Enosys),
    ];
    ops.extend(DENIED_X86_64.iter().map(|&nr| Op::JeqTo(nr, Label::Eperm)));
    ops.extend([
        Op::Ret(SECCOMP_RET_ALLOW),
        Op::Here(Label::I386),
        Op::Load(OFF_NR),
        Op::JeqTo(CLONE_I386, Label::Clone),
        Op::JeqTo(CLONE3_I386, Label::Enosys),
    ]);
    ops.extend(DENIED_I386.iter().map(|&nr| Op::JeqTo(nr, Label::Eperm)));
    ops.extend([
        Op::Ret(SECCOMP_RET_ALLOW),
        // clone's flags are its first argument under both ABIs.
        Op::Here(Label::Clone),
        Op::Load(off_arg_low(0)),
        Op::JsetTo(CLONE_NAMESPACES, Label::Eperm),
        Op::Ret(SECCOMP_RET_ALLOW),
        Op::Here(Label::Eperm),
        Op::Ret(SECCOMP_RET_ERRNO | libc::EPERM as u32),
        Op::Here(Label::Enosys),
        Op::Ret(SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]);
    assemble(&ops)
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Instruction index of every label.
    let mut at = Vec::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Here(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let target = |l: Label| at.iter().find(|(x, _)| *x == l).map(|(_, i)| *i);
    let mut prog = Vec::with_capacity(n);
    for op in ops {
        let here = prog.len();
        let offset = |l: Label| -> u8 {
            let to = target(l).expect("every label is placed");
            u8::try_from(to - here - 1).expect("the filter's jumps fit in 8 bits")
        };
        match op {
            Op::Load(off) => prog.push(seccomp::load(*off)),
            Op::JeqTo(k, l) => prog.push(seccomp::jeq(*k, offset(*l), 0)),
            Op::JsetTo(k, l) => prog.push(seccomp::jset(*k, offset(*l), 0)),
            Op::Ret(k) => prog.push(seccomp::ret(*k)),
            Op::Here(_) => {}
        }
    }
    prog
}

/// Step one, still as root before the user change: shrink the bounding set
/// to [`KEEP`] (this needs CAP_SETPCAP, which the user change may remove),
/// so that no exec, setuid or file capability can bring the rest back.
pub(crate) fn drop_bounding() -> nix::Result<()> {
    caps::drop_bounding_except(KEEP)
}

/// Step two, after the user change and just before exec: give up what is
/// left outside [`KEEP`], set no_new_privs, install the filter. Runs in the
/// payload: no allocation (the filter was built before the clone).
pub(crate) fn seal(filter: &[Insn]) -> nix::Result<()> {
    caps::limit_to(KEEP)?;
    caps::clear_ambient()?;
    nix::sys::prctl::set_no_new_privs()?;
    seccomp::install(filter)
}

/// Without no_new_privs (`Spec::setuid`): install the filter while still
/// root, before the user change, as the kernel allows with CAP_SYS_ADMIN
/// (runc does the same when `noNewPrivileges` is off). Nothing the payload
/// does after it (chdir, the user change, capset, prctl) is on the list.
pub(crate) fn install_filter(filter: &[Insn]) -> nix::Result<()> {
    seccomp::install(filter)
}

/// Step two without no_new_privs: give up what is left outside [`KEEP`];
/// the bounding set still caps what a setuid file or file capability gives.
pub(crate) fn seal_keeping_setuid() -> nix::Result<()> {
    caps::limit_to(KEEP)?;
    caps::clear_ambient()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_assembles_and_ends_in_returns() {
        let p = filter();
        assert!(p.len() < 200, "{}", p.len());
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        assert_eq!(p.last().unwrap().code, ret);
        assert_eq!(
            p.last().unwrap().k,
            seccomp::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn keep_has_none_of_the_dangerous_capabilities() {
        for cap in [
            caps::CAP_SYS_ADMIN,
            caps::CAP_MKNOD,
            caps::CAP_SYS_MODULE,
            caps::CAP_SYS_RAWIO,
            caps::CAP_SYS_PTRACE,
        ] {
            assert_eq!(KEEP & bit(cap), 0, "capability {cap}");
        }
    }
}
