//! A minimal target BTF for the ebpf backend's CO-RE relocations.
//!
//! aya relocates the object's CO-RE field accesses against the kernel's
//! BTF; by default it parses all of `/sys/kernel/btf/vmlinux` (about 5 MB,
//! ~20 MB of parsed types) on every load, which was a third of the
//! backend's setup time. The relocations only need the kernel's
//! definitions of the structs the object names, so this module scans the
//! kernel's BTF once, without building its types (one pass that records
//! where each type record starts), and writes a small valid BTF blob with:
//!
//! - every kernel struct or union whose name is a struct or union of the
//!   object's own `.BTF` section (with a `___flavor` suffix removed, as
//!   CO-RE does), so the C can read new structs without touching this file;
//! - all their members, with the kernel's offsets and bitfield bits, and the
//!   member types projected recursively: embedded structs and unions,
//!   typedefs, modifiers, arrays, ints, enums and floats are kept whole;
//! - a pointer keeps its target when that is one of the wanted structs
//!   and otherwise points to `void`. CO-RE's field compatibility only asks
//!   that a pointer meets a pointer (libbpf's and aya's
//!   `fields_are_compatible`), and every pointer the object follows starts a
//!   new relocation rooted at a wanted struct, found by name.
//!
//! Anything unexpected (a bad header, a truncated record, an unknown kind, a
//! reference out of range) is a [`BtfError`]; the loader then falls back
//! to aya's full parse ([`target`]), so the optimisation never breaks a trace.
//!
//! [`loader`] makes an `EbpfLoader` without its eager full parse:
//! `EbpfLoader::new()` (aya 0.13) always reads `/sys/kernel/btf/vmlinux`,
//! so it runs on a short-lived thread that has its own mount namespace
//! with an empty tmpfs over `/sys/kernel/btf`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use aya::{Btf, EbpfLoader, Endianness};

/// Where the kernel publishes its BTF.
pub use crate::sys::kernel_btf::VMLINUX;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("{what}: not BTF (bad magic, version or header)")]
    Header { what: String },
    #[error("{what}: truncated at byte {at} ({part})")]
    Truncated {
        what: String,
        at: usize,
        part: &'static str,
    },
    #[error("{what}: type {id} has unknown kind {kind}")]
    UnknownKind { what: String, id: u32, kind: u32 },
    #[error("{what}: type {id} refers to type {to}, out of range")]
    BadReference { what: String, id: u32, to: u32 },
    #[error("{what}: a struct member reaches type {id} of kind {kind}, unexpected there")]
    Unexpected { what: String, id: u32, kind: u32 },
    #[error("{what}: {cause}")]
    Elf { what: String, cause: String },
    #[error("{what}: no .BTF section")]
    NoSection { what: String },
}

/// One BTF blob, scanned: where each type record starts. Nothing parsed.
struct Scanned<'a> {
    what: &'a str,
    types: &'a [u8],
    strings: &'a [u8],
    /// `starts[id - 1]`: offset of type `id`'s record in `types`.
    starts: Vec<usize>,
    /// The named structs and unions: (id, name offset).
    composites: Vec<(u32, u32)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The size of the kind-specific data after a type's 12-byte common part.
fn trailer(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        KIND_INT => 4,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        KIND_VAR | KIND_DECL_TAG => 4,
        _ => return None,
    })
}

