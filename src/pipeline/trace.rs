//! The trace job (`jail trace`): trace the command (or a config's runs)
//! on the host, then the file set, manifest, tree, checks, image and push
//! ([`super::emit`]).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::attest::BuildKind;
use crate::config::Config;
use crate::environment::{EnvDecision, EnvRule};
use crate::fileset::build::Finding;
use crate::image::{Format, ImageSpec, ImageSummary, WriteOptions};
use crate::manifest::Manifest;
use crate::registry::{RegistryOptions, RegistryRef};
use crate::resolve::Root;
use crate::sandbox::{Network, User, DEFAULT_PATH};
use crate::trace::{self, AccessLog, Backend, ExitStatus, TraceOptions};
use crate::verify::Expectation;

use super::emit::{emit, Emit};
use super::evidence::{Embedding, EvidenceRequest};
use super::request::{load_config, Defaults};
use super::RegistryRequest;
use super::{flag, Destinations, Failure, FilesRequest, ImageRequest, JobError, Notes};

/// `jail trace`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct TraceRequest {
    pub config: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub tree: Option<PathBuf>,
    pub force: bool,
    pub no_image: bool,
    pub output: Option<PathBuf>,
    pub image: ImageRequest,
    pub registry: RegistryRequest,
    pub evidence: EvidenceRequest,
    pub files: FilesRequest,
    pub env_keep: Vec<String>,
    pub env_drop: Vec<String>,
    /// The `--json` summary takes stdout: the command's goes to stderr.
    pub json: bool,
    pub syscalls: bool,
    pub verify: bool,
    pub network: Network,
    pub no_test: bool,
    pub backend: Backend,
    pub one_cpu: bool,
    pub command: Vec<OsString>,
}

/// A trace job whose flags, config, user and destinations were checked.
pub struct TraceJob {
    req: TraceRequest,
    config: Option<Config>,
    runs: Vec<TraceOptions>,
    write: Option<(WriteOptions, PathBuf)>,
    push: Option<(RegistryRef, RegistryOptions)>,
    env_rule: EnvRule,
    user: Option<User>,
    root: Root,
}

