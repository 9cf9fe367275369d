//! The audit read model: who changed what, when and from where. Each entry names the offset of
//! the previous change to the same subject, so "before" is the state as of that offset and
//! "after" the state as of this one.

use std::collections::VecDeque;

use cairn_log::event::{Actor, Timestamp};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::IdMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// The latest changes made by users and external frameworks, oldest first.
    pub entries: VecDeque<AuditEntry>,
    /// Offset of the latest change per subject among them. Looked up twice per audited
    /// record, so hashed rather than searched (an [`IdMap`] serializes as the map it replaced).
    pub latest: IdMap<CompactString, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub offset: u64,
    pub at: Timestamp,
    pub actor: Actor,
    /// The event's type, e.g. `AppUpdated`. Compact strings here (inline up to 24 bytes, and
    /// serialized as plain strings) spare the fold two allocations per audited record.
    pub kind: CompactString,
    /// What changed: `app:/web`, `job:nightly`, `task:web.1`, `agent:a1`, `framework:f1`.
    pub subject: CompactString,
    /// The previous change to the same subject, if it is still kept.
    pub previous: Option<u64>,
}
