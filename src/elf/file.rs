//! Reading what the loader reads from one ELF file: the identification, the
//! program headers, the dynamic section and its strings, and the dynamic
//! symbols (for the hardening facts). Only those parts are read, with `pread`,
//! never the whole file: the resolver parses thousands of files, some of them
//! hundreds of megabytes.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::dynamic as dt;
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self as pt, ProgramHeader};
use goblin::elf::section_header::{SectionHeader, SHT_DYNSYM};
use goblin::elf::sym::Sym;

/// Upper bounds on what one file may make us allocate: a corrupt or hostile
/// header must not turn into a multi-gigabyte read.
const MAX_PHNUM: usize = 4096;
const MAX_TABLE: u64 = 256 << 20;

/// How many bytes the first read takes: the ELF header and, nearly always,
/// the program headers (glibc reads 832 for the same reason).
const HEAD: usize = 4096;

/// Sun's filter tags, which goblin does not name.
const DT_AUXILIARY: u64 = 0x7fff_fffd;
const DT_FILTER: u64 = 0x7fff_ffff;

/// ELF class (`EI_CLASS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Elf32,
    Elf64,
}

/// Byte order (`EI_DATA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    Little,
    Big,
}

/// How a file is linked, from its structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Linking {
    /// Has `PT_INTERP`: the kernel starts its interpreter, which loads the rest.
    Dynamic,
    /// `ET_EXEC` without `PT_INTERP`: runs on its own.
    Static,
    /// `ET_DYN` without `PT_INTERP` but flagged `DF_1_PIE`: relocates itself.
    StaticPie,
    /// `ET_DYN` without `PT_INTERP`: a library.
    SharedObject,
    /// Anything else (relocatable objects, core dumps).
    Other,
}

/// Which kind of dynamic entry names a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DepKind {
    /// `DT_NEEDED`: must load.
    Needed,
    /// `DT_FILTER`: must load (its symbols take precedence).
    Filter,
    /// `DT_AUXILIARY`: loaded when found, silently skipped otherwise.
    Auxiliary,
}

/// RELRO level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relro {
    None,
    Partial,
    Full,
}

/// Exploit-mitigation facts, for the security report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hardening {
    /// Position independent executable: `ET_DYN` with `PT_INTERP`, or `DF_1_PIE`.
    pub pie: bool,
    /// `PT_GNU_RELRO`, and `BIND_NOW` on top of it for full.
    pub relro: Relro,
    /// `PT_GNU_STACK` without the execute flag (no `PT_GNU_STACK` means an
    /// executable stack on x86).
    pub nx_stack: bool,
    /// Imports `__stack_chk_fail` or `__stack_chk_guard`.
    pub stack_protector: bool,
    /// Imports a `__*_chk` function (`_FORTIFY_SOURCE`).
    pub fortify: bool,
}

/// The note glibc checks before loading a library (`.note.ABI-tag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiTag {
    /// 0 for Linux; glibc skips a library tagged for another OS.
    pub os: u32,
    /// Minimum kernel version, as `major << 16 | minor << 8 | patch`.
    pub kernel: u32,
}

/// What the loader needs to know about one ELF file.
#[derive(Clone, Debug)]
pub struct ElfFile {
    pub class: Class,
    pub byte_order: ByteOrder,
    /// `EI_OSABI` and `EI_ABIVERSION`.
    pub osabi: u8,
    pub abi_version: u8,
    /// `e_type` (`ET_EXEC`, `ET_DYN`, …) and `e_machine` (`EM_X86_64`, …).
    pub elf_type: u16,
    pub machine: u16,
    pub linking: Linking,
    /// `PT_INTERP`, without its trailing NUL.
    pub interp: Option<OsString>,
    /// `DT_NEEDED`, `DT_FILTER` and `DT_AUXILIARY`, in dynamic-section order.
    pub deps: Vec<(DepKind, OsString)>,
    pub rpath: Option<OsString>,
    pub runpath: Option<OsString>,
    pub soname: Option<OsString>,
    /// `DT_FLAGS` and `DT_FLAGS_1` (0 when absent).
    pub flags: u64,
    pub flags_1: u64,
    pub has_dynamic: bool,
    pub has_load: bool,
    pub abi_tag: Option<AbiTag>,
    /// Set-user-ID / set-group-ID (with group execute) on the file: the kernel
    /// runs it in secure-execution mode unless the caller already has those ids.
    pub setuid: bool,
    pub setgid: bool,
    pub hardening: Hardening,
    /// Header checks glibc makes before loading (see `open_verify`).
    pub(crate) header_ok: HeaderCheck,
}

