//! The platform an image is for, from the ELF header of its entrypoint (not
//! the host): only `e_ident` and `e_machine` are read.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::resolve::{Follow, Root};

/// OS and architecture as OCI (GOOS/GOARCH) names them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")]
pub struct BadPlatform(pub String);

impl Platform {
    fn linux(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    /// `OS/ARCH[/VARIANT]`, as `--platform` takes it (`linux/arm64/v8`).
    pub fn parse(s: &str) -> Result<Platform, BadPlatform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(BadPlatform(s.to_string())),
        }
    }

    /// `os/architecture[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// The platform this jail binary was built for.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => return Platform::linux("arm64", Some("v8")),
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::linux(arch, None)
    }

    /// The platform of an ELF file from its first 20 bytes; `None` when the
    /// bytes are not an ELF header of a known machine.
    pub fn of_elf_header(h: &[u8]) -> Option<Platform> {
        if h.len() < 20 || &h[..4] != b"\x7fELF" {
            return None;
        }
        let is64 = h[4] == 2;
        let le = h[5] == 1;
        let machine = if le {
            u16::from_le_bytes([h[18], h[19]])
        } else {
            u16::from_be_bytes([h[18], h[19]])
        };
        let p = match (machine, is64, le) {
            (3, false, _) => Platform::linux("386", None),
            (62, true, _) => Platform::linux("amd64", None),
            (183, true, _) => Platform::linux("arm64", Some("v8")),
            (40, false, _) => Platform::linux("arm", None),
            (243, true, _) => Platform::linux("riscv64", None),
            (21, true, true) => Platform::linux("ppc64le", None),
            (21, true, false) => Platform::linux("ppc64", None),
            (22, true, _) => Platform::linux("s390x", None),
            (8, true, true) => Platform::linux("mips64le", None),
            (8, true, false) => Platform::linux("mips64", None),
            (8, false, true) => Platform::linux("mipsle", None),
            (8, false, false) => Platform::linux("mips", None),
            (258, true, _) => Platform::linux("loong64", None),
            _ => return None,
        };
        Some(p)
    }

    /// The platform of `program` as a process in `root` would run it: found
    /// on `path` (colon-separated, in-root) when it has no slash, symlinks
    /// resolved inside the root, and a `#!` script's interpreter followed.
    /// `None` when it is not found or not a known ELF.
    pub fn of_program(root: &Root, program: &str, path: &str) -> Option<Platform> {
        let mut candidate = locate(root, program, path)?;
        for _ in 0..4 {
            let mut head = [0u8; 256];
            let n = read_head(&root.host_path(&candidate), &mut head).ok()?;
            if let Some(p) = Platform::of_elf_header(&head[..n]) {
                return Some(p);
            }
            let line = head[..n].strip_prefix(b"#!")?;
            let line = line.split(|&b| b == b'\n').next()?;
            let interp = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
            candidate = locate(root, interp, path)?;
        }
        None
    }
}

fn locate(root: &Root, program: &str, path: &str) -> Option<PathBuf> {
    let candidate = if program.contains('/') {
        Path::new("/").join(program)
    } else {
        root.find_in_path(program.as_ref(), path.as_bytes())?
    };
    let r = root.resolve(&candidate, Follow::Yes);
    r.exists().then_some(r.path)
}

fn read_head(host: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let mut f = File::open(host)?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platforms() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap(),
            Platform::linux("arm64", Some("v8"))
        );
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().display(),
            "linux/amd64"
        );
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "Linux/amd64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_e_machine() {
        let mut h = [0u8; 20];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[18] = 62;
        assert_eq!(Platform::of_elf_header(&h).unwrap().architecture, "amd64");
        h[18] = 183;
        assert_eq!(
            Platform::of_elf_header(&h).unwrap(),
            Platform::linux("arm64", Some("v8"))
        );
        assert_eq!(Platform::of_elf_header(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn follows_path_symlinks_and_shebangs_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::copy("/proc/self/exe", d.path().join("bin/real")).unwrap();
        std::os::unix::fs::symlink("/bin/real", d.path().join("bin/link")).unwrap();
        std::fs::write(d.path().join("bin/script"), "#!/bin/link -x\n").unwrap();
        let root = Root::new(d.path()).unwrap();
        let host = Platform::host();
        assert_eq!(
            Platform::of_program(&root, "link", "/usr/bin:/bin"),
            Some(host.clone())
        );
        assert_eq!(Platform::of_program(&root, "/bin/script", ""), Some(host));
        assert_eq!(Platform::of_program(&root, "nope", "/bin"), None);
    }
}
