//! What the kernel loads at exec without a syscall the tracer could see: the
//! `#!` interpreter chain of a script and the ELF interpreter (PT_INTERP).
//! Also the ABI check that refuses 32-bit programs.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The kernel's limit on `#!` nesting (fs/exec.c allows 4 rewrites, plus
/// the final binary).
pub const MAX_INTERP_DEPTH: usize = 5;

/// What an executable file starts with.
#[derive(Debug, PartialEq, Eq)]
pub enum Image {
    /// `#!interpreter [arg]`.
    Script {
        interpreter: PathBuf,
        arg: Option<Vec<u8>>,
    },
    /// An ELF object with its PT_INTERP, if dynamic.
    Elf {
        class64: bool,
        machine: u16,
        interp: Option<PathBuf>,
    },
    /// Anything else (binfmt_misc, garbage).
    Other,
}

/// The refusal of a 32-bit (i386, `int 0x80`) or x32 system call that
/// process `pid` made: its number and arguments mean something else than
/// in the x86_64 table. Every backend gives the same error.
pub fn abi_syscall_refusal(pid: i32, x32: bool, nr: u64) -> String {
    let abi = if x32 { "x32" } else { "32-bit (i386)" };
    format!("pid {pid} made a {abi} system call (nr {}): jail traces only x86_64 system calls; jail a 64-bit build of the program", nr & 0xffff)
}

/// Refuse a program jail cannot trace: a 32-bit (i386) or x32 ELF that
/// process `pid` executed. `exe` is the file the kernel loaded, in-root
/// (for the message), `host` the same file on this machine. Every backend
/// gives the same error.
pub fn check_abi(pid: i32, exe: &Path, host: &Path) -> Result<(), String> {
    let Ok(Image::Elf {
        class64: false,
        machine,
        ..
    }) = inspect(host)
    else {
        return Ok(());
    };
    let abi = if machine == goblin::elf::header::EM_X86_64 {
        "x32"
    } else {
        "32-bit (i386)"
    };
    Err(format!("pid {pid} executed {}, a {abi} program: jail traces only x86_64 programs; jail a 64-bit build of it", exe.display()))
}

/// Read the head of `host_path` and say what the kernel would do with it.
pub fn inspect(host_path: &Path) -> std::io::Result<Image> {
    let mut f = std::fs::File::open(host_path)?;
    let mut head = vec![0u8; 4096];
    let n = read_full(&mut f, &mut head)?;
    head.truncate(n);
    if head.starts_with(b"#!") {
        return Ok(parse_shebang(&head).unwrap_or(Image::Other));
    }
    if head.starts_with(b"\x7fELF") {
        return Ok(parse_elf(&head, &mut f).unwrap_or(Image::Other));
    }
    Ok(Image::Other)
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Parse a `#!` line as Linux does: at most 256 bytes, the interpreter up to
/// the first blank, the rest (trimmed) as one argument.
pub fn parse_shebang(head: &[u8]) -> Option<Image> {
    let line = &head[2..head.len().min(256)];
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(i) => &line[..i],
        None => line,
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let line = &line[start..];
    let end = line.iter().position(blank).unwrap_or(line.len());
    let interpreter = PathBuf::from(OsStr::from_bytes(&line[..end]));
    let rest = &line[end..];
    let arg = rest.iter().position(|b| !blank(b)).map(|s| {
        let r = &rest[s..];
        let e = r.iter().rposition(|b| !blank(b)).map_or(0, |e| e + 1);
        r[..e].to_vec()
    });
    Some(Image::Script { interpreter, arg })
}

fn parse_elf(head: &[u8], f: &mut std::fs::File) -> Option<Image> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
    use std::io::{Seek, SeekFrom};

    let header = goblin::elf::Elf::parse_header(head).ok()?;
    let class64 = header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64;
    let endian = if header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2MSB
    {
        Endian::Big
    } else {
        Endian::Little
    };
    let ctx = Ctx::new(
        if class64 {
            Container::Big
        } else {
            Container::Little
        },
        endian,
    );
    let phoff = usize::try_from(header.e_phoff).ok()?;
    let phsize = usize::from(header.e_phentsize) * usize::from(header.e_phnum);
    let owned;
    let table: &[u8] = if phoff + phsize <= head.len() {
        head
    } else {
        let mut b = vec![0u8; phoff + phsize];
        f.seek(SeekFrom::Start(0)).ok()?;
        read_full(f, &mut b).ok()?;
        owned = b;
        &owned
    };
    let phdrs = ProgramHeader::parse(table, phoff, usize::from(header.e_phnum), ctx).ok()?;
    let interp = phdrs.iter().find(|p| p.p_type == PT_INTERP).and_then(|p| {
        let mut b = vec![0u8; usize::try_from(p.p_filesz).ok()?.min(4096)];
        f.seek(SeekFrom::Start(p.p_offset)).ok()?;
        let n = read_full(f, &mut b).ok()?;
        b.truncate(n);
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Some(PathBuf::from(OsStr::from_bytes(&b[..end])))
    });
    Some(Image::Elf {
        class64,
        machine: header.e_machine,
        interp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_forms() {
        assert_eq!(
            parse_shebang(b"#!/bin/sh\necho"),
            Some(Image::Script {
                interpreter: "/bin/sh".into(),
                arg: None
            })
        );
        assert_eq!(
            parse_shebang(b"#! /usr/bin/env  python3 -u \n"),
            Some(Image::Script {
                interpreter: "/usr/bin/env".into(),
                arg: Some(b"python3 -u".to_vec())
            })
        );
        assert_eq!(parse_shebang(b"#!   \n"), None);
    }

    #[test]
    fn finds_pt_interp_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        match inspect(&exe).unwrap() {
            Image::Elf {
                class64, interp, ..
            } => {
                assert!(class64);
                let i = interp.expect("test binary is dynamic");
                assert!(i.to_string_lossy().contains("ld-linux"), "{i:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
