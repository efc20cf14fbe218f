//! `jail slim` on a real Debian image: a docker-archive with a base layer
//! (debootstrap minbase + python3) and an app layer with a whiteout, an
//! opaque directory and a non-root user; a service slimmed with probes; the
//! fixed point; bad input.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::*;
use jail::digest::Digest;

const APP: &str = r#"import decimal, json, os, sqlite3
with open("/app/data.json") as f:
    data = json.load(f)
db = sqlite3.connect(":memory:")
db.execute("create table t (name text, price text)")
db.executemany("insert into t values (?, ?)", [(k, v) for k, v in sorted(data.items())])
total = sum(decimal.Decimal(p) for (p,) in db.execute("select price from t"))
print(json.dumps({"total": str(total), "items": len(data), "uid": os.getuid(),
                  "motd": os.path.exists("/etc/motd"),
                  "opaque": [os.path.exists("/var/cache/apt/" + n) for n in ("fresh", "archives")]}))
"#;

/// Build (once per test run) a docker-archive of the Debian root plus an
/// app layer. Returns the archive.
fn fat_image(dir: &Path, name: &str, entrypoint: &str, app_files: &[(&str, &str)]) -> PathBuf {
    let root = debian_root();
    let base = test_dir("slim").join("base-layer.tar");
    static BASE: Mutex<()> = Mutex::new(());
    {
        let _g = BASE.lock().unwrap_or_else(|e| e.into_inner());
        if !base.exists() {
            let tmp = base.with_extension("tmp");
            ok(&run(Command::new("tar")
                .args(["--numeric-owner", "--xattrs", "-cf"])
                .arg(&tmp)
                .arg("-C")
                .arg(&root)
                .arg(".")));
            fs::rename(&tmp, &base).unwrap();
        }
    }
    // The app layer: files, a whiteout (/etc/motd), an opaque directory
    // (/var/cache/apt, keeping only a new file), a user 1000.
    let stage = dir.join(format!("{name}-app"));
    for (path, content) in app_files {
        let p = stage.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    fs::create_dir_all(stage.join("etc")).unwrap();
    fs::write(stage.join("etc/.wh.motd"), "").unwrap();
    fs::create_dir_all(stage.join("var/cache/apt")).unwrap();
    fs::write(stage.join("var/cache/apt/.wh..wh..opq"), "").unwrap();
    fs::write(stage.join("var/cache/apt/fresh"), "new\n").unwrap();
    let mut passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.push_str("app:x:1000:1000:app:/app:/usr/sbin/nologin\n");
    fs::write(stage.join("etc/passwd"), passwd).unwrap();
    let mut group = fs::read_to_string(root.join("etc/group")).unwrap();
    group.push_str("app:x:1000:\n");
    fs::write(stage.join("etc/group"), group).unwrap();
    let layer2 = dir.join(format!("{name}-layer2.tar"));
    ok(&run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer2)
        .arg("-C")
        .arg(&stage)
        .arg(".")));

    let digest = |p: &Path| Digest::of_reader(fs::File::open(p).unwrap()).unwrap();
    let (d1, d2) = (digest(&base), digest(&layer2));
    let archive = dir.join(format!("{name}-archive"));
    fs::create_dir_all(&archive).unwrap();
    fs::rename(&layer2, archive.join("app.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": serde_json::from_str::<serde_json::Value>(entrypoint).unwrap(),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
            "User": "app",
            "WorkingDir": "/app",
            "StopSignal": "SIGTERM",
            "Labels": {"org.example.role": "test"},
        },
        "rootfs": {"type": "layers", "diff_ids": [d1.to_string(), d2.to_string()]},
        "history": [{"created_by": "debootstrap"}, {"created_by": "app"}],
    });
    let cfg = serde_json::to_vec(&config).unwrap();
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    fs::write(archive.join(&cfg_name), &cfg).unwrap();
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [format!("fat/{name}:1")], "Layers": ["base-layer.tar", "app.tar"]}]);
    fs::write(
        archive.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join(format!("{name}.tar"));
    // The cached base layer goes in from where it is (no link or copy).
    ok(&run(Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&archive)
        .args(["manifest.json", &cfg_name, "app.tar"])
        .arg("-C")
        .arg(base.parent().unwrap())
        .arg("base-layer.tar")));
    fs::remove_dir_all(&archive).unwrap();
    out
}

