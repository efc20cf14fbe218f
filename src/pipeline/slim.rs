//! The slim job (`jail slim`): unpack an image (no daemon), run the
//! command inside it under the tracer (probing it when it is a service),
//! keep only what it used ([`super::emit`]), with the source image's
//! config.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::attest::BuildKind;
use crate::config::Config;
use crate::digest::Digest;
use crate::fileset::build::Finding;
use crate::image::read::{self, ImageSource, Unpacked};
use crate::image::{ImageSpec, ImageSummary, Reference, WriteOptions};
use crate::probe::{self, ProbedService, Probes};
use crate::registry::{RegistryOptions, RegistryRef};
use crate::resolve::Root;
use crate::sandbox::{Network, User, DEFAULT_PATH};
use crate::trace::{ExitStatus, SandboxRun, TraceOptions};
use crate::verify::Expectation;

use super::emit::{emit, Emit, ServiceCheck};
use super::evidence::{Embedding, EvidenceRequest};
use super::request::{load_config, Defaults};
use super::trace::{config_tests, run_traced, summary_line, Checks};
use super::{Destinations, Failure, FilesRequest, ImageRequest, JobError, Notes, RegistryRequest};

/// `jail slim`'s flags, as given.
#[derive(Debug, Clone, Default)]
pub struct SlimRequest {
    /// An archive, a layout (`DIR`, `DIR:TAG`, `DIR@sha256:…`) or a
    /// registry reference.
    pub image: String,
    pub output: PathBuf,
    pub config: Option<PathBuf>,
    /// Shell commands probing the service; the first is the readiness check.
    pub probe: Vec<String>,
    pub probe_timeout: Duration,
    pub network: Network,
    pub manifest: Option<PathBuf>,
    pub tree: Option<PathBuf>,
    pub force: bool,
    pub files: FilesRequest,
    pub verify: bool,
    /// The `--json` summary takes stdout: the command's goes to stderr.
    pub json: bool,
    pub image_opts: ImageRequest,
    pub registry: RegistryRequest,
    pub evidence: EvidenceRequest,
    /// [default: the image's Entrypoint + Cmd]
    pub command: Vec<OsString>,
}

/// A slim job whose flags, config, source and destinations were checked.
pub struct SlimJob {
    req: SlimRequest,
    config: Option<Config>,
    write: WriteOptions,
    registry: RegistryOptions,
    push: Option<(RegistryRef, RegistryOptions)>,
    source: ImageSource,
}

/// What a slim job did (`jail slim --json`).
#[derive(Debug, Serialize)]
pub struct SlimSummary {
    pub image: Option<ImageSummary>,
    pub source: SourceSummary,
    /// Source bytes over slim bytes, uncompressed.
    pub ratio: f64,
    pub command: Vec<String>,
    pub exit: ExitStatus,
    pub findings: Vec<Finding>,
    pub checks: Checks,
}

/// The image slimmed.
#[derive(Debug, Serialize)]
pub struct SourceSummary {
    pub image: String,
    pub config_digest: Digest,
    pub manifest_digest: Option<Digest>,
    /// Paths in its root.
    pub files: u64,
    /// Bytes of its layers, uncompressed.
    pub bytes: u64,
}

impl SlimJob {
    /// Check the flags, config, source and destinations before unpacking.
    pub fn resolve(req: SlimRequest) -> Result<SlimJob, Failure> {
        req.evidence.format()?;
        let config = load_config(req.config.as_ref())?;
        let registry = req.registry.options()?;
        let write = WriteOptions {
            base: req.image_opts.base(&registry)?,
            ..req.image_opts.write_options(req.force)?
        };
        let push = req.image_opts.push_target()?.map(|t| (t, registry.clone()));
        req.evidence.check_push(push.as_ref().map(|p| &p.0))?;
        let source = ImageSource::parse(&req.image).map_err(|e| match e {
            read::ReadError::Registry(e) => Failure::of(e),
            e => Failure::usage(e),
        })?;
        Destinations {
            image: Some(req.output.clone()),
            tree: req.tree.clone(),
            manifest: req.manifest.clone(),
            force: req.force,
        }
        .check()?;
        Ok(SlimJob {
            req,
            config,
            write,
            registry,
            push,
            source,
        })
    }

