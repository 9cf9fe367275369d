//! `cairn`: the one binary. Parses the command line and wires the crates together; no domain
//! logic lives here (nothing depends on this package).

mod bench;
mod config;
mod dev;
mod log_cmd;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "An event-sourced cluster orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-node master on loopback, data in ./cairn-data.
    Dev(config::DevFlags),
    /// Inspect a log on disk (the master using it must be stopped).
    Log {
        #[command(subcommand)]
        command: log_cmd::LogCommand,
    },
    /// Measure cairn on this machine.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(flags) => dev::main(flags),
        Command::Log { command } => log_cmd::main(command),
        Command::Bench { command } => bench::main(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