fn json_out(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&o.stdout),
            text(&o.stderr)
        )
    })
}

#[test]
fn slim_a_debian_python_app_without_a_command() {
    let d = tempfile::tempdir().unwrap();
    let fat = fat_image(
        d.path(),
        "app",
        r#"["/usr/bin/python3", "/app/app.py"]"#,
        &[
            ("app/app.py", APP),
            (
                "app/data.json",
                r#"{"apple": "1.10", "pear": "2.25", "fig": "0.65"}"#,
            ),
        ],
    );
    let slim = d.path().join("slim.tar");
    let o = run(jail()
        .args(["slim", "--json"])
        .arg(&fat)
        .arg("-o")
        .arg(&slim));
    ok(&o);
    let summary = json_out(&o);
    let before = summary["source"]["bytes"].as_u64().unwrap();
    let after = summary["image"]["uncompressed_size"].as_u64().unwrap();
    assert!(
        before >= 15 * after,
        "only {:.1}x smaller: {before} → {after}",
        before as f64 / after as f64
    );

    // Same output from the fat and the slim image, as the same non-root user.
    let podman = Podman::new();
    podman.load(&fat);
    podman.load(&slim);
    let fat_run = podman.run("fat/app:1", Vec::<&str>::new());
    ok(&fat_run);
    let slim_ref = summary["image"]["reference"].as_str().unwrap().to_string();
    let slim_run = podman.run(&slim_ref, Vec::<&str>::new());
    ok(&slim_run);
    assert_eq!(text(&slim_run.stdout), text(&fat_run.stdout));
    assert_eq!(text(&fat_run.stdout), "{\"total\": \"4.00\", \"items\": 3, \"uid\": 1000, \"motd\": false, \"opaque\": [true, false]}\n");

    // The source config is kept.
    let inspect = run(podman.cmd().args(["image", "inspect", &slim_ref]));
    ok(&inspect);
    let i: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let cfg = &i[0]["Config"];
    assert_eq!(cfg["User"], "app");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/usr/bin/python3", "/app/app.py"])
    );
    assert_eq!(cfg["Labels"]["org.example.role"], "test");
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    // The base goes into the manifest's annotations.
    let ann = &i[0]["Annotations"];
    if !ann.is_null() {
        assert!(
            ann["org.opencontainers.image.base.name"]
                .as_str()
                .is_some_and(|n| n.contains("fat/app")),
            "{ann}"
        );
    }
}

