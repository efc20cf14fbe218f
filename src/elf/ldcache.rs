//! `/etc/ld.so.cache`, the binary index ldconfig writes and glibc's ld.so
//! reads (ld.so never reads `ld.so.conf` itself: it only matters through the
//! cache).
//!
//! Three layouts exist, and ld.so reads all three:
//! - new (`glibc-ld.so.cache1.1`, the default since glibc 2.32): a 48-byte
//!   header, 24-byte entries (flags, key, value, osversion, hwcap), a string
//!   table whose offsets count from the start of the header, and an optional
//!   extension directory (magic `0xeaa42174`) whose `glibc-hwcaps` section
//!   names the subdirectories that entries flagged `DL_CACHE_HWCAP_EXTENSION`
//!   live in;
//! - old (`ld.so-1.7.0`): a 16-byte header, 12-byte entries (flags, key,
//!   value), string offsets counting from the end of the entries;
//! - compat: an old cache followed (8-byte aligned) by a complete new one,
//!   which then wins.
//!
//! Lookups replicate glibc 2.36's `search_cache`: a binary search with
//! `_dl_cache_libcmp` (digit runs compare as numbers), then a scan of the
//! entries sharing the name for the best usable one. See docs/elf.md.

use std::cmp::Ordering;

const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
const TAG_GLIBC_HWCAPS: u32 = 1;

/// `DL_CACHE_HWCAP_EXTENSION`: the low 32 bits of `hwcap` index the
/// glibc-hwcaps subdirectory list.
pub const HWCAP_EXTENSION: u64 = 1 << 62;
/// Bits 32..42 of `hwcap` in an extension entry: the x86 ISA level.
const ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
/// Legacy hwcap bits glibc 2.36 never excludes: the TLS bit and, on x86,
/// the platform bits 48.. (`_DL_HWCAP_PLATFORM`).
const HWCAP_TLS: u64 = 1 << 63;
const X86_PLATFORM_SHIFT: u32 = 48;
const X86_PLATFORMS: [&str; 2] = ["haswell", "xeon_phi"];

/// `FLAG_ELF_LIBC6`.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;

/// Which layout a cache file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Old,
    New,
    /// Old entries followed by a new cache (the new part is used).
    Compat,
}

/// One entry, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    /// The library name looked up (`libz.so.1`).
    pub key: Vec<u8>,
    /// The path ld.so opens.
    pub value: Vec<u8>,
    pub osversion: u32,
    pub hwcap: u64,
}

impl Entry {
    /// The glibc-hwcaps subdirectory index, for an extension entry.
    pub fn hwcaps_index(&self) -> Option<u32> {
        ((self.hwcap >> 32) & !ISA_LEVEL_MASK == HWCAP_EXTENSION >> 32).then_some(self.hwcap as u32)
    }

    fn isa_level(&self) -> u32 {
        ((self.hwcap >> 32) & ISA_LEVEL_MASK) as u32
    }
}

/// What the loader asking matches entries against.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    /// Which `flags` values the loader accepts, and which one ends the search.
    pub flags: Flags,
    /// Active glibc-hwcaps subdirectories, highest priority first.
    pub hwcaps: &'a [String],
    /// The CPU's x86-64 ISA level (0 baseline … 3 = v4) for entries marked
    /// with one.
    pub isa_level: u32,
    /// Legacy hwcaps (glibc < 2.37): the CPU's masked hwcap bits and
    /// platform; `None` skips every legacy-hwcap entry, as glibc ≥ 2.37 does.
    pub legacy: Option<Legacy>,
}

/// Legacy hwcap matching for glibc < 2.37.
#[derive(Clone, Copy, Debug)]
pub struct Legacy {
    /// `dl_hwcap & hwcap_mask`.
    pub hwcap: u64,
    /// `1 << _dl_string_platform (dl_platform)`, when the platform is one glibc
    /// numbers (x86: haswell, xeon_phi).
    pub platform: Option<u64>,
}

impl Legacy {
    /// The platform bit glibc gives an x86 platform name, if any.
    pub fn x86_platform_bit(platform: &str) -> Option<u64> {
        X86_PLATFORMS
            .iter()
            .position(|p| *p == platform)
            .map(|i| 1u64 << (X86_PLATFORM_SHIFT + i as u32))
    }
}

