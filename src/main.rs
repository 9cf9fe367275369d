//! `cairn`: the one binary. Parses the command line and wires the crates together; no domain
//! logic lives here (nothing depends on this package).

/// Folds and decoders allocate small strings and B-tree nodes by the million; glibc's malloc
/// spent 10–20% of a replay in itself (ARCHITECTURE.md, "Live state").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent_api;
mod agent_cmd;
mod api;
mod app_cmd;
mod bench;
mod cluster_cmd;
mod config;
mod job_cmd;
mod log_cmd;
mod master;
mod query_cmd;
mod task_cmd;
mod telemetry;
mod token_cmd;
mod ui;

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
    /// Run a single-node master and an agent on loopback, data in ./cairn-data.
    Dev(config::DevFlags),
    /// Run one master of a replicated cluster.
    Master(config::MasterFlags),
    /// Run an agent: offer this machine's resources to the masters and run their tasks.
    Agent(agent_cmd::AgentFlags),
    /// Run one task's executor (started by an agent).
    #[command(hide = true)]
    Executor { sandbox: std::path::PathBuf },
    /// Inspect and change a running cluster of masters.
    Cluster {
        #[command(subcommand)]
        command: cluster_cmd::ClusterCommand,
    },
    /// Long-running apps (Marathon definitions): apply, scale, restart, roll back, inspect.
    App {
        #[command(subcommand)]
        command: app_cmd::AppCommand,
    },
    /// Scheduled and dependent jobs (Chronos definitions): apply, run, inspect runs and logs.
    Job {
        #[command(subcommand)]
        command: job_cmd::JobCommand,
    },
    /// Run, kill and inspect one-off tasks, and read their logs.
    Task {
        #[command(subcommand)]
        command: task_cmd::TaskCommand,
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
    /// Make API tokens.
    Token {
        #[command(subcommand)]
        command: token_cmd::TokenCommand,
    },
    /// Measure cairn on this machine.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Transparent huge pages off in the processes that fold the log. mimalloc asks for them on
/// its arenas, and with the kernel's `defrag=madvise` a fault there may first compact memory,
/// then zeroes 2 MiB at once: a replay right after opening the log (sled loading its pages
/// into fresh memory) spent up to half its time in the kernel so, and varied two-fold from run
/// to run; without them it is steady, and the fold no slower (BENCHMARKS.md, eleventh
/// session). Child processes inherit the setting: the executor turns it back for its task.
fn without_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("warning: transparent huge pages stay on: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Dev(_) | Command::Master(_) | Command::Bench { .. }
    ) {
        without_huge_pages();
    }
    let result = match cli.command {
        Command::Dev(flags) => master::dev(flags),
        Command::Master(flags) => master::master(flags),
        Command::Agent(flags) => agent_cmd::main(flags),
        Command::Executor { sandbox } => Ok(agent_cmd::executor(sandbox)),
        Command::Cluster { command } => cluster_cmd::main(command),
        Command::App { command } => app_cmd::main(command),
        Command::Job { command } => job_cmd::main(command),
        Command::Task { command } => task_cmd::main(command),
        Command::Query(args) => query_cmd::query(args),
        Command::Events(args) => query_cmd::events(args),
        Command::State(args) => query_cmd::state(args),
        Command::Log { command } => log_cmd::main(command),
        Command::Token { command } => token_cmd::main(command),
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
