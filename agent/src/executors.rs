//! Frameworks' own executors (Mesos' `ExecutorInfo`) and the executor API they call back,
//! `POST /api/v1/executor` (Mesos v1, JSON).
//!
//! A task whose spec names an executor is not started by itself: the agent starts the
//! executor's command once per framework and executor id (under `cairn executor`, in its own
//! process group, with Mesos' `MESOS_*` environment), in the sandbox
//! `executor.<framework>.<executor>`, and the executor subscribes. The answer is a RecordIO
//! stream (`<length>\n<json>`): `SUBSCRIBED`, a `LAUNCH` for each of its tasks, `KILL` when
//! one is to be killed, `ACKNOWLEDGED` once the master has logged an update, `SHUTDOWN` once
//! it has no task left (the last one's end acknowledged). The executor's `UPDATE`s are its tasks' states: stored and delivered
//! like the agent's own, with `executor` as their source.
//!
//! Where this departs from Mesos, on purpose:
//! - An executor lives as long as it has tasks: its own resources are charged with the task
//!   that starts it, so an idle one must not linger. A task launched while its executor is
//!   shutting down waits for it to end and starts a new one.
//! - It does not outlive an agent restart (no checkpointing: `MESOS_CHECKPOINT` is unset, so
//!   pymesos executors end with their stream); a restarted agent fails its tasks.
//! - `MESSAGE` (framework messages) is refused: it would bypass the log.
//!
//! Limits: a call's body is at most [`MAX_CALL`] bytes; an executor that has not subscribed
//! [`REGISTRATION_TIMEOUT`] after it started is killed and its tasks fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cairn_log::event::{ExecutorSpec, FrameworkId, StatusSource, TaskId, TaskSpec, TaskState};
use cairn_log::protocol::{record_io, Launch, StatusUpdate};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::agent::{now, Shared};
use crate::cgroups::Limits;
use crate::executor::process;
use crate::store::{Runtime, TaskRecord};
use crate::Result;

/// Largest executor call accepted.
pub const MAX_CALL: usize = 1 << 20;
/// How long a started executor has to subscribe (Mesos' `executor_registration_timeout`).
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The executors this agent runs, by sandbox name.
pub(crate) type Executors = std::sync::Mutex<BTreeMap<String, Executor>>;

#[derive(Debug)]
pub(crate) struct Executor {
    framework_id: FrameworkId,
    spec: ExecutorSpec,
    sandbox: PathBuf,
    runtime: Option<Runtime>,
    /// Its tasks not known to have ended, in launch order, each with whether it was handed
    /// over (`LAUNCH` sent).
    tasks: Vec<(TaskId, bool)>,
    /// The open stream's sender, and which `SUBSCRIBE` opened it.
    stream: Option<(u64, mpsc::UnboundedSender<Value>)>,
    subscriptions: u64,
    shutting_down: bool,
    /// Why the agent stopped it, if it did.
    failure: Option<String>,
}

impl Executor {
    fn send(&self, event: Value) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|(_, tx)| tx.send(event).is_ok())
    }
}

/// The sandbox (and key) of a framework's executor.
fn sandbox_name(framework_id: &FrameworkId, executor_id: &str) -> String {
    format!("executor.{framework_id}.{executor_id}")
}

fn invalid(message: String) -> (TaskState, Option<&'static str>, String) {
    (TaskState::Error, Some("REASON_TASK_INVALID"), message)
}

/// Mesos' `ExecutorInfo` of `spec`.
fn executor_info(framework_id: &FrameworkId, spec: &ExecutorSpec) -> Value {
    let command = &spec.command;
    let mut info = json!({
        "executor_id": { "value": spec.executor_id },
        "framework_id": { "value": framework_id },
        "command": {
            "shell": command.shell,
            "environment": { "variables": command.env.iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>() },
        },
        "resources": spec.resources.mesos_json(),
    });
    if let Some(value) = &command.value {
        info["command"]["value"] = json!(value);
    }
    if !command.args.is_empty() {
        info["command"]["arguments"] = json!(command.args);
    }
    if !spec.name.is_empty() {
        info["name"] = json!(spec.name);
    }
    info
}

