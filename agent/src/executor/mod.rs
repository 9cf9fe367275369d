//! Executors: how a task's command becomes a running process (or, with Docker, a container),
//! and how its end becomes a status.

pub mod docker;
pub mod process;
pub mod wrapper;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_log::event::{TaskId, TaskSpec, TaskState};
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

/// Why a task cannot be started; becomes `TASK_ERROR` (the task is invalid) or `TASK_FAILED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub state: TaskState,
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    /// The task itself is wrong: `TASK_ERROR`, `REASON_TASK_INVALID`.
    pub fn invalid(message: String) -> Self {
        Self {
            state: TaskState::Error,
            reason: "REASON_TASK_INVALID",
            message,
        }
    }

    /// The agent could not start it: `TASK_FAILED` with `reason`.
    pub fn failed(reason: &'static str, message: String) -> Self {
        Self {
            state: TaskState::Failed,
            reason,
            message,
        }
    }
}

/// Creates a task's sandbox with its control directory and its (empty) logs, so that the
/// logs can be read, and followed, from the start.
pub fn prepare(sandbox: &Path) -> Result<(), String> {
    fs::create_dir_all(sandbox.join(CONTROL_DIR))
        .map_err(|e| format!("cannot create the sandbox {}: {e}", sandbox.display()))?;
    for log in ["stdout", "stderr"] {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.join(log))
            .map_err(|e| format!("cannot create the task's {log}: {e}"))?;
    }
    Ok(())
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
        self.named(task_id.as_str())
    }

    /// The sandbox called `id`, under the same rule as [`Self::dir`].
    pub fn named(&self, id: &str) -> Option<PathBuf> {
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
