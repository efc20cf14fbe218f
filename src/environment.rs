//! Which of the traced environment goes into the image's `Env`
//! (docs/fidelity.md, "The environment").
//!
//! A traced program behaves by its environment: `LANG` decides how gawk
//! counts characters, `SSL_CERT_FILE` where python finds its CA bundle. A
//! container runtime gives the program only the image's `Env`, so what shaped
//! the traced run must be in it. What belongs to the host session (the
//! terminal, the display, the ssh agent, the shell's bookkeeping) must not
//! be, and a credential never is, whatever the patterns say.
//!
//! The rule, in order, for each traced variable:
//! 1. a credential (by name or by value) is left out and reported;
//! 2. a name matching `--env-keep` is kept;
//! 3. a name matching `--env-drop` is left out (so `--env-drop '*'` with
//!    `--env-keep` patterns keeps only those);
//! 4. a host-session name is left out;
//! 5. everything else is kept: a variable jail knows nothing about may steer
//!    the program, and keeping it is what keeps the jail faithful (the
//!    summary on stderr shows it, `--env-drop` removes it).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// Names a login session, terminal or desktop sets for its own use.
const HOST_SESSION: &[&str] = &[
    "_",
    "BROWSER",
    "COLORTERM",
    "COLUMNS",
    "DBUS_SESSION_BUS_ADDRESS",
    "DESKTOP_SESSION",
    "DISPLAY",
    "EDITOR",
    "GPG_TTY",
    "HISTCONTROL",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTSIZE",
    "HOSTNAME",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "LESSCLOSE",
    "LESSOPEN",
    "LINES",
    "LOGNAME",
    "LS_COLORS",
    "MAIL",
    "MANAGERPID",
    "MOTD_SHOWN",
    "NOTIFY_SOCKET",
    "OLDPWD",
    "PROMPT_COMMAND",
    "PS1",
    "PS2",
    "PS4",
    "PWD",
    "SESSION_MANAGER",
    "SHELL",
    "SHLVL",
    "STY",
    "SYSTEMD_EXEC_PID",
    "TERM",
    "TERMCAP",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "TMUX",
    "TMUX_PANE",
    "USER",
    "VISUAL",
    "WAYLAND_DISPLAY",
    "WINDOW",
    "WINDOWID",
    "XAUTHORITY",
];

/// Name prefixes of the same kind.
const HOST_SESSION_PREFIXES: &[&str] =
    &["GNOME_", "KDE_", "LISTEN_", "SSH_", "SUDO_", "VTE_", "XDG_"];

/// Words (between `_`) that make a name credential-like.
const CREDENTIAL_WORDS: &[&str] = &[
    "APIKEY",
    "AUTH",
    "COOKIE",
    "CREDENTIAL",
    "CREDENTIALS",
    "KEY",
    "PASS",
    "PASSPHRASE",
    "PASSWD",
    "PASSWORD",
    "PRIVATE",
    "SECRET",
    "SECRETS",
    "TOKEN",
];

/// Value prefixes of well-known token formats.
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "npm_",
    "AKIA",
    "ASIA",
    "sk-",
    "sk_live_",
    "rk_live_",
];

/// Why a variable is not in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dropped {
    /// Looks like a credential (its value is never recorded anywhere).
    Credential,
    /// Belongs to the host session (terminal, display, shell, ssh agent).
    HostSession,
    /// Matched `--env-drop`.
    Flag,
}

/// What became of the traced environment. Recorded in the manifest; a
/// credential's value never is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDecision {
    /// `NAME=VALUE`, in the traced order, as the image's `Env` gets them.
    pub kept: Vec<String>,
    /// Names left out, with why.
    pub dropped: Vec<(String, Dropped)>,
}

impl EnvDecision {
    /// The credential-like names (for findings).
    pub fn credentials(&self) -> impl Iterator<Item = &str> {
        self.dropped
            .iter()
            .filter(|(_, why)| *why == Dropped::Credential)
            .map(|(n, _)| n.as_str())
    }

    /// One line for stderr: what was kept and what was left out.
    pub fn summary(&self) -> String {
        let names = |v: Vec<&str>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        let kept: Vec<&str> = self
            .kept
            .iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        let mut out = format!("image env: kept {}", names(kept));
        for (why, label) in [
            (Dropped::HostSession, "host session"),
            (Dropped::Flag, "--env-drop"),
        ] {
            let d: Vec<&str> = self
                .dropped
                .iter()
                .filter(|(_, w)| *w == why)
                .map(|(n, _)| n.as_str())
                .collect();
            if !d.is_empty() {
                out.push_str(&format!("; left out ({label}): {}", d.join(" ")));
            }
        }
        out
    }
}

/// `--env-keep` / `--env-drop` glob patterns over names (`LC_*`).
#[derive(Clone, Debug, Default)]
pub struct EnvRule {
    keep: Option<GlobSet>,
    drop: Option<GlobSet>,
}

/// A bad `--env-keep`/`--env-drop` pattern.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} pattern {pattern:?}")]
pub struct PatternError {
    flag: &'static str,
    pattern: String,
    source: globset::Error,
}

impl EnvRule {
    pub fn new(keep: &[String], drop: &[String]) -> Result<EnvRule, PatternError> {
        Ok(EnvRule {
            keep: set("--env-keep", keep)?,
            drop: set("--env-drop", drop)?,
        })
    }