impl Shared {
    /// Hands a launched task to its executor, starting the executor if it does not run.
    pub(crate) fn launch_on_executor(self: &Arc<Self>, launch: &Launch) -> Result<()> {
        let id = &launch.task_id;
        let spec = launch.spec.executor.as_ref().expect("an executor's task");
        let refused = |(state, reason, message)| self.report(id, state, reason, message);
        let Some(framework_id) = launch.framework_id.clone() else {
            return refused(invalid("executor: the launch names no framework".into()));
        };
        let name = sandbox_name(&framework_id, &spec.executor_id);
        let Some(sandbox) = self.sandboxes.named(&name) else {
            return refused(invalid(format!(
                "executor.executor_id: {:?} (with the framework id) may hold only letters, \
                 digits, '.', '_' and '-'",
                spec.executor_id
            )));
        };
        {
            let mut executors = self.executors.lock().expect("executors");
            if let Some(executor) = executors.get_mut(&name) {
                if executor.framework_id != framework_id
                    || executor.spec.executor_id != spec.executor_id
                {
                    drop(executors);
                    return refused(invalid(format!(
                        "executor.executor_id: its sandbox name {name} is another executor's"
                    )));
                }
                let handed = !executor.shutting_down && self.hand_over(executor, id);
                executor.tasks.push((id.clone(), handed));
                return Ok(());
            }
            executors.insert(
                name.clone(),
                Executor {
                    framework_id: framework_id.clone(),
                    spec: ExecutorSpec::clone(spec),
                    sandbox: sandbox.clone(),
                    runtime: None,
                    tasks: vec![(id.clone(), false)],
                    stream: None,
                    subscriptions: 0,
                    shutting_down: false,
                    failure: None,
                },
            );
        }
        let mut env = crate::executor::task_env(id, &launch.spec, &self.config.hostname, &sandbox);
        env.remove("MESOS_TASK_ID");
        env.remove("CAIRN_TASK_ID");
        env.extend([
            ("MESOS_AGENT_ENDPOINT".into(), self.endpoint()),
            ("MESOS_FRAMEWORK_ID".into(), framework_id.to_string()),
            ("MESOS_EXECUTOR_ID".into(), spec.executor_id.clone()),
            ("MESOS_DIRECTORY".into(), sandbox.display().to_string()),
            (
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
                format!("{}secs", self.config.kill_grace.as_secs().max(1)),
            ),
        ]);
        if let Some(agent_id) = self.agent_id() {
            env.insert("MESOS_AGENT_ID".into(), agent_id.to_string());
            env.insert("MESOS_SLAVE_ID".into(), agent_id.to_string());
        }
        env.extend(spec.command.env.clone());
        // A new executor in the sandbox of an ended one: the old one's control files (its
        // kill request, its exit report) must not speak for it.
        let _ = std::fs::remove_dir_all(sandbox.join(crate::executor::CONTROL_DIR));
        let command = TaskSpec {
            command: Some(spec.command.clone()),
            ..TaskSpec::default()
        };
        let limits = Limits {
            cpus_milli: launch.resources.cpus_milli,
            mem_mib: launch.resources.mem_mib,
        };
        match self.process.start(
            &name,
            &sandbox,
            &command,
            limits,
            env,
            self.config.kill_grace,
        ) {
            Err(e) => {
                self.executors.lock().expect("executors").remove(&name);
                self.report(id, e.state, Some(e.reason), e.message)
            }
            Ok(started) => {
                info!(executor = %name, task_id = %id, "started a framework's executor");
                if let Some(executor) = self.executors.lock().expect("executors").get_mut(&name) {
                    executor.runtime = Some(started.runtime.clone());
                }
                tokio::spawn(
                    self.clone()
                        .registration_timeout(name.clone(), started.runtime.clone()),
                );
                tokio::spawn(self.clone().watch_executor(
                    name,
                    sandbox,
                    started.runtime,
                    started.child,
                ));
                Ok(())
            }
        }
    }