/// The parts of the ELF header glibc refuses with a fatal error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    Ok,
    BadIdentVersion,
    NonzeroPadding,
    BadVersion,
    BadPhentsize,
}

/// Why a file is not an ELF file at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotElf {
    /// Starts with `#!`.
    Script,
    /// Shorter than an ELF header (glibc: "file too short").
    TooShort,
    /// Anything else (glibc: "invalid ELF header").
    BadMagic,
    /// A directory, device, fifo or socket.
    NotAFile,
}

/// Outcome of reading a file that exists.
#[derive(Clone, Debug)]
pub enum Parsed {
    Elf(std::sync::Arc<ElfFile>),
    NotElf(NotElf),
}

/// A structural error: the file claims to be ELF but its tables do not hold.
#[derive(Debug)]
pub enum ParseError {
    Io(io::Error),
    Malformed(String),
}

impl From<io::Error> for ParseError {
    fn from(e: io::Error) -> Self {
        ParseError::Io(e)
    }
}

fn bad(msg: impl Into<String>) -> ParseError {
    ParseError::Malformed(msg.into())
}

impl ElfFile {
    /// Read and parse the file at `host` (a path on this machine).
    pub fn read(host: &Path) -> Result<Parsed, ParseError> {
        let file = File::open(host)?;
        let meta = file.metadata()?;
        parse(&file, &meta)
    }

    /// `DF_1_NODEFLIB`: never search the cache or the default directories for
    /// this object's dependencies.
    pub fn nodeflib(&self) -> bool {
        self.flags_1 & dt::DF_1_NODEFLIB != 0
    }

    /// `DF_1_PIE`.
    pub fn is_pie_flagged(&self) -> bool {
        self.flags_1 & dt::DF_1_PIE != 0
    }
}