    /// Apply the rule to a traced environment. Later duplicates of a name
    /// win, as `getenv` sees them.
    pub fn decide(&self, env: &[(OsString, OsString)]) -> EnvDecision {
        let mut last: Vec<(&OsStr, &OsStr)> = Vec::new();
        for (k, v) in env {
            last.retain(|(ok, _)| *ok != k.as_os_str());
            last.push((k, v));
        }
        let mut d = EnvDecision::default();
        for (k, v) in last {
            let name = k.to_string_lossy().into_owned();
            let why = if is_credential(&name, v) {
                Some(Dropped::Credential)
            } else if self.keep.as_ref().is_some_and(|g| g.is_match(&name)) {
                None
            } else if self.drop.as_ref().is_some_and(|g| g.is_match(&name)) {
                Some(Dropped::Flag)
            } else if is_host_session(&name) {
                Some(Dropped::HostSession)
            } else {
                None
            };
            match why {
                Some(w) => d.dropped.push((name, w)),
                // An image's Env is text: a value that is not UTF-8 cannot
                // be carried faithfully.
                None => match v.to_str() {
                    Some(v) => d.kept.push(format!("{name}={v}")),
                    None => d.dropped.push((name, Dropped::HostSession)),
                },
            }
        }
        d
    }
}

fn set(flag: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|source| PatternError {
            flag,
            pattern: p.clone(),
            source,
        })?);
    }
    b.build().map(Some).map_err(|source| PatternError {
        flag,
        pattern: patterns.join(" "),
        source,
    })
}

fn is_host_session(name: &str) -> bool {
    HOST_SESSION.contains(&name) || HOST_SESSION_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A credential by its name (a word such as TOKEN or PASSWORD) or by its
/// value (a known token format, a PEM block, a URL with a password).
pub fn is_credential(name: &str, value: &OsStr) -> bool {
    let upper = name.to_ascii_uppercase();
    // The session's agent socket is not a credential, only a host path.
    if is_host_session(&upper) {
        return false;
    }
    if upper
        .split(['_', '-', '.'])
        .any(|w| CREDENTIAL_WORDS.contains(&w))
    {
        return true;
    }
    let v = value.as_bytes();
    if TOKEN_PREFIXES
        .iter()
        .any(|p| v.starts_with(p.as_bytes()) && v.len() >= p.len() + 16)
    {
        return true;
    }
    if memchr::memmem::find(v, b"-----BEGIN").is_some() {
        return true;
    }
    // scheme://user:password@host
    if let Some(at) = memchr::memmem::find(v, b"://") {
        let rest = &v[at + 3..];
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some(userinfo) = authority
            .iter()
            .rposition(|&b| b == b'@')
            .map(|i| &authority[..i])
        {
            if userinfo.contains(&b':') {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn behaviour_is_kept_session_and_credentials_are_not() {
        let d = EnvRule::default().decide(&env(&[
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
            ("TERM", "xterm"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("XDG_RUNTIME_DIR", "/run/user/0"),
            ("PWD", "/root"),
            ("GITHUB_TOKEN", "abc"),
            ("DATABASE_URL", "postgres://app:hunter2@db/app"),
            ("MYAPP_MODE", "fast"),
            ("LANG", "C.UTF-8"),
        ]));
        assert_eq!(
            d.kept,
            [
                "PATH=/usr/bin:/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "MYAPP_MODE=fast",
                "LANG=C.UTF-8"
            ]
        );
        let creds: Vec<&str> = d.credentials().collect();
        assert_eq!(creds, ["GITHUB_TOKEN", "DATABASE_URL"]);
        for n in ["TERM", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR", "PWD"] {
            assert!(
                d.dropped.contains(&(n.to_string(), Dropped::HostSession)),
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    fn flags_override_the_session_list_but_never_a_credential() {
        let rule = EnvRule::new(&["TERM".into(), "API_KEY".into()], &["MYAPP_*".into()]).unwrap();
        let d = rule.decide(&env(&[
            ("TERM", "xterm"),
            ("API_KEY", "x"),
            ("MYAPP_MODE", "fast"),
        ]));
        assert_eq!(d.kept, ["TERM=xterm"]);
        assert!(d
            .dropped
            .contains(&("API_KEY".to_string(), Dropped::Credential)));
        assert!(d
            .dropped
            .contains(&("MYAPP_MODE".to_string(), Dropped::Flag)));
        // An allow-list: drop everything, keep some.
        let only = EnvRule::new(&["LANG".into(), "PATH".into()], &["*".into()]).unwrap();
        let d = only.decide(&env(&[("PATH", "/bin"), ("LANG", "C"), ("X", "1")]));
        assert_eq!(d.kept, ["PATH=/bin", "LANG=C"]);
        assert_eq!(d.dropped, [("X".to_string(), Dropped::Flag)]);
    }

    #[test]
    fn credentials_by_value() {
        let yes = [
            ("X", "ghp_0123456789abcdefghij0123456789abcdef"),
            ("X", "AKIAIOSFODNN7EXAMPLE1234"),
            ("X", "-----BEGIN OPENSSH PRIVATE KEY-----"),
            ("PROXY", "http://u:p@proxy:3128"),
        ];
        for (k, v) in yes {
            assert!(is_credential(k, OsStr::new(v)), "{k}={v}");
        }
        let no = [
            ("HTTP_PROXY", "http://proxy:3128"),
            ("MAILTO", "a@b"),
            ("PATH", "/usr/bin"),
            ("KEYBOARD", "us"),
            ("SSH_AUTH_SOCK", "/tmp/x"),
        ];
        for (k, v) in no {
            assert!(!is_credential(k, OsStr::new(v)), "{k}={v}");
        }
    }
}
