//! `cairn`: the one binary. Parses the command line and wires the crates together; no domain
//! logic lives here (nothing depends on this package).

mod api;
mod bench;
mod cluster_cmd;
mod config;
mod log_cmd;
mod master;
mod query_cmd;
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
    Dev(config::CommonFlags),
    /// Run one master of a replicated cluster.
    Master(config::MasterFlags),
    /// Inspect and change a running cluster of masters.
    Cluster {
        #[command(subcommand)]
        command: cluster_cmd::ClusterCommand,
    },
    /// Ask a running cluster a GraphQL query and print the answer.
    Query(query_cmd::QueryArgs),
    /// Print the event log of a running cluster, or follow it.
    Events(query_cmd::EventsArgs),
    /// Print the whole projected state of a running cluster, now or as of a moment.
    State(query_cmd::StateArgs),
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
        Command::Dev(flags) => master::dev(flags),
        Command::Master(flags) => master::master(flags),
        Command::Cluster { command } => cluster_cmd::main(command),
        Command::Query(args) => query_cmd::query(args),
        Command::Events(args) => query_cmd::events(args),
        Command::State(args) => query_cmd::state(args),
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
