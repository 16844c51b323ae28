//! pull-secret-injector: the flags go in, the library's answer comes out.

use std::process::ExitCode;

use clap::Parser;

use pull_secret_injector::cli::{Cli, run};

fn main() -> ExitCode {
    run(Cli::parse())
}
