//! Starting the traced command: the seccomp filter that stops only the path
//! syscalls, and the start on the host (fork, self-stop, seize) or in the
//! sandbox (seize init at its gate; the payload installs the filter). The
//! ebpf backend starts the command with the same functions, without a
//! filter and without seizing it, and reads its fate with [`exit_of`].

use super::*;

pub(super) fn filter(all: bool) -> Vec<seccomp::Insn> {
    use seccomp::*;
    let mut p = vec![
        load(OFF_ARCH),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        ret(SECCOMP_RET_TRACE),
        load(OFF_NR),
        jge(X32_SYSCALL_BIT, 0, 1),
        ret(SECCOMP_RET_TRACE),
    ];
    if all {
        p.push(ret(SECCOMP_RET_TRACE));
        return p;
    }
    for (nr, arg) in FD_STATS {
        p.push(load(OFF_NR));
        p.push(jeq(nr as u32, 0, 4));
        p.push(load(16 + 8 * arg as u32)); // low word of args[arg] (little-endian)
        p.push(Insn {
            code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: AT_EMPTY_PATH as u32,
        });
        p.push(ret(SECCOMP_RET_ALLOW));
        p.push(ret(SECCOMP_RET_TRACE));
    }
    p.push(load(OFF_NR));
    let n = syscalls::TABLE.len();
    for (i, s) in syscalls::TABLE.iter().enumerate() {
        // On a match jump over the remaining compares and the ALLOW.
        let to_trace = (n - i) as u8;
        p.push(jeq(s.nr as u32, to_trace, 0));
    }
    p.push(ret(SECCOMP_RET_ALLOW));
    p.push(ret(SECCOMP_RET_TRACE));
    p
}

pub(super) fn cstring(s: &OsStr, what: &str) -> Result<CString, TraceError> {
    CString::new(s.as_bytes())
        .map_err(|_| TraceError::BadArgument(format!("{what} contains a NUL byte: {s:?}")))
}

/// The first traced process, before it runs.
pub(in crate::trace) enum Started {
    Host(process::Stopped),
    Sandbox(Box<sandbox::Child>),
}

impl Started {
    pub(in crate::trace) fn pid(&self) -> Pid {
        match self {
            Started::Host(s) => s.pid,
            Started::Sandbox(c) => c.pid(),
        }
    }
}

/// The first traced process, after the run.
pub(in crate::trace) enum Launched {
    Host(process::Stopped),
    Sandbox(Box<sandbox::Child>),
}

/// Fork a child that stops itself; seize it (unless `opts` is `None`: the
/// ebpf backend); it will install the filter and exec once sent SIGCONT.
#[allow(clippy::too_many_arguments)]
impl Launch<'_> {
    /// Start the command where `start` says: on the host (a self-stopped
    /// child) or in the sandbox (init at its gate); seized with `opts`
    /// and filtered by `prog_filter` when given (the ebpf backend gives
    /// neither).
    pub(in crate::trace) fn begin(
        &self,
        prog_filter: Option<Vec<seccomp::Insn>>,
        opts: Option<Options>,
    ) -> Result<Started, TraceError> {
        match &self.start {
            Start::Host {
                program,
                argv,
                env,
                stdout,
            } => start_on_host(program, argv, env, &self.cwd, *stdout, prog_filter, opts),
            Start::Sandbox(spec) => start_in_sandbox(spec, prog_filter, opts),
        }
    }
}

fn start_on_host(
    program: &Path,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    cwd: &Path,
    stdout: Option<std::os::fd::RawFd>,
    prog_filter: Option<Vec<seccomp::Insn>>,
    opts: Option<Options>,
) -> Result<Started, TraceError> {
    let prog = cstring(program.as_os_str(), "program path")?;
    let argv = process::CStringArray::new(
        argv.iter()
            .map(|a| cstring(a, "argument"))
            .collect::<Result<_, _>>()?,
    );
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv, "environment variable")
        })
        .collect::<Result<_, _>>()?;
    let envp = process::CStringArray::new(envp);
    let need_nnp = !process::has_cap_sys_admin();
    let cwd = cstring(cwd.as_os_str(), "working directory")?;
    let pre_exec = || -> nix::Result<()> {
        // Before the filter: the tracer already knows this directory (it
        // resolves the command's relative paths against it).
        nix::unistd::chdir(cwd.as_c_str())?;
        let Some(prog) = &prog_filter else {
            return Ok(());
        };
        if need_nnp {
            nix::sys::prctl::set_no_new_privs()?;
        }
        seccomp::install(prog)
    };
    let child = process::spawn_stopped(&prog, &argv, &envp, stdout, &pre_exec).map_err(|e| {
        TraceError::Spawn {
            program: program.to_path_buf(),
            source: e,
        }
    })?;
    let pid = child.pid;
    let Some(opts) = opts else {
        return Ok(Started::Host(child));
    };
    if let Err(e) = ptrace::seize(pid, opts) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(TraceError::Ptrace {
            pid: pid.as_raw(),
            op: "PTRACE_SEIZE",
            source: e,
        });
    }
    Ok(Started::Host(child))
}

/// Create the sandbox (its init waits at a gate), seize init (unless
/// `opts` is `None`); the payload installs the filter just before its exec.
fn start_in_sandbox(
    spec: &sandbox::Spec,
    prog_filter: Option<Vec<seccomp::Insn>>,
    opts: Option<Options>,
) -> Result<Started, TraceError> {
    let pre_exec = prog_filter.map(sandbox::Hook::seccomp);
    let child = sandbox::spawn(
        spec,
        sandbox::Hooks {
            before_payload: None,
            pre_exec,
        },
    )
    .map_err(|e| TraceError::Sandbox(Box::new(e)))?;
    if let Some(opts) = opts {
        ptrace::seize(child.pid(), opts).map_err(|e| TraceError::Ptrace {
            pid: child.pid().as_raw(),
            op: "PTRACE_SEIZE",
            source: e,
        })?;
    }
    Ok(Started::Sandbox(Box::new(child)))
}

