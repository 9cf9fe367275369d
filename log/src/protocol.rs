//! The agent protocol's wire shapes: HTTP+JSON between an agent and the leading master.
//!
//! | route (on the master) | body | answer |
//! |---|---|---|
//! | `POST /v1/agents/register` | [`Register`] | [`Registered`] |
//! | `GET /v1/agents/{id}/commands` | | NDJSON [`Envelope`]s, one per line, until the leader steps down |
//! | `POST /v1/agents/{id}/status` | `[`[`StatusUpdate`]`]` | `[`[`Ack`]`]`, once logged |
//!
//! A master that does not lead answers `307 Temporary Redirect` to the leader, or 503 when no
//! leader is known. Shapes evolve append-only, like the log's vocabulary: new fields are
//! `#[serde(default)]`. `log/tests/golden/protocol.json` pins every shape.

use std::collections::BTreeMap;

use crate::event::{
    AgentId, FrameworkId, Resources, StatusSource, TaskId, TaskSpec, TaskState, Term, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Most status updates in one `POST .../status`.
pub const MAX_UPDATES_PER_POST: usize = 100;
/// How often the master writes on an idle command stream; an agent that hears nothing for
/// three times this long reconnects.
pub const PING_SECS: u64 = 5;

/// An agent introduces itself (first time without `agent_id`; afterwards with the id it was
/// given, listing every task it still knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    pub hostname: String,
    /// Where the agent serves its own endpoints (`host:port`).
    pub address: String,
    pub resources: Resources,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub version: String,
    /// Tasks the agent runs, or ran and still holds unacknowledged updates for.
    #[serde(default)]
    pub tasks: Vec<KnownTask>,
    /// The highest leader term the agent has obeyed; a master with a lower term is stale.
    #[serde(default)]
    pub term: Term,
}

/// A task the agent knows, with the last state it reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownTask {
    pub task_id: TaskId,
    pub state: TaskState,
}

/// The master's answer to [`Register`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub agent_id: AgentId,
    /// The leader's term: commands carry it, and the agent refuses lower ones.
    pub term: Term,
    /// Offset of the registration record.
    pub offset: u64,
}

/// One line of the command stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The term of the leader that sent it.
    pub term: Term,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Boxed: a launch carries a whole task spec, the other commands a few words.
    Launch(Box<Launch>),
    Kill(Kill),
    /// Keeps an idle stream alive, so both sides notice a dead peer.
    Ping,
}

/// Start a task (idempotent: a task the agent already knows is not started again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub task_id: TaskId,
    pub name: String,
    pub resources: Resources,
    pub spec: TaskSpec,
    /// Offset of the `TaskLaunched` record.
    pub offset: u64,
    /// The task's framework: a framework's own executor is one per framework and executor id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
}

/// Stop a task: SIGTERM (or `docker stop`), then SIGKILL after the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default)]
    pub grace_period_secs: Option<u64>,
}

/// A task's change of state, stored by the agent until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// Unique per update; the acknowledgement echoes it, and the master logs a retried update
    /// once.
    pub uuid: String,
    pub task_id: TaskId,
    pub state: TaskState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub healthy: Option<bool>,
    /// When the agent saw the change (the log records its own time too).
    pub at: Timestamp,
    /// Who said it: the agent (the default), or the framework's own executor.
    #[serde(default, skip_serializing_if = "is_agent")]
    pub source: StatusSource,
}

fn is_agent(source: &StatusSource) -> bool {
    *source == StatusSource::Agent
}

/// The master logged (or had already logged) the update `uuid` at `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub uuid: String,
    pub offset: u64,
}

/// An error answer from the master: `{"error": "…", "leader": "host:port"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub leader: Option<String>,
}

/// Mesos' RecordIO framing of one JSON event on a streaming answer (`<length>\n<json>`), as
/// the scheduler, operator and executor APIs send them.
pub fn record_io(event: &serde_json::Value) -> String {
    let json = event.to_string();
    format!("{}\n{json}", json.len())
}

/// The Mesos version cairn answers as (numeric, dotted: pymesos parses it with `int()`).
pub const MESOS_VERSION: &str = "1.11.0";