/// Parse an open file. `meta` is its metadata (for the size and the mode).
pub fn parse(file: &File, meta: &std::fs::Metadata) -> Result<Parsed, ParseError> {
    let size = meta.len();
    let mut head = vec![0u8; HEAD.min(size as usize)];
    read_exact_at(file, &mut head, 0)?;
    if head.starts_with(b"#!") {
        return Ok(Parsed::NotElf(NotElf::Script));
    }
    if head.len() < 4 || &head[..4] != b"\x7fELF" {
        // glibc looks at the length first: a short file is "too short" even
        // when its magic is wrong.
        return Ok(Parsed::NotElf(if head.len() < 64 {
            NotElf::TooShort
        } else {
            NotElf::BadMagic
        }));
    }
    let (class, container) = match head.get(header::EI_CLASS) {
        Some(&header::ELFCLASS32) => (Class::Elf32, Container::Little),
        Some(&header::ELFCLASS64) => (Class::Elf64, Container::Big),
        _ => return Err(bad("unknown ELF class")),
    };
    let (byte_order, endian) = match head.get(header::EI_DATA) {
        Some(&header::ELFDATA2LSB) => (ByteOrder::Little, Endian::Little),
        Some(&header::ELFDATA2MSB) => (ByteOrder::Big, Endian::Big),
        _ => return Err(bad("unknown ELF data encoding")),
    };
    let ehsize = if class == Class::Elf64 { 64 } else { 52 };
    if head.len() < ehsize {
        return Ok(Parsed::NotElf(NotElf::TooShort));
    }
    let hdr: Header =
        goblin::elf::Elf::parse_header(&head).map_err(|e| bad(format!("ELF header: {e}")))?;
    let ctx = Ctx::new(container, endian);
    let rd = Reader { file, size, ctx };

    let header_ok = if hdr.e_ident[header::EI_VERSION] != 1 {
        HeaderCheck::BadIdentVersion
    } else if hdr.e_ident[9..].iter().any(|&b| b != 0) {
        HeaderCheck::NonzeroPadding
    } else if hdr.e_version != 1 {
        HeaderCheck::BadVersion
    } else if hdr.e_phnum > 0 && hdr.e_phentsize as usize != ProgramHeader::size(ctx) {
        HeaderCheck::BadPhentsize
    } else {
        HeaderCheck::Ok
    };

    let phnum = hdr.e_phnum as usize;
    if phnum > MAX_PHNUM {
        return Err(bad(format!("{phnum} program headers")));
    }
    let phsize = ProgramHeader::size(ctx) * phnum;
    let phoff = hdr.e_phoff;
    let phdrs = if phnum == 0 {
        Vec::new()
    } else if (phoff as usize)
        .checked_add(phsize)
        .is_some_and(|end| end <= head.len())
    {
        ProgramHeader::parse(&head, phoff as usize, phnum, ctx)
            .map_err(|e| bad(format!("program headers: {e}")))?
    } else {
        let buf = rd.read(phoff, phsize as u64, "program headers")?;
        ProgramHeader::parse(&buf, 0, phnum, ctx)
            .map_err(|e| bad(format!("program headers: {e}")))?
    };

    let mut interp = None;
    let mut dynamic = None;
    let mut relro_seg = false;
    let mut stack_flags = None;
    let mut has_load = false;
    for ph in &phdrs {
        match ph.p_type {
            pt::PT_INTERP => {
                let raw = rd.read(ph.p_offset, ph.p_filesz, "PT_INTERP")?;
                interp = Some(cstr(&raw, 0).to_vec());
            }
            pt::PT_DYNAMIC if ph.p_filesz > 0 => dynamic = Some(ph.clone()),
            pt::PT_GNU_RELRO => relro_seg = true,
            pt::PT_GNU_STACK => stack_flags = Some(ph.p_flags),
            pt::PT_LOAD => has_load = true,
            _ => {}
        }
    }
    let abi_tag = abi_tag(&rd, &head, &phdrs)?;

    let mut deps = Vec::new();
    let (mut rpath, mut runpath, mut soname) = (None, None, None);
    let (mut flags, mut flags_1, mut bind_now) = (0u64, 0u64, false);
    let mut imports = Imports::default();
    if let Some(dynseg) = &dynamic {
        let d = read_dynamic(&rd, dynseg)?;
        bind_now = d.bind_now;
        flags = d.flags;
        flags_1 = d.flags_1;
        if let Some(strtab_addr) = d.strtab {
            let off = vaddr_to_offset(&phdrs, strtab_addr)
                .ok_or_else(|| bad("DT_STRTAB outside any PT_LOAD"))?;
            let strsz = d.strsz.unwrap_or(0).min(size.saturating_sub(off));
            let strtab = rd.read(off, strsz, "dynamic string table")?;
            let get = |o: u64| -> Result<Vec<u8>, ParseError> {
                if o >= strtab.len() as u64 {
                    return Err(bad(format!("string offset {o} beyond DT_STRSZ")));
                }
                Ok(cstr(&strtab, o as usize).to_vec())
            };
            for (kind, o) in &d.deps {
                deps.push((*kind, OsString::from_vec(get(*o)?)));
            }
            rpath = d.rpath.map(get).transpose()?.map(OsString::from_vec);
            runpath = d.runpath.map(get).transpose()?.map(OsString::from_vec);
            soname = d.soname.map(get).transpose()?.map(OsString::from_vec);
            imports = read_imports(&rd, &hdr, &phdrs, &d, &strtab)?;
        } else if !d.deps.is_empty() {
            return Err(bad("DT_NEEDED without DT_STRTAB"));
        }
    }

    let linking = match (&interp, hdr.e_type) {
        (Some(_), _) => Linking::Dynamic,
        (None, header::ET_EXEC) => Linking::Static,
        (None, header::ET_DYN) if flags_1 & dt::DF_1_PIE != 0 => Linking::StaticPie,
        (None, header::ET_DYN) => Linking::SharedObject,
        _ => Linking::Other,
    };
    let full_now = bind_now || flags & dt::DF_BIND_NOW != 0 || flags_1 & dt::DF_1_NOW != 0;
    let hardening = Hardening {
        pie: hdr.e_type == header::ET_DYN && (interp.is_some() || flags_1 & dt::DF_1_PIE != 0),
        relro: match (relro_seg, full_now) {
            (false, _) => Relro::None,
            (true, false) => Relro::Partial,
            (true, true) => Relro::Full,
        },
        nx_stack: stack_flags.is_some_and(|f| f & pt::PF_X == 0),
        stack_protector: imports.stack_chk,
        fortify: imports.fortify,
    };
    let mode = meta.mode();
    Ok(Parsed::Elf(std::sync::Arc::new(ElfFile {
        class,
        byte_order,
        osabi: hdr.e_ident[header::EI_OSABI],
        abi_version: hdr.e_ident[header::EI_ABIVERSION],
        elf_type: hdr.e_type,
        machine: hdr.e_machine,
        linking,
        interp: interp.map(OsString::from_vec),
        deps,
        rpath,
        runpath,
        soname,
        flags,
        flags_1,
        has_dynamic: dynamic.is_some(),
        has_load,
        abi_tag,
        setuid: mode & libc::S_ISUID != 0,
        setgid: mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0,
        hardening,
        header_ok,
    })))
}