/// What a trace job did (`jail trace --json`, docs/manifest.md).
#[derive(Debug, Serialize)]
pub struct TraceSummary {
    pub image: Option<ImageSummary>,
    pub command: Vec<String>,
    pub exit: ExitStatus,
    pub processes: usize,
    pub paths: usize,
    pub kinds: std::collections::BTreeMap<trace::AccessKind, usize>,
    pub syscall_stops: u64,
    pub duration_ms: u64,
    pub setup_ms: u64,
    pub command_us: u64,
    pub fileset_ms: u64,
    pub fileset: FileSetSummary,
    pub findings: Vec<Finding>,
    pub checks: Checks,
    pub manifest: Option<PathBuf>,
    pub tree: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// The file set in a summary.
#[derive(Debug, Serialize)]
pub struct FileSetSummary {
    pub entries: usize,
    pub bytes: u64,
    pub digest: crate::digest::Digest,
}

/// The checks run in the finished jail.
#[derive(Debug, Serialize)]
pub struct Checks {
    pub run: usize,
    pub failed: usize,
}

impl Checks {
    /// Exit 1 when a check in the jail failed.
    pub fn passed(&self) -> Result<(), Failure> {
        if self.failed == 0 {
            return Ok(());
        }
        Err(Failure::failed(JobError::ChecksFailed {
            failed: self.failed,
            run: self.run,
        }))
    }
}

impl TraceJob {
    /// Check every flag and destination before anything runs: a bad one
    /// must not cost a whole trace.
    pub fn resolve(req: TraceRequest) -> Result<TraceJob, Failure> {
        let config = load_config(req.config.as_ref())?;
        let runs = runs(&req, config.as_ref())?;
        req.evidence.format()?;
        if req.evidence.attest && req.no_image {
            return Err(JobError::AttestWithoutImage.into());
        }
        let write = if req.no_image {
            None
        } else {
            Some(WriteOptions {
                base: req.image.base(&req.registry.options()?)?,
                ..req.image.write_options(req.force)?
            })
        };
        let push = match req.image.push_target()? {
            Some(_) if req.no_image => return Err(JobError::PushWithoutImage.into()),
            Some(t) => Some((t, req.registry.options()?)),
            None => None,
        };
        req.evidence.check_push(push.as_ref().map(|p| &p.0))?;
        let env_rule = EnvRule::new(&req.env_keep, &req.env_drop).map_err(Failure::usage)?;
        let root = Root::host();
        let user_spec = req
            .image
            .user
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.image.user.clone()));
        // A user name is resolved in this machine's /etc/passwd, whose
        // reduced copy the jail gets.
        let user = match &user_spec {
            Some(spec) => Some(User::lookup(root.dir(), spec).map_err(|e| flag("--user", e))?),
            None => None,
        };
        let write = write.map(|w| {
            let out = output_path(&req, config.as_ref(), &w.format);
            (w, out)
        });
        Destinations {
            image: write.as_ref().map(|(_, o)| o.clone()),
            tree: req.tree.clone(),
            manifest: req.manifest.clone(),
            force: req.force,
        }
        .check()?;
        Ok(TraceJob {
            req,
            config,
            runs,
            write,
            push,
            env_rule,
            user,
            root,
        })
    }

    /// Trace, build, write, check.
    pub fn run(self, notes: &dyn Notes) -> Result<TraceSummary, Failure> {
        let req = &self.req;
        // Trace every run into one log (keeping each run's stdout to
        // compare with the jail's when verifying).
        let mut log: Option<AccessLog> = None;
        let mut traced = Vec::new();
        for opts in &self.runs {
            let (one, stdout) = run_traced(opts, req.verify, req.json)?;
            for w in &one.warnings {
                notes.warn(format_args!("{w}"));
            }
            notes.note(format_args!("{}", summary_line(&one)));
            if !one.exit.success() && !req.files.keep_going {
                if let Some(path) = &req.manifest {
                    Manifest::new(Some(one.clone()), None)
                        .write(path)
                        .map_err(Failure::failed)?;
                }
                // Killed by the Ctrl-C (or kill) jail got and forwarded:
                // 128+N, as a shell reports it.
                let code = match one.exit {
                    ExitStatus::Signal { signal } if crate::sys::signals::seen(signal) => {
                        128 + signal
                    }
                    _ => 1,
                };
                return Err(JobError::TracedCommandFailed {
                    exit: one.exit,
                    code,
                }
                .into());
            }
            traced.push((opts.argv.clone(), one.exit.code(), stdout));
            match log.as_mut() {
                Some(l) => l.merge(one),
                None => log = Some(one),
            }
        }
        let log = log.ok_or(JobError::NothingToTrace)?;

        // The image's environment, from the first run's.
        let env = self.env_rule.decide(&self.runs[0].env);
        notes.note(format_args!("{}", env.summary()));
        let (spec, derived) = self.image_spec(&log, &env, notes)?;

        // The checks run the finished jail as a container runtime runs the
        // image: its Env, User and WorkingDir. The first run is the image's
        // default command when the image runs the traced command.
        let mut checks = Vec::new();
        if req.verify {
            let image_env: Vec<(OsString, OsString)> = spec
                .env
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            let workdir = spec
                .working_dir
                .as_ref()
                .filter(|w| !w.is_empty())
                .map_or_else(|| PathBuf::from("/"), PathBuf::from);
            for (i, (argv, status, stdout)) in traced.into_iter().enumerate() {
                let argv = match (i, derived) {
                    (0, true) => spec
                        .entrypoint
                        .iter()
                        .flatten()
                        .chain(spec.cmd.iter().flatten())
                        .map(OsString::from)
                        .collect(),
                    _ => argv,
                };
                checks.push(Expectation {
                    label: format!(
                        "the traced run of `{}` (as the image runs it)",
                        shell_words(&argv)
                    ),
                    argv,
                    env: image_env.clone(),
                    cwd: workdir.clone(),
                    user: spec.user.clone(),
                    network: req.network,
                    status,
                    stdout: Some(stdout),
                    stdout_contains: None,
                });
            }
        }

        // The file set, manifest, tree, checks and image.
        let mut build = req.files.build(
            self.config.as_ref(),
            self.user.as_ref().map(|u| (u.uid, u.gid)),
        );
        build.digests = Some(Arc::new(crate::fileset::digests::DigestCache::user()));
        build.runtime_reads = spec.runtime_reads();
        if let Some(c) = self.config.as_ref().filter(|_| !req.no_test) {
            checks.extend(config_tests(c)?.into_iter().map(|mut t| {
                t.network = req.network;
                t
            }));
        }
        let image = self.write.map(|(w, output)| (spec, output, w));
        let commands: Vec<Vec<OsString>> = self.runs.iter().map(|r| r.argv.clone()).collect();
        let done = emit(
            Emit {
                log: &log,
                root: &self.root,
                build,
                manifest: req.manifest.as_deref(),
                tree: req.tree.as_deref(),
                force: req.force,
                checks,
                image,
                push: self.push,
                keep_going: req.files.keep_going,
                env: Some(env),
                service: None,
                evidence: Some(Embedding {
                    build: req
                        .evidence
                        .build(BuildKind::Trace, &commands, req.config.as_deref()),
                    request: req.evidence.clone(),
                    base_image: None,
                }),
            },
            notes,
        )?;
        Ok(TraceSummary {
            image: done.image,
            command: log
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            exit: log.exit,
            processes: log.processes.len(),
            paths: log.files.len(),
            kinds: log.counts(),
            syscall_stops: log.stats.syscall_stops,
            duration_ms: log.stats.duration_ms,
            setup_ms: log.stats.setup_ms,
            command_us: log.stats.command_us,
            fileset_ms: done.fileset_ms,
            fileset: FileSetSummary {
                entries: done.fileset.entries.len(),
                bytes: done.fileset.total_size(),
                digest: done.fileset.digest(),
            },
            findings: done.findings,
            checks: Checks {
                run: done.checks,
                failed: done.failed,
            },
            manifest: self.req.manifest,
            tree: self.req.tree,
            warnings: log.warnings,
        })
    }

    /// The image of a traced command: it runs the command as traced
    /// (argv[0] by the path it was found at), in the directory it ran in,
    /// with the loader variables it ran with; a config's `image` and the
    /// flags override. The second value says whether Entrypoint and Cmd
    /// are the traced command (no config or flag replaced them).
    fn image_spec(
        &self,
        log: &AccessLog,
        env: &EnvDecision,
        notes: &dyn Notes,
    ) -> Result<(ImageSpec, bool), Failure> {
        let config = self.config.as_ref();
        let argv: Vec<String> = log
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let name = image_name(config, &log.command);
        // Entrypoint = the program, Cmd = its arguments (docker
        // convention), so `podman run IMG ARGS` runs the program with other
        // arguments. argv[0] stays as traced (a bare name is found along
        // the image's PATH, which is the traced one), so the program sees
        // the argv[0] it saw when traced; it becomes the absolute path only
        // when the image's PATH would find another program.
        let program = trace::find_program(
            log.command[0].as_os_str(),
            log.env.get("PATH").map(OsStr::new),
            &log.cwd,
        )
        .ok();
        let image_path = env
            .kept
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let mut entry0 = argv[0].clone();
        if let Some(program) = &program {
            let same = !entry0.contains('/')
                && trace::find_program(
                    log.command[0].as_os_str(),
                    Some(OsStr::new(image_path)),
                    &log.cwd,
                )
                .is_ok_and(|p| p == *program);
            if !same && !entry0.starts_with('/') {
                entry0 = program.to_string_lossy().into_owned();
            }
        }
        let mut env_list = env.kept.clone();
        if !env_list.iter().any(|kv| kv.starts_with("PATH=")) {
            env_list.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let mut defaults = Defaults {
            name: name.clone(),
            entrypoint: Some(vec![entry0]),
            cmd: (argv.len() > 1).then(|| argv[1..].to_vec()),
            env: env_list,
            workdir: Some(log.cwd.to_string_lossy().into_owned()),
            ..Defaults::default()
        };
        if let Some(c) = config {
            let m = &c.image;
            // A config's entrypoint replaces the command and its
            // arguments; a config's cmd replaces the arguments only.
            if m.entrypoint.is_some() {
                defaults.entrypoint = m.entrypoint.clone();
                defaults.cmd = None;
            }
            if m.cmd.is_some() {
                defaults.cmd = m.cmd.clone();
            }
            for (k, v) in &m.env {
                defaults.env.retain(|e| !e.starts_with(&format!("{k}=")));
                defaults.env.push(format!("{k}={v}"));
            }
            if m.workdir.is_some() {
                defaults.workdir = m.workdir.clone();
            }
            defaults.user = m.user.clone();
            defaults.labels = m.labels.clone();
            defaults.tag = m.tag.clone();
        }
        let image = &self.req.image;
        let spec = image.spec(defaults, &self.root, shell_words(&log.command), notes)?;
        let derived = image.entrypoint.is_none()
            && image.cmd.is_none()
            && config.is_none_or(|c| c.image.entrypoint.is_none() && c.image.cmd.is_none());
        Ok((spec, derived))
    }
}

