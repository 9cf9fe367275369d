//! The apps read model: definitions with their version history, instances, and deployments.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{AppId, AppSpec, DeploymentId, DeploymentStep, TaskId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Apps {
    pub apps: BTreeMap<AppId, App>,
    /// Running deployments, and the latest ended ones (see [`crate::Retention`]).
    pub deployments: BTreeMap<DeploymentId, Deployment>,
    /// Ended deployments still kept, by the offset that ended them: the oldest go first.
    pub ended: BTreeMap<u64, DeploymentId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub spec: AppSpec,
    /// The current version (Marathon versions are timestamps).
    pub version: Timestamp,
    /// Every version, oldest first, with the offset that made it.
    pub versions: Vec<AppVersion>,
    pub created_at: Timestamp,
    /// Tasks of this app that are not terminal.
    pub instances: BTreeSet<TaskId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVersion {
    pub version: Timestamp,
    pub offset: u64,
    pub change: VersionChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionChange {
    Created,
    Updated,
    Scaled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Running,
    Finished,
    Failed { reason: String },
    Canceled { rolled_back: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub version: Timestamp,
    pub app_ids: Vec<AppId>,
    pub steps: Vec<DeploymentStep>,
    /// Steps completed so far.
    pub completed_steps: u32,
    pub status: DeploymentStatus,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}