impl<'a> Scanned<'a> {
    fn scan(what: &'a str, blob: &'a [u8]) -> Result<Self, BtfError> {
        let header = || BtfError::Header { what: what.into() };
        if u16_at(blob, 0) != Some(MAGIC) || blob.get(2) != Some(&1) {
            return Err(header());
        }
        let hdr_len = u32_at(blob, 4).ok_or_else(header)? as usize;
        let field = |at| u32_at(blob, at).map(|v| v as usize).ok_or_else(header);
        let (type_off, type_len) = (field(8)?, field(12)?);
        let (str_off, str_len) = (field(16)?, field(20)?);
        if hdr_len < HEADER_LEN {
            return Err(header());
        }
        let section = |off: usize, len: usize, part| {
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= blob.len() => Ok(&blob[s..e]),
                _ => Err(BtfError::Truncated {
                    what: what.into(),
                    at: blob.len(),
                    part,
                }),
            }
        };
        let types = section(type_off, type_len, "type section")?;
        let strings = section(str_off, str_len, "string section")?;
        // A record is 12 bytes and more: a bound, not a guess.
        let mut starts = Vec::with_capacity(types.len() / 12);
        let mut composites = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let truncated = || BtfError::Truncated {
                what: what.into(),
                at,
                part: "type record",
            };
            let info = u32_at(types, at + 4).ok_or_else(truncated)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let id = starts.len() as u32 + 1;
            let extra = trailer(kind, vlen).ok_or_else(|| BtfError::UnknownKind {
                what: what.into(),
                id,
                kind,
            })?;
            let end = at + 12 + extra;
            if end > types.len() {
                return Err(truncated());
            }
            if matches!(kind, KIND_STRUCT | KIND_UNION) {
                let name_off = u32_at(types, at).unwrap_or(0);
                if name_off != 0 {
                    composites.push((id, name_off));
                }
            }
            starts.push(at);
            at = end;
        }
        Ok(Scanned {
            what,
            types,
            strings,
            starts,
            composites,
        })
    }

    fn record(&self, id: u32) -> Result<Record<'a>, BtfError> {
        let at = *self
            .starts
            .get((id as usize).wrapping_sub(1))
            .ok_or_else(|| BtfError::BadReference {
                what: self.what.into(),
                id,
                to: id,
            })?;
        let w = |i: usize| u32_at(self.types, at + 4 * i).unwrap_or(0);
        let info = w(1);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let len = 12 + trailer(kind, vlen).unwrap_or(0);
        Ok(Record {
            name_off: w(0),
            kind,
            vlen,
            size_or_type: w(2),
            bytes: &self.types[at..at + len],
        })
    }

    fn string(&self, off: u32) -> &'a [u8] {
        let tail = self.strings.get(off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    fn len(&self) -> u32 {
        self.starts.len() as u32
    }
}

struct Record<'a> {
    name_off: u32,
    kind: u32,
    vlen: usize,
    size_or_type: u32,
    bytes: &'a [u8],
}

impl Record<'_> {
    fn word(&self, i: usize) -> u32 {
        u32_at(self.bytes, 4 * i).unwrap_or(0)
    }
}

/// `task_struct___old` → `task_struct` (CO-RE's flavours).
fn flavorless(name: &[u8]) -> &[u8] {
    name.windows(3)
        .position(|w| w == b"___")
        .map_or(name, |i| &name[..i])
}

/// The names of the structs and unions in an object's `.BTF` section: the
/// types its CO-RE relocations may be rooted at.
pub fn wanted_names(object: &[u8]) -> Result<BTreeSet<Vec<u8>>, BtfError> {
    let what = "the BPF object";
    let elf = goblin::elf::Elf::parse(object).map_err(|e| BtfError::Elf {
        what: what.into(),
        cause: e.to_string(),
    })?;
    let sh = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".BTF"))
        .ok_or_else(|| BtfError::NoSection { what: what.into() })?;
    let range = sh
        .file_range()
        .ok_or_else(|| BtfError::NoSection { what: what.into() })?;
    let blob = object.get(range).ok_or_else(|| BtfError::Truncated {
        what: what.into(),
        at: object.len(),
        part: ".BTF section",
    })?;
    let local = Scanned::scan(what, blob)?;
    Ok(local
        .composites
        .iter()
        .map(|&(_, name)| flavorless(local.string(name)).to_vec())
        .filter(|name| !name.is_empty())
        .collect())
}