    /// Unpack, trace, build, write, check.
    pub fn run(self, notes: &dyn Notes) -> Result<SlimSummary, Failure> {
        let req = &self.req;
        let config = self.config.as_ref();
        // Ctrl-C during the unpack: unwind, remove the root, exit 128+N.
        crate::sys::signals::install();
        let image = read::unpack_with(&self.source, &std::env::temp_dir(), &self.registry)
            .map_err(Failure::of)?;
        let root = Root::new(image.root()).map_err(Failure::failed)?;
        let before_files = count_files(image.root());
        let before_bytes: u64 = image.layers.iter().map(|l| l.uncompressed_size).sum();
        let base = ImageSpec::from_image_config(&image.config);

        // The command, as the image would run it.
        let argv: Vec<OsString> = if !req.command.is_empty() {
            req.command.clone()
        } else {
            let v: Vec<OsString> = base
                .entrypoint
                .iter()
                .flatten()
                .chain(base.cmd.iter().flatten())
                .map(OsString::from)
                .collect();
            if v.is_empty() {
                return Err(JobError::NoEntrypoint(req.image.clone()).into());
            }
            v
        };
        let mut env: Vec<(OsString, OsString)> = base
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if let Some(c) = config {
            for (k, v) in &c.env {
                env.retain(|(ek, _)| ek != k.as_str());
                env.push((k.into(), v.into()));
            }
        }
        let cwd = PathBuf::from(
            base.working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        );
        // Container runtimes create a missing WorkingDir; so does the
        // private copy of the root the command runs in.
        if root.canonicalize(&cwd).is_none() {
            std::fs::create_dir_all(root.host_path(&cwd)).map_err(|source| JobError::Workdir {
                path: cwd.clone(),
                source,
            })?;
        }
        let user_spec = req
            .image_opts
            .user
            .clone()
            .or_else(|| config.and_then(|c| c.image.user.clone()))
            .or_else(|| base.user.clone().filter(|u| !u.is_empty()));
        let user = match &user_spec {
            Some(u) => Some(User::lookup(image.root(), u).map_err(Failure::usage)?),
            None => None,
        };
        let stop = probe::parse_signal(base.stop_signal.as_deref())
            .ok_or_else(|| JobError::StopSignal(base.stop_signal.clone().unwrap_or_default()))?;
        let probes = Probes {
            commands: req.probe.clone(),
            timeout: req.probe_timeout,
            stop,
        };

        // Trace it in the image's root, probing it if it is a service.
        let (tx, rx) = mpsc::channel();
        let mut opts = TraceOptions::new(argv.clone());
        // Run as `podman run` would (and as verify will): with the HOME a
        // runtime gives the user.
        opts.env = env.clone();
        let uid = user.as_ref().map_or(0, |u| u.uid);
        crate::sandbox::add_runtime_home(&mut opts.env, image.root(), uid);
        opts.cwd = Some(cwd.clone());
        opts.sandbox = Some(SandboxRun {
            root: image.root().to_path_buf(),
            user: user.clone(),
            network: req.network,
            started: Some(tx),
        });
        let probing = !req.probe.is_empty();
        let (traced, probed) = std::thread::scope(|s| {
            let probes = &probes;
            let prober = probing.then(|| s.spawn(move || probe::probe_traced(&rx, probes)));
            let traced = run_traced(&opts, req.verify && !probing, req.json);
            // The sender goes with the options: a run that never started
            // the service ends the prober's wait at once.
            drop(opts);
            let probed = prober.map(|t| t.join().map_err(|_| JobError::ProbePanicked));
            (traced, probed)
        });
        let (log, stdout) = traced?;
        let probed = probed.transpose()?;
        for w in &log.warnings {
            notes.warn(format_args!("{w}"));
        }
        notes.note(format_args!("{}", summary_line(&log)));
        match probed {
            Some(Err(why)) => return Err(Failure::failed(JobError::Probe(why))),
            Some(Ok(())) => {} // stopped by us: its exit status is ours to ignore
            None if !log.exit.success() && !req.files.keep_going => {
                return Err(JobError::SlimCommandFailed(log.exit).into());
            }
            None => {}
        }
        let expectation = Expectation {
            label: "the traced run (as the image runs it)".into(),
            argv: argv.clone(),
            env,
            cwd,
            user: user_spec,
            network: req.network,
            status: log.exit.code(),
            stdout: Some(stdout),
            stdout_contains: None,
        };
        // A service is verified by starting the slim image the same way
        // and probing it again; a command by comparing its run.
        let mut checks = Vec::new();
        let mut service = None;
        if req.verify {
            if probing {
                service = Some(ProbedService {
                    run: expectation,
                    probes,
                });
            } else {
                checks.push(expectation);
            }
        }
        if let Some(c) = config {
            checks.extend(config_tests(c)?);
        }

        // The slim image keeps the source's config; flags override. The
        // unpacked root is temporary: its inodes mean nothing later, so no
        // digest cache.
        let mut build = req
            .files
            .build(config, user.as_ref().map(|u| (u.uid, u.gid)));
        let spec = self.slim_spec(&image, &base, &root, &argv, notes)?;
        build.runtime_reads = spec.runtime_reads();
        let probe_ok = |p: &str| notes.note(format_args!("probe ok: {p}"));
        let service_check = service.map(|s| move |tree: &Path| s.check(tree, &probe_ok));
        let base_digest = image
            .manifest_digest
            .unwrap_or(image.config_digest)
            .to_string();
        let done = emit(
            Emit {
                log: &log,
                root: &root,
                build,
                manifest: req.manifest.as_deref(),
                tree: req.tree.as_deref(),
                force: req.force,
                checks,
                image: Some((spec, req.output.clone(), self.write.clone())),
                push: self.push.clone(),
                keep_going: req.files.keep_going,
                env: None,
                service: service_check.as_ref().map(|f| f as &ServiceCheck),
                evidence: Some(Embedding {
                    request: req.evidence.clone(),
                    build: req.evidence.build(
                        BuildKind::Slim,
                        std::slice::from_ref(&argv),
                        req.config.as_deref(),
                    ),
                    base_image: Some(base_digest),
                }),
            },
            notes,
        )?;

        // Paths, as `before_files` counts them (an image's `files` sums the
        // entries of its layers: a parent directory counts once per layer).
        let after = done
            .image
            .as_ref()
            .map(|s| (s.uncompressed_size, done.fileset.entries.len() as u64))
            .unwrap_or_default();
        let ratio = if after.0 > 0 {
            before_bytes as f64 / after.0 as f64
        } else {
            0.0
        };
        notes.note(format_args!(
            "before: {before_files} files, {before_bytes} bytes; after: {} files, {} bytes ({ratio:.1}x smaller)",
            after.1, after.0
        ));
        Ok(SlimSummary {
            image: done.image,
            source: SourceSummary {
                image: req.image.clone(),
                config_digest: image.config_digest,
                manifest_digest: image.manifest_digest,
                files: before_files,
                bytes: before_bytes,
            },
            ratio,
            command: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            exit: log.exit,
            findings: done.findings,
            checks: Checks {
                run: done.checks,
                failed: done.failed,
            },
        })
    }

