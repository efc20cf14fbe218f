//! The `jail` binary: parse arguments, dispatch, map failures to exit codes.

#![forbid(unsafe_code)]

mod cli;

fn main() {
    std::process::exit(cli::main());
}