/// The kernel's structs and unions named in `wanted`, projected into a
/// small BTF blob (see the module's documentation).
pub fn project(vmlinux: &[u8], wanted: &BTreeSet<Vec<u8>>) -> Result<Vec<u8>, BtfError> {
    let k = Scanned::scan(VMLINUX, vmlinux)?;
    let bad = |id, to| BtfError::BadReference {
        what: VMLINUX.into(),
        id,
        to,
    };
    let roots: Vec<u32> = k
        .composites
        .iter()
        .filter(|&&(_, name)| wanted.contains(k.string(name)))
        .map(|&(id, _)| id)
        .collect();
    // The kept types; a pointer's entry is the type it points to (0: void).
    let mut kept: BTreeMap<u32, u32> = BTreeMap::new();
    let mut todo = roots;
    while let Some(id) = todo.pop() {
        if id == 0 || kept.contains_key(&id) {
            continue;
        }
        if id > k.len() {
            return Err(bad(id, id));
        }
        let r = k.record(id)?;
        let mut target = 0;
        match r.kind {
            KIND_INT | KIND_FLOAT | KIND_FWD | KIND_ENUM | KIND_ENUM64 => {}
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                todo.push(r.size_or_type)
            }
            KIND_ARRAY => todo.extend([r.word(3), r.word(4)]),
            KIND_STRUCT | KIND_UNION => todo.extend((0..r.vlen).map(|i| r.word(3 + 3 * i + 1))),
            KIND_PTR => {
                target = pointee(&k, r.size_or_type, wanted)?;
                todo.push(target);
            }
            kind => {
                return Err(BtfError::Unexpected {
                    what: VMLINUX.into(),
                    id,
                    kind,
                })
            }
        }
        kept.insert(id, target);
    }
    let new_id: HashMap<u32, u32> = kept
        .keys()
        .enumerate()
        .map(|(i, &old)| (old, i as u32 + 1))
        .collect();
    let map = |id: u32, from: u32| -> Result<u32, BtfError> {
        if id == 0 {
            return Ok(0);
        }
        new_id.get(&id).copied().ok_or_else(|| bad(from, id))
    };
    let mut strings = Strings::default();
    let mut types = Vec::new();
    for (&id, &target) in &kept {
        let r = k.record(id)?;
        let mut words: Vec<u32> = r
            .bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        words[0] = strings.add(k.string(r.name_off));
        match r.kind {
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                words[2] = map(words[2], id)?
            }
            KIND_PTR => words[2] = map(target, id)?,
            KIND_ARRAY => {
                words[3] = map(words[3], id)?;
                words[4] = map(words[4], id)?;
            }
            KIND_STRUCT | KIND_UNION => {
                for i in 0..r.vlen {
                    let m = 3 + 3 * i;
                    words[m] = strings.add(k.string(words[m]));
                    words[m + 1] = map(words[m + 1], id)?;
                }
            }
            KIND_ENUM => {
                for i in 0..r.vlen {
                    words[3 + 2 * i] = strings.add(k.string(words[3 + 2 * i]));
                }
            }
            KIND_ENUM64 => {
                for i in 0..r.vlen {
                    words[3 + 3 * i] = strings.add(k.string(words[3 + 3 * i]));
                }
            }
            _ => {}
        }
        types.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + strings.bytes.len());
    out.extend(MAGIC.to_le_bytes());
    out.extend([1, 0]);
    for w in [
        HEADER_LEN as u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.bytes.len() as u32,
    ] {
        out.extend(w.to_le_bytes());
    }
    out.extend(types);
    out.extend(strings.bytes);
    Ok(out)
}

/// What a pointer to `id` keeps pointing to: a wanted struct or union
/// (through typedefs and modifiers), else void.
fn pointee(k: &Scanned, mut id: u32, wanted: &BTreeSet<Vec<u8>>) -> Result<u32, BtfError> {
    // A chain of typedefs and modifiers is short; bound it against loops.
    for _ in 0..32 {
        if id == 0 {
            return Ok(0);
        }
        let r = k.record(id)?;
        match r.kind {
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                id = r.size_or_type
            }
            KIND_STRUCT | KIND_UNION if wanted.contains(k.string(r.name_off)) => return Ok(id),
            _ => return Ok(0),
        }
    }
    Ok(0)
}

/// A string section being built: "" first, each string once.
struct Strings {
    bytes: Vec<u8>,
    at: HashMap<Vec<u8>, u32>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            bytes: vec![0],
            at: HashMap::from([(Vec::new(), 0)]),
        }
    }
}

impl Strings {
    fn add(&mut self, s: &[u8]) -> u32 {
        if let Some(&at) = self.at.get(s) {
            return at;
        }
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(s);
        self.bytes.push(0);
        self.at.insert(s.to_vec(), at);
        at
    }
}

/// The target BTF the loader relocates against, and how it was made.
pub enum Target {
    /// The projection of the kernel's BTF onto the object's structs.
    Minimal(Btf),
    /// aya's parse of the whole kernel BTF, because the projection failed
    /// (the reason, for a warning).
    Full(Btf, String),
    /// Neither worked (the reasons): the backend cannot relocate its
    /// kernel reads and refuses to start.
    None(String),
}

/// The target BTF for `object`, read from `vmlinux`: minimal when the
/// projection works, else aya's full parse.
pub fn target(object: &[u8], vmlinux: &Path) -> Target {
    let project_from = |k: &[u8]| {
        let wanted = wanted_names(object).map_err(|e| e.to_string())?;
        let blob = project(k, &wanted).map_err(|e| e.to_string())?;
        Btf::parse(&blob, Endianness::default())
            .map_err(|e| format!("the projected BTF does not parse: {e}"))
    };
    // The kernel's file is mapped when the kernel allows it (no copy).
    let mapped = (vmlinux == Path::new(VMLINUX))
        .then(crate::sys::kernel_btf::map_vmlinux)
        .and_then(Result::ok);
    let minimal = match mapped {
        Some(k) => project_from(&k),
        None => std::fs::read(vmlinux)
            .map_err(|e| format!("{}: {e}", vmlinux.display()))
            .and_then(|k| project_from(&k)),
    };
    match minimal {
        Ok(btf) => Target::Minimal(btf),
        Err(why) => match Btf::parse_file(vmlinux, Endianness::default()) {
            Ok(btf) => Target::Full(btf, why),
            Err(e) => Target::None(format!("{why}; {}: {e}", vmlinux.display())),
        },
    }
}