    /// The slim image's spec: the source config kept (Entrypoint, Cmd,
    /// Env, User, WorkingDir, ExposedPorts, Volumes, Labels, StopSignal),
    /// then the config's and the flags' overrides. The base image goes
    /// into the manifest's annotations, not the config, so the image ID
    /// stays a fixed point when the result is slimmed again.
    fn slim_spec(
        &self,
        image: &Unpacked,
        base: &ImageSpec,
        root: &Root,
        argv: &[OsString],
        notes: &dyn Notes,
    ) -> Result<ImageSpec, Failure> {
        let req = &self.req;
        let config = self.config.as_ref();
        let name = image.reference.clone().unwrap_or_else(|| {
            Path::new(&req.image)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into())
        });
        let tag = match (
            &req.image_opts.tag,
            config.and_then(|c| c.image.tag.clone()),
        ) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(t)) => Some(t),
            (None, None) => Reference::parse(&name)
                .ok()
                .map(|r| format!("{}:{}-slim", r.name, r.tag)),
        };
        let mut defaults = Defaults {
            name: name
                .rsplit('/')
                .next()
                .unwrap_or("image")
                .split(':')
                .next()
                .unwrap_or("image")
                .to_string(),
            entrypoint: base.entrypoint.clone(),
            cmd: base.cmd.clone(),
            env: base.env.clone(),
            workdir: base.working_dir.clone(),
            user: base.user.clone(),
            labels: base.labels.clone(),
            tag,
        };
        if let Some(c) = config {
            let m = &c.image;
            if m.entrypoint.is_some() {
                defaults.entrypoint = m.entrypoint.clone();
            }
            if m.cmd.is_some() {
                defaults.cmd = m.cmd.clone();
            }
            for (k, v) in &m.env {
                defaults.env.retain(|e| !e.starts_with(&format!("{k}=")));
                defaults.env.push(format!("{k}={v}"));
            }
            defaults.workdir = m.workdir.clone().or(defaults.workdir);
            defaults.user = m.user.clone().or(defaults.user);
            defaults.labels.extend(m.labels.clone());
        }
        let command = super::trace::shell_words(argv);
        let mut spec = req.image_opts.spec(defaults, root, command, notes)?;
        spec.exposed_ports = base.exposed_ports.clone();
        spec.volumes = base.volumes.clone();
        spec.stop_signal = base.stop_signal.clone();
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.base.name".to_string(),
            image.reference.clone().unwrap_or_else(|| req.image.clone()),
        );
        annotations.insert(
            "org.opencontainers.image.base.digest".to_string(),
            image
                .manifest_digest
                .unwrap_or(image.config_digest)
                .to_string(),
        );
        spec.annotations = annotations;
        Ok(spec)
    }
}

fn count_files(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .flatten()
        .count() as u64
}
