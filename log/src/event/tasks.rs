//! Tasks: processes and containers on agents, and every state they pass through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{
    AgentId, AppId, FrameworkId, JobName, OfferId, Resources, RunId, TaskId, Timestamp,
};

/// The Mesos task states, spelled as Mesos spells them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_KILLING")]
    Killing,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
    #[serde(rename = "TASK_ERROR")]
    Error,
    #[serde(rename = "TASK_LOST")]
    Lost,
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    #[serde(rename = "TASK_GONE")]
    Gone,
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// A terminal state is final: no further update changes the task.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished
                | Self::Failed
                | Self::Killed
                | Self::Error
                | Self::Lost
                | Self::Dropped
                | Self::Gone
                | Self::GoneByOperator
        )
    }
}

/// Who reported a status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusSource {
    Master,
    #[default]
    Agent,
    Executor,
}

/// Why a task exists: the part of the system that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOwner {
    /// An external framework's task.
    Framework,
    /// An instance of a long-running app, at that app version.
    App { app_id: AppId, version: Timestamp },
    /// An attempt of a job run.
    JobRun {
        job: JobName,
        run_id: RunId,
        attempt: u32,
    },
    /// A one-off task a user launched directly.
    User,
}

/// A command to run, by a shell (`value`) or directly (`args`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Run `value` through `/bin/sh -c` (Mesos' `shell: true`, the default).
    #[serde(default = "yes")]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub user: Option<String>,
}

fn yes() -> bool {
    true
}

/// Docker networking modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DockerNetwork {
    #[serde(rename = "BRIDGE")]
    Bridge,
    #[serde(rename = "HOST")]
    Host,
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "USER")]
    User,
}

/// A container port published on the host. `host_port` is the port actually assigned on the
/// agent (never 0 once launched: the scheduler picks it from the offer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default)]
    pub name: Option<String>,
}

fn tcp() -> String {
    "tcp".to_owned()
}

/// A Docker `--key=value` parameter, as Marathon passes them (`volume-driver`, `volume`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerParameter {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerSpec {
    pub image: String,
    pub network: DockerNetwork,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub parameters: Vec<DockerParameter>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub force_pull_image: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub container_path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    /// `RO` or `RW`.
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    #[serde(default)]
    pub docker: Option<DockerSpec>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProtocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "COMMAND")]
    Command,
}

/// A health check with Marathon's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub protocol: HealthProtocol,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port_index: Option<u32>,
    #[serde(default)]
    pub command: Option<String>,
    pub grace_period_secs: u64,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    pub max_consecutive_failures: u32,
}

/// Everything an agent needs to start a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    #[serde(default)]
    pub command: Option<CommandSpec>,
    /// Boxed, as `executor` is: a spec is copied and freed once per task, and most tasks have
    /// neither (the spec is 232 bytes instead of 520; serialized alike).
    #[serde(default)]
    pub container: Option<Box<ContainerSpec>>,
    /// Host ports assigned to the task from the offer, in order (`PORT0`, `PORT1`, …).
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Time between SIGTERM and SIGKILL when the task is killed.
    #[serde(default)]
    pub kill_grace_period_secs: Option<u64>,
    /// The framework's own executor that runs this task instead of a command (since format 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Box<ExecutorSpec>>,
    /// Opaque bytes for the executor, base64 (Mesos' `TaskInfo.data`; since format 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A framework's own executor (Mesos' `ExecutorInfo`). An agent runs one process of
/// `command` per framework and `executor_id`, and hands it every task that names it over the
/// executor API; the executor reports the tasks' states.
/// Since format 3
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    /// Letters, digits, `.`, `_` and `-`: it names the executor's sandbox.
    pub executor_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub command: CommandSpec,
    /// What the executor itself uses, charged with the task that starts it.
    #[serde(default)]
    pub resources: Resources,
}

/// A task was launched on an agent (from an accepted offer).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLaunched {
    pub task_id: TaskId,
    pub name: String,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub owner: TaskOwner,
    pub resources: Resources,
    /// Boxed, so that the projections keep it as it was decoded, without a copy.
    pub spec: Box<TaskSpec>,
    /// The offer it was launched from, accepted by this launch (the first launch from an offer
    /// closes it; its other launches name it too). Saves an `OfferAccepted` record per offer:
    /// the built-in schedulers launch on thousands of offers a cycle (since format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<OfferId>,
}

/// A task changed state (or reported its health).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdated {
    pub task_id: TaskId,
    pub agent_id: AgentId,
    pub state: TaskState,
    pub source: StatusSource,
    /// Mesos' reason code, e.g. `REASON_COMMAND_EXECUTOR_FAILED`.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub healthy: Option<bool>,
    /// The agent's id for this update, echoed in the acknowledgement.
    #[serde(default)]
    pub status_uuid: Option<String>,
}

/// Someone asked for a task to be killed; the agent's `TASK_KILLED` follows.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskKillRequested {
    pub task_id: TaskId,
    #[serde(default)]
    pub grace_period_secs: Option<u64>,
    pub reason: String,
}
