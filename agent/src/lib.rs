//! `cairn-agent`: the agent — registration with the leading master, executors (processes, and
//! Docker via bollard), and status updates kept until acknowledged.
//!
//! **Role.** An agent offers one machine's CPUs, memory, disk and ports to the masters, runs
//! the tasks the leader sends it, and reports every change of their state. `cairn agent` runs
//! one; `cairn dev` runs one beside its master.
//!
//! **Boundary.** Depends on `cairn-log`'s vocabulary only (`default-features = false`): the
//! agent never compiles the log's storage and never reads projections; it learns everything
//! from the commands the master sends (`cairn_log::protocol`). The master side of the protocol is the
//! leader's runner (`cairn-scheduler`).
//!
//! **Invariants.**
//! - A status update is stored durably before it is sent, and deleted only when the master
//!   acknowledges it with the offset where it was logged; updates are sent in the order they
//!   were stored.
//! - A command from a leader whose term is lower than one the agent already obeyed is refused.
//! - A launch is idempotent: a task the agent already knows is never started twice.
//! - Every task runs under an executor process that outlives the agent, so an agent restart
//!   neither kills tasks nor loses how they ended; whatever a task leaves behind when it ends
//!   is killed with it. The exception is a framework's own executor ([`executors`]), which
//!   cannot reconnect: a restarted agent stops it and fails its tasks.
//! - A framework's executor runs once per framework and executor id, and only while it has
//!   tasks; its updates are stored and acknowledged like the agent's own.

pub mod agent;
pub mod cgroups;
pub mod executor;
pub mod executors;
mod health;
pub mod host;
mod http;
mod mesos;
pub mod store;

use std::path::{Path, PathBuf};

pub use agent::{run, AgentConfig};

/// The agent's one error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid agent file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
