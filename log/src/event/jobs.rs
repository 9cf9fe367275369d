//! Scheduled and dependent jobs (Chronos semantics) and their runs.
//!
//! A run is identified by `(job, scheduled_for)`; its `run_id` is minted by the leader before
//! the `JobRunTriggered` is appended, so that after a failover the new leader sees which runs
//! were already triggered and nothing runs twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{JobName, RunId, TaskId, Timestamp};
use super::tasks::ContainerSpec;

/// A validated job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: JobName,
    pub command: String,
    #[serde(default = "yes")]
    pub shell: bool,
    #[serde(default)]
    pub arguments: Vec<String>,
    /// ISO 8601 repeating interval `R[n]/start/period`, as given and already validated.
    /// `None` for a dependent job.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub schedule_time_zone: Option<String>,
    /// How late a run may still start.
    pub epsilon_secs: u64,
    /// Jobs that must all succeed before this one runs.
    #[serde(default)]
    pub parents: Vec<JobName>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub owner_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub cpus_milli: u64,
    pub mem_mib: u64,
    #[serde(default)]
    pub disk_mib: u64,
    /// Extra attempts after a failed one.
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub disabled: bool,
    /// Chronos' `concurrent`: overlapping runs are allowed.
    #[serde(default)]
    pub concurrent: bool,
    /// A policy other than Chronos' two (`Queue`); absent in older records, and then
    /// `concurrent` decides (see [`JobSpec::concurrency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(default)]
    pub container: Option<ContainerSpec>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    #[serde(default)]
    pub run_as_user: Option<String>,
}

fn yes() -> bool {
    true
}

impl JobSpec {
    /// What a due run does while an earlier run is active.
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency.unwrap_or(if self.concurrent {
            Concurrency::Allow
        } else {
            Concurrency::Skip
        })
    }
}

/// What a due run does while an earlier run of its job is still active (Chronos'
/// `concurrent: true` is `Allow`; its default, `false`, is `Skip`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// The due run is recorded as missed, with the run it yielded to.
    #[default]
    Skip,
    /// The due run waits for the active one to end (and is missed if that takes longer than
    /// the epsilon).
    Queue,
    /// Both run.
    Allow,
}

/// A job was created.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCreated {
    pub job: JobName,
    pub spec: JobSpec,
}

/// A job's definition changed.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUpdated {
    pub job: JobName,
    pub spec: JobSpec,
}

/// A job was deleted.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDeleted {
    pub job: JobName,
}

/// Why a run was triggered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCause {
    Schedule,
    Manual,
    /// Every parent's latest run succeeded.
    Parents {
        runs: Vec<RunId>,
    },
}

/// How a run (or an attempt) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Killed,
    /// Triggered but not started within the job's epsilon.
    Missed,
}

/// A run of a job was triggered, for the moment it was due.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunTriggered {
    pub job: JobName,
    pub run_id: RunId,
    pub scheduled_for: Timestamp,
    pub cause: RunCause,
}

/// An attempt of a run got a task (`attempt` counts from 1).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunStarted {
    pub job: JobName,
    pub run_id: RunId,
    pub attempt: u32,
    pub task_id: TaskId,
}

/// An attempt failed and another will be made.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunRetried {
    pub job: JobName,
    pub run_id: RunId,
    /// The attempt about to be made.
    pub attempt: u32,
    pub reason: String,
    /// The attempt is not launched before this time (the retry delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
}

/// A run ended, after its last attempt.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunFinished {
    pub job: JobName,
    pub run_id: RunId,
    pub attempt: u32,
    pub outcome: RunOutcome,
    #[serde(default)]
    pub message: Option<String>,
}

/// A due run could not start within the job's epsilon; recorded, never silently dropped.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunMissed {
    pub job: JobName,
    pub scheduled_for: Timestamp,
    pub reason: String,
    /// The run this ends, when it was triggered but could not start in time; `None` when the
    /// due time passed without a run being triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
}