/// `_dl_cache_check_flags` and `_DL_CACHE_DEFAULT_ID` of one architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub default: i32,
    /// Another accepted value (generic glibc also takes `FLAG_ELF` = 1).
    pub also: Option<i32>,
}

impl Flags {
    /// The flags glibc accepts for objects of this class and machine.
    pub fn for_machine(class64: bool, machine: u16) -> Flags {
        use goblin::elf::header::{EM_386, EM_AARCH64, EM_PPC64, EM_S390, EM_X86_64};
        let arch = match (class64, machine) {
            (true, EM_X86_64) => 0x0300,
            (false, EM_X86_64) => 0x0800,
            (true, EM_AARCH64) => 0x0a00,
            (true, EM_PPC64) => 0x0500,
            (true, EM_S390) => 0x0400,
            (false, EM_386) => {
                return Flags {
                    default: FLAG_ELF_LIBC6,
                    also: Some(1),
                }
            }
            _ => {
                return Flags {
                    default: FLAG_ELF_LIBC6,
                    also: Some(1),
                }
            }
        };
        Flags {
            default: FLAG_ELF_LIBC6 | arch,
            also: None,
        }
    }

    fn accepts(self, f: i32) -> bool {
        f == self.default || Some(f) == self.also
    }
}

/// A parsed cache, holding the file's bytes.
#[derive(Clone, Debug)]
pub struct LdCache {
    data: Vec<u8>,
    format: Format,
    /// Where the entries start, how many, and how big each is.
    entries_at: usize,
    nlibs: usize,
    entry_size: usize,
    /// String offsets count from here; valid offsets are below `strings_len`.
    strings_at: usize,
    strings_len: usize,
    /// glibc-hwcaps subdirectory names, by index.
    hwcaps: Vec<Vec<u8>>,
}

