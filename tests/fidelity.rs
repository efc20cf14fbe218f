//! Issue 14: the image behaves like the program, and `--verify` never says
//! ok when it does not. Real programs that none of the shipped configs
//! cover are run natively, traced with `--verify`, and run from the image
//! in podman; verify's verdict and podman's stdout and exit status must
//! agree with the native run.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{jail, ok, require, run, test_dir, text, Podman};

/// One program to jail.
struct Case {
    name: &'static str,
    argv: Vec<OsString>,
    /// Extra environment of the traced (and native) run.
    env: Vec<(&'static str, String)>,
    /// The checks and podman need the host's network (a local server).
    network: bool,
    /// Extra `jail trace` flags.
    flags: &'static [&'static str],
}

fn case(name: &'static str, argv: &[&str]) -> Case {
    Case {
        name,
        argv: argv.iter().map(OsString::from).collect(),
        env: Vec::new(),
        network: false,
        flags: &[],
    }
}

/// What each side saw.
struct Seen {
    native: (i32, Vec<u8>),
    verify_ok: bool,
    verify_stderr: String,
    podman: (i32, Vec<u8>),
}

fn native(c: &Case, cwd: &Path) -> (i32, Vec<u8>) {
    let o = run(Command::new(&c.argv[0])
        .args(&c.argv[1..])
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null()));
    (o.status.code().unwrap_or(-1), o.stdout)
}

fn try_case(c: &Case, podman: &Podman, cwd: &Path) -> Seen {
    let dir = test_dir("fidelity").join(c.name);
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("image.tar");
    let _ = std::fs::remove_file(&image);
    let native = native(c, cwd);
    let mut cmd = jail();
    cmd.current_dir(cwd)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .arg("trace")
        .arg("--verify")
        .arg("--keep-going")
        .args(["--tag", &format!("fidelity/{}:t", c.name)])
        .arg("-o")
        .arg(&image);
    if c.network {
        cmd.args(["--network", "host"]);
    }
    cmd.args(c.flags);
    let o = run(cmd
        .arg("--")
        .args(&c.argv)
        .stdin(std::process::Stdio::null()));
    let stderr = text(&o.stderr);
    let verify_ok = o.status.success() && stderr.contains("jail: ok: the traced run");
    assert!(
        image.exists(),
        "{}: no image written (with --keep-going):\n{stderr}",
        c.name
    );
    podman.load(&image);
    let mut pr = podman.cmd();
    pr.args(["run", "--rm"]);
    pr.args(["--network", if c.network { "host" } else { "none" }]);
    let p = run(pr.arg(format!("localhost/fidelity/{}:t", c.name)));
    Seen {
        native,
        verify_ok,
        verify_stderr: stderr,
        podman: (p.status.code().unwrap_or(-1), p.stdout),
    }
}

/// Verify's verdict matches podman's behaviour, and (for these programs,
/// which the jail must get right) both match the native run.
fn check(c: &Case, s: &Seen) -> Result<(), String> {
    if s.verify_stderr.contains("which the loader would not find") {
        return Err(format!(
            "{}: a false missing-library finding:\n{}",
            c.name, s.verify_stderr
        ));
    }
    let podman_same = s.podman == s.native;
    if s.verify_ok != podman_same {
        return Err(format!(
            "{}: verify said {} but podman {} the native run\nnative: {} {:?}\npodman: {} {:?}\njail stderr:\n{}",
            c.name,
            if s.verify_ok { "ok" } else { "FAILED" },
            if podman_same { "matches" } else { "differs from" },
            s.native.0,
            text(&s.native.1),
            s.podman.0,
            text(&s.podman.1),
            s.verify_stderr
        ));
    }
    if !podman_same {
        return Err(format!(
            "{}: the jailed program differs from the native run (verify agreed)\nnative: {} {:?}\npodman: {} {:?}\njail stderr:\n{}",
            c.name,
            s.native.0,
            text(&s.native.1),
            s.podman.0,
            text(&s.podman.1),
            s.verify_stderr
        ));
    }
    if s.native.0 != 0 || s.native.1.is_empty() {
        return Err(format!(
            "{}: the native run itself failed or printed nothing: {} {:?}",
            c.name,
            s.native.0,
            text(&s.native.1)
        ));
    }
    Ok(())
}

/// `Hello.class` for the java case, compiled once.
fn java_class() -> PathBuf {
    require("javac", "default-jdk-headless");
    let dir = test_dir("fidelity-java");
    let class = dir.join("Hello.class");
    if !class.exists() {
        std::fs::write(
            dir.join("Hello.java"),
            "public class Hello { public static void main(String[] a) { System.out.println(\"hello \" + String.join(\",\", a) + \" \" + \"é\".length()); } }\n",
        )
        .unwrap();
        ok(&run(Command::new("javac")
            .arg("-encoding")
            .arg("UTF-8")
            .arg("Hello.java")
            .current_dir(&dir)));
    }
    dir
}

