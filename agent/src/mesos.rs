//! The agent's Mesos-shaped views, for tools written against a Mesos agent (mesos.cli reads
//! both): `GET /slave(1)/state` (also `.json`, and `/state.json`) and
//! `GET /monitor/statistics` (also `.json`).
//!
//! State lists the frameworks of the tasks the agent knows, each task under its executor: a
//! command or Docker task under a command executor of its own (id = task id, named
//! `Command Executor (Task: …) (Command: …)` as Mesos names it), a framework's own executor's
//! tasks under that executor. `directory` is the sandbox's absolute path, which the files API
//! accepts. Tasks the agent has forgotten (ended and acknowledged) are not listed: their
//! sandboxes stay readable through the files API.
//!
//! Statistics are measured from `/proc` for the agent's own processes (command tasks and
//! frameworks' executors: every process in the task's process group); Docker tasks are left
//! out (their processes are the Docker Engine's), as Mesos leaves out tasks it cannot measure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::agent::Shared;
use crate::store::{Runtime, TaskRecord};

/// `GET /slave(1)/state`.
pub(crate) async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let root = absolute(shared.sandboxes.root());
    let agent_id = shared.agent_id().map(|a| a.to_string()).unwrap_or_default();
    let tasks = shared.task_records();
    // Framework → executor id → (executor, its tasks).
    let mut frameworks: BTreeMap<String, BTreeMap<String, (Value, Vec<Value>)>> = BTreeMap::new();
    for task in &tasks {
        let framework_id = task
            .framework_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let (executor_id, executor) = executor_of(task, &framework_id, &root);
        let task_json = json!({
            "id": task.task_id,
            "name": task.name,
            "framework_id": framework_id,
            "executor_id": task.spec.executor.as_ref().map_or("", |e| e.executor_id.as_str()),
            "slave_id": agent_id,
            "state": cairn_log::event::wire(&task.state),
            "resources": task.resources.mesos_v0_json(),
        });
        frameworks
            .entry(framework_id)
            .or_default()
            .entry(executor_id)
            .or_insert_with(|| (executor, Vec::new()))
            .1
            .push(task_json);
    }
    let frameworks: Vec<Value> = frameworks
        .into_iter()
        .map(|(id, executors)| {
            json!({
                "id": id,
                "executors": executors.into_values().map(|(mut executor, tasks)| {
                    executor["tasks"] = json!(tasks);
                    executor["queued_tasks"] = json!([]);
                    executor["completed_tasks"] = json!([]);
                    executor
                }).collect::<Vec<_>>(),
                "completed_executors": [],
            })
        })
        .collect();
    let endpoint = shared
        .config
        .advertise
        .clone()
        .unwrap_or_else(|| shared.config.listen.to_string());
    Json(json!({
        "id": agent_id,
        "pid": format!("slave(1)@{endpoint}"),
        "hostname": shared.config.hostname,
        "version": cairn_log::protocol::MESOS_VERSION,
        "resources": shared.config.resources.mesos_v0_json(),
        "attributes": shared.config.attributes,
        "master_hostname": shared.leader.borrow().clone().unwrap_or_default(),
        "frameworks": frameworks,
        "completed_frameworks": [],
    }))
    .into_response()
}

/// The executor `task` runs under, as Mesos' agent state lists it: `(id, executor)`.
fn executor_of(task: &TaskRecord, framework_id: &str, root: &Path) -> (String, Value) {
    match &task.spec.executor {
        Some(executor) => {
            let sandbox = crate::executors::executor_sandbox(task).unwrap_or_default();
            (
                executor.executor_id.clone(),
                json!({
                    "id": executor.executor_id,
                    "name": executor.name,
                    "source": executor.executor_id,
                    "framework_id": framework_id,
                    "directory": root.join(sandbox),
                    "resources": executor.resources.mesos_v0_json(),
                }),
            )
        }
        None => {
            let id = task.task_id.to_string();
            (
                id.clone(),
                json!({
                    "id": id,
                    "name": format!("Command Executor (Task: {id}) (Command: {})", command_line(task)),
                    "source": id,
                    "framework_id": framework_id,
                    "directory": root.join(&id),
                    "resources": task.resources.mesos_v0_json(),
                }),
            )
        }
    }
}

