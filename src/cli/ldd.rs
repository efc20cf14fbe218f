//! `jail ldd`: the ELF dependency closure of files, as the loader would
//! resolve it, without running anything (`jail::pipeline::ldd`). A tree by
//! default, `--list` for the paths a jail needs, `--json` for programs
//! (schema: docs/elf.md).

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use jail::pipeline::ldd::{ldd, LddOutput, LddRequest};

use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Resolve inside DIR as if chrooted there (FILE is a path inside DIR).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print the closure: every file and every symlink on the way, sorted.
    #[arg(long, conflicts_with = "json")]
    list: bool,
    /// Print the closures as JSON (schema in docs/elf.md).
    #[arg(long)]
    json: bool,
    /// A variable of the program's environment (LD_LIBRARY_PATH, LD_PRELOAD); repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<OsString>,
    /// The program's LD_LIBRARY_PATH.
    #[arg(long, value_name = "PATHS")]
    ld_library_path: Option<OsString>,
    /// glibc-hwcaps levels of the CPU: `host`, `none`, or a list such as `x86-64-v3,x86-64-v2`.
    #[arg(long, value_name = "LIST", default_value = "host")]
    hwcaps: String,
    /// Working directory (inside the root) for relative names [default: the
    /// current directory, or `/` with --root].
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// The files to examine.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(a: Args) -> CmdResult {
    let done = ldd(&LddRequest {
        root: a.root,
        env: a.env,
        ld_library_path: a.ld_library_path,
        hwcaps: a.hwcaps,
        cwd: a.cwd,
        files: a.files,
    })?;
    // Diagnostics first, on stderr; the exit code follows from them.
    let mut code = 0;
    for d in done.diagnostics() {
        eprintln!("jail: {d}");
        code = code.max(d.code());
    }
    let how = match (a.json, a.list) {
        (true, _) => LddOutput::Json,
        (_, true) => LddOutput::List,
        _ => LddOutput::Tree,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    done.write(&mut out, how)
        .and_then(|()| out.flush())
        .map_err(Failure::failed)?;
    match code {
        0 => Ok(()),
        code => Err(Failure::silent(code)),
    }
}
