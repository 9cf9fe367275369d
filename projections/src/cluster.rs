//! The cluster read model: masters and the leader, agents with their resources, frameworks and
//! outstanding offers.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{AgentId, FrameworkId, NodeId, OfferId, Resources, TaskId, Term, Timestamp};
use serde::{Deserialize, Serialize};

use crate::IdMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub leader: Option<Leader>,
    pub masters: BTreeMap<NodeId, Master>,
    pub agents: IdMap<AgentId, Agent>,
    #[serde(deserialize_with = "crate::bulk::map")]
    pub frameworks: BTreeMap<FrameworkId, Framework>,
    /// Removed frameworks still kept, by the offset that removed them: the oldest go first
    /// (see [`crate::Retention`]).
    #[serde(deserialize_with = "crate::bulk::map")]
    pub removed_frameworks: BTreeMap<u64, FrameworkId>,
    /// Offers made and not yet accepted, declined or rescinded.
    pub offers: IdMap<OfferId, OutstandingOffer>,
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
    #[serde(deserialize_with = "crate::bulk::set")]
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
    #[serde(default, skip_serializing_if = "Filters::is_empty")]
    pub filters: Filters,
}

/// A framework's filters: until when each agent is not offered to it, and the same ordered by
/// when they run out, so that dropping the ones that have is a walk over those alone (a
/// framework declining 10,000 agents' offers otherwise scanned 10,000 filters at each
/// decline). Written as the map alone, the order rebuilt on reading: the shape of the state
/// and its checkpoints is the map's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    until: BTreeMap<AgentId, Timestamp>,
    by_expiry: BTreeSet<(Timestamp, AgentId)>,
}

impl Filters {
    /// Until when `agent` is not offered, if it was declined and not revived since (the time
    /// may have passed).
    pub fn get(&self, agent: &AgentId) -> Option<&Timestamp> {
        self.until.get(agent)
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Not offered `agent` again before `until`.
    pub fn insert(&mut self, agent: AgentId, until: Timestamp) {
        if let Some(was) = self.until.insert(agent.clone(), until) {
            self.by_expiry.remove(&(was, agent.clone()));
        }
        self.by_expiry.insert((until, agent));
    }

    /// Offered every agent again.
    pub fn clear(&mut self) {
        self.until.clear();
        self.by_expiry.clear();
    }

    /// Drops the filters that have run out at `at` (those until `at` or earlier).
    pub fn expire(&mut self, at: Timestamp) {
        while let Some((until, agent)) = self.by_expiry.pop_first() {
            if until > at {
                self.by_expiry.insert((until, agent));
                break;
            }
            self.until.remove(&agent);
        }
    }
}

impl Serialize for Filters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.until.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let until: BTreeMap<AgentId, Timestamp> = crate::bulk::map(deserializer)?;
        let by_expiry = until.iter().map(|(a, t)| (*t, a.clone())).collect();
        Ok(Self { until, by_expiry })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    #[test]
    fn filters_run_out_in_order_and_a_renewed_one_counts_from_its_renewal() {
        let id = |s: &str| AgentId::new(s).expect("an agent id");
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let mut filters = Filters::default();
        filters.insert(a.clone(), at(5));
        filters.insert(b.clone(), at(7));
        filters.insert(c.clone(), at(6));
        filters.insert(a.clone(), at(9));
        filters.expire(at(6));
        let left = Filters {
            until: BTreeMap::from([(a.clone(), at(9)), (b.clone(), at(7))]),
            by_expiry: BTreeSet::from([(at(7), b), (at(9), a.clone())]),
        };
        assert_eq!(filters, left);
        // Read back from its written shape, the map, it is whole again.
        let json = serde_json::to_string(&filters).expect("serializes");
        assert_eq!(
            json,
            r#"{"a":"1970-01-01T00:00:09.000000Z","b":"1970-01-01T00:00:07.000000Z"}"#
        );
        assert_eq!(
            serde_json::from_str::<Filters>(&json).expect("deserializes"),
            left
        );
        filters.clear();
        assert_eq!(filters, Filters::default());
        assert_eq!(filters.get(&a), None);
    }
}