/// Where the image goes: `-o`, else `./<name>.tar` (or `./<name>` for an
/// OCI layout directory).
fn output_path(req: &TraceRequest, config: Option<&Config>, format: &Format) -> PathBuf {
    req.output.clone().unwrap_or_else(|| {
        let name = image_name(config, &req.command);
        match format {
            Format::OciDir => PathBuf::from(&name),
            Format::OciArchive => PathBuf::from(format!("{name}.tar")),
        }
    })
}

/// The image's name: the config's, else the command's file name.
fn image_name(config: Option<&Config>, command: &[OsString]) -> String {
    if let Some(c) = config {
        return c.name.clone();
    }
    command
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// Trace, deciding where the command's stdout goes: to jail's stdout, or
/// to its stderr when stdout carries the `--json` summary; and when `keep`,
/// also kept (teed) to compare with the run inside the jail.
pub(crate) fn run_traced(
    opts: &TraceOptions,
    keep: bool,
    json: bool,
) -> Result<(AccessLog, Vec<u8>), Failure> {
    use std::os::fd::AsFd;
    if !keep {
        let mut o = opts.clone();
        if json {
            let err = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(Failure::failed)?;
            o.stdout = Some(Arc::new(err));
        }
        return Ok((trace::trace(&o).map_err(Failure::of)?, Vec::new()));
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failure::failed(std::io::Error::from(e)))?;
    let tee = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut src = std::fs::File::from(rd);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut out: Box<dyn Write> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        while let Ok(n) = src.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            let _ = out.write_all(&buf[..n]);
        }
        let _ = out.flush();
        kept
    });
    let mut o = opts.clone();
    o.stdout = Some(Arc::new(wr));
    let log = trace::trace(&o);
    drop(o);
    let kept = tee.join().unwrap_or_default();
    Ok((log.map_err(Failure::of)?, kept))
}