/// A python venv with a C-extension wheel (PyYAML's `_yaml`), made once.
fn venv_python() -> PathBuf {
    let dir = test_dir("fidelity-venv");
    let python = dir.join("venv/bin/python");
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(dir.join("venv"));
        ok(&run(Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(dir.join("venv"))));
        let pip = run(Command::new(dir.join("venv/bin/pip")).args([
            "install",
            "--quiet",
            "--only-binary",
            ":all:",
            "PyYAML==6.0.2",
        ]));
        assert!(
            pip.status.success(),
            "pip install PyYAML into a venv (needs PyPI): {}",
            text(&pip.stderr)
        );
        std::fs::write(&done, b"").unwrap();
    }
    python
}

/// A self-signed certificate for 127.0.0.1 and an `openssl s_server -WWW`
/// serving `hello.txt` from its directory; killed on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
}

impl TlsServer {
    fn start() -> TlsServer {
        require("openssl", "openssl");
        let dir = test_dir("fidelity-tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !cert.exists() {
            ok(&run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)));
        }
        std::fs::write(dir.join("hello.txt"), "hello over tls\n").unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        // Ready when it accepts a connection.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TlsServer {
            child,
            port,
            ca: cert,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx as www-data, started, asked for its page and stopped by one
/// script: its pid file in /run, its temp dirs under /var/lib/nginx, its
/// user from /etc/passwd.
const NGINX_SCRIPT: &str = r#"set -e
nginx -c /etc/nginx/fidelity-test.conf
for i in $(seq 50); do [ -s /run/nginx-fidelity.pid ] && break; sleep 0.1; done
curl -s http://127.0.0.1:18080/ || true
nginx -c /etc/nginx/fidelity-test.conf -s stop
"#;

/// Its configuration: workers as www-data, the Debian build's temp paths
/// under /var/lib/nginx, its default access log.
const NGINX_CONF: &str = "user www-data;
pid /run/nginx-fidelity.pid;
error_log stderr;
events {}
http { include /etc/nginx/mime.types; server { listen 127.0.0.1:18080; root /var/www/fidelity; } }
";