struct Reader<'a> {
    file: &'a File,
    size: u64,
    ctx: Ctx,
}

impl Reader<'_> {
    /// Read `len` bytes at `off`, refusing ranges outside the file.
    fn read(&self, off: u64, len: u64, what: &str) -> Result<Vec<u8>, ParseError> {
        if len > MAX_TABLE || off.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(bad(format!(
                "{what} ({len} bytes at {off}) outside the file"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        read_exact_at(self.file, &mut buf, off)?;
        Ok(buf)
    }

    fn word(&self, b: &[u8], at: usize) -> u64 {
        if self.ctx.container == Container::Big {
            u64_at(b, at, self.ctx.le)
        } else {
            u32_at(b, at, self.ctx.le) as u64
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    file.read_exact_at(buf, off)
}

fn u32_at(b: &[u8], at: usize, e: Endian) -> u32 {
    let a: [u8; 4] = b[at..at + 4].try_into().unwrap_or([0; 4]);
    if e == Endian::Little {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

fn u64_at(b: &[u8], at: usize, e: Endian) -> u64 {
    let a: [u8; 8] = b[at..at + 8].try_into().unwrap_or([0; 8]);
    if e == Endian::Little {
        u64::from_le_bytes(a)
    } else {
        u64::from_be_bytes(a)
    }
}

/// The NUL-terminated string at `at` (to the end of `b` when unterminated).
fn cstr(b: &[u8], at: usize) -> &[u8] {
    let s = &b[at.min(b.len())..];
    match s.iter().position(|&c| c == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

fn vaddr_to_offset(phdrs: &[ProgramHeader], vaddr: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.p_type == pt::PT_LOAD)
        .find(|p| vaddr >= p.p_vaddr && vaddr < p.p_vaddr.saturating_add(p.p_filesz))
        .and_then(|p| (vaddr - p.p_vaddr).checked_add(p.p_offset))
}

#[derive(Default)]
struct Dynamic {
    deps: Vec<(DepKind, u64)>,
    rpath: Option<u64>,
    runpath: Option<u64>,
    soname: Option<u64>,
    strtab: Option<u64>,
    strsz: Option<u64>,
    symtab: Option<u64>,
    syment: Option<u64>,
    hash: Option<u64>,
    gnu_hash: Option<u64>,
    flags: u64,
    flags_1: u64,
    bind_now: bool,
}

fn read_dynamic(rd: &Reader, seg: &ProgramHeader) -> Result<Dynamic, ParseError> {
    let raw = rd.read(seg.p_offset, seg.p_filesz, "PT_DYNAMIC")?;
    let w = if rd.ctx.container == Container::Big {
        8
    } else {
        4
    };
    let mut d = Dynamic::default();
    for ent in raw.chunks_exact(2 * w) {
        let tag = rd.word(ent, 0);
        let val = rd.word(ent, w);
        // 32-bit tags are signed; the OS-specific ones must compare as such.
        let tag = if w == 4 { tag as u32 as u64 } else { tag };
        match tag {
            dt::DT_NULL => break,
            dt::DT_NEEDED => d.deps.push((DepKind::Needed, val)),
            DT_FILTER => d.deps.push((DepKind::Filter, val)),
            DT_AUXILIARY => d.deps.push((DepKind::Auxiliary, val)),
            dt::DT_RPATH => d.rpath = Some(val),
            dt::DT_RUNPATH => d.runpath = Some(val),
            dt::DT_SONAME => d.soname = Some(val),
            dt::DT_STRTAB => d.strtab = Some(val),
            dt::DT_STRSZ => d.strsz = Some(val),
            dt::DT_SYMTAB => d.symtab = Some(val),
            dt::DT_SYMENT => d.syment = Some(val),
            dt::DT_HASH => d.hash = Some(val),
            dt::DT_GNU_HASH => d.gnu_hash = Some(val),
            dt::DT_FLAGS => d.flags = val,
            dt::DT_FLAGS_1 => d.flags_1 = val,
            dt::DT_BIND_NOW => d.bind_now = true,
            _ => {}
        }
    }
    Ok(d)
}

/// The first `.note.ABI-tag` of the file, looked for the way glibc's
/// `open_verify` does: in `PT_NOTE` segments of at least 32 bytes aligned 4 or 8.
fn abi_tag(
    rd: &Reader,
    head: &[u8],
    phdrs: &[ProgramHeader],
) -> Result<Option<AbiTag>, ParseError> {
    for ph in phdrs {
        if ph.p_type != pt::PT_NOTE || ph.p_filesz < 32 || !(ph.p_align == 4 || ph.p_align == 8) {
            continue;
        }
        let owned;
        let end = ph.p_offset.saturating_add(ph.p_filesz);
        let notes: &[u8] = if end <= head.len() as u64 {
            &head[ph.p_offset as usize..end as usize]
        } else {
            owned = rd.read(ph.p_offset, ph.p_filesz, "PT_NOTE")?;
            &owned
        };
        let e = rd.ctx.le;
        let align = ph.p_align as usize;
        let mut at = 0usize;
        while at + 32 <= notes.len() {
            let namesz = u32_at(notes, at, e) as usize;
            let descsz = u32_at(notes, at + 4, e) as usize;
            let ntype = u32_at(notes, at + 8, e);
            if namesz == 4 && descsz == 16 && ntype == 1 && &notes[at + 12..at + 16] == b"GNU\0" {
                let os = u32_at(notes, at + 16, e);
                let (a, b, c) = (
                    u32_at(notes, at + 20, e),
                    u32_at(notes, at + 24, e),
                    u32_at(notes, at + 28, e),
                );
                let kernel = (a & 0xff) << 16 | (b & 0xff) << 8 | (c & 0xff);
                return Ok(Some(AbiTag { os, kernel }));
            }
            let next = 12 + namesz.next_multiple_of(align) + descsz.next_multiple_of(align);
            at += next;
        }
    }
    Ok(None)
}

#[derive(Default)]
struct Imports {
    stack_chk: bool,
    fortify: bool,
}

/// Scan the undefined dynamic symbols for the stack-protector and FORTIFY
/// entry points. The symbol count comes from the section headers when there
/// are any, else from `DT_HASH` or `DT_GNU_HASH`, as a loader would count.
fn read_imports(
    rd: &Reader,
    hdr: &Header,
    phdrs: &[ProgramHeader],
    d: &Dynamic,
    strtab: &[u8],
) -> Result<Imports, ParseError> {
    let mut imp = Imports::default();
    let Some(symtab) = d.symtab else {
        return Ok(imp);
    };
    let Some(sym_off) = vaddr_to_offset(phdrs, symtab) else {
        return Ok(imp);
    };
    let syment = d.syment.unwrap_or(Sym::size(rd.ctx.container) as u64);
    if syment as usize != Sym::size(rd.ctx.container) {
        return Ok(imp);
    }
    let count = match dynsym_count_from_sections(rd, hdr) {
        Some(n) => n,
        None => match (d.hash, d.gnu_hash) {
            (Some(h), _) => match vaddr_to_offset(phdrs, h) {
                Some(o) => {
                    let b = rd.read(o, 8, "DT_HASH")?;
                    u32_at(&b, 4, rd.ctx.le) as u64
                }
                None => 0,
            },
            (None, Some(g)) => match vaddr_to_offset(phdrs, g) {
                Some(o) => gnu_hash_count(rd, o)?,
                None => 0,
            },
            (None, None) => 0,
        },
    };
    if count == 0 {
        return Ok(imp);
    }
    let bytes = rd.read(sym_off, count * syment, "dynamic symbols")?;
    let syms = Sym::parse(&bytes, 0, count as usize, rd.ctx)
        .map_err(|e| bad(format!("dynamic symbols: {e}")))?;
    for s in syms.iter().filter(|s| s.st_shndx == 0 && s.st_name != 0) {
        let name = cstr(strtab, s.st_name);
        if name == b"__stack_chk_fail" || name == b"__stack_chk_guard" {
            imp.stack_chk = true;
        } else if name.starts_with(b"__") && name.ends_with(b"_chk") {
            imp.fortify = true;
        }
    }
    Ok(imp)
}

fn dynsym_count_from_sections(rd: &Reader, hdr: &Header) -> Option<u64> {
    let n = hdr.e_shnum as usize;
    if n == 0 || n > 65535 || hdr.e_shentsize as usize != SectionHeader::size(rd.ctx) {
        return None;
    }
    let buf = rd
        .read(
            hdr.e_shoff,
            (n * SectionHeader::size(rd.ctx)) as u64,
            "section headers",
        )
        .ok()?;
    let shdrs = SectionHeader::parse(&buf, 0, n, rd.ctx).ok()?;
    let s = shdrs.iter().find(|s| s.sh_type == SHT_DYNSYM)?;
    (s.sh_entsize > 0).then(|| s.sh_size / s.sh_entsize)
}

/// Number of dynamic symbols from a GNU hash table: one past the highest
/// symbol index any hash chain reaches.
fn gnu_hash_count(rd: &Reader, off: u64) -> Result<u64, ParseError> {
    let e = rd.ctx.le;
    let h = rd.read(off, 16, "DT_GNU_HASH")?;
    let (nbuckets, symoffset, bloom) = (
        u32_at(&h, 0, e) as u64,
        u32_at(&h, 4, e) as u64,
        u32_at(&h, 8, e) as u64,
    );
    let word = if rd.ctx.container == Container::Big {
        8
    } else {
        4
    };
    let buckets_off = off + 16 + bloom * word;
    let buckets = rd.read(buckets_off, nbuckets * 4, "GNU hash buckets")?;
    let max = (0..nbuckets as usize)
        .map(|i| u32_at(&buckets, i * 4, e) as u64)
        .max()
        .unwrap_or(0);
    if max < symoffset {
        return Ok(symoffset);
    }
    // Walk the last chain to its end bit, within one bounded read.
    let at = buckets_off + nbuckets * 4 + (max - symoffset) * 4;
    let len = rd.size.saturating_sub(at).min(1 << 20) / 4 * 4;
    let chain = rd.read(at, len, "GNU hash chain")?;
    Ok(chain
        .chunks_exact(4)
        .position(|c| u32_at(c, 0, e) & 1 == 1)
        .map_or(0, |i| max + i as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machines_libc() {
        let Parsed::Elf(f) = ElfFile::read(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap()
        else {
            panic!("libc is ELF")
        };
        assert_eq!(f.class, Class::Elf64);
        assert_eq!(f.machine, header::EM_X86_64);
        assert_eq!(f.soname.as_deref(), Some(std::ffi::OsStr::new("libc.so.6")));
        assert!(f
            .deps
            .iter()
            .any(|(k, n)| *k == DepKind::Needed && n == "ld-linux-x86-64.so.2"));
        assert_eq!(f.abi_tag.map(|t| t.os), Some(0));
    }

    #[test]
    fn truncated_or_corrupted_files_never_panic() {
        let orig = std::fs::read("/lib/x86_64-linux-gnu/libz.so.1").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        for len in [
            5,
            20,
            52,
            63,
            64,
            100,
            500,
            1000,
            4096,
            5000,
            20000,
            orig.len() - 1,
        ] {
            std::fs::write(&p, &orig[..len]).unwrap();
            let _ = ElfFile::read(&p);
        }
        // Overwrite each header and program-header byte in turn with 0xff.
        for at in 16..(64 + 56 * 11) {
            let mut b = orig.clone();
            b[at] = 0xff;
            std::fs::write(&p, &b).unwrap();
            let _ = ElfFile::read(&p);
        }
    }

    #[test]
    fn scripts_and_garbage_are_not_elf() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("s");
        std::fs::write(&s, "#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(
            ElfFile::read(&s).unwrap(),
            Parsed::NotElf(NotElf::Script)
        ));
        std::fs::write(&s, "x").unwrap();
        assert!(matches!(
            ElfFile::read(&s).unwrap(),
            Parsed::NotElf(NotElf::TooShort)
        ));
        std::fs::write(&s, [b'y'; 100]).unwrap();
        assert!(matches!(
            ElfFile::read(&s).unwrap(),
            Parsed::NotElf(NotElf::BadMagic)
        ));
    }
}
