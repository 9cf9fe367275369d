//! Frameworks: schedulers that receive resource offers.

use serde::{Deserialize, Serialize};

use super::ids::FrameworkId;

/// A framework subscribed for the first time.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkRegistered {
    pub framework_id: FrameworkId,
    pub name: String,
    /// The Unix user its tasks run as by default.
    pub user: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub principal: Option<String>,
    /// How long the master keeps its tasks after it disconnects.
    pub failover_timeout_secs: u64,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub webui_url: Option<String>,
}

/// A known framework subscribed again (after a failover of its own).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkReregistered {
    pub framework_id: FrameworkId,
}

/// A framework's connection dropped; its failover timeout runs from here.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkDisconnected {
    pub framework_id: FrameworkId,
    pub reason: String,
}

/// A framework was torn down (by itself, an operator, or its failover timeout).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkRemoved {
    pub framework_id: FrameworkId,
    pub reason: String,
}

/// A framework asked to receive no offers (for `roles`, or all its roles when empty).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersSuppressed {
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A framework asked for offers again, clearing its filters.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersRevived {
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub roles: Vec<String>,
}
