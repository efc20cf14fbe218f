//! The facts ld.so takes from the machine and from its own build: the CPU's
//! glibc-hwcaps levels and platform, and, compiled into each glibc, its
//! version, system directories and `$LIB`.
//!
//! Both are parameters of the resolver, so that a foreign root is resolved
//! with *its* loader's facts, and tests are deterministic. `Cpu::host()` and
//! `GlibcBuild::read()` find the real values; docs/elf.md lists what this
//! Debian 12 machine yields.

use std::collections::HashSet;
use std::path::Path;

/// What the CPU offers the loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Supported glibc-hwcaps subdirectory names, best first
    /// (`x86-64-v4`, `x86-64-v3`, `x86-64-v2`).
    pub hwcaps: Vec<String>,
    /// The highest x86-64 ISA level, 0 (baseline) to 3 (v4), matched against
    /// ld.so.cache entries marked with one.
    pub isa_level: u32,
    /// `$PLATFORM`, and the platform component of legacy hwcap
    /// subdirectories: AT_PLATFORM (`x86_64`), or what glibc puts in its place
    /// on some Intel CPUs (`haswell`, `xeon_phi`).
    pub platform: String,
    /// Legacy hwcap names in bit order (glibc < 2.37 searches subdirectories
    /// named after them): `x86_64`, and `avx512_1` on some Intel CPUs.
    pub legacy_hwcaps: Vec<String>,
    /// The masked legacy hwcap bits, for legacy ld.so.cache entries.
    pub legacy_hwcap_bits: u64,
}

/// x86-64 micro-architecture levels and the CPU flags (as /proc/cpuinfo
/// names them) each adds, following glibc's `dl-hwcaps-subdirs.c`.
const X86_64_LEVELS: [(&str, &[&str]); 3] = [
    (
        "x86-64-v2",
        &[
            "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
        ],
    ),
    (
        "x86-64-v3",
        &[
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ],
    ),
    (
        "x86-64-v4",
        &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"],
    ),
];

impl Cpu {
    /// A CPU with no glibc-hwcaps level and no legacy hwcaps: only the plain
    /// directories are searched. Deterministic, for tests.
    pub fn baseline(platform: &str) -> Cpu {
        Cpu {
            hwcaps: Vec::new(),
            isa_level: 0,
            platform: platform.to_string(),
            legacy_hwcaps: Vec::new(),
            legacy_hwcap_bits: 0,
        }
    }

    /// An x86-64 CPU with these /proc/cpuinfo flags, as glibc 2.36 sees it.
    pub fn x86_64(intel: bool, flags: &[&str]) -> Cpu {
        let has: HashSet<&str> = flags.iter().copied().collect();
        let all = |fs: &[&str]| fs.iter().all(|f| has.contains(f));
        let mut levels = Vec::new();
        for (name, needs) in X86_64_LEVELS {
            if !all(needs) {
                break;
            }
            levels.push(name.to_string());
        }
        let isa_level = levels.len() as u32;
        levels.reverse();
        // sysdeps/x86/cpu-features.c: dl_hwcap and dl_platform on x86-64.
        let mut legacy_hwcaps = vec!["x86_64".to_string()];
        let mut legacy_hwcap_bits = 1 << 1;
        let mut platform = "x86_64";
        if intel {
            if has.contains("avx512cd") {
                if has.contains("avx512er") {
                    if has.contains("avx512pf") {
                        platform = "xeon_phi";
                    }
                } else if all(&["avx512bw", "avx512dq", "avx512vl"]) {
                    legacy_hwcaps.push("avx512_1".to_string());
                    legacy_hwcap_bits |= 1 << 2;
                }
            }
            if platform == "x86_64"
                && all(&["avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "popcnt"])
            {
                platform = "haswell";
            }
        }
        Cpu {
            hwcaps: levels,
            isa_level,
            platform: platform.to_string(),
            legacy_hwcaps,
            legacy_hwcap_bits,
        }
    }

    /// This machine's CPU, from /proc/cpuinfo (x86-64; elsewhere a baseline
    /// CPU with the machine name as platform).
    pub fn host() -> Cpu {
        let arch = std::env::consts::ARCH;
        if arch != "x86_64" {
            return Cpu::baseline(arch);
        }
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return Cpu::x86_64(false, &[]);
        };
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim())
                .unwrap_or("")
        };
        let flags: Vec<&str> = field("flags").split_whitespace().collect();
        Cpu::x86_64(field("vendor_id") == "GenuineIntel", &flags)
    }

    /// The subdirectories ld.so tries inside each search directory, in order,
    /// each ending with `/`, the directory itself (`""`) last.
    pub fn subdirs(&self, glibc: &GlibcBuild) -> Vec<String> {
        let mut out = Vec::new();
        if glibc.has_glibc_hwcaps() {
            out.extend(self.hwcaps.iter().map(|h| format!("glibc-hwcaps/{h}/")));
        }
        if glibc.has_legacy_hwcaps() {
            let mut parts = self.legacy_hwcaps.clone();
            parts.push(self.platform.clone());
            parts.push("tls".to_string());
            out.extend(legacy_combinations(&parts));
        } else {
            out.push(String::new());
        }
        out
    }
}

/// glibc's `_dl_important_hwcaps` for legacy hwcaps: every subset of
/// `parts`, largest first (descending bit masks), each written with the
/// highest-index part first; the empty subset (`""`) comes last.
pub fn legacy_combinations(parts: &[String]) -> Vec<String> {
    let n = parts.len();
    (0..1u32 << n)
        .rev()
        .map(|mask| {
            let mut s = String::new();
            for i in (0..n).rev() {
                if mask & (1 << i) != 0 {
                    s.push_str(&parts[i]);
                    s.push('/');
                }
            }
            s
        })
        .collect()
}