/// The command's exit status once its first process is gone: on the host,
/// the exec failure the child reported (the same error for every backend)
/// or `main_exit`; in the sandbox, what init reports of the payload, given
/// init's wait status `main_wait`.
pub(in crate::trace) fn exit_of(
    launched: Launched,
    start: &Start<'_>,
    main_exit: Option<ExitStatus>,
    main_wait: Option<WaitStatus>,
) -> Result<ExitStatus, TraceError> {
    Ok(match launched {
        Launched::Host(stopped) => {
            if let Some((step, errno)) = stopped.exec_result() {
                let program = match start {
                    Start::Host { program, .. } => program.to_path_buf(),
                    Start::Sandbox(_) => PathBuf::new(),
                };
                return Err(match step {
                    process::ChildStep::Exec => TraceError::Exec { program, errno },
                    process::ChildStep::PreExec => TraceError::Setup {
                        what: "prepare the command in its child (change to the working directory, install the seccomp filter)",
                        source: errno,
                    },
                });
            }
            main_exit.unwrap_or(ExitStatus::Signal {
                signal: libc::SIGKILL,
            })
        }
        Launched::Sandbox(child) => {
            // init reports the payload's exact fate (and setup errors).
            let status = main_wait.ok_or(TraceError::Wait(Errno::ECHILD))?;
            let real = child
                .finish(status)
                .map_err(|e| TraceError::Sandbox(Box::new(e)))?;
            match (
                real.code(),
                std::os::unix::process::ExitStatusExt::signal(&real),
            ) {
                (Some(code), _) => ExitStatus::Code { code },
                (None, Some(signal)) => ExitStatus::Signal { signal },
                _ => ExitStatus::Signal {
                    signal: libc::SIGKILL,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_jumps_stay_in_range() {
        for all in [false, true] {
            let p = filter(all);
            assert!(p.len() < 4096);
            for (i, insn) in p.iter().enumerate() {
                let cls = insn.code & 0x07;
                if cls == libc::BPF_JMP as u16 {
                    assert!(i + 1 + (insn.jt as usize) < p.len());
                    assert!(i + 1 + (insn.jf as usize) < p.len());
                }
            }
            assert_eq!(p.last().unwrap().k, seccomp::SECCOMP_RET_TRACE);
        }
    }

    /// Run a classic-BPF seccomp program on one syscall, as the kernel
    /// does, for the instructions the filter uses (LD W ABS, JEQ/JGE/JSET
    /// K, RET K).
    fn interpret(prog: &[seccomp::Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        // struct seccomp_data: nr, arch, instruction_pointer, args[6].
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = prog[pc];
            let code = insn.code as u32;
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = insn.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                c if c & 0x07 == libc::BPF_JMP => {
                    let taken = match c & 0xf0 {
                        op if op == libc::BPF_JEQ => acc == insn.k,
                        op if op == libc::BPF_JGE => acc >= insn.k,
                        op if op == libc::BPF_JSET => acc & insn.k != 0,
                        op => panic!("jump op {op:#x} not interpreted"),
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                c => panic!("instruction {c:#x} not interpreted"),
            }
        }
    }

    #[test]
    fn the_filter_traces_path_syscalls_and_allows_the_rest() {
        use seccomp::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE};
        let p = filter(false);
        let x86 = |nr: i64, args: [u64; 6]| interpret(&p, AUDIT_ARCH_X86_64, nr as u32, args);
        let empty = AT_EMPTY_PATH;
        assert_eq!(x86(libc::SYS_openat, [0; 6]), SECCOMP_RET_TRACE);
        assert_eq!(x86(libc::SYS_execve, [0; 6]), SECCOMP_RET_TRACE);
        assert_eq!(x86(libc::SYS_read, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(x86(libc::SYS_write, [0; 6]), SECCOMP_RET_ALLOW);
        // fstat through newfstatat/statx with AT_EMPTY_PATH: no stop.
        assert_eq!(
            x86(libc::SYS_newfstatat, [3, 0, 0, empty, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            x86(libc::SYS_statx, [3, 0, empty, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        // ... but with a path they are path syscalls.
        assert_eq!(
            x86(libc::SYS_newfstatat, [3, 0, 0, 0, 0, 0]),
            SECCOMP_RET_TRACE
        );
        assert_eq!(x86(libc::SYS_statx, [3, 0, 0, 0, 0, 0]), SECCOMP_RET_TRACE);
        // Every syscall of the table stops.
        for s in syscalls::TABLE {
            assert_eq!(x86(s.nr, [0; 6]), SECCOMP_RET_TRACE, "{}", s.name);
        }
        // 32-bit (int 0x80) and x32 calls always stop, to be refused.
        assert_eq!(interpret(&p, AUDIT_ARCH_I386, 3, [0; 6]), SECCOMP_RET_TRACE);
        assert_eq!(x86(0x4000_0000 | libc::SYS_read, [0; 6]), SECCOMP_RET_TRACE);
        // Tracing every syscall stops on read too.
        let all = filter(true);
        assert_eq!(
            interpret(&all, AUDIT_ARCH_X86_64, libc::SYS_read as u32, [0; 6]),
            SECCOMP_RET_TRACE
        );
    }
}