    /// Where executors reach this agent.
    fn endpoint(&self) -> String {
        self.config
            .advertise
            .clone()
            .unwrap_or_else(|| self.config.listen.to_string())
    }

    /// Sends `LAUNCH` of `task_id` to `executor`'s stream; whether it was sent.
    fn hand_over(&self, executor: &Executor, task_id: &TaskId) -> bool {
        let Some(record) = self.tasks.lock().expect("tasks").get(task_id).cloned() else {
            return false;
        };
        executor.send(self.launch_event(executor, &record))
    }

    /// `LAUNCH` of `record`: the `TaskInfo` as its framework launched it.
    fn launch_event(&self, executor: &Executor, record: &TaskRecord) -> Value {
        let mut task = json!({
            "name": record.name,
            "task_id": { "value": record.task_id },
            "resources": record.resources.mesos_json(),
            "executor": executor_info(&executor.framework_id, &executor.spec),
        });
        if let Some(agent_id) = self.agent_id() {
            task["agent_id"] = json!({ "value": agent_id });
        }
        if let Some(data) = &record.spec.data {
            task["data"] = json!(data);
        }
        if !record.spec.labels.is_empty() {
            task["labels"] = json!({ "labels": record.spec.labels.iter()
                .map(|(key, value)| json!({ "key": key, "value": value }))
                .collect::<Vec<_>>() });
        }
        json!({ "type": "LAUNCH", "launch": { "task": task } })
    }

    /// Waits for an executor to end; its tasks that had not ended fail (or are killed, if
    /// that was asked), and tasks that were waiting for it to shut down start a new one.
    async fn watch_executor(
        self: Arc<Self>,
        name: String,
        sandbox: PathBuf,
        runtime: Runtime,
        child: Option<tokio::process::Child>,
    ) {
        let report = process::wait(&sandbox, &runtime, child).await;
        let Some(executor) = self.executors.lock().expect("executors").remove(&name) else {
            return;
        };
        let (_, _, how) = process::final_status(&report);
        let why = executor
            .failure
            .unwrap_or_else(|| format!("the executor ended: {how}"));
        info!(executor = %name, %why, "a framework's executor ended");
        for (task_id, handed) in executor.tasks {
            let record = self.tasks.lock().expect("tasks").get(&task_id).cloned();
            let Some(record) = record.filter(|r| !r.state.is_terminal()) else {
                continue;
            };
            let result = if executor.shutting_down && !handed && !record.kill_requested {
                self.launch_on_executor(&Launch {
                    task_id: task_id.clone(),
                    name: record.name,
                    resources: record.resources,
                    spec: record.spec,
                    offset: 0,
                    framework_id: record.framework_id,
                })
            } else if record.kill_requested {
                self.report(&task_id, TaskState::Killed, None, why.clone())
            } else {
                self.report(
                    &task_id,
                    TaskState::Failed,
                    Some("REASON_EXECUTOR_TERMINATED"),
                    why.clone(),
                )
            };
            if let Err(e) = result {
                warn!(task_id = %task_id, error = %e, "cannot report a task of an ended executor");
            }
        }
    }

    /// Whether the executor called `name` is still the process `runtime`.
    fn is_running(&self, name: &str, runtime: &Runtime) -> bool {
        self.executors
            .lock()
            .expect("executors")
            .get(name)
            .is_some_and(|e| e.runtime.as_ref() == Some(runtime))
    }

