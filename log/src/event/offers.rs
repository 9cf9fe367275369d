//! Resource offers: free resources on one agent, handed to one framework.

use serde::{Deserialize, Serialize};

use super::ids::{AgentId, FrameworkId, OfferId, Resources, TaskId};

/// One offer as made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub offer_id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
}

/// The allocator offered free resources to frameworks.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersMade {
    pub offers: Vec<Offer>,
}

/// A framework used an offer to launch tasks (each appears as its own `TaskLaunched`).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAccepted {
    pub offer_id: OfferId,
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub task_ids: Vec<TaskId>,
}

/// A framework declined offers, asking not to see those resources again for a while.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersDeclined {
    pub offer_ids: Vec<OfferId>,
    pub framework_id: FrameworkId,
    pub refuse_millis: u64,
}

/// The master took an outstanding offer back (agent lost, timeout, framework gone).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRescinded {
    pub offer_id: OfferId,
    pub reason: String,
}
