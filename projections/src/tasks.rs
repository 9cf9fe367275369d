//! The tasks read model: every task with its full status history.

use std::collections::BTreeMap;

use cairn_log::event::{
    AgentId, FrameworkId, Resources, StatusSource, TaskId, TaskOwner, TaskSpec, TaskState,
    Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::IdMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    /// Tasks that are not terminal, and the latest terminal ones (see [`crate::Retention`]).
    pub tasks: IdMap<TaskId, Task>,
    /// Terminal tasks still kept, by the offset that ended them: the oldest go first.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub ended: BTreeMap<u64, TaskId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub owner: TaskOwner,
    pub resources: Resources,
    pub spec: Box<TaskSpec>,
    pub state: TaskState,
    pub healthy: Option<bool>,
    pub launched_at: Timestamp,
    pub updated_at: Timestamp,
    pub kill_requested: bool,
    /// Every state the task passed through, oldest first, starting with `TASK_STAGING` at launch.
    pub statuses: Vec<Status>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub offset: u64,
    pub at: Timestamp,
    pub state: TaskState,
    pub source: StatusSource,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub healthy: Option<bool>,
    /// The agent's id for the update, so that a retried update is logged once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

impl Task {
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}
