//! What the file-set build tells the user (secrets and credentials left
//! out, missing libraries, dropped accounts, skipped paths): part of the model, so the manifest can carry
//! findings without depending on the build stage.

use std::path::PathBuf;

/// Something the build decided that a user should hear about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A secret the run read was left out of the jail.
    SecretExcluded {
        #[serde(with = "crate::paths::serde_path")]
        path: PathBuf,
        pid: i32,
    },
    /// A secret whose only secret is a field (`/etc/shadow`,
    /// `/etc/gshadow`): the run read it, and the jail gets it generated,
    /// with the kept accounts and no password hashes.
    SecretRedacted {
        #[serde(with = "crate::paths::serde_path")]
        path: PathBuf,
        pid: i32,
    },
    /// An ELF dependency the loader would not find.
    MissingLibrary {
        name: String,
        #[serde(with = "crate::paths::serde_path")]
        needed_by: PathBuf,
    },
    /// Accounts left out of a reduced `/etc/passwd` or `/etc/group`: no
    /// traced process ran as them, they own no kept file, and they are not
    /// system accounts of the root.
    AccountsDropped {
        #[serde(with = "crate::paths::serde_path")]
        path: PathBuf,
        names: Vec<String>,
    },
    /// A traced environment variable that looks like a credential, left out
    /// of the image's Env (its value is recorded nowhere).
    CredentialExcluded { name: String },
    /// A path that could not be added (vanished since the run, unreadable).
    Skipped {
        #[serde(with = "crate::paths::serde_path")]
        path: PathBuf,
        why: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::SecretExcluded { path, pid } => write!(
                f,
                "SECRET LEFT OUT: {} was {} but is not copied into the jail; if the program really needs it, include it explicitly (config `include`) or provide it at run time{}",
                path.display(),
                if *pid == 0 { "needed".to_string() } else { format!("read by pid {pid}") },
                if path == std::path::Path::new("/etc/shadow") || path == std::path::Path::new("/etc/gshadow") {
                    " (--redacted-shadow puts a copy without password hashes in, enough for PAM's account checks: su, runuser, login)"
                } else {
                    ""
                }
            ),
            Finding::SecretRedacted { path, pid } => write!(
                f,
                "SECRET REDACTED: {} was {}; the jail gets a generated copy with the kept accounts and every password hash replaced by `*` (`!` if locked), so account checks (PAM, su, login) work but no password does; include it explicitly to copy the real file",
                path.display(),
                if *pid == 0 { "needed".to_string() } else { format!("read by pid {pid}") }
            ),
            Finding::MissingLibrary { name, needed_by } => write!(f, "{} needs {name}, which the loader would not find", needed_by.display()),
            Finding::AccountsDropped { path, names } => write!(
                f,
                "{}: left out the accounts {} (no traced process ran as them, they own no file in the jail, and they are not system accounts); pass --keep-passwd to keep every account",
                path.display(),
                names.join(", ")
            ),
            Finding::CredentialExcluded { name } => write!(
                f,
                "CREDENTIAL LEFT OUT: the traced environment's {name} looks like a credential and is not copied into the image; pass it at run time (podman run -e {name}), or set it with --env if it is not one"
            ),
            Finding::Skipped { path, why } => write!(f, "left out {}: {why}", path.display()),
        }
    }
}
