//! `jail ldd`: not built yet (issue 3).

use super::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<std::ffi::OsString>,
}

pub fn run(_args: Args) -> CmdResult {
    Err(Failure::usage(anyhow::anyhow!(
        "`jail ldd` is not implemented yet (issue 3)"
    )))
}