    /// Kills an executor that has not subscribed in time.
    async fn registration_timeout(self: Arc<Self>, name: String, runtime: Runtime) {
        tokio::time::sleep(REGISTRATION_TIMEOUT).await;
        let mut executors = self.executors.lock().expect("executors");
        let Some(executor) = executors
            .get_mut(&name)
            .filter(|e| e.runtime.as_ref() == Some(&runtime))
        else {
            return;
        };
        if executor.subscriptions == 0 {
            executor.failure = Some(format!(
                "the executor did not subscribe within {REGISTRATION_TIMEOUT:?}"
            ));
            if let Some(runtime) = &executor.runtime {
                process::kill_task(&executor.sandbox, runtime, Duration::ZERO);
            }
        }
    }

    /// A kill of a task that runs under an executor: the executor is asked (`KILL`); one that
    /// was not handed over yet is killed here; with the executor unreachable, it is stopped.
    pub(crate) fn kill_on_executor(self: &Arc<Self>, record: &TaskRecord) -> Result<()> {
        let Some(name) = executor_sandbox(record) else {
            return Ok(());
        };
        let id = &record.task_id;
        let mut executors = self.executors.lock().expect("executors");
        let Some(executor) = executors.get_mut(&name) else {
            return Ok(());
        };
        match executor.tasks.iter().position(|(t, _)| t == id) {
            Some(i) if !executor.tasks[i].1 => {
                executor.tasks.remove(i);
                drop(executors);
                self.report(
                    id,
                    TaskState::Killed,
                    None,
                    "killed before its executor took it".into(),
                )?;
                self.shut_down_if_idle(&name);
            }
            Some(_) => {
                let kill = json!({ "type": "KILL", "kill": { "task_id": { "value": id } } });
                if !executor.send(kill) {
                    executor.failure = Some("the executor was unreachable for a kill".into());
                    if let Some(runtime) = &executor.runtime {
                        process::kill_task(&executor.sandbox, runtime, self.config.kill_grace);
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Tells an executor with no task left to shut down (`SHUTDOWN`), and stops it if it is
    /// still there a grace period later.
    fn shut_down_if_idle(self: &Arc<Self>, name: &str) {
        let mut executors = self.executors.lock().expect("executors");
        let Some(executor) = executors.get_mut(name) else {
            return;
        };
        {
            let tasks = self.tasks.lock().expect("tasks");
            executor
                .tasks
                .retain(|(t, _)| tasks.get(t).is_some_and(|r| !r.state.is_terminal()));
        }
        if !executor.tasks.is_empty() || executor.shutting_down {
            return;
        }
        executor.shutting_down = true;
        executor.send(json!({ "type": "SHUTDOWN" }));
        let (Some(runtime), sandbox) = (executor.runtime.clone(), executor.sandbox.clone()) else {
            return;
        };
        drop(executors);
        let (this, name, grace) = (self.clone(), name.to_owned(), self.config.kill_grace);
        info!(executor = %name, "shutting down an executor with no task left");
        tokio::spawn(async move {
            // Its own grace period first (pymesos ends itself after it), then a second more.
            tokio::time::sleep(grace + Duration::from_secs(1)).await;
            if this.is_running(&name, &runtime) {
                process::kill_task(&sandbox, &runtime, Duration::ZERO);
            }
        });
    }

    /// The master logged `update`: an executor's update is acknowledged to the executor, and
    /// an executor whose last task has ended (and been acknowledged) is shut down.
    pub(crate) fn acknowledge_to_executor(
        self: &Arc<Self>,
        record: &TaskRecord,
        update: &StatusUpdate,
    ) {
        let Some(name) = executor_sandbox(record) else {
            return;
        };
        let Some(uuid) = decode_hex(&update.uuid) else {
            return;
        };
        if let Some(executor) = self.executors.lock().expect("executors").get(&name) {
            executor.send(json!({ "type": "ACKNOWLEDGED", "acknowledged": {
                "task_id": { "value": update.task_id },
                "uuid": base64::engine::general_purpose::STANDARD.encode(uuid),
            }}));
        }
        if update.state.is_terminal() {
            self.shut_down_if_idle(&name);
        }
    }

    /// Stops executors a previous run of the agent left (they cannot subscribe again) and
    /// fails their tasks.
    pub(crate) fn recover_executor_task(&self, record: &TaskRecord) -> Result<()> {
        if let Some(sandbox) = executor_sandbox(record).and_then(|n| self.sandboxes.named(&n)) {
            if let Some(runtime) = process::started(&sandbox) {
                process::kill_task(&sandbox, &runtime, Duration::ZERO);
            }
        }
        self.report(
            &record.task_id,
            TaskState::Failed,
            Some("REASON_EXECUTOR_TERMINATED"),
            "the agent restarted, and a framework's executor does not outlive it".into(),
        )
    }

    /// The executors running now: their framework, spec and `cairn executor` pid.
    pub(crate) fn executor_processes(&self) -> Vec<(String, ExecutorSpec, i32)> {
        self.executors
            .lock()
            .expect("executors")
            .values()
            .filter_map(|e| match e.runtime {
                Some(Runtime::Process { pid, .. }) => {
                    Some((e.framework_id.to_string(), e.spec.clone(), pid))
                }
                _ => None,
            })
            .collect()
    }

    /// Sandboxes of the executors running now (not to be collected).
    pub(crate) fn executor_sandboxes(&self) -> Vec<String> {
        self.executors
            .lock()
            .expect("executors")
            .keys()
            .cloned()
            .collect()
    }

    /// `SUBSCRIBE`: the stream of events for the executor, starting with what it must know.
    fn subscribe(self: &Arc<Self>, call: &Value) -> std::result::Result<Response, String> {
        let (name, _) = self.caller(call)?;
        let mut executors = self.executors.lock().expect("executors");
        let executor = executors
            .get_mut(&name)
            .ok_or("executor_id: no such executor on this agent")?;
        let (tx, rx) = mpsc::unbounded_channel();
        executor.subscriptions += 1;
        let generation = executor.subscriptions;
        executor.stream = Some((generation, tx));
        let mut agent_info = json!({
            "hostname": self.config.hostname,
            "resources": self.config.resources.mesos_json(),
        });
        if let Some(agent_id) = self.agent_id() {
            agent_info["id"] = json!({ "value": agent_id });
        }
        executor.send(json!({ "type": "SUBSCRIBED", "subscribed": {
            "executor_info": executor_info(&executor.framework_id, &executor.spec),
            "framework_info": {
                "id": { "value": executor.framework_id },
                "user": executor.spec.command.user.clone().unwrap_or_default(),
                "name": "",
            },
            "agent_info": agent_info,
            "container_id": { "value": name },
        }}));
        if executor.shutting_down {
            executor.send(json!({ "type": "SHUTDOWN" }));
        } else {
            let waiting: Vec<TaskId> = executor
                .tasks
                .iter()
                .filter(|(_, handed)| !handed)
                .map(|(t, _)| t.clone())
                .collect();
            for task_id in waiting {
                let handed = self.hand_over(executor, &task_id);
                if let Some(t) = executor.tasks.iter_mut().find(|(t, _)| *t == task_id) {
                    t.1 = handed;
                }
            }
        }
        info!(executor = %name, generation, "an executor subscribed");
        // The stream forgets itself when the executor hangs up, unless a newer one replaced it.
        let forget = StreamGuard {
            shared: self.clone(),
            name,
            generation,
        };
        let events = futures_util::stream::unfold((rx, forget), |(mut rx, forget)| async move {
            let event = rx.recv().await?;
            let bytes = Bytes::from(record_io(&event));
            Some((Ok::<_, std::convert::Infallible>(bytes), (rx, forget)))
        });
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(events),
        )
            .into_response())
    }

    /// `UPDATE`: a task's new state, as its executor reports it.
    fn update(self: &Arc<Self>, call: &Value) -> std::result::Result<Response, String> {
        let (name, _) = self.caller(call)?;
        let status = &call["update"]["status"];
        let task_id = status["task_id"]["value"]
            .as_str()
            .and_then(|t| TaskId::new(t).ok())
            .ok_or("update.status.task_id: is required")?;
        let state: TaskState = serde_json::from_value(status["state"].clone())
            .map_err(|_| "update.status.state: not a task state (e.g. TASK_RUNNING)")?;
        if state == TaskState::Staging {
            return Err("update.status.state: an executor may not report TASK_STAGING".into());
        }
        let uuid = status["uuid"]
            .as_str()
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
            .filter(|u| u.len() == 16)
            .ok_or("update.status.uuid: is required, the base64 of 16 bytes")?;
        let mine = self
            .executors
            .lock()
            .expect("executors")
            .get(&name)
            .is_some_and(|e| e.tasks.iter().any(|(t, handed)| *t == task_id && *handed));
        if !mine {
            return Err(format!(
                "update.status.task_id: {task_id} is not a task of this executor"
            ));
        }
        let ended = self
            .tasks
            .lock()
            .expect("tasks")
            .get(&task_id)
            .is_none_or(|r| r.state.is_terminal());
        if !ended {
            let text = |key: &str| status[key].as_str().map(str::to_owned);
            self.store_update(StatusUpdate {
                uuid: uuid.iter().map(|b| format!("{b:02x}")).collect(),
                task_id,
                state,
                reason: text("reason"),
                message: text("message"),
                healthy: status["healthy"].as_bool(),
                at: now(),
                source: StatusSource::Executor,
            })
            .map_err(|e| e.to_string())?;
        }
        // An explicit length: pymesos waits for a body otherwise.
        Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
    }

    /// The executor a call names (`framework_id`, `executor_id`), by its sandbox name.
    fn caller(&self, call: &Value) -> std::result::Result<(String, FrameworkId), String> {
        let framework_id = call["framework_id"]["value"]
            .as_str()
            .and_then(|f| FrameworkId::new(f).ok())
            .ok_or("framework_id: is required")?;
        let executor_id = call["executor_id"]["value"]
            .as_str()
            .ok_or("executor_id: is required")?;
        let name = sandbox_name(&framework_id, executor_id);
        let known = self
            .executors
            .lock()
            .expect("executors")
            .get(&name)
            .is_some_and(|e| e.framework_id == framework_id && e.spec.executor_id == executor_id);
        if !known {
            return Err(format!(
                "executor_id: {executor_id:?} of framework {framework_id} does not run on this agent"
            ));
        }
        Ok((name, framework_id))
    }
}

/// The sandbox name of the executor `record` runs under, if any.
pub(crate) fn executor_sandbox(record: &TaskRecord) -> Option<String> {
    let spec = record.spec.executor.as_ref()?;
    Some(sandbox_name(
        record.framework_id.as_ref()?,
        &spec.executor_id,
    ))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Clears an executor's stream when its connection goes, if no newer one replaced it.
struct StreamGuard {
    shared: Arc<Shared>,
    name: String,
    generation: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(executor) = self
            .shared
            .executors
            .lock()
            .expect("executors")
            .get_mut(&self.name)
        {
            if executor
                .stream
                .as_ref()
                .is_some_and(|(g, _)| *g == self.generation)
            {
                executor.stream = None;
            }
        }
    }
}

/// `POST /api/v1/executor`. Errors are Mesos': `400` with the reason as text.
pub(crate) async fn call(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let refuse = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    };
    let call: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(format!("body: not a JSON executor call: {e}")),
    };
    let answer = match call["type"].as_str() {
        Some("SUBSCRIBE") => shared.subscribe(&call),
        Some("UPDATE") => shared.update(&call),
        Some("MESSAGE") => Err("MESSAGE: framework messages are not supported by cairn".into()),
        Some(other) => Err(format!(
            "type: {other:?} is not SUBSCRIBE, UPDATE or MESSAGE"
        )),
        None => Err("type: is required".into()),
    };
    answer.unwrap_or_else(refuse)
}
