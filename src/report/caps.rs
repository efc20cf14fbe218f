//! File capabilities: the raw `security.capability` xattr decoded into the
//! text form `getcap` shows (`cap_net_raw+ep`).
//!
//! The layout is the kernel's `struct vfs_cap_data` (revision 1: one 32-bit
//! permitted/inheritable pair; revision 2: two, for capabilities 0–63) and
//! `struct vfs_ns_cap_data` (revision 3: revision 2 plus the root uid of
//! the user namespace the capabilities belong to), little-endian.

use std::fmt;

const REVISION_MASK: u32 = 0xff00_0000;
const REVISION_1: u32 = 0x0100_0000;
const REVISION_2: u32 = 0x0200_0000;
const REVISION_3: u32 = 0x0300_0000;
const FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// Capability names by number, as `<linux/capability.h>` has them (up to
/// `CAP_CHECKPOINT_RESTORE`, 40). Higher numbers print as `cap_N`.
const NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The name of capability number `n` (`cap_net_raw` for 13).
pub fn name(n: u32) -> String {
    NAMES
        .get(n as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("cap_{n}"))
}

/// Why an xattr value is not a capability set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("security.capability of {len} bytes is too short for its revision {revision:#x}")]
    Short { len: usize, revision: u32 },
    #[error("security.capability has an unknown revision {0:#010x}")]
    Revision(u32),
}

/// A decoded file capability set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileCaps {
    /// `VFS_CAP_REVISION_N`: 1, 2 or 3.
    pub revision: u8,
    /// Bit N set: capability N is permitted.
    pub permitted: u64,
    pub inheritable: u64,
    /// The effective flag: permitted capabilities are raised at exec.
    pub effective: bool,
    /// Revision 3: the user namespace's root uid the set applies to.
    pub rootid: Option<u32>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decode a raw `security.capability` value.
pub fn decode(raw: &[u8]) -> Result<FileCaps, CapsError> {
    if raw.len() < 4 {
        return Err(CapsError::Short {
            len: raw.len(),
            revision: 0,
        });
    }
    let magic = le32(raw, 0);
    let revision = magic & REVISION_MASK;
    let (words, need, rev) = match revision {
        REVISION_1 => (1, 12, 1),
        REVISION_2 => (2, 20, 2),
        REVISION_3 => (2, 24, 3),
        _ => return Err(CapsError::Revision(magic)),
    };
    if raw.len() < need {
        return Err(CapsError::Short {
            len: raw.len(),
            revision,
        });
    }
    let (mut permitted, mut inheritable) = (0u64, 0u64);
    for w in 0..words {
        permitted |= u64::from(le32(raw, 4 + 8 * w)) << (32 * w);
        inheritable |= u64::from(le32(raw, 8 + 8 * w)) << (32 * w);
    }
    Ok(FileCaps {
        revision: rev,
        permitted,
        inheritable,
        effective: magic & FLAGS_EFFECTIVE != 0,
        rootid: (rev == 3).then(|| le32(raw, 20)),
    })
}

impl FileCaps {
    /// Encode as revision 2 (what `setcap` writes for the initial user
    /// namespace); for tests and fixtures.
    pub fn encode_v2(&self) -> Vec<u8> {
        let magic = REVISION_2 | if self.effective { FLAGS_EFFECTIVE } else { 0 };
        let mut v = magic.to_le_bytes().to_vec();
        for w in 0..2 {
            v.extend_from_slice(&((self.permitted >> (32 * w)) as u32).to_le_bytes());
            v.extend_from_slice(&((self.inheritable >> (32 * w)) as u32).to_le_bytes());
        }
        v
    }

    /// Every capability number in the permitted or inheritable set.
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64).filter(move |n| (self.permitted | self.inheritable) & (1 << n) != 0)
    }

    /// Names of every capability the file grants (permitted or inheritable).
    pub fn names(&self) -> Vec<String> {
        self.numbers().map(name).collect()
    }
}

/// `getcap`'s text form with `+`: capabilities with the same flags grouped,
/// flags in `e`, `i`, `p` order, groups in order of their first capability:
/// `cap_net_admin,cap_net_raw+ep`, `cap_chown+ei cap_kill+p`. A revision 3
/// set names its namespace: `cap_net_raw+ep [rootid=1000]`.
impl fmt::Display for FileCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for n in self.numbers() {
            let bit = 1u64 << n;
            let mut flags = String::new();
            if self.effective {
                flags.push('e');
            }
            if self.inheritable & bit != 0 {
                flags.push('i');
            }
            if self.permitted & bit != 0 {
                flags.push('p');
            }
            match groups.iter_mut().find(|(fl, _)| *fl == flags) {
                Some((_, names)) => names.push(name(n)),
                None => groups.push((flags, vec![name(n)])),
            }
        }
        if groups.is_empty() {
            f.write_str("(no capabilities)")?;
        }
        for (i, (flags, names)) in groups.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}+{flags}", names.join(","))?;
        }
        if let Some(id) = self.rootid.filter(|&id| id != 0) {
            write!(f, " [rootid={id}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_setcap_writes() {
        // `setcap cap_net_raw+ep FILE` on this kernel: revision 2, effective.
        let raw = [
            0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let c = decode(&raw).unwrap();
        assert_eq!(c.permitted, 1 << 13);
        assert!(c.effective);
        assert_eq!(c.to_string(), "cap_net_raw+ep");
        assert_eq!(c.encode_v2(), raw);
    }

    #[test]
    fn groups_flags_and_names_high_capabilities() {
        let c = FileCaps {
            revision: 2,
            permitted: (1 << 12) | (1 << 13) | (1 << 40),
            inheritable: 1 << 5,
            effective: false,
            rootid: None,
        };
        assert_eq!(
            c.to_string(),
            "cap_kill+i cap_net_admin,cap_net_raw,cap_checkpoint_restore+p"
        );
        assert_eq!(decode(&c.encode_v2()).unwrap(), c);
        assert_eq!(name(41), "cap_41");
    }

    #[test]
    fn revision_3_carries_the_root_id_and_short_values_fail() {
        let mut raw = FileCaps {
            revision: 2,
            permitted: 1 << 10,
            inheritable: 0,
            effective: true,
            rootid: None,
        }
        .encode_v2();
        raw[3] = 0x03;
        raw.extend_from_slice(&1000u32.to_le_bytes());
        let c = decode(&raw).unwrap();
        assert_eq!(
            (c.revision, c.rootid, c.to_string().as_str()),
            (3, Some(1000), "cap_net_bind_service+ep [rootid=1000]")
        );
        assert!(matches!(
            decode(&raw[..20]),
            Err(CapsError::Short { len: 20, .. })
        ));
        assert!(matches!(decode(&[0, 0, 0, 9]), Err(CapsError::Revision(_))));
        // Revision 1: one word.
        let v1 = [0x00, 0, 0, 0x01, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&v1).unwrap().to_string(), "cap_setuid+p");
    }
}
