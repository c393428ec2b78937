//! l2san: serves disk images over AoE and FCoE straight on the Ethernet segment.
//!
//! This crate is the command line and the wiring of workers to targets; the protocols live in
//! the `aoe` and `fcoe` crates, frames and images in `common`.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod ctl;
mod demo;
mod metrics;
mod probe;
mod serve;
mod state;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    let result = match args.command {
        cli::Command::Serve(serve) => serve::run(serve),
        cli::Command::Demo(demo) => demo::run(demo),
        cli::Command::CheckConfig(check) => config::check(check),
        cli::Command::Probe(probe) => probe::run(probe),
        cli::Command::Ctl(ctl) => ctl::run(ctl),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("l2san: error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs go to stderr through `tracing`; `RUST_LOG` picks the level (default: info for l2san,
/// which prints one line per export at start and anomalies, nothing per frame).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// An error for the user, with the exit code it ends the process with.
#[derive(Debug)]
pub enum Error {
    /// Bad arguments or configuration: exit code 2, message names the fix.
    Usage(String),
    /// Anything else: exit code 1.
    Failed(anyhow::Error),
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(m) => f.write_str(m),
            Error::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Failed(e)
    }
}