#[test]
fn real_programs_behave_alike_natively_in_verify_and_in_podman() {
    for (tool, package) in [
        ("gawk", "gawk"),
        ("ruby", "ruby"),
        ("php", "php-cli"),
        ("java", "default-jdk-headless"),
        ("node", "nodejs"),
        ("curl", "curl"),
        ("file", "file"),
        ("nginx", "nginx-light"),
        ("setpriv", "util-linux"),
        ("su", "util-linux"),
        ("ping", "iputils-ping"),
    ] {
        require(tool, package);
    }
    assert!(
        Path::new("/usr/lib/postgresql/15/bin/initdb").exists(),
        "this test needs postgres: apt-get install -y postgresql-15 (scripts/test.sh does this)"
    );
    let podman = Podman::new();
    let cwd = tempfile::tempdir().unwrap();
    let tls = TlsServer::start();
    let java = java_class();
    let venv = venv_python();
    // nginx on a port of its own, its config written into the host's
    // /etc/nginx (the site a user would have).
    std::fs::write("/etc/nginx/fidelity-test.conf", NGINX_CONF).unwrap();
    std::fs::create_dir_all("/var/www/fidelity").unwrap();
    std::fs::write("/var/www/fidelity/index.html", "served by nginx\n").unwrap();

    let mut cases = vec![
        Case {
            env: vec![("LANG", "C.UTF-8".into())],
            ..case("gawk-locale", &["gawk", "BEGIN{print length(\"é\"), toupper(\"é\")}"])
        },
        Case {
            env: vec![("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt".into())],
            ..case(
                "python-cert-env",
                &["/usr/bin/python3", "-c", "import ssl; print(ssl.get_default_verify_paths().cafile)"],
            )
        },
        Case {
            env: vec![("LANG", "C.UTF-8".into())],
            ..case(
                "ruby",
                &["ruby", "-rjson", "-e", "puts JSON.generate({'a' => [1, 2]}); puts 'é'.length"],
            )
        },
        case(
            "php",
            &["php", "-r", "echo json_encode(['a' => 1]), \"\\n\", strtoupper('abc'), \"\\n\";"],
        ),
        Case {
            env: vec![("LANG", "C.UTF-8".into())],
            ..case("java", &["java", "-cp", java.to_str().unwrap(), "Hello", "x", "y"])
        },
        case(
            "node",
            &["node", "-e", "console.log(JSON.stringify({a:[1,2]}), require('path').join('a','b'))"],
        ),
        Case {
            network: true,
            ..case(
                "curl-tls",
                &[
                    "curl",
                    "-sS",
                    "--cacert",
                    tls.ca.to_str().unwrap(),
                    &format!("https://127.0.0.1:{}/hello.txt", tls.port),
                ],
            )
        },
        case(
            "python-venv-c-extension",
            &[
                venv.to_str().unwrap(),
                "-c",
                "import yaml; print(yaml.__with_libyaml__, yaml.dump({'a': [1, 2]}, Dumper=yaml.CDumper), end='')",
            ],
        ),
        case("file-magic", &["file", "-b", "--mime-type", "/usr/bin/gawk", "/etc/passwd"]),
        case("grep-pcre-sed", &["sh", "-c", "echo a1b22c333 | grep -oP '\\d+' | sed 's/^/n=/'"]),
        case("id-system-user", &["id", "-u", "www-data"]),
        // PAM: su's account stage (pam_unix) reads /etc/shadow even for
        // root; with --redacted-shadow the jail carries it without hashes.
        Case {
            flags: &["--redacted-shadow"],
            ..case("su-pam-account", &["su", "-s", "/bin/sh", "www-data", "-c", "id -un; echo $HOME"])
        },
        // A file capability (ping's cap_net_raw) used by a non-root user:
        // podman sets no no_new_privs, so verify must not either.
        case(
            "ping-file-capability",
            &[
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "sh",
                "-c",
                "ping -c1 -q 127.0.0.1 | grep -o '1 packets transmitted, 1 received'",
            ],
        ),
        case("nginx", &["sh", "-c", NGINX_SCRIPT]),
        case(
            "postgres-initdb-query",
            &[
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "sh",
                "-c",
                "d=$(mktemp -d) && /usr/lib/postgresql/15/bin/initdb -D $d/data >/dev/null && echo 'select 40+2 as answer' | /usr/lib/postgresql/15/bin/postgres --single -D $d/data postgres | grep -o 'answer = \"42\"'",
            ],
        ),
    ];
    // Directories a program writes into must exist before it runs, as
    // they would on a machine with the package installed.
    std::fs::create_dir_all("/var/lib/nginx").unwrap();
    let mut failures = Vec::new();
    for c in cases.drain(..) {
        let seen = try_case(&c, &podman, cwd.path());
        if let Err(e) = check(&c, &seen) {
            failures.push(e);
        }
    }
    let _ = std::fs::remove_file("/etc/nginx/fidelity-test.conf");
    assert!(
        failures.is_empty(),
        "{} of the programs failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A program whose output depends on what a directory holds (`ls DIR | wc
/// -l`): the jail keeps the entries the run used, not every entry, so the
/// check fails, and the hint names the directory instead of calling the
/// program nondeterministic.
#[test]
fn verify_names_a_listed_directory_the_jail_holds_only_in_part() {
    let listed = "/usr/share/zoneinfo/Europe";
    assert!(
        Path::new(listed).is_dir(),
        "this test needs tzdata: apt-get install -y tzdata (scripts/test.sh does this)"
    );
    let image = test_dir("fidelity-listing").join("image.tar");
    let o = run(jail()
        .args(["trace", "--verify", "-o"])
        .arg(&image)
        .args(["--", "sh", "-c", &format!("ls {listed} | wc -l")])
        .stdin(std::process::Stdio::null()));
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds only in part")
            && stderr.contains(&format!("{listed} (0 of "))
            && !stderr.contains("not deterministic"),
        "{stderr}"
    );
}

/// glibc `dlopen`s `libgcc_s.so.1` when a thread ends through
/// `pthread_exit` (every Python thread does) and aborts without it. A run
/// whose daemon thread is still asleep at exit never loads it, and `podman
/// run` of that jail printed "libgcc_s.so.1 must be installed for
/// pthread_exit to work" once in four runs. A run with threads gets it; a
/// run without does not.
#[test]
fn a_run_with_threads_keeps_glibcs_unwinder() {
    let dir = test_dir("fidelity-unwinder");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let unwinder = |code: &str| {
        let m = dir.join("m.json");
        let out = run(jail()
            .current_dir(&dir)
            .args(["trace", "--no-image", "--manifest"])
            .arg(&m)
            .args(["--", "/usr/bin/python3", "-c", code]));
        ok(&out);
        let man = jail::manifest::Manifest::read(&m).unwrap();
        man.fileset
            .unwrap()
            .entries
            .keys()
            .any(|k| k.0.ends_with("libgcc_s.so.1"))
    };
    assert!(unwinder(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()"
    ));
    assert!(!unwinder("pass"));
}
