//! Programs a reviewer wants to know about, recognised by file name: shells,
//! interpreters, package managers, network tools and compilers.
//!
//! A name matches as written (`nc.openbsd`, `cc1plus`), or after dropping a
//! cross-tool prefix (`x86_64-linux-gnu-gcc-12`) and a version suffix
//! (`python3.11` → `python`, `gcc-12` → `gcc`, `pip3` → `pip`).

use std::ffi::OsStr;

use serde::{Deserialize, Serialize};

/// What kind of program a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Shell,
    Interpreter,
    PackageManager,
    NetworkTool,
    Compiler,
}

/// The tables, in the order a name is looked up (busybox is a shell first).
pub const TABLE: &[(Category, &[&str])] = &[
    (
        Category::Shell,
        &[
            "sh", "bash", "rbash", "dash", "zsh", "ash", "busybox", "ksh", "mksh", "pdksh", "csh",
            "tcsh", "fish", "yash", "posh", "toybox",
        ],
    ),
    (
        Category::Interpreter,
        &[
            "python",
            "pypy",
            "perl",
            "ruby",
            "irb",
            "node",
            "nodejs",
            "deno",
            "bun",
            "lua",
            "luajit",
            "php",
            "tclsh",
            "wish",
            "expect",
            "java",
            "jshell",
            "Rscript",
            "guile",
            "gawk",
            "mawk",
            "awk",
            "nawk",
            "osascript",
            "pwsh",
            "julia",
            "erl",
            "escript",
        ],
    ),
    (
        Category::PackageManager,
        &[
            "apt",
            "apt-get",
            "aptitude",
            "dpkg",
            "dpkg-deb",
            "pip",
            "pipx",
            "easy_install",
            "conda",
            "mamba",
            "npm",
            "npx",
            "yarn",
            "pnpm",
            "apk",
            "yum",
            "dnf",
            "microdnf",
            "rpm",
            "zypper",
            "pacman",
            "gem",
            "bundle",
            "bundler",
            "cargo",
            "composer",
            "cpan",
            "cpanm",
            "luarocks",
            "opkg",
            "nix-env",
            "snap",
            "flatpak",
        ],
    ),
    (
        Category::NetworkTool,
        &[
            "curl",
            "wget",
            "nc",
            "netcat",
            "ncat",
            "nc.openbsd",
            "nc.traditional",
            "ssh",
            "scp",
            "sftp",
            "telnet",
            "ftp",
            "tftp",
            "socat",
            "nmap",
            "rsync",
            "ssh-keyscan",
            "dig",
            "nslookup",
            "host",
            "ping",
            "tcpdump",
            "openssl",
            "lftp",
            "aria2c",
            "httpie",
            "http",
        ],
    ),
    (
        Category::Compiler,
        &[
            "gcc", "cc", "c++", "g++", "cpp", "clang", "clang++", "cc1", "cc1plus", "cc1obj",
            "collect2", "lto1", "as", "ld", "ld.bfd", "ld.gold", "ld.lld", "lld", "rustc", "go",
            "gccgo", "javac", "tcc", "gfortran", "nasm", "yasm", "zig", "ghc", "ocamlopt", "fpc",
        ],
    ),
];

/// The category of a program called `name`, if any.
pub fn categorize(name: &OsStr) -> Option<Category> {
    let name = name.to_str()?;
    let mut candidates = vec![name];
    let unprefixed = strip_target_prefix(name);
    candidates.push(unprefixed);
    candidates.push(strip_version(unprefixed));
    for (cat, names) in TABLE {
        if candidates
            .iter()
            .any(|c| !c.is_empty() && names.contains(c))
        {
            return Some(*cat);
        }
    }
    None
}

/// `x86_64-linux-gnu-gcc-12` → `gcc-12`: a GNU target triplet prefix.
fn strip_target_prefix(name: &str) -> &str {
    for marker in [
        "-linux-gnu-",
        "-linux-musl-",
        "-linux-gnueabihf-",
        "-w64-mingw32-",
    ] {
        if let Some(i) = name.find(marker) {
            return &name[i + marker.len()..];
        }
    }
    name
}

/// `python3.11` → `python`, `gcc-12` → `gcc`, `tclsh8.6` → `tclsh`: digits
/// and dots at the end, then one `-` or `.` before them.
fn strip_version(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if trimmed.len() == name.len() {
        return name;
    }
    trimmed
        .strip_suffix('-')
        .or_else(|| trimmed.strip_suffix('_'))
        .unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(s: &str) -> Option<Category> {
        categorize(OsStr::new(s))
    }

    #[test]
    fn names_and_versions() {
        use Category::*;
        for (name, want) in [
            ("sh", Some(Shell)),
            ("bash", Some(Shell)),
            ("busybox", Some(Shell)),
            ("python3.11", Some(Interpreter)),
            ("python3", Some(Interpreter)),
            ("perl5.36.0", Some(Interpreter)),
            ("tclsh8.6", Some(Interpreter)),
            ("pip3", Some(PackageManager)),
            ("apt-get", Some(PackageManager)),
            ("dpkg", Some(PackageManager)),
            ("nc.openbsd", Some(NetworkTool)),
            ("curl", Some(NetworkTool)),
            ("gcc-12", Some(Compiler)),
            ("x86_64-linux-gnu-gcc-12", Some(Compiler)),
            ("x86_64-linux-gnu-ld.bfd", Some(Compiler)),
            ("cc1", Some(Compiler)),
            ("g++-12", Some(Compiler)),
            ("ls", None),
            ("ld-linux-x86-64.so.2", None),
            ("libc.so.6", None),
            ("python3-config", None),
            ("12", None),
        ] {
            assert_eq!(cat(name), want, "{name}");
        }
    }
}