/// The facts compiled into one glibc ld.so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlibcBuild {
    /// (major, minor): 2.33 added glibc-hwcaps, 2.37 removed legacy hwcaps.
    pub version: (u32, u32),
    /// The default search directories, each ending with `/`; also the
    /// trusted directories of secure-execution mode.
    pub system_dirs: Vec<String>,
    /// `$LIB`.
    pub lib: String,
}

impl GlibcBuild {
    /// Debian 12's glibc 2.36 on x86-64 (what `ld.so --list-diagnostics`
    /// reports on this machine).
    pub fn debian_x86_64() -> GlibcBuild {
        GlibcBuild::multiarch("x86_64-linux-gnu", (2, 36))
    }

    /// A Debian/Ubuntu multiarch layout for `triplet`.
    pub fn multiarch(triplet: &str, version: (u32, u32)) -> GlibcBuild {
        GlibcBuild {
            version,
            system_dirs: vec![
                format!("/lib/{triplet}/"),
                format!("/usr/lib/{triplet}/"),
                "/lib/".into(),
                "/usr/lib/".into(),
            ],
            lib: format!("lib/{triplet}"),
        }
    }

    pub fn has_glibc_hwcaps(&self) -> bool {
        self.version >= (2, 33)
    }

    pub fn has_legacy_hwcaps(&self) -> bool {
        self.version < (2, 37)
    }

    /// Read the facts from an ld.so binary (a host path): its version banner
    /// (`… release version 2.36`) and its system directory list, a run of
    /// NUL-separated absolute directory names in its read-only data. `$LIB`
    /// is the first system directory (glibc's `slibdir`) without its slashes.
    /// `None` when the file does not look like glibc's ld.so.
    pub fn read(ldso: &Path) -> Option<GlibcBuild> {
        let data = std::fs::read(ldso).ok()?;
        let version = find_version(&data)?;
        let system_dirs = find_system_dirs(&data)?;
        let lib = system_dirs[0].trim_matches('/').to_string();
        Some(GlibcBuild {
            version,
            system_dirs,
            lib,
        })
    }
}

fn find_version(data: &[u8]) -> Option<(u32, u32)> {
    const NEEDLE: &[u8] = b"release version ";
    let at = memchr::memmem::find(data, NEEDLE)? + NEEDLE.len();
    let rest = &data[at..data.len().min(at + 16)];
    let text: String = rest
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .map(|&c| c as char)
        .collect();
    let mut it = text.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The first run of consecutive NUL-terminated strings, each an absolute
/// directory name ending with `/` and containing `lib`, that starts right
/// after a NUL: how gen-trusted-dirs.awk lays out `SYSTEM_DIRS`.
fn find_system_dirs(data: &[u8]) -> Option<Vec<String>> {
    let is_dir = |s: &[u8]| {
        s.len() >= 2
            && s.len() <= 256
            && s[0] == b'/'
            && s[s.len() - 1] == b'/'
            && s.windows(3).any(|w| w == b"lib")
            && s.iter().all(|c| c.is_ascii_graphic())
    };
    for p in memchr::memmem::find_iter(data, b"\0/") {
        let start = p + 1;
        let mut dirs = Vec::new();
        let mut at = start;
        while let Some(len) = data[at..].iter().position(|&c| c == 0) {
            let s = &data[at..at + len];
            if !is_dir(s) {
                break;
            }
            dirs.push(String::from_utf8_lossy(s).into_owned());
            at += len + 1;
        }
        if !dirs.is_empty() {
            return Some(dirs);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_subdirs_follow_glibc_order() {
        // What LD_DEBUG=libs shows on this AMD machine with glibc 2.36.
        let parts: Vec<String> = ["x86_64", "x86_64", "tls"].map(String::from).to_vec();
        assert_eq!(
            legacy_combinations(&parts),
            [
                "tls/x86_64/x86_64/",
                "tls/x86_64/",
                "tls/x86_64/",
                "tls/",
                "x86_64/x86_64/",
                "x86_64/",
                "x86_64/",
                ""
            ]
        );
    }

    #[test]
    fn x86_64_levels_and_platforms() {
        let v2 = [
            "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
        ];
        let mut v3 = v2.to_vec();
        v3.extend([
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ]);
        let mut v4 = v3.clone();
        v4.extend(["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
        assert_eq!(Cpu::x86_64(false, &v2).hwcaps, ["x86-64-v2"]);
        let amd = Cpu::x86_64(false, &v4);
        assert_eq!(amd.hwcaps, ["x86-64-v4", "x86-64-v3", "x86-64-v2"]);
        assert_eq!((amd.platform.as_str(), amd.isa_level), ("x86_64", 3));
        let intel = Cpu::x86_64(true, &v4);
        assert_eq!(intel.platform, "haswell");
        assert_eq!(intel.legacy_hwcaps, ["x86_64", "avx512_1"]);
        assert!(Cpu::x86_64(false, &["sse2"]).hwcaps.is_empty());
    }

    #[test]
    fn reads_this_machines_ld_so() {
        let b = GlibcBuild::read(Path::new("/lib64/ld-linux-x86-64.so.2")).expect("glibc ld.so");
        assert_eq!(b, GlibcBuild::debian_x86_64());
        let subdirs = Cpu::host().subdirs(&b);
        assert_eq!(subdirs.last().map(String::as_str), Some(""));
    }
}
