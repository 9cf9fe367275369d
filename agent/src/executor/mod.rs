//! Executors: how a task's command becomes a running process (or, with Docker, a container),
//! and how its end becomes a status.

pub mod docker;
pub mod process;
pub mod wrapper;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_log::event::{TaskId, TaskSpec};
use serde::{Deserialize, Serialize};

/// The directory under a sandbox where the agent and the executor exchange files
/// (`launch.json`, `kill.json`, `exit.json`); the task's own files sit beside it.
pub const CONTROL_DIR: &str = ".cairn";

/// How a task's process ended, written by the executor into `.cairn/exit.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// The executor was asked to kill the task.
    #[serde(default)]
    pub killed: bool,
    /// The kernel killed it for exceeding its memory limit.
    #[serde(default)]
    pub oom: bool,
    /// The command could not be started at all.
    #[serde(default)]
    pub error: Option<String>,
}

/// Task sandboxes: `<root>/<task-id>/` holding `stdout`, `stderr` and whatever the task writes.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    root: PathBuf,
}

impl Sandboxes {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sandbox of `task_id`. Task ids become directory names, so only ids made of
    /// letters, digits, `.`, `_` and `-` (and not starting with `.`) are accepted.
    pub fn dir(&self, task_id: &TaskId) -> Option<PathBuf> {
        let id = task_id.as_str();
        let safe = !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        safe.then(|| self.root.join(id))
    }
}

/// The environment every task gets (Mesos' and Marathon's names), before its own `env`.
pub fn task_env(
    task_id: &TaskId,
    spec: &TaskSpec,
    hostname: &str,
    sandbox: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("MESOS_TASK_ID".into(), task_id.to_string());
    env.insert("CAIRN_TASK_ID".into(), task_id.to_string());
    env.insert("MESOS_SANDBOX".into(), sandbox.display().to_string());
    env.insert("HOST".into(), hostname.to_owned());
    for (i, port) in spec.ports.iter().enumerate() {
        env.insert(format!("PORT{i}"), port.to_string());
    }
    if let Some(first) = spec.ports.first() {
        env.insert("PORT".into(), first.to_string());
    }
    if !spec.ports.is_empty() {
        let all: Vec<String> = spec.ports.iter().map(u16::to_string).collect();
        env.insert("PORTS".into(), all.join(","));
    }
    if let Some(command) = &spec.command {
        env.extend(command.env.clone());
    }
    env
}