/// An `EbpfLoader` that has not parsed the kernel's BTF (see the module's
/// documentation). When the mount namespace cannot be made, a plain
/// `EbpfLoader::new()`: slower, same result once the target is set.
pub fn loader() -> EbpfLoader<'static> {
    loader_hiding().0
}

/// The loader, and whether the kernel's BTF was hidden from it (false: it
/// parsed the whole file).
fn loader_hiding() -> (EbpfLoader<'static>, bool) {
    std::thread::scope(|s| {
        s.spawn(|| {
            use nix::mount::{mount, MsFlags};
            let hidden = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .and_then(|()| {
                    // Private first, so that nothing mounted here
                    // propagates to the host's namespace.
                    mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                })
                .and_then(|()| {
                    mount(
                        Some("none"),
                        "/sys/kernel/btf",
                        Some("tmpfs"),
                        MsFlags::MS_RDONLY
                            | MsFlags::MS_NOSUID
                            | MsFlags::MS_NODEV
                            | MsFlags::MS_NOEXEC,
                        None::<&str>,
                    )
                })
                .is_ok()
                && !Path::new(VMLINUX).exists();
            // Either way the thread, and with it its namespace, ends here.
            (EbpfLoader::new(), hidden)
        })
        .join()
        .unwrap_or_else(|_| (EbpfLoader::new(), false))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmlinux() -> Vec<u8> {
        std::fs::read(VMLINUX).expect("this test needs the kernel's BTF at /sys/kernel/btf/vmlinux")
    }

    static OBJECT: &[u8] = include_bytes!("../../bpf/trace.bpf.o");

    /// (code, dst, src, off, imm) of every instruction of every function,
    /// by name: what the relocations write.
    type Insn = (u8, u8, u8, i16, i32);

    fn relocated(target: &Btf) -> BTreeMap<String, Vec<Insn>> {
        // The object parser wants the ELF aligned: a heap copy.
        let aligned: Vec<u8> = OBJECT.into();
        let mut obj = aya_obj::Object::parse(&aligned).expect("parse the object");
        obj.relocate_btf(target).expect("relocate");
        obj.functions
            .values()
            .map(|f| {
                let insns = f
                    .instructions
                    .iter()
                    .map(|i| (i.code, i.dst_reg(), i.src_reg(), i.off, i.imm))
                    .collect();
                (f.name.clone(), insns)
            })
            .collect()
    }

    fn minimal_blob() -> Vec<u8> {
        let wanted = wanted_names(OBJECT).unwrap();
        project(&vmlinux(), &wanted).unwrap()
    }

    #[test]
    fn object_names_drive_the_projection() {
        let wanted = wanted_names(OBJECT).unwrap();
        for name in ["task_struct", "dentry", "fs_struct", "path", "qstr"] {
            assert!(wanted.contains(name.as_bytes()), "{name} not in {wanted:?}");
        }
        let blob = minimal_blob();
        let small = Scanned::scan("minimal", &blob).unwrap();
        let names: BTreeSet<&[u8]> = (1..=small.len())
            .map(|id| small.string(small.record(id).unwrap().name_off))
            .collect();
        assert!(names.contains(&b"task_struct"[..]));
        assert!(blob.len() * 20 < vmlinux().len(), "{} bytes", blob.len());
    }

    /// The relocated programs are the same, instruction for instruction,
    /// whether aya relocates against the whole kernel BTF or the minimal
    /// one; and they differ from the unrelocated ones, so relocation ran.
    #[test]
    fn minimal_btf_relocates_as_the_full_one() {
        let full = Btf::from_sys_fs().unwrap();
        let small = Btf::parse(&minimal_blob(), Endianness::default()).unwrap();
        let with_full = relocated(&full);
        assert_eq!(relocated(&small), with_full);
        let unrelocated = relocated(&Btf::new());
        assert_ne!(unrelocated, with_full, "no CO-RE relocation in the object?");
    }

    /// The same comparison catches a wrong offset: move one member of a
    /// struct the object reads and the relocated programs change.
    #[test]
    fn a_wrong_offset_changes_the_relocation() {
        let mut blob = minimal_blob();
        let small = Scanned::scan("minimal", &blob).unwrap();
        let (mut at, mut found) = (0, false);
        for id in 1..=small.len() {
            let r = small.record(id).unwrap();
            if r.kind == KIND_STRUCT && small.string(r.name_off) == b"fs_struct" {
                for i in 0..r.vlen {
                    if small.string(r.word(3 + 3 * i)) == b"pwd" {
                        at = HEADER_LEN + small.starts[id as usize - 1] + 4 * (3 + 3 * i + 2);
                        found = true;
                    }
                }
            }
        }
        assert!(found, "fs_struct.pwd not in the minimal BTF");
        let off = u32_at(&blob, at).unwrap() + 64;
        blob[at..at + 4].copy_from_slice(&off.to_le_bytes());
        let good = Btf::parse(&minimal_blob(), Endianness::default()).unwrap();
        let bad = Btf::parse(&blob, Endianness::default()).unwrap();
        assert_ne!(relocated(&bad), relocated(&good));
    }

    /// Every member of every projected struct has the kernel's offset, by
    /// struct and member name.
    #[test]
    fn member_offsets_are_the_kernels() {
        let k = vmlinux();
        let blob = minimal_blob();
        let members = |b: &[u8]| {
            let s = Scanned::scan("x", b).unwrap();
            let mut m = BTreeSet::new();
            for id in 1..=s.len() {
                let r = s.record(id).unwrap();
                if matches!(r.kind, KIND_STRUCT | KIND_UNION) && r.name_off != 0 {
                    for i in 0..r.vlen {
                        m.insert((
                            s.string(r.name_off).to_vec(),
                            r.size_or_type,
                            s.string(r.word(3 + 3 * i)).to_vec(),
                            r.word(3 + 3 * i + 2),
                        ));
                    }
                }
            }
            m
        };
        let small = members(&blob);
        let full = members(&k);
        assert!(small.len() > 100);
        assert!(small.is_subset(&full));
    }

    /// The tmpfs hides the kernel's BTF from `EbpfLoader::new()` and stays
    /// in the loader thread's namespace: the rest of the process (and the
    /// host) still sees the file, and no mount at /sys/kernel/btf.
    #[test]
    fn the_loader_hides_nothing_from_the_process() {
        let (_loader, hidden) = loader_hiding();
        assert!(hidden, "the loader thread could not hide {VMLINUX} (root?)");
        assert!(
            Path::new(VMLINUX).exists(),
            "{VMLINUX} hidden after loader()"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(" /sys/kernel/btf "),
            "a mount at /sys/kernel/btf leaked:\n{mounts}"
        );
    }

    #[test]
    fn malformed_btf_is_an_error_not_a_panic() {
        let k = vmlinux();
        let wanted = wanted_names(OBJECT).unwrap();
        assert!(project(&[], &wanted).is_err());
        assert!(project(&k[..HEADER_LEN - 1], &wanted).is_err());
        for cut in [HEADER_LEN, 100, 4097, k.len() / 2, k.len() - 1] {
            assert!(project(&k[..cut], &wanted).is_err(), "cut at {cut}");
        }
        // Damage the kind of one type record in the middle: an error, never
        // a panic, whatever bits come out.
        let mut seed = 0x9e37_79b9_u32;
        let blob = minimal_blob();
        for _ in 0..300 {
            let mut b = blob.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % b.len();
                b[at] = (seed >> 8) as u8;
            }
            let _ = project(&b, &wanted);
        }
        let mut b = blob.clone();
        b[HEADER_LEN + 7] = 0x1f; // kind 31 in the first record's info
        assert!(matches!(
            project(&b, &wanted),
            Err(BtfError::UnknownKind { kind: 31, .. })
        ));
    }

    #[test]
    fn a_failed_projection_falls_back_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("jail-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("vmlinux");
        std::fs::write(&bad, b"not btf").unwrap();
        match target(OBJECT, &bad) {
            Target::None(why) => assert!(why.contains("not BTF"), "{why}"),
            _ => panic!("a broken BTF gave a target"),
        }
        // An object without BTF cannot be projected for: the whole kernel
        // BTF, and the reason.
        match target(b"not an ELF object", Path::new(VMLINUX)) {
            Target::Full(_, why) => assert!(why.contains("BPF object"), "{why}"),
            _ => panic!("no fallback to the full BTF"),
        }
        match target(OBJECT, Path::new(VMLINUX)) {
            Target::Minimal(_) => {}
            Target::Full(_, why) | Target::None(why) => panic!("no minimal BTF: {why}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
