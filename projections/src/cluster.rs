//! The cluster read model: masters and the leader, agents with their resources, frameworks and
//! outstanding offers.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{AgentId, FrameworkId, NodeId, OfferId, Resources, TaskId, Term, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub leader: Option<Leader>,
    pub masters: BTreeMap<NodeId, Master>,
    pub agents: BTreeMap<AgentId, Agent>,
    pub frameworks: BTreeMap<FrameworkId, Framework>,
    /// Removed frameworks still kept, by the offset that removed them: the oldest go first
    /// (see [`crate::Retention`]).
    pub removed_frameworks: BTreeMap<u64, FrameworkId>,
    /// Offers made and not yet accepted, declined or rescinded.
    pub offers: BTreeMap<OfferId, OutstandingOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node_id: NodeId,
    pub term: Term,
    pub address: String,
    pub since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    pub address: String,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentStatus {
    Active,
    Disconnected,
    Lost,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub hostname: String,
    pub address: String,
    pub attributes: BTreeMap<String, String>,
    pub version: String,
    pub status: AgentStatus,
    pub registered_at: Timestamp,
    /// Last registration, re-registration or status change.
    pub updated_at: Timestamp,
    pub total: Resources,
    /// Held by tasks that are not terminal.
    pub used: Resources,
    /// Held by outstanding offers.
    pub offered: Resources,
    /// Tasks on this agent that are not terminal.
    pub tasks: BTreeSet<TaskId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameworkStatus {
    Active,
    Disconnected,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Framework {
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub principal: Option<String>,
    pub failover_timeout_secs: u64,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
    pub status: FrameworkStatus,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
    /// Roles it asked not to be offered; `*` alone means all of them.
    pub suppressed: BTreeSet<String>,
    /// Agents whose resources it declined, until when it is not offered them again
    /// (`refuse_seconds`); a revive clears them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filters: BTreeMap<AgentId, Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingOffer {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub made_at: Timestamp,
}

impl Cluster {
    /// Resources that are neither used nor offered on an active agent.
    pub fn free(&self, agent_id: &AgentId) -> Option<Resources> {
        let agent = self.agents.get(agent_id)?;
        agent
            .total
            .checked_sub(&agent.used)?
            .checked_sub(&agent.offered)
    }
}
