//! Tar headers built byte by byte: ustar headers, with a PAX extended header
//! in front only when a value does not fit (long path or link target, size
//! of 8 GiB or more, uid/gid above 2097151, mtime before 1970 or after 2242)
//! or to carry `security.capability`. No GNU extensions, no user or group
//! names, no atime/ctime. See docs/formats.md ("Layer tar").
//!
//! The `tar` crate's `Header` normalizes paths and its deterministic mode
//! rewrites modes and mtimes, so neither is used for writing.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Tar block size.
pub const BLOCK: usize = 512;

/// The largest value an octal field of `width` bytes holds (width-1 digits
/// and a NUL).
const fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width as u32 - 1))) - 1
}

/// The kind of a tar entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything a header says about one entry.
#[derive(Clone, Debug)]
pub struct Meta<'a> {
    /// The name as stored: relative, directories ending in `/`.
    pub name: &'a [u8],
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub capability: Option<&'a [u8]>,
}

/// Write the header block(s) of one entry: a PAX header when needed, then
/// the ustar header. The caller writes `size` bytes of content and then
/// [`padding`] zero bytes.
pub fn write_header(out: &mut impl Write, m: &Meta<'_>) -> io::Result<u64> {
    let mut pax: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    if m.name.len() > 100 {
        pax.insert("path", m.name.to_vec());
    }
    if m.link.len() > 100 {
        pax.insert("linkpath", m.link.to_vec());
    }
    if (pax.contains_key("path") && std::str::from_utf8(m.name).is_err())
        || (pax.contains_key("linkpath") && std::str::from_utf8(m.link).is_err())
    {
        // POSIX: PAX values are UTF-8 unless declared binary.
        pax.insert("hdrcharset", b"BINARY".to_vec());
    }
    if m.size > octal_max(12) {
        pax.insert("size", m.size.to_string().into_bytes());
    }
    if m.uid > octal_max(8) {
        pax.insert("uid", m.uid.to_string().into_bytes());
    }
    if m.gid > octal_max(8) {
        pax.insert("gid", m.gid.to_string().into_bytes());
    }
    if m.mtime < 0 || m.mtime as u64 > octal_max(12) {
        pax.insert("mtime", m.mtime.to_string().into_bytes());
    }
    if let Some(cap) = m.capability {
        pax.insert("SCHILY.xattr.security.capability", cap.to_vec());
    }

    let mut written = 0;
    if !pax.is_empty() {
        let mut data = Vec::new();
        for (k, v) in &pax {
            data.extend_from_slice(&pax_record(k, v));
        }
        let h = ustar(
            &Meta {
                name: b"././@PaxHeader",
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: data.len() as u64,
                mtime: 0,
                link: b"",
                capability: None,
            },
            b'x',
        );
        out.write_all(&h)?;
        out.write_all(&data)?;
        out.write_all(&[0u8; BLOCK][..padding(data.len() as u64)])?;
        written += (BLOCK + data.len() + padding(data.len() as u64)) as u64;
    }
    let h = ustar(m, m.kind.flag());
    out.write_all(&h)?;
    Ok(written + BLOCK as u64)
}

/// Zero bytes after `size` bytes of content, up to the next block.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// The end of an archive: two zero blocks (no padding to a 10 KiB record,
/// as Go's archive/tar and docker write it).
pub fn write_end(out: &mut impl Write) -> io::Result<u64> {
    out.write_all(&[0u8; 2 * BLOCK])?;
    Ok(2 * BLOCK as u64)
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole
/// record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(len.to_string().as_bytes());
    r.push(b' ');
    r.extend_from_slice(key.as_bytes());
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// The 512-byte ustar header. Values that do not fit were put in the PAX
/// header; their ustar field holds a truncated name or 0.
fn ustar(m: &Meta<'_>, flag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = &m.name[..m.name.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(m.mode & 0o7777));
    octal(
        &mut h[108..116],
        if m.uid > octal_max(8) { 0 } else { m.uid },
    );
    octal(
        &mut h[116..124],
        if m.gid > octal_max(8) { 0 } else { m.gid },
    );
    octal(
        &mut h[124..136],
        if m.size > octal_max(12) { 0 } else { m.size },
    );
    let mtime = if m.mtime < 0 || m.mtime as u64 > octal_max(12) {
        0
    } else {
        m.mtime as u64
    };
    octal(&mut h[136..148], mtime);
    h[156] = flag;
    let link = &m.link[..m.link.len().min(100)];
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // uname, gname (265..329) stay empty: numeric ids only.
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    // Checksum: the sum of all bytes with the field itself read as spaces,
    // written as six octal digits, NUL, space.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}");
    h[148..154].copy_from_slice(digits.as_bytes());
    h[154] = 0;
    h[155] = b' ';
    h
}

/// Zero-padded octal digits filling all but the last byte, then NUL.
fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    field[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    field[w] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &[u8]) -> Meta<'_> {
        Meta {
            name,
            kind: Kind::File,
            mode: 0o4755,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: 1,
            link: b"",
            capability: None,
        }
    }

    /// (path, size, mode, capability) of every entry.
    type Read = (Vec<u8>, u64, u32, Option<Vec<u8>>);

    fn read_back(bytes: &[u8]) -> Vec<Read> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let cap = e.pax_extensions().unwrap().and_then(|x| {
                    x.map(|r| r.unwrap())
                        .find(|r| r.key() == Ok("SCHILY.xattr.security.capability"))
                        .map(|r| r.value_bytes().to_vec())
                });
                (
                    e.path_bytes().into_owned(),
                    e.size(),
                    e.header().mode().unwrap(),
                    cap,
                )
            })
            .collect()
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        let long = vec![b'x'; 95];
        let r = pax_record("path", &long);
        assert_eq!(r.len().to_string(), String::from_utf8_lossy(&r[..3]));
    }

    #[test]
    fn long_names_and_capabilities_round_trip_through_the_tar_crate() {
        let long: Vec<u8> = [&b"usr/"[..], &[b'a'; 150][..], b"/file"].concat();
        let mut out = Vec::new();
        let mut m = meta(&long);
        m.capability = Some(&[1, 0, 0, 2, 0x20, 0, 0, 0]);
        write_header(&mut out, &m).unwrap();
        out.extend_from_slice(b"abc");
        out.resize(out.len() + padding(3), 0);
        write_end(&mut out).unwrap();
        let got = read_back(&out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, long);
        assert_eq!(got[0].1, 3);
        assert_eq!(got[0].2, 0o4755);
        assert_eq!(got[0].3.as_deref(), Some(&[1, 0, 0, 2, 0x20, 0, 0, 0][..]));
    }

    #[test]
    fn short_plain_entries_have_no_pax_header() {
        let mut out = Vec::new();
        assert_eq!(write_header(&mut out, &meta(b"bin/x")).unwrap(), 512);
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[100..108], b"0004755\0");
        assert_eq!(&out[265..329], &[0u8; 64][..]);
    }

    #[test]
    fn huge_sizes_go_to_pax() {
        let mut out = Vec::new();
        let mut m = meta(b"big");
        m.size = 9 << 30;
        let n = write_header(&mut out, &m).unwrap();
        assert_eq!(n, 3 * 512);
        let text = String::from_utf8_lossy(&out[512..1024]);
        assert!(text.starts_with("19 size=9663676416\n"), "{text}");
    }
}
