//! Dynamic string tokens: `$ORIGIN`, `$LIB`, `$PLATFORM` (also in the
//! `${…}` form) in `DT_RPATH`, `DT_RUNPATH`, `DT_NEEDED` and
//! `LD_LIBRARY_PATH`, expanded as glibc's `_dl_dst_substitute` does.
//!
//! - A token is recognised only when not followed by an identifier
//!   character (`$ORIGINX` is literal); an unknown `$NAME` stays literal.
//! - In secure-execution mode `$ORIGIN` is honoured only as the very start
//!   of an element followed by `/` or nothing; elsewhere the element is
//!   dropped. For the main executable the expansion must then also lie in a
//!   trusted (system) directory, after lexical normalisation.
//! - A token without a value drops the element: the result is empty.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The values tokens expand to, for one object.
#[derive(Clone, Copy, Debug)]
pub struct Tokens<'a> {
    /// The directory of the object (`None`: unknown, elements using it drop).
    pub origin: Option<&'a [u8]>,
    /// `$PLATFORM` (AT_PLATFORM, or glibc's own choice such as `haswell`).
    pub platform: &'a str,
    /// `$LIB`, compiled into ld.so (`lib/x86_64-linux-gnu` on Debian).
    pub lib: &'a str,
    /// Secure-execution mode (set-user-ID or set-group-ID program).
    pub secure: bool,
    /// In secure mode, for the main executable: `$ORIGIN` expansions must land
    /// under one of these directories (ld.so's system directories).
    pub trusted: Option<&'a [String]>,
}

/// The number of known tokens in `input` (glibc's `_dl_dst_count`).
pub fn count(input: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while let Some(p) = input[i..].iter().position(|&c| c == b'$') {
        let at = i + p + 1;
        let len = token_len(&input[at..], b"ORIGIN")
            .or_else(|| token_len(&input[at..], b"PLATFORM"))
            .or_else(|| token_len(&input[at..], b"LIB"));
        if len.is_some() {
            n += 1;
        }
        i = at + len.unwrap_or(0);
    }
    n
}

/// Expand the tokens of one path element. An empty result means the element
/// is dropped.
pub fn substitute(input: &[u8], t: &Tokens) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 32);
    let mut check_trusted = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'$' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        let (len, repl): (usize, Option<&[u8]>) = if let Some(len) = token_len(rest, b"ORIGIN") {
            let alone = i == 0 && matches!(rest.get(len), None | Some(b'/'));
            check_trusted = t.secure && t.trusted.is_some();
            (len, if t.secure && !alone { None } else { t.origin })
        } else if let Some(len) = token_len(rest, b"PLATFORM") {
            (len, Some(t.platform.as_bytes()))
        } else if let Some(len) = token_len(rest, b"LIB") {
            (len, Some(t.lib.as_bytes()))
        } else {
            out.push(b'$');
            i += 1;
            continue;
        };
        match repl {
            Some(r) => out.extend_from_slice(r),
            None => return Vec::new(),
        }
        i += 1 + len;
    }
    if check_trusted && !t.trusted.is_some_and(|dirs| is_trusted(&out, dirs)) {
        return Vec::new();
    }
    out
}

/// glibc's `is_dst`: the length of token `name` at the start of `s` (after
/// the `$`), counting braces, or `None`.
fn token_len(s: &[u8], name: &[u8]) -> Option<usize> {
    let curly = s.first() == Some(&b'{');
    let body = if curly { &s[1..] } else { s };
    if !body.starts_with(name) {
        return None;
    }
    let next = body.get(name.len()).copied();
    if curly && next != Some(b'}') {
        return None;
    }
    if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    Some(name.len() + if curly { 2 } else { 0 })
}