/// The environment of a config's traced runs and tests.
fn config_env(c: &Config) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    for (k, v) in &c.env {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
    env
}

/// A config's tests as expectations (a `same_as_host` test's expected
/// output is its run on the host, now).
pub(crate) fn config_tests(c: &Config) -> Result<Vec<Expectation>, Failure> {
    let env = config_env(c);
    let cwd = c.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    c.tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let argv: Vec<OsString> = t.command.iter().map(OsString::from).collect();
            let stdout = if t.same_as_host {
                let out = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&cwd)
                    .output()
                    .map_err(|source| JobError::HostTest {
                        index: i,
                        config: c.name.clone(),
                        command: t.command.clone(),
                        source,
                    })?;
                Some(out.stdout)
            } else {
                t.stdout.clone().map(String::into_bytes)
            };
            Ok(Expectation {
                label: format!(
                    "test {:?}",
                    t.name.clone().unwrap_or_else(|| t.command.join(" "))
                ),
                argv,
                env: env.clone(),
                cwd: cwd.clone(),
                // As `podman run IMAGE TEST` runs it: as the image's user.
                user: c.image.user.clone(),
                network: Network::None,
                status: t.status,
                stdout,
                stdout_contains: t.stdout_contains.clone(),
            })
        })
        .collect()
}

/// argv as a shell would show it (for messages).
pub(crate) fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The traced runs: the command line, or the config's command and runs.
fn runs(req: &TraceRequest, config: Option<&Config>) -> Result<Vec<TraceOptions>, Failure> {
    let argvs: Vec<Vec<OsString>> = match (req.command.is_empty(), config) {
        (false, _) => vec![req.command.clone()],
        (true, Some(c)) => c
            .all_runs()
            .map(|r| r.iter().map(OsString::from).collect())
            .collect(),
        (true, None) => return Err(JobError::NoCommand.into()),
    };
    Ok(argvs
        .into_iter()
        .map(|argv| {
            let mut o = TraceOptions::new(argv);
            o.all_syscalls = req.syscalls;
            o.one_cpu = req.one_cpu;
            o.backend = req.backend;
            if let Some(c) = config.filter(|_| req.command.is_empty()) {
                // A config's runs see what its tests see: PATH and the
                // config's `env`, nothing of the caller's environment
                // (which would make the jail depend on who built it).
                o.env = config_env(c);
                // The config's own runs start where its tests do
                // (`workdir`, else `/`): the caller's directory is no part
                // of the program and must not become the jail's working
                // directory.
                o.cwd = c.workdir.clone().or_else(|| Some(PathBuf::from("/")));
            }
            o
        })
        .collect())
}

/// `traced 12 processes in 85 ms: 310 paths (290 read, 3 exec, …); command exit status 0`.
pub fn summary_line(log: &AccessLog) -> String {
    let kinds: Vec<String> = log
        .counts()
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        })
        .collect();
    let setup = if log.stats.setup_ms > 0 {
        format!(
            " (of which {} ms loading the BPF programs)",
            log.stats.setup_ms
        )
    } else {
        String::new()
    };
    format!(
        "traced {} process{} in {} ms{setup}: {} paths ({}); command {}",
        log.processes.len(),
        if log.processes.len() == 1 { "" } else { "es" },
        log.stats.duration_ms,
        log.files.len(),
        kinds.join(", "),
        log.exit
    )
}
