//! The event vocabulary: every fact the cluster records, in the past tense.
//!
//! This module is pure (serde only, no I/O). Its JSON encoding is the payload of every stored
//! record, so it evolves append-only (STYLE §3.2): variants and fields are only ever added, new
//! fields are `#[serde(default)]`, and a retired variant stays decodable. The golden log in
//! `log/tests/golden/` proves that logs written by earlier formats still decode.

pub mod agents;
pub mod apps;
pub mod cluster;
pub mod frameworks;
pub mod ids;
pub mod jobs;
pub mod offers;
pub mod tasks;

use serde::{Deserialize, Serialize};

pub use agents::*;
pub use apps::*;
pub use cluster::*;
pub use frameworks::*;
pub use ids::*;
pub use jobs::*;
pub use offers::*;
pub use tasks::*;

/// One fact. Externally tagged in JSON (`{"AgentRegistered": {...}}`), which decodes without
/// buffering, so replay stays fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(EventKind),
    derive(
        strum::EnumIter,
        strum::IntoStaticStr,
        strum::EnumString,
        strum::Display,
        Hash,
        PartialOrd,
        Ord
    )
)]
// The variants that carry a whole spec (520 bytes for a task's or an app's) are boxed: unboxed,
// every record was 872 bytes and each move of one during decoding and folding copied all of
// it, a fifth of the decoder's time (BENCHMARKS.md, "Records are small"). Boxed, a record is
// small and only these rarer ones pay an allocation.
pub enum Event {
    // masters and the log itself
    LeaderElected(LeaderElected),
    MasterJoined(MasterJoined),
    MasterLeft(MasterLeft),
    FormatBarrier(FormatBarrier),
    // agents
    AgentRegistered(Box<AgentRegistered>),
    AgentReregistered(Box<AgentReregistered>),
    AgentDisconnected(AgentDisconnected),
    AgentLost(AgentLost),
    AgentRemoved(AgentRemoved),
    // frameworks
    FrameworkRegistered(Box<FrameworkRegistered>),
    FrameworkReregistered(FrameworkReregistered),
    FrameworkDisconnected(FrameworkDisconnected),
    FrameworkRemoved(FrameworkRemoved),
    OffersSuppressed(OffersSuppressed),
    OffersRevived(OffersRevived),
    // offers
    OffersMade(OffersMade),
    OfferAccepted(OfferAccepted),
    OffersDeclined(OffersDeclined),
    OfferRescinded(OfferRescinded),
    // tasks
    TaskLaunched(Box<TaskLaunched>),
    TaskStatusUpdated(TaskStatusUpdated),
    TaskKillRequested(TaskKillRequested),
    // apps and deployments
    AppCreated(Box<AppCreated>),
    AppUpdated(Box<AppUpdated>),
    AppScaled(AppScaled),
    AppDeleted(AppDeleted),
    AppBackoffReset(AppBackoffReset),
    DeploymentStarted(DeploymentStarted),
    DeploymentStepFinished(DeploymentStepFinished),
    DeploymentFinished(DeploymentFinished),
    DeploymentFailed(DeploymentFailed),
    DeploymentCanceled(DeploymentCanceled),
    // jobs and runs
    JobCreated(Box<JobCreated>),
    JobUpdated(Box<JobUpdated>),
    JobDeleted(JobDeleted),
    JobRunTriggered(JobRunTriggered),
    JobRunStarted(JobRunStarted),
    JobRunRetried(JobRunRetried),
    JobRunFinished(JobRunFinished),
    JobRunMissed(JobRunMissed),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.into()
    }
}

/// Who caused an event: the audit trail of every record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// A person or token, by name.
    User {
        name: String,
    },
    Agent {
        agent_id: AgentId,
    },
    Framework {
        framework_id: FrameworkId,
    },
    /// A built-in decider (`allocator`, `apps`, `jobs`).
    Scheduler {
        name: String,
    },
    Master {
        node_id: NodeId,
    },
    /// The log itself (formats, barriers).
    System,
}

/// Where a request came from, for writes made through an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `graphql`, `marathon`, `chronos`, `mesos`, `cli`, `agent`.
    pub api: String,
    #[serde(default)]
    pub remote_addr: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub principal: Principal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            principal: Principal::System,
            origin: None,
        }
    }

    pub fn master(node_id: NodeId) -> Self {
        Self {
            principal: Principal::Master { node_id },
            origin: None,
        }
    }
}

/// What a caller appends: the leader adds offset, term and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub actor: Actor,
    pub event: Event,
}

/// How a value of the vocabulary is spelled on the wire (serde): an enum's name as a bare
/// string (`TASK_RUNNING`), anything else as its JSON.
pub fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}