impl LdCache {
    /// Parse cache bytes, or `None` when ld.so would not use them (unknown
    /// magic, truncated, wrong byte order).
    pub fn parse(data: Vec<u8>) -> Option<LdCache> {
        if data.len() > NEW_HEADER && data.starts_with(MAGIC_NEW) {
            let nlibs = u32_at(&data, 20)? as usize;
            if (data.len() - NEW_HEADER) / NEW_ENTRY < nlibs || !endian_ok(data[28]) {
                return None;
            }
            let hwcaps = hwcaps_section(&data, u32_at(&data, 32)? as usize, 0);
            let strings_len = data.len();
            return Some(LdCache {
                data,
                format: Format::New,
                entries_at: NEW_HEADER,
                nlibs,
                entry_size: NEW_ENTRY,
                strings_at: 0,
                strings_len,
                hwcaps,
            });
        }
        if data.len() > OLD_HEADER && data.starts_with(MAGIC_OLD) {
            let nlibs = u32_at(&data, 12)? as usize;
            if (data.len() - OLD_HEADER) / OLD_ENTRY < nlibs {
                return None;
            }
            let end = OLD_HEADER + nlibs * OLD_ENTRY;
            let new_at = end.next_multiple_of(8);
            if data.len() >= new_at + NEW_HEADER && data[new_at..].starts_with(MAGIC_NEW) {
                if !endian_ok(data[new_at + 28]) {
                    return None;
                }
                let nnew = u32_at(&data, new_at + 20)? as usize;
                if (data.len() - new_at - NEW_HEADER) / NEW_ENTRY < nnew {
                    return None;
                }
                let strings_len = data.len() - new_at;
                // The extension directory and its sections are at file
                // offsets; the names, like every string, count from the new
                // header (as ldconfig writes them).
                let hwcaps = hwcaps_section(&data, u32_at(&data, new_at + 32)? as usize, new_at);
                return Some(LdCache {
                    data,
                    format: Format::Compat,
                    entries_at: new_at + NEW_HEADER,
                    nlibs: nnew,
                    entry_size: NEW_ENTRY,
                    strings_at: new_at,
                    strings_len,
                    hwcaps,
                });
            }
            let strings_len = data.len() - end;
            return Some(LdCache {
                data,
                format: Format::Old,
                entries_at: OLD_HEADER,
                nlibs,
                entry_size: OLD_ENTRY,
                strings_at: end,
                strings_len,
                hwcaps: Vec::new(),
            });
        }
        None
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The glibc-hwcaps subdirectory names the cache knows, by index.
    pub fn hwcaps_subdirs(&self) -> &[Vec<u8>] {
        &self.hwcaps
    }

    /// Every entry, in file order (entries with bogus offsets are skipped).
    pub fn entries(&self) -> Vec<Entry> {
        (0..self.nlibs).filter_map(|i| self.entry(i)).collect()
    }

    fn raw(&self, i: usize) -> (i32, u32, u32, u32, u64) {
        let at = self.entries_at + i * self.entry_size;
        let d = &self.data;
        let flags = u32_at(d, at).unwrap_or(0) as i32;
        let key = u32_at(d, at + 4).unwrap_or(u32::MAX);
        let value = u32_at(d, at + 8).unwrap_or(u32::MAX);
        if self.entry_size == NEW_ENTRY {
            (
                flags,
                key,
                value,
                u32_at(d, at + 12).unwrap_or(0),
                u64_at(d, at + 16).unwrap_or(0),
            )
        } else {
            (flags, key, value, 0, 0)
        }
    }

    fn string(&self, off: u32) -> Option<&[u8]> {
        let off = off as usize;
        if off >= self.strings_len {
            return None;
        }
        let s = self.data.get(self.strings_at + off..)?;
        Some(&s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())])
    }

    fn entry(&self, i: usize) -> Option<Entry> {
        let (flags, key, value, osversion, hwcap) = self.raw(i);
        Some(Entry {
            flags,
            key: self.string(key)?.to_vec(),
            value: self.string(value)?.to_vec(),
            osversion,
            hwcap,
        })
    }

    /// The path ld.so would try for `name`, or `None`.
    pub fn lookup(&self, name: &[u8], q: &Query) -> Option<&[u8]> {
        if self.nlibs == 0 {
            return None;
        }
        let (mut left, mut right) = (0i64, self.nlibs as i64 - 1);
        while left <= right {
            let mut middle = (left + right) / 2;
            let key = self.string(self.raw(middle as usize).1)?;
            match libcmp(name, key) {
                Ordering::Equal => {
                    left = middle;
                    while middle > 0 {
                        match self.string(self.raw(middle as usize - 1).1) {
                            Some(k) if libcmp(name, k) == Ordering::Equal => middle -= 1,
                            _ => break,
                        }
                    }
                    return self.best(name, middle as usize, left as usize, right as usize, q);
                }
                // ldconfig sorts in descending order.
                Ordering::Less => left = middle + 1,
                Ordering::Greater => right = middle - 1,
            }
        }
        None
    }

    /// The scan over the entries named `name`, from `first`; `known` is the
    /// last index already known to carry the name.
    fn best(
        &self,
        name: &[u8],
        first: usize,
        known: usize,
        right: usize,
        q: &Query,
    ) -> Option<&[u8]> {
        let mut best: Option<&[u8]> = None;
        let mut best_priority = 0u32;
        for i in first..=right {
            let (flags, key, value, osversion, hwcap) = self.raw(i);
            if i > known
                && self
                    .string(key)
                    .is_none_or(|k| libcmp(name, k) != Ordering::Equal)
            {
                break;
            }
            if !q.flags.accepts(flags) {
                continue;
            }
            let Some(path) = self.string(value) else {
                continue;
            };
            let mut named = false;
            if self.entry_size == NEW_ENTRY {
                let e = Entry {
                    flags,
                    key: Vec::new(),
                    value: Vec::new(),
                    osversion,
                    hwcap,
                };
                let index = e.hwcaps_index();
                named = index.is_some();
                if named && e.isa_level() > q.isa_level {
                    continue;
                }
                // Named-hwcap entries sort first; once past them, a match
                // found among them wins.
                if !named && best.is_some() {
                    break;
                }
                if !named && hwcap != 0 {
                    let Some(legacy) = q.legacy else { continue };
                    let platform_bits = ((1u64 << X86_PLATFORMS.len()) - 1) << X86_PLATFORM_SHIFT;
                    if hwcap & !(legacy.hwcap | platform_bits | HWCAP_TLS) != 0 {
                        continue;
                    }
                    if hwcap & platform_bits != 0 && Some(hwcap & platform_bits) != legacy.platform
                    {
                        continue;
                    }
                }
                if let Some(index) = index {
                    let priority = self.priority(index, q.hwcaps);
                    if priority == 0 || (best.is_some() && priority >= best_priority) {
                        continue;
                    }
                    best_priority = priority;
                }
            }
            best = Some(path);
            if !named && flags == q.flags.default {
                break;
            }
        }
        best
    }

    /// glibc's `glibc_hwcaps_priority`: 1 for the best active subdirectory,
    /// 0 for one the CPU does not support.
    fn priority(&self, index: u32, active: &[String]) -> u32 {
        let Some(name) = self.hwcaps.get(index as usize) else {
            return 0;
        };
        active
            .iter()
            .position(|a| a.as_bytes() == name.as_slice())
            .map_or(0, |p| p as u32 + 1)
    }
}