/// What a task runs, in Mesos' words: `sh -c '<value>'`, the argv, or the Docker image.
fn command_line(task: &TaskRecord) -> String {
    let command = task.spec.command.as_ref();
    match command.and_then(|c| c.value.as_ref().map(|v| (v, c.shell))) {
        Some((value, true)) => format!("sh -c '{value}'"),
        Some((value, false)) => value.clone(),
        None => match command.filter(|c| !c.args.is_empty()) {
            Some(c) => c.args.join(" "),
            None => task
                .spec
                .container
                .as_ref()
                .and_then(|c| c.docker.as_ref())
                .map_or_else(
                    || "NO EXECUTABLE".to_owned(),
                    |d| format!("docker {}", d.image),
                ),
        },
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// `GET /monitor/statistics`: the usage of each executor the agent runs.
pub(crate) async fn statistics(State(shared): State<Arc<Shared>>) -> Response {
    let mut tasks = shared.task_records();
    tasks.retain(|t| !t.state.is_terminal());
    let executors = shared.executor_processes();
    let out = tokio::task::spawn_blocking(move || {
        let processes = Processes::read();
        let mut out = Vec::new();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut entry = |id: &str,
                         name: String,
                         framework_id: &str,
                         pid: i32,
                         limits: &cairn_log::event::Resources| {
            let usage = processes.group_usage(pid);
            out.push(json!({
                "executor_id": id,
                "executor_name": name,
                "framework_id": framework_id,
                "source": id,
                "statistics": {
                    "timestamp": at,
                    "cpus_user_time_secs": usage.user_secs,
                    "cpus_system_time_secs": usage.system_secs,
                    "cpus_limit": limits.cpus_milli as f64 / 1000.0,
                    "mem_limit_bytes": limits.mem_mib * 1024 * 1024,
                    "mem_rss_bytes": usage.rss_bytes,
                },
            }));
        };
        for task in tasks.iter().filter(|t| t.spec.executor.is_none()) {
            let Some(Runtime::Process { pid, .. }) = task.runtime else {
                continue;
            };
            let framework_id = task
                .framework_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let id = task.task_id.to_string();
            let name = format!(
                "Command Executor (Task: {id}) (Command: {})",
                command_line(task)
            );
            entry(&id, name, &framework_id, pid, &task.resources);
        }
        for (framework_id, spec, pid) in executors {
            entry(
                &spec.executor_id,
                spec.name.clone(),
                &framework_id,
                pid,
                &spec.resources,
            );
        }
        out
    })
    .await
    .unwrap_or_default();
    Json(out).into_response()
}

/// What a group of processes used.
#[derive(Debug, Default)]
struct Usage {
    user_secs: f64,
    system_secs: f64,
    rss_bytes: u64,
}

/// One reading of `/proc`: each process's parent, group, CPU times and resident pages.
struct Processes {
    all: Vec<Proc>,
    ticks_per_sec: f64,
    page_bytes: u64,
}

struct Proc {
    ppid: i32,
    pgrp: i32,
    utime: u64,
    stime: u64,
    rss_pages: u64,
}

impl Processes {
    fn read() -> Self {
        use nix::unistd::{sysconf, SysconfVar};
        let ticks_per_sec = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t as f64);
        let page_bytes = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as u64);
        let all = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                // Fields after the command name (which may hold spaces), from field 3 on.
                let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                Some(Proc {
                    ppid: f.get(1)?.parse().ok()?,
                    pgrp: f.get(2)?.parse().ok()?,
                    utime: num(11)?,
                    stime: num(12)?,
                    rss_pages: num(21)?,
                })
            })
            .collect();
        Self {
            all,
            ticks_per_sec,
            page_bytes,
        }
    }

    /// The usage of what `cairn executor` (pid `wrapper`) runs: every process in the process
    /// groups of its children (the task's command starts a group of its own).
    fn group_usage(&self, wrapper: i32) -> Usage {
        let groups: Vec<i32> = self
            .all
            .iter()
            .filter(|p| p.ppid == wrapper)
            .map(|p| p.pgrp)
            .collect();
        let mut usage = Usage::default();
        for p in self.all.iter().filter(|p| groups.contains(&p.pgrp)) {
            usage.user_secs += p.utime as f64 / self.ticks_per_sec;
            usage.system_secs += p.stime as f64 / self.ticks_per_sec;
            usage.rss_bytes += p.rss_pages * self.page_bytes;
        }
        usage
    }
}
