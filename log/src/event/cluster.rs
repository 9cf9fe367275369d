//! Masters, leadership and the log's own format.

use serde::{Deserialize, Serialize};

use super::ids::{NodeId, Term};

/// A master became the leader for `term`; everything it appends carries that term.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderElected {
    pub node_id: NodeId,
    pub term: Term,
    /// Where the leader serves its APIs (`host:port`).
    pub address: String,
}

/// A master joined the set of log replicas.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterJoined {
    pub node_id: NodeId,
    pub address: String,
}

/// A master left the set of log replicas.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterLeft {
    pub node_id: NodeId,
    pub reason: String,
}

/// From here on, the log's meaning needs a binary that reads at least `min_format`; an older
/// binary refuses to fold past this record instead of misreading what follows.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatBarrier {
    pub min_format: u16,
}
