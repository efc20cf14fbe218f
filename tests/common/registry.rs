//! A real registry for tests: Debian's `docker-registry`, started on
//! 127.0.0.1 with its storage in a temp dir, its access log counting the
//! uploads. Included with `#[path]` by the tests that push.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::require;

/// A `docker-registry serve` on 127.0.0.1, killed when dropped.
pub struct Registry {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Start one; with `auth`, htpasswd authentication for that user.
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        require("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("jail-registry")
            .tempdir()
            .unwrap();
        let mut auth_yaml = String::new();
        if let Some((user, pass)) = auth {
            let hash = bcrypt::hash_with_result(pass, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoA);
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: jail-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_ready(&mut child, port) {
                return Registry { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start:\n{}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob uploads started (`POST /v2/…/blobs/uploads/`), from the access log.
    pub fn uploads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"POST /v2/") && l.contains("/blobs/uploads/"))
            .count()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// Poll `/v2/` until the registry answers (false if it exits or never does).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// The blobs uploaded (`PUT …/blobs/uploads/…?digest=…`, answered 201),
    /// from the access log, with their sizes as stored.
    pub fn blob_puts(&self) -> Vec<(String, u64)> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/"))
            .filter_map(|l| {
                let at = l.find("digest=sha256")? + "digest=".len();
                let rest = &l[at..];
                let end = rest.find(['&', ' ', '"']).unwrap_or(rest.len());
                let d = rest[..end].replace("%3A", ":");
                let size = std::fs::metadata(self.blob_data(&d)).ok()?.len();
                Some((d, size))
            })
            .collect()
    }

    /// Cross-repository mounts the registry answered 201 to.
    pub fn mounts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"POST /v2/") && l.contains("mount=") && l.contains("\" 201 "))
            .count()
    }
}

/// `jail` run in `dir` with a private HOME (`dir/home`) and blob cache
/// (`cache`), and none of the machine's registry auth files.
pub fn isolated_jail(dir: &Path, cache: &Path) -> Command {
    let mut c = crate::common::jail();
    c.current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("XDG_CACHE_HOME", cache)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DOCKER_CONFIG");
    c
}

/// A scratch directory with a private HOME and blob cache, and no auth
/// files from the machine: every jail command of a test runs with these.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new one, its name starting with `prefix`.
    pub fn new_in(prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `jail` in this directory with its HOME and cache.
    pub fn jail(&self) -> Command {
        isolated_jail(self.path(), &self.cache())
    }
}
