//! The apps read model: definitions with their version history, instances, and deployments.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    AppId, AppSpec, Backoff, DeploymentId, DeploymentStep, TaskId, TaskState, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::IdMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Apps {
    pub apps: IdMap<AppId, App>,
    /// Running deployments, and the latest ended ones (see [`crate::Retention`]).
    #[serde(deserialize_with = "crate::bulk::map")]
    pub deployments: BTreeMap<DeploymentId, Deployment>,
    /// Ended deployments still kept, by the offset that ended them: the oldest go first.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub ended: BTreeMap<u64, DeploymentId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub spec: Box<AppSpec>,
    /// The current version (Marathon versions are timestamps).
    pub version: Timestamp,
    /// Every version, oldest first, with the offset that made it.
    pub versions: Vec<AppVersion>,
    pub created_at: Timestamp,
    /// Tasks of this app that are not terminal.
    #[serde(deserialize_with = "crate::bulk::set")]
    pub instances: BTreeSet<TaskId>,
    /// Launches held back after instances failed (Marathon's backoff); a new definition
    /// clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<LaunchBackoff>,
    /// The latest instance that ended by itself (not killed on request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<TaskFailure>,
}

impl App {
    /// The version whose definition the app runs: the latest that was not only a scaling.
    /// Instances launched at or after it run the current definition.
    pub fn config_version(&self) -> Timestamp {
        self.versions
            .iter()
            .rev()
            .find(|v| v.change != VersionChange::Scaled)
            .map_or(self.version, |v| v.version)
    }
}

/// Marathon's launch delay: `backoff · factor^(failures−1)`, at most the maximum. A failure
/// long after the last delay ran out (by more than the maximum) starts the count again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchBackoff {
    pub failures: u32,
    /// No instance is launched before this time.
    pub until: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    pub task_id: TaskId,
    pub state: TaskState,
    pub message: Option<String>,
    pub at: Timestamp,
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

impl LaunchBackoff {
    /// The backoff after a failure at `at`, following `previous`. Computed by repeated
    /// multiplication (not `powf`, whose last bit may differ between C libraries) so that
    /// every member folds the same time.
    pub fn after_failure(previous: Option<&Self>, spec: &Backoff, at: Timestamp) -> Self {
        let max_micros = secs_to_micros(spec.max_launch_delay_secs);
        let failures = match previous {
            Some(b) if at.as_micros() < b.until.as_micros().saturating_add(max_micros) => {
                b.failures.saturating_add(1)
            }
            _ => 1,
        };
        let mut delay = spec.backoff_secs;
        for _ in 1..failures {
            if delay >= spec.max_launch_delay_secs {
                break;
            }
            delay *= spec.factor;
        }
        let delay = secs_to_micros(delay).min(max_micros);
        Self {
            failures,
            until: Timestamp::from_micros(at.as_micros().saturating_add(delay)),
        }
    }
}

fn secs_to_micros(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}
