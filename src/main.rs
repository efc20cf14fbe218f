//! The `jail` binary: parse arguments, dispatch, map failures to exit codes.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