#[test]
fn slimming_a_slim_image_is_a_fixed_point() {
    let d = tempfile::tempdir().unwrap();
    let fat = fat_image(
        d.path(),
        "fixed",
        r#"["/usr/bin/python3", "/app/app.py"]"#,
        &[("app/app.py", APP), ("app/data.json", r#"{"a": "1"}"#)],
    );
    let s1 = d.path().join("s1.tar");
    let s2 = d.path().join("s2.tar");
    let o1 = run(jail().args(["slim", "--json"]).arg(&fat).arg("-o").arg(&s1));
    ok(&o1);
    let o2 = run(jail().args(["slim", "--json"]).arg(&s1).arg("-o").arg(&s2));
    ok(&o2);
    let (a, b) = (json_out(&o1), json_out(&o2));
    assert_eq!(
        a["image"]["image_id"], b["image"]["image_id"],
        "config digest changed"
    );
    assert_eq!(a["image"]["diff_id"], b["image"]["diff_id"]);
    assert_eq!(a["image"]["layer_digest"], b["image"]["layer_digest"]);
    // Layered (the Debian root's packages below the app): the same layers.
    let layers = |v: &serde_json::Value| -> Vec<String> {
        v["image"]["layers"]
            .as_array()
            .expect("layers in the summary")
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(layers(&a).len() > 2, "{:?}", a["image"]["layers"]);
    assert_eq!(
        layers(&a),
        layers(&b),
        "slim of a layered image changed its layers"
    );
    // The base annotation names the image slimmed, so manifests differ.
    assert_ne!(a["image"]["manifest_digest"], b["image"]["manifest_digest"]);
}

#[test]
fn slim_a_service_with_a_probe() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let entry = format!(
        r#"["/usr/bin/python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "/srv"]"#
    );
    let fat = fat_image(
        d.path(),
        "web",
        &entry,
        &[("srv/index.html", "<h1>jailed</h1>\n")],
    );
    let slim = d.path().join("web-slim.tar");
    let probe = format!("/usr/bin/python3 -c 'import urllib.request as u; assert b\"jailed\" in u.urlopen(\"http://127.0.0.1:{port}/\").read()'");
    let o = run(jail()
        .args(["slim", "--json", "--probe", &probe])
        .arg(&fat)
        .arg("-o")
        .arg(&slim));
    ok(&o);
    assert!(text(&o.stderr).contains("probe ok"), "{}", text(&o.stderr));
    let summary = json_out(&o);
    let reference = summary["image"]["reference"].as_str().unwrap().to_string();

    // The slim image serves the page.
    let podman = Podman::new();
    podman.load(&slim);
    let started = run(podman.cmd().args([
        "run",
        "-d",
        "--rm",
        "--network",
        "host",
        "--name",
        "jail-web",
        &reference,
    ]));
    ok(&started);
    let mut page = String::new();
    for _ in 0..100 {
        if let Ok(body) = http_get(port) {
            page = body;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let logs = run(podman.cmd().args(["logs", "jail-web"]));
    let _ = run(podman.cmd().args(["rm", "-f", "jail-web"]));
    assert!(
        page.contains("<h1>jailed</h1>"),
        "no page from the slim image; container log:\n{}{}",
        text(&logs.stdout),
        text(&logs.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn bad_images_exit_2_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.tar");
    let not_image = d.path().join("notes.txt");
    fs::write(&not_image, "hello").unwrap();
    for input in [not_image.as_path(), Path::new("/no/such/image.tar")] {
        let o = run(jail().arg("slim").arg(input).arg("-o").arg(&out));
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            input.display(),
            text(&o.stderr)
        );
        assert!(!out.exists());
        assert!(
            text(&o.stderr).contains(&input.display().to_string()),
            "{}",
            text(&o.stderr)
        );
    }
    // An image without Entrypoint/Cmd and no command given.
    let tree = d.path().join("tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    let img = d.path().join("nocmd.tar");
    ok(&run(jail().args(["pack"]).arg(&tree).arg("-o").arg(&img)));
    let o = run(jail().arg("slim").arg(&img).arg("-o").arg(&out));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no Entrypoint or Cmd"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists());
}

/// Issue 14: nginx-light in a real Debian root, slimmed as a service with a
/// probe and `--verify` (the slim tree is started again and probed), then
/// served from podman. It needs its pid file's directory, its temp dirs
/// under /var/lib/nginx and its `www-data` account, none of which the run
/// reads as content.
#[test]
fn slim_nginx_from_debian_with_probe_and_verify() {
    const PORT: u16 = 18181;
    require("curl", "curl");
    let fat = nginx_image(PORT);
    let d = tempfile::tempdir().unwrap();
    let slim = d.path().join("nginx-slim.tar");
    let probe = format!("curl -sf http://127.0.0.1:{PORT}/");
    let o = run(jail()
        .args(["slim", "--json", "--verify", "--probe", &probe])
        .arg(&fat)
        .arg("-o")
        .arg(&slim));
    ok(&o);
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("ok: the service answered its probes in the jail"),
        "{stderr}"
    );
    let summary = json_out(&o);
    let reference = summary["image"]["reference"].as_str().unwrap().to_string();

    let podman = Podman::new();
    podman.load(&slim);
    let name = "jail-nginx-slim";
    ok(&run(podman.cmd().args([
        "run",
        "-d",
        "--rm",
        "--network",
        "host",
        "--name",
        name,
        &reference,
    ])));
    let mut page = String::new();
    for _ in 0..100 {
        if let Ok(body) = http_get(PORT) {
            page = body;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let logs = run(podman.cmd().args(["logs", name]));
    let _ = run(podman.cmd().args(["rm", "-f", name]));
    assert!(
        page.contains("served by a slim nginx"),
        "no page from the slim nginx image; container log:\n{}{}",
        text(&logs.stdout),
        text(&logs.stderr)
    );
}

/// `slim --verify --probe` fails, and writes no image, when the slim jail
/// cannot serve: here a page the probe needs is excluded from the jail.
#[test]
fn slim_verify_with_a_probe_fails_when_the_jail_cannot_serve() {
    const PORT: u16 = 18181;
    require("curl", "curl");
    let fat = nginx_image(PORT);
    let d = tempfile::tempdir().unwrap();
    let slim = d.path().join("nginx-broken.tar");
    let probe = format!("curl -sf http://127.0.0.1:{PORT}/");
    let o = run(jail()
        .args(["slim", "--verify", "--probe", &probe])
        .args(["--exclude", "/var/www/html/index.html"])
        .arg(&fat)
        .arg("-o")
        .arg(&slim));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("FAILED: the service in the jail"),
        "{}",
        text(&o.stderr)
    );
    assert!(!slim.exists(), "a failed verification wrote the image");
}

/// A Debian root with nginx-light serving one page on 127.0.0.1:`port`,
/// packed as an image whose entrypoint runs nginx in the foreground; made
/// once and cached under target/test-data.
fn nginx_image(port: u16) -> PathBuf {
    static NGINX: Mutex<()> = Mutex::new(());
    let _g = NGINX.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir("debian-bookworm-nginx");
    let image = dir.join(format!("nginx-{port}.tar"));
    if image.exists() {
        return image;
    }
    let root = dir.join("root");
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = fs::remove_dir_all(&root);
        ok(&run(Command::new("cp")
            .arg("-a")
            .arg(debian_root())
            .arg(&root)));
        apt_install_in(&root, &["nginx-light"]);
        fs::write(&done, "").unwrap();
    }
    // sites-enabled/default is an absolute symlink: writing through it
    // would write the host's file. Replace the link itself.
    let site = root.join("etc/nginx/sites-enabled/default");
    let _ = fs::remove_file(&site);
    fs::write(
        &site,
        format!("server {{ listen 127.0.0.1:{port}; root /var/www/html; index index.html; }}\n"),
    )
    .unwrap();
    fs::write(
        root.join("var/www/html/index.html"),
        "served by a slim nginx\n",
    )
    .unwrap();
    let tmp = dir.join("nginx.tmp.tar");
    let _ = fs::remove_file(&tmp);
    ok(&run(jail()
        .arg("pack")
        .arg(&root)
        .arg("-o")
        .arg(&tmp)
        .args(["--entrypoint", r#"["/usr/sbin/nginx","-g","daemon off;"]"#])
        .args(["--tag", "fat/nginx:1"])));
    fs::rename(&tmp, &image).unwrap();
    image
}

/// A runtime takes HOME from the image's /etc/passwd when the Env has
/// none, and resolves a User name there. The command here never reads
/// passwd, yet the slim image keeps it (reduced), slim traces with the HOME
/// the runtime will give, verify agrees, and podman prints the same.
#[test]
fn slim_keeps_the_passwd_the_runtime_reads_for_home_and_user() {
    require("/bin/busybox", "busybox-static");
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    for dir in ["bin", "etc", "root", "home/app"] {
        fs::create_dir_all(tree.join(dir)).unwrap();
    }
    fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
    )
    .unwrap();
    fs::write(tree.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    let podman = Podman::new();
    for (user, home) in [(None, "/root"), (Some("app"), "/home/app")] {
        let name = user.unwrap_or("root");
        let fat = d.path().join(format!("{name}.tar"));
        let mut pack = jail();
        pack.arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&fat)
            .args(["--tag", &format!("slimhome/{name}:1")])
            .args([
                "--entrypoint",
                r#"["/bin/busybox","sh","-c","echo home=$HOME"]"#,
            ]);
        if let Some(u) = user {
            pack.args(["--user", u]);
        }
        ok(&run(&mut pack));
        let slim = d.path().join(format!("{name}-slim.tar"));
        let o = run(jail()
            .args(["slim", "--verify"])
            .arg(&fat)
            .arg("-o")
            .arg(&slim));
        ok(&o);
        assert!(
            text(&o.stderr).contains("ok: the traced run"),
            "{}",
            text(&o.stderr)
        );
        podman.load(&slim);
        let out = podman.run(&format!("slimhome/{name}:1-slim"), [] as [&str; 0]);
        ok(&out);
        assert_eq!(text(&out.stdout), format!("home={home}\n"), "user {name}");
    }
}