/// glibc's `is_trusted_path_normalize`: after dropping `.`, `..` and
/// repeated slashes lexically, does `path` (absolute) lie in one of `dirs`
/// (each ending with `/`)?
pub fn is_trusted(path: &[u8], dirs: &[String]) -> bool {
    if path.is_empty() {
        return false;
    }
    let mut n = crate::paths::normalize(Path::new(OsStr::from_bytes(path)))
        .into_os_string()
        .into_vec();
    if n.last() != Some(&b'/') {
        n.push(b'/');
    }
    dirs.iter().any(|d| n.starts_with(d.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(origin: &str) -> Tokens<'_> {
        Tokens {
            origin: Some(origin.as_bytes()),
            platform: "x86_64",
            lib: "lib/x86_64-linux-gnu",
            secure: false,
            trusted: None,
        }
    }

    fn sub(s: &str, t: &Tokens) -> String {
        String::from_utf8(substitute(s.as_bytes(), t)).unwrap()
    }

    #[test]
    fn expands_all_three_tokens_in_both_forms() {
        let t = tok("/opt/app/bin");
        assert_eq!(sub("$ORIGIN/../lib", &t), "/opt/app/bin/../lib");
        assert_eq!(sub("${ORIGIN}/../lib", &t), "/opt/app/bin/../lib");
        assert_eq!(sub("/usr/$LIB/x", &t), "/usr/lib/x86_64-linux-gnu/x");
        assert_eq!(sub("/p/${PLATFORM}", &t), "/p/x86_64");
        assert_eq!(
            sub("$ORIGIN/$LIB/$PLATFORM", &t),
            "/opt/app/bin/lib/x86_64-linux-gnu/x86_64"
        );
    }

    #[test]
    fn unknown_or_glued_tokens_stay_literal() {
        let t = tok("/o");
        assert_eq!(sub("$ORIGINAL/x", &t), "$ORIGINAL/x");
        assert_eq!(sub("$HOME/lib", &t), "$HOME/lib");
        assert_eq!(sub("${ORIGIN/x", &t), "${ORIGIN/x");
        assert_eq!(sub("a$", &t), "a$");
        assert_eq!(count(b"$ORIGIN/$LIB:$FOO"), 2);
        assert_eq!(count(b"/usr/lib"), 0);
    }

    #[test]
    fn unknown_origin_drops_the_element() {
        let t = Tokens {
            origin: None,
            ..tok("")
        };
        assert_eq!(sub("$ORIGIN/lib", &t), "");
        assert_eq!(sub("/usr/$LIB", &t), "/usr/lib/x86_64-linux-gnu");
    }

    #[test]
    fn secure_mode_restricts_origin() {
        let dirs = vec![
            "/lib/x86_64-linux-gnu/".to_string(),
            "/usr/lib/".to_string(),
        ];
        let lib = Tokens {
            secure: true,
            ..tok("/usr/lib/app")
        };
        assert_eq!(sub("$ORIGIN/plugins", &lib), "/usr/lib/app/plugins");
        assert_eq!(sub("/x/$ORIGIN", &lib), "");
        assert_eq!(sub("$ORIGINfoo", &lib), "$ORIGINfoo");
        // The main executable: only trusted results survive.
        let main = Tokens {
            secure: true,
            trusted: Some(&dirs),
            ..tok("/usr/lib/app")
        };
        assert_eq!(sub("$ORIGIN/../lib", &main), "/usr/lib/app/../lib");
        let main = Tokens {
            secure: true,
            trusted: Some(&dirs),
            ..tok("/home/u/bin")
        };
        assert_eq!(sub("$ORIGIN/../lib", &main), "");
        let main = Tokens {
            secure: true,
            trusted: Some(&dirs),
            ..tok("/usr/lib/x/../../../home")
        };
        assert_eq!(sub("$ORIGIN", &main), "");
    }

    #[test]
    fn trusted_paths_are_normalised_lexically() {
        let dirs = vec!["/usr/lib/".to_string()];
        assert!(is_trusted(b"/usr/lib", &dirs));
        assert!(is_trusted(b"/usr//lib/./x", &dirs));
        assert!(is_trusted(b"/usr/share/../lib/x", &dirs));
        assert!(!is_trusted(b"/usr/lib/../../etc", &dirs));
        assert!(!is_trusted(b"/usr/libexec", &dirs));
        assert!(!is_trusted(b"", &dirs));
    }
}
