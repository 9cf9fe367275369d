//! Agents: the machines whose resources the masters pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{AgentId, Resources, TaskId};

/// An agent registered for the first time and was given `agent_id`.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRegistered {
    pub agent_id: AgentId,
    pub hostname: String,
    /// Where the agent serves its own endpoints (`host:port`).
    pub address: String,
    pub resources: Resources,
    /// Key/value attributes used by placement constraints (`rack: r1`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub version: String,
}

/// A known agent came back (after a restart or a lost connection), listing what it still runs.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReregistered {
    pub agent_id: AgentId,
    pub hostname: String,
    pub address: String,
    pub resources: Resources,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub version: String,
    /// Tasks the agent reports running, for reconciliation.
    #[serde(default)]
    pub running_tasks: Vec<TaskId>,
}

/// The connection to an agent dropped; its tasks are not yet presumed lost.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDisconnected {
    pub agent_id: AgentId,
    pub reason: String,
}

/// An agent stayed away past its timeout; its tasks are lost.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLost {
    pub agent_id: AgentId,
    pub reason: String,
}

/// An operator removed an agent from the cluster.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRemoved {
    pub agent_id: AgentId,
    pub reason: String,
}
