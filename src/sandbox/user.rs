//! Who the command runs as: `USER[:GROUP]` resolved the way container
//! runtimes do it, through the root's own `/etc/passwd` and `/etc/group`
//! (never the host's).

use std::path::{Path, PathBuf};

use super::error::SandboxError;
use crate::resolve::{Follow, Root};

/// The identity of the command inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (set only when the sandbox runs as root; see
    /// docs/sandbox.md "User namespaces").
    pub groups: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

impl User {
    /// A numeric identity without supplementary groups.
    pub fn new(uid: u32, gid: u32) -> User {
        User {
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    /// Resolve `USER[:GROUP]` in the tree at `root`. Each part is a number
    /// or a name. Without GROUP the group is the user's primary group from
    /// the root's `/etc/passwd`, or 0 when the uid has no entry (as docker
    /// does). Supplementary groups are those of `/etc/group` that list the
    /// user's name.
    pub fn lookup(root: &Path, spec: &str) -> Result<User, SandboxError> {
        let bad = |reason: String| SandboxError::BadUser {
            user: spec.to_string(),
            root: root.to_path_buf(),
            reason,
        };
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user_part.is_empty() || group_part == Some("") {
            return Err(bad(
                "expected USER[:GROUP], each a name or a number".to_string()
            ));
        }
        let tree = Root::new(root).map_err(|e| bad(e.to_string()))?;
        let passwd = parse_passwd(&read_etc(&tree, "/etc/passwd")?);
        let groups = parse_group(&read_etc(&tree, "/etc/group")?);

        let entry = match user_part.parse::<u32>() {
            Ok(uid) => passwd
                .into_iter()
                .find(|e| e.uid == uid)
                .or(Some(PasswdEntry {
                    name: String::new(),
                    uid,
                    gid: 0,
                })),
            Err(_) => passwd.into_iter().find(|e| e.name == user_part),
        };
        let entry = entry.ok_or_else(|| {
            bad(format!(
                "no user {user_part:?} in the root's /etc/passwd; use a number or add the user"
            ))
        })?;
        let gid = match group_part {
            None => entry.gid,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| bad(format!("no group {g:?} in the root's /etc/group; use a number or add the group")))?,
            },
        };
        let mut supplementary: Vec<u32> = Vec::new();
        if !entry.name.is_empty() {
            for g in &groups {
                if g.gid != gid
                    && g.members.contains(&entry.name)
                    && !supplementary.contains(&g.gid)
                {
                    supplementary.push(g.gid);
                }
            }
        }
        Ok(User {
            uid: entry.uid,
            gid,
            groups: supplementary,
        })
    }
}

/// What a container runtime adds to an image's Env before it starts the
/// command: `HOME` from `uid`'s passwd entry in `root` when the Env has
/// none ([`home_of`], runc's rule). Verify, `jail run` of an image and
/// slim's traced run all start the command this way, as `podman run` does.
pub fn add_runtime_home(
    env: &mut Vec<(std::ffi::OsString, std::ffi::OsString)>,
    root: &Path,
    uid: u32,
) {
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), home_of(root, uid).into_os_string()));
    }
}

/// The home directory a container runtime gives `uid` when the image's Env
/// has no `HOME`: its entry in the root's `/etc/passwd`, else `/` (runc's
/// rule).
pub fn home_of(root: &Path, uid: u32) -> PathBuf {
    let home = Root::new(root)
        .ok()
        .and_then(|tree| read_etc(&tree, "/etc/passwd").ok())
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid) && !f[5].is_empty())
                    .then(|| PathBuf::from(f[5]))
            })
        });
    home.unwrap_or_else(|| PathBuf::from("/"))
}

/// Read a file of the root, resolving symlinks inside it; a missing file is
/// empty (many minimal images have no /etc/group).
fn read_etc(tree: &Root, inner: &str) -> Result<String, SandboxError> {
    let resolved = tree.resolve(Path::new(inner), Follow::Yes);
    if !resolved.exists() {
        return Ok(String::new());
    }
    let host: PathBuf = tree.host_path(&resolved.path);
    match std::fs::read(&host) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(SandboxError::ReadRootFile { path: host, source }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:app\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn names_and_numbers() {
        let t = tree();
        assert_eq!(
            User::lookup(t.path(), "app").unwrap(),
            User {
                uid: 1000,
                gid: 1001,
                groups: vec![10, 29]
            }
        );
        assert_eq!(
            User::lookup(t.path(), "1000:wheel").unwrap(),
            User {
                uid: 1000,
                gid: 10,
                groups: vec![29]
            }
        );
        assert_eq!(
            User::lookup(t.path(), "4242").unwrap(),
            User {
                uid: 4242,
                gid: 0,
                groups: vec![]
            }
        );
        assert_eq!(
            User::lookup(t.path(), "4242:7").unwrap(),
            User {
                uid: 4242,
                gid: 7,
                groups: vec![]
            }
        );
        assert!(User::lookup(t.path(), "nobody")
            .unwrap_err()
            .to_string()
            .contains("no user \"nobody\""));
        assert!(User::lookup(t.path(), "app:nogroup").is_err());
        assert!(User::lookup(t.path(), "app:").is_err());
    }

    #[test]
    fn passwd_outside_the_root_is_not_read() {
        let t = tree();
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        // An absolute symlink is resolved inside the root, not on the host.
        std::os::unix::fs::symlink("/etc/passwd-elsewhere", t.path().join("etc/passwd")).unwrap();
        assert!(User::lookup(t.path(), "root").is_err());
        assert_eq!(User::lookup(t.path(), "0").unwrap().uid, 0);
    }
}