/// `cache_file_new_matches_endian`: unset (0) or little (2) on this
/// little-endian reader.
fn endian_ok(flags: u8) -> bool {
    matches!(flags & 3, 0 | 2)
}

fn hwcaps_section(data: &[u8], ext: usize, strings_at: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if ext == 0 || u32_at(data, ext) != Some(EXTENSION_MAGIC) {
        return out;
    }
    let count = u32_at(data, ext + 4).unwrap_or(0) as usize;
    for s in 0..count.min(64) {
        let at = ext + 8 + s * 16;
        let (Some(tag), Some(off), Some(size)) = (
            u32_at(data, at),
            u32_at(data, at + 8),
            u32_at(data, at + 12),
        ) else {
            break;
        };
        if tag != TAG_GLIBC_HWCAPS {
            continue;
        }
        // A corrupt size must not make us walk gigabytes.
        let n = (size as usize / 4).min(data.len().saturating_sub(off as usize) / 4);
        for i in 0..n {
            let name = u32_at(data, off as usize + i * 4)
                .and_then(|o| data.get(strings_at + o as usize..))
                .map(|s| s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())].to_vec())
                .unwrap_or_default();
            out.push(name);
        }
    }
    out
}

/// glibc's `_dl_cache_libcmp`: like `strcmp`, except that runs of digits
/// compare by value and sort after any non-digit.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let (ca, cb) = (a[i], b.get(j).copied().unwrap_or(0));
        if ca.is_ascii_digit() {
            if !cb.is_ascii_digit() {
                return Ordering::Greater;
            }
            let (mut va, mut vb) = (0u64, 0u64);
            while i < a.len() && a[i].is_ascii_digit() {
                va = va.wrapping_mul(10).wrapping_add((a[i] - b'0') as u64);
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                vb = vb.wrapping_mul(10).wrapping_add((b[j] - b'0') as u64);
                j += 1;
            }
            if va != vb {
                return va.cmp(&vb);
            }
        } else if cb.is_ascii_digit() {
            return Ordering::Less;
        } else if ca != cb {
            return ca.cmp(&cb);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&b.get(j).copied().unwrap_or(0))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const X86_64: Flags = Flags {
        default: 0x0303,
        also: None,
    };

    /// Build an old-format cache from (flags, key, value) rows, sorted as
    /// ldconfig sorts them (descending by libcmp).
    pub fn old_cache(rows: &[(i32, &str, &str)]) -> Vec<u8> {
        let mut out = MAGIC_OLD.to_vec();
        out.push(0);
        out.extend((rows.len() as u32).to_le_bytes());
        let mut strings = Vec::new();
        let mut entries = Vec::new();
        for (flags, key, value) in rows {
            let k = strings.len() as u32;
            strings.extend(key.as_bytes());
            strings.push(0);
            let v = strings.len() as u32;
            strings.extend(value.as_bytes());
            strings.push(0);
            entries.extend(flags.to_le_bytes());
            entries.extend(k.to_le_bytes());
            entries.extend(v.to_le_bytes());
        }
        out.extend(entries);
        out.extend(strings);
        out
    }

    /// Build a new-format cache with a glibc-hwcaps extension.
    pub fn new_cache(rows: &[(i32, &str, &str, u64)], hwcaps: &[&str]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut offs = Vec::new();
        let base = NEW_HEADER + rows.len() * NEW_ENTRY;
        let add = |s: &str, strings: &mut Vec<u8>| {
            let o = (base + strings.len()) as u32;
            strings.extend(s.as_bytes());
            strings.push(0);
            o
        };
        for (_, k, v, _) in rows {
            offs.push((add(k, &mut strings), add(v, &mut strings)));
        }
        let hw_offs: Vec<u32> = hwcaps.iter().map(|h| add(h, &mut strings)).collect();
        while (base + strings.len()) % 4 != 0 {
            strings.push(0);
        }
        let array_at = (base + strings.len()) as u32;
        let ext_at = array_at + 4 * hw_offs.len() as u32;
        let mut out = MAGIC_NEW.to_vec();
        out.extend((rows.len() as u32).to_le_bytes());
        out.extend((strings.len() as u32).to_le_bytes());
        out.extend([2, 0, 0, 0]);
        out.extend(ext_at.to_le_bytes());
        out.extend([0u8; 12]);
        for ((flags, _, _, hwcap), (k, v)) in rows.iter().zip(&offs) {
            out.extend(flags.to_le_bytes());
            out.extend(k.to_le_bytes());
            out.extend(v.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(hwcap.to_le_bytes());
        }
        out.extend(strings);
        for o in &hw_offs {
            out.extend(o.to_le_bytes());
        }
        out.extend(EXTENSION_MAGIC.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(
            [TAG_GLIBC_HWCAPS, 0, array_at, 4 * hw_offs.len() as u32]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        out
    }

    fn q(hwcaps: &[String]) -> Query<'_> {
        Query {
            flags: X86_64,
            hwcaps,
            isa_level: 3,
            legacy: None,
        }
    }

    #[test]
    fn libcmp_compares_digit_runs_by_value() {
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"libfoo.so.01", b"libfoo.so.1"), Ordering::Equal);
        assert_eq!(libcmp(b"libfoo.so", b"libfoo.so.1"), Ordering::Less);
        assert_eq!(libcmp(b"lib2", b"liba"), Ordering::Greater);
    }

    #[test]
    fn old_format_lookup() {
        // ldconfig sorts descending.
        let data = old_cache(&[
            (0x0303, "libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
            (0x0003, "libz.so.1", "/usr/lib/i386-linux-gnu/libz.so.1"),
            (0x0303, "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
            (
                0x0303,
                "libBrokenLocale.so.1",
                "/lib/x86_64-linux-gnu/libBrokenLocale.so.1",
            ),
        ]);
        let c = LdCache::parse(data).unwrap();
        assert_eq!(c.format(), Format::Old);
        assert_eq!(c.entries().len(), 4);
        assert_eq!(
            c.lookup(b"libz.so.1", &q(&[])),
            Some(&b"/usr/lib/x86_64-linux-gnu/libz.so.1"[..])
        );
        assert_eq!(
            c.lookup(b"libc.so.6", &q(&[])),
            Some(&b"/lib/x86_64-linux-gnu/libc.so.6"[..])
        );
        assert_eq!(c.lookup(b"libnope.so", &q(&[])), None);
        let i386 = Query {
            flags: Flags::for_machine(false, goblin::elf::header::EM_386),
            hwcaps: &[],
            isa_level: 0,
            legacy: None,
        };
        assert_eq!(
            c.lookup(b"libz.so.1", &i386),
            Some(&b"/usr/lib/i386-linux-gnu/libz.so.1"[..])
        );
        assert_eq!(c.lookup(b"libc.so.6", &i386), None);
    }

    #[test]
    fn new_format_prefers_best_supported_hwcaps_subdir() {
        let data = new_cache(
            &[
                (
                    0x0303,
                    "libm.so.6",
                    "/lib/glibc-hwcaps/x86-64-v3/libm.so.6",
                    HWCAP_EXTENSION | 1,
                ),
                (
                    0x0303,
                    "libm.so.6",
                    "/lib/glibc-hwcaps/x86-64-v2/libm.so.6",
                    HWCAP_EXTENSION,
                ),
                (0x0303, "libm.so.6", "/lib/libm.so.6", 0),
                (0x0303, "libc.so.6", "/lib/libc.so.6", 0),
                (
                    0x0303,
                    "libBrokenLocale.so.1",
                    "/lib/libBrokenLocale.so.1",
                    0,
                ),
            ],
            &["x86-64-v2", "x86-64-v3"],
        );
        let c = LdCache::parse(data).unwrap();
        assert_eq!(c.format(), Format::New);
        assert_eq!(
            c.hwcaps_subdirs(),
            [b"x86-64-v2".to_vec(), b"x86-64-v3".to_vec()]
        );
        let v4: Vec<String> = ["x86-64-v4", "x86-64-v3", "x86-64-v2"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            c.lookup(b"libm.so.6", &q(&v4)),
            Some(&b"/lib/glibc-hwcaps/x86-64-v3/libm.so.6"[..])
        );
        let v2: Vec<String> = vec!["x86-64-v2".into()];
        assert_eq!(
            c.lookup(b"libm.so.6", &q(&v2)),
            Some(&b"/lib/glibc-hwcaps/x86-64-v2/libm.so.6"[..])
        );
        assert_eq!(
            c.lookup(b"libm.so.6", &q(&[])),
            Some(&b"/lib/libm.so.6"[..])
        );
        assert_eq!(
            c.lookup(b"libc.so.6", &q(&v4)),
            Some(&b"/lib/libc.so.6"[..])
        );
        // An entry marked for a higher ISA level than the CPU's is skipped.
        let data = new_cache(
            &[
                (
                    0x0303,
                    "libx.so",
                    "/v3/libx.so",
                    HWCAP_EXTENSION | (2 << 32),
                ),
                (0x0303, "libx.so", "/libx.so", 0),
            ],
            &["x86-64-v3"],
        );
        let c = LdCache::parse(data).unwrap();
        let v3: Vec<String> = vec!["x86-64-v3".into()];
        assert_eq!(
            c.lookup(
                b"libx.so",
                &Query {
                    isa_level: 1,
                    ..q(&v3)
                }
            ),
            Some(&b"/libx.so"[..])
        );
        assert_eq!(
            c.lookup(
                b"libx.so",
                &Query {
                    isa_level: 2,
                    ..q(&v3)
                }
            ),
            Some(&b"/v3/libx.so"[..])
        );
    }

    #[test]
    fn compat_format_uses_the_new_part() {
        // An old header and entry (whose strings would live in the new
        // part), then the new cache, 8-byte aligned.
        let mut data = MAGIC_OLD.to_vec();
        data.push(0);
        data.extend(1u32.to_le_bytes());
        data.extend([0x0303i32.to_le_bytes(), [0; 4], [0; 4]].concat());
        while data.len() % 8 != 0 {
            data.push(0);
        }
        data.extend(new_cache(
            &[(0x0303, "libz.so.1", "/new/libz.so.1", 0)],
            &[],
        ));
        let c = LdCache::parse(data).unwrap();
        assert_eq!(c.format(), Format::Compat);
        assert_eq!(
            c.lookup(b"libz.so.1", &q(&[])),
            Some(&b"/new/libz.so.1"[..])
        );
    }

    #[test]
    fn corrupted_caches_never_panic() {
        let data = new_cache(
            &[
                (0x0303, "libm.so.6", "/v2/libm.so.6", HWCAP_EXTENSION),
                (0x0303, "libm.so.6", "/libm.so.6", 0),
            ],
            &["x86-64-v2"],
        );
        let hw = vec!["x86-64-v2".to_string()];
        for at in 0..data.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut d = data.clone();
                d[at] = v;
                if let Some(c) = LdCache::parse(d.clone()) {
                    let _ = (c.lookup(b"libm.so.6", &q(&hw)), c.entries());
                }
                d.truncate(at);
                let _ = LdCache::parse(d).map(|c| c.lookup(b"libm.so.6", &q(&hw)).is_some());
            }
        }
    }

    #[test]
    fn garbage_is_no_cache() {
        assert!(
            LdCache::parse(b"not a cache at all, but long enough to have a header".to_vec())
                .is_none()
        );
        let mut data = old_cache(&[(0x0303, "libz.so.1", "/x")]);
        data.truncate(20);
        assert!(LdCache::parse(data).is_none());
    }
}
