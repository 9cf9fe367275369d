//! Mesos' v1 scheduler API, `POST /api/v1/scheduler` (JSON), for external frameworks such as
//! pymesos ones. `SUBSCRIBE` answers a chunked RecordIO stream (`<length>\n<json>`) under a
//! `Mesos-Stream-Id`: `SUBSCRIBED`, the framework's outstanding offers, then what the log
//! says as it commits — `OFFERS`, `RESCIND`, `UPDATE` for its tasks — and a `HEARTBEAT` every
//! 15 s. Every other call must carry that stream id and answers `202` with an empty body
//! (`Content-Length: 0`: pymesos waits forever on a 202 without one).
//!
//! Calls become the same events as everything else ([`cairn_scheduler::external`]), with the
//! framework as the actor's principal's API `mesos`. A newer `SUBSCRIBE` of a framework ends
//! its older stream; so does this master ceasing to lead (another leads, or no quorum confirms
//! it), so that the framework subscribes again and finds the leader; a stream that ends marks
//! the framework disconnected, and its failover timeout starts. `ACKNOWLEDGE` is accepted and changes nothing (an update is in the log
//! once); `RECONCILE` answers on the stream with the tasks' latest states, without a uuid.
//! Not supported, refused with `400`: operations other than `LAUNCH`, `MESSAGE`, `REQUEST`,
//! `SHUTDOWN`, inverse offers, `UPDATE_FRAMEWORK`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use cairn_log::event::{
    wire, Actor, AgentId, CommandSpec, ContainerSpec, DockerNetwork, DockerParameter, DockerSpec,
    Event, ExecutorSpec, FrameworkId, OfferId, PortMapping, PortRange, Resources, StatusSource,
    TaskId, TaskSpec, TaskState, TaskStatusUpdated, Timestamp,
};
use cairn_log::Record;
use cairn_projections::State as Cluster;
use cairn_scheduler::external::{Call, FrameworkInfo, Launch};
use cairn_scheduler::runner::Error;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{body, Compat};

/// Seconds between heartbeats on a subscription's stream.
pub const HEARTBEAT_SECS: u64 = 15;
/// Reconciliation answers waiting to be sent on one stream.
const OUT_OF_BAND: usize = 1_024;
/// Mesos' default `refuse_seconds`.
const DEFAULT_REFUSE_MILLIS: u64 = 5_000;

/// The subscribed frameworks' streams on this master.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sessions(Arc<Mutex<BTreeMap<FrameworkId, Session>>>);

#[derive(Debug)]
struct Session {
    stream_id: String,
    /// Events for the stream that are not in the log (reconciliation answers).
    out: mpsc::Sender<Value>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<FrameworkId, Session>> {
        self.0.lock().expect("sessions lock")
    }
}

pub(crate) fn routes() -> Router<Compat> {
    Router::new()
        .route("/api/v1/scheduler", post(call))
        .route("/master/api/v1/scheduler", post(call))
}

/// Mesos answers API errors as text.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn refused(e: Error) -> Response {
    let status = match &e {
        Error::Invalid(_) | Error::Unplaceable(_) | Error::Conflict(_) => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Log(_) | Error::Projection(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, e.to_string())
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response()
}

fn value<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.get("value")?.as_str()
}

/// `POST /api/v1/scheduler`.
async fn call(State(c): State<Compat>, request: Request) -> Response {
    let actor = cairn_graphql::actor(&request, "mesos");
    let stream_id = request
        .headers()
        .get("mesos-stream-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match body(request).await {
        Ok(body) => body,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let kind = body["type"].as_str().unwrap_or_default().to_owned();
    if kind == "SUBSCRIBE" {
        if stream_id.is_some() {
            return refuse(
                StatusCode::BAD_REQUEST,
                "SUBSCRIBE must not carry a Mesos-Stream-Id",
            );
        }
        return subscribe(c, actor, &body).await;
    }
    let Some(framework) = value(&body, "framework_id").and_then(|f| FrameworkId::new(f).ok())
    else {
        return refuse(StatusCode::BAD_REQUEST, "framework_id: is required");
    };
    let out = {
        let sessions = c.sessions.lock();
        let Some(session) = sessions.get(&framework) else {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("framework {framework} is not subscribed here"),
            );
        };
        if stream_id.as_deref() != Some(session.stream_id.as_str()) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Mesos-Stream-Id: missing, or not the framework's current stream",
            );
        }
        session.out.clone()
    };
    let call = match kind.as_str() {
        "ACKNOWLEDGE" => return accepted(),
        "RECONCILE" => {
            let tasks: Vec<TaskId> = body["reconcile"]["tasks"]
                .as_array()
                .map(|tasks| {
                    tasks
                        .iter()
                        .filter_map(|t| value(t, "task_id").and_then(|t| TaskId::new(t).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let state = c.projector.current().await;
            for update in reconcile(&state, &framework, &tasks) {
                // A full queue: the framework reconciles again later, as Mesos expects.
                let _ = out.try_send(update);
            }
            return accepted();
        }
        "TEARDOWN" => Call::Teardown,
        "REVIVE" => Call::Revive,
        "SUPPRESS" => Call::Suppress,
        "KILL" => match value(&body["kill"], "task_id").and_then(|t| TaskId::new(t).ok()) {
            Some(task_id) => Call::Kill { task_id },
            None => return refuse(StatusCode::BAD_REQUEST, "kill.task_id: is required"),
        },
        "DECLINE" => Call::Decline {
            offer_ids: offer_ids(&body["decline"]),
            refuse_millis: refuse_millis(&body["decline"]),
        },
        "ACCEPT" => match accept(&body["accept"]) {
            Ok(call) => call,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        },
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("type: {other:?} is not supported by cairn"),
            )
        }
    };
    let teardown = call == Call::Teardown;
    match c
        .runner
        .framework_call(actor, framework.clone(), call)
        .await
    {
        Ok(()) => {
            if teardown {
                // Its stream ends: the sender goes with the session.
                c.sessions.lock().remove(&framework);
            }
            accepted()
        }
        Err(e) => refused(e),
    }
}

fn offer_ids(v: &Value) -> Vec<OfferId> {
    v["offer_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|o| o["value"].as_str().and_then(|o| OfferId::new(o).ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn refuse_millis(v: &Value) -> u64 {
    v["filters"]["refuse_seconds"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_REFUSE_MILLIS, |s| {
            (s * 1000.0).min(u64::MAX as f64) as u64
        })
}

/// An `ACCEPT`: its offers and the tasks of its `LAUNCH` operations.
fn accept(v: &Value) -> Result<Call, String> {
    let mut launches = Vec::new();
    for (i, op) in v["operations"].as_array().into_iter().flatten().enumerate() {
        if op["type"] != "LAUNCH" {
            return Err(format!(
                "accept.operations[{i}].type: only LAUNCH is supported by cairn"
            ));
        }
        for (j, task) in op["launch"]["task_infos"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            launches.push(
                task_info(task)
                    .map_err(|e| format!("accept.operations[{i}].launch.task_infos[{j}].{e}"))?,
            );
        }
    }
    Ok(Call::Accept {
        offer_ids: offer_ids(v),
        launches,
        refuse_millis: refuse_millis(v),
    })
}

/// A `TaskInfo` (v1 JSON): a command, optionally in a Docker container, or a task for the
/// framework's own executor (`executor`, with the task's opaque `data`).
fn task_info(task: &Value) -> Result<Launch, String> {
    let task_id = value(task, "task_id")
        .ok_or("task_id: is required")
        .and_then(|t| TaskId::new(t).map_err(|_| "task_id: not a valid id"))?;
    let executor = match task.get("executor") {
        None => None,
        Some(e) => Some(executor_info(e).map_err(|m| format!("executor.{m}"))?),
    };
    let command = &task["command"];
    if executor.is_some() && (command.is_object() || task.get("container").is_some()) {
        return Err(
            "command: a task for an executor has no command or container of its own".into(),
        );
    }
    if executor.is_none() && !command.is_object() && !task["container"]["docker"].is_object() {
        return Err("command: is required".into());
    }
    let data = match task.get("data") {
        None => None,
        Some(d) => {
            let valid = d
                .as_str()
                .filter(|d| base64::engine::general_purpose::STANDARD.decode(d).is_ok());
            Some(valid.ok_or("data: not base64")?.to_owned())
        }
    };
    let container = task["container"]["docker"].as_object().map(|d| {
        let network = match d.get("network").and_then(Value::as_str) {
            Some("BRIDGE") => DockerNetwork::Bridge,
            Some("NONE") => DockerNetwork::None,
            Some("USER") => DockerNetwork::User,
            _ => DockerNetwork::Host,
        };
        ContainerSpec {
            docker: Some(DockerSpec {
                image: d
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                network,
                port_mappings: d
                    .get("port_mappings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|m| PortMapping {
                        container_port: m["container_port"].as_u64().unwrap_or(0) as u16,
                        host_port: m["host_port"].as_u64().unwrap_or(0) as u16,
                        protocol: m["protocol"].as_str().unwrap_or("tcp").into(),
                        name: None,
                    })
                    .collect(),
                parameters: d
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(DockerParameter {
                            key: p["key"].as_str()?.into(),
                            value: p["value"].as_str().unwrap_or_default().into(),
                        })
                    })
                    .collect(),
                privileged: d
                    .get("privileged")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                force_pull_image: d
                    .get("force_pull_image")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
            volumes: Vec::new(),
        }
    });
    Ok(Launch {
        task_id,
        name: task["name"].as_str().unwrap_or_default().to_owned(),
        resources: resources(&task["resources"])?,
        spec: TaskSpec {
            command: executor.is_none().then(|| command_info(command)),
            container: container.map(Box::new),
            executor: executor.map(Box::new),
            data,
            ..TaskSpec::default()
        },
    })
}

/// A `CommandInfo`: with `shell` (the default) its `value` runs through `/bin/sh -c`;
/// without, `value` is the program and `arguments` its whole argv.
fn command_info(command: &Value) -> CommandSpec {
    let shell = command["shell"].as_bool().unwrap_or(true);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env: BTreeMap<String, String> = command["environment"]["variables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let value_of = command["value"].as_str().map(str::to_owned);
    CommandSpec {
        value: if shell { value_of.clone() } else { None },
        args: if shell {
            Vec::new()
        } else {
            value_of
                .into_iter()
                .chain(strings(&command["arguments"]))
                .collect()
        },
        shell,
        env,
        user: command["user"].as_str().map(str::to_owned),
    }
}

/// Longest executor id: it names the executor's sandbox on its agent.
const MAX_EXECUTOR_ID: usize = 128;

/// An `ExecutorInfo`: the framework's own executor, run by the agent for its tasks.
fn executor_info(executor: &Value) -> Result<ExecutorSpec, String> {
    let executor_id = value(executor, "executor_id").ok_or("executor_id: is required")?;
    let safe = !executor_id.is_empty()
        && executor_id.len() <= MAX_EXECUTOR_ID
        && !executor_id.starts_with('.')
        && executor_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !safe {
        return Err(format!(
            "executor_id: {executor_id:?} must be 1 to {MAX_EXECUTOR_ID} letters, digits, '.', \
             '_' or '-', not starting with '.'"
        ));
    }
    let command = &executor["command"];
    if !command.is_object() {
        return Err("command: is required".into());
    }
    if executor.get("container").is_some() {
        return Err("container: executors in containers are not supported by cairn".into());
    }
    Ok(ExecutorSpec {
        executor_id: executor_id.to_owned(),
        name: executor["name"].as_str().unwrap_or_default().to_owned(),
        command: command_info(command),
        resources: resources(&executor["resources"])?,
    })
}

/// Mesos' resource list: `cpus`, `mem`, `disk` scalars and `ports` ranges.
fn resources(list: &Value) -> Result<Resources, String> {
    let mut out = Resources::default();
    for (i, r) in list.as_array().into_iter().flatten().enumerate() {
        let scalar = r["scalar"]["value"]
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0);
        match (r["name"].as_str(), scalar) {
            (Some("cpus"), Some(v)) => out.cpus_milli += (v * 1000.0).round() as u64,
            (Some("mem"), Some(v)) => out.mem_mib += v.ceil() as u64,
            (Some("disk"), Some(v)) => out.disk_mib += v.ceil() as u64,
            (Some("ports"), _) => {
                for range in r["ranges"]["range"].as_array().into_iter().flatten() {
                    let (Some(begin), Some(end)) = (range["begin"].as_u64(), range["end"].as_u64())
                    else {
                        return Err(format!("resources[{i}].ranges: begin and end"));
                    };
                    let (Ok(begin), Ok(end)) = (u16::try_from(begin), u16::try_from(end)) else {
                        return Err(format!("resources[{i}].ranges: ports up to 65535"));
                    };
                    out.ports.push(PortRange { begin, end });
                }
            }
            (Some(name), _) => {
                return Err(format!(
                    "resources[{i}]: {name:?} is not cpus, mem, disk or ports"
                ))
            }
            (None, _) => return Err(format!("resources[{i}].name: is required")),
        }
    }
    Ok(out)
}

/// An outstanding offer as the scheduler API sends it.
pub fn offer_json(state: &Cluster, id: &OfferId) -> Option<Value> {
    let offer = state.cluster.offers.get(id)?;
    let agent = state.cluster.agents.get(&offer.agent_id)?;
    Some(json!({
        "id": { "value": id },
        "framework_id": { "value": offer.framework_id },
        "agent_id": { "value": offer.agent_id },
        "hostname": agent.hostname,
        "resources": offer.resources.mesos_json(),
        "attributes": agent.attributes.iter().map(|(k, v)| json!({
            "name": k, "type": "TEXT", "text": { "value": v },
        })).collect::<Vec<_>>(),
    }))
}

/// An `UPDATE` event: the status of `update` as of `at`, with a `uuid` (base64 of 16 bytes:
/// the record's offset) when it is a logged update the framework acknowledges.
pub fn update_json(update: &TaskStatusUpdated, at: Timestamp, offset: Option<u64>) -> Value {
    let mut status = json!({
        "task_id": { "value": update.task_id },
        "agent_id": { "value": update.agent_id },
        "state": wire(&update.state),
        "source": match update.source {
            StatusSource::Master => "SOURCE_MASTER",
            StatusSource::Agent => "SOURCE_AGENT",
            StatusSource::Executor => "SOURCE_EXECUTOR",
        },
        "timestamp": at.as_micros() as f64 / 1e6,
    });
    if let Some(m) = &update.message {
        status["message"] = json!(m);
    }
    if let Some(r) = &update.reason {
        status["reason"] = json!(r);
    }
    if let Some(h) = update.healthy {
        status["healthy"] = json!(h);
    }
    if let Some(offset) = offset {
        let mut uuid = [0u8; 16];
        uuid[8..].copy_from_slice(&offset.to_be_bytes());
        status["uuid"] = json!(base64::engine::general_purpose::STANDARD.encode(uuid));
    }
    json!({ "type": "UPDATE", "update": { "status": status } })
}

/// What reconciliation answers: the latest state of each task asked about (`TASK_LOST` for
/// one that is not the framework's), or, asked about none, of each of its live tasks.
pub fn reconcile(state: &Cluster, framework: &FrameworkId, tasks: &[TaskId]) -> Vec<Value> {
    let mine = |t: &TaskId| {
        state
            .tasks
            .tasks
            .get(t)
            .is_some_and(|task| &task.framework_id == framework)
    };
    let asked: Vec<TaskId> = if tasks.is_empty() {
        state
            .tasks
            .tasks
            .iter()
            .filter(|(_, t)| &t.framework_id == framework && !t.is_terminal())
            .map(|(id, _)| id.clone())
            .collect()
    } else {
        tasks.to_vec()
    };
    asked
        .iter()
        .map(|t| {
            let task = state.tasks.tasks.get(t).filter(|_| mine(t));
            let latest = task.and_then(|task| task.statuses.last());
            let update = TaskStatusUpdated {
                task_id: t.clone(),
                agent_id: task.map_or_else(
                    || AgentId::new("none").expect("a valid id"),
                    |task| task.agent_id.clone(),
                ),
                state: task.map_or(TaskState::Lost, |task| task.state),
                source: StatusSource::Master,
                reason: Some("REASON_RECONCILIATION".into()),
                message: latest.and_then(|s| s.message.clone()),
                healthy: task.and_then(|task| task.healthy),
                status_uuid: None,
            };
            let at = latest.map_or_else(Timestamp::default, |s| s.at);
            let mut json = update_json(&update, at, None);
            if task.is_none() {
                // Mesos names no agent for a task it does not know.
                if let Some(status) = json["update"]["status"].as_object_mut() {
                    status.remove("agent_id");
                }
            }
            json
        })
        .collect()
}

/// The events a committed record means for `framework`'s stream. `offered` remembers the
/// offers it was sent, so that a rescinded one is named.
pub fn scheduler_events(
    state: &Cluster,
    framework: &FrameworkId,
    record: &Record,
    offered: &mut BTreeSet<OfferId>,
) -> Vec<Value> {
    match &record.event {
        Event::OffersMade(made) => {
            let offers: Vec<Value> = made
                .offers
                .iter()
                .filter(|o| &o.framework_id == framework)
                .filter_map(|o| {
                    offered.insert(o.offer_id.clone());
                    offer_json(state, &o.offer_id)
                })
                .collect();
            if offers.is_empty() {
                Vec::new()
            } else {
                vec![json!({ "type": "OFFERS", "offers": { "offers": offers } })]
            }
        }
        Event::OfferRescinded(r) if offered.remove(&r.offer_id) => {
            vec![json!({ "type": "RESCIND", "rescind": { "offer_id": { "value": r.offer_id } } })]
        }
        Event::OfferAccepted(a) => {
            offered.remove(&a.offer_id);
            Vec::new()
        }
        Event::TaskLaunched(t) => {
            if let Some(offer_id) = &t.offer_id {
                offered.remove(offer_id);
            }
            Vec::new()
        }
        Event::OffersDeclined(d) => {
            for id in &d.offer_ids {
                offered.remove(id);
            }
            Vec::new()
        }
        Event::TaskStatusUpdated(u) => {
            let theirs = state
                .tasks
                .tasks
                .get(&u.task_id)
                .is_some_and(|t| &t.framework_id == framework);
            if theirs {
                vec![update_json(u, record.at, Some(record.offset.get()))]
            } else {
                Vec::new()
            }
        }
        Event::FrameworkRemoved(r) if &r.framework_id == framework => vec![json!({
            "type": "ERROR", "error": { "message": format!("Framework removed: {}", r.reason) },
        })],
        _ => Vec::new(),
    }
}

/// One RecordIO record: the JSON's length in bytes, a newline, the JSON.
pub(crate) fn record_io(event: &Value) -> Bytes {
    Bytes::from(cairn_log::protocol::record_io(event))
}

/// Ticks every [`HEARTBEAT_SECS`], the first one interval from now.
pub(crate) fn heartbeats() -> tokio::time::Interval {
    tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(HEARTBEAT_SECS),
        Duration::from_secs(HEARTBEAT_SECS),
    )
}

/// Marks the framework disconnected when its stream ends, unless a newer stream took over.
struct Disconnect {
    c: Compat,
    framework: FrameworkId,
    stream_id: String,
    /// The subscription's generation, as the runner counts them.
    generation: u64,
    actor: Actor,
}

impl Drop for Disconnect {
    fn drop(&mut self) {
        {
            let mut sessions = self.c.sessions.lock();
            let ours = sessions
                .get(&self.framework)
                .is_some_and(|s| s.stream_id == self.stream_id);
            if ours {
                sessions.remove(&self.framework);
            }
        }
        // The runner knows whether a newer subscription replaced this one.
        let (runner, actor, id, generation) = (
            self.c.runner.clone(),
            self.actor.clone(),
            self.framework.clone(),
            self.generation,
        );
        tokio::spawn(async move {
            let _ = runner.framework_stream_ended(actor, id, generation).await;
        });
    }
}

fn framework_info(info: &Value) -> Result<FrameworkInfo, String> {
    let text = |key: &str| info[key].as_str().map(str::to_owned);
    let mut roles: Vec<String> = info["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(role) = text("role") {
        roles.push(role);
    }
    Ok(FrameworkInfo {
        name: text("name").ok_or("subscribe.framework_info.name: is required")?,
        user: text("user").ok_or("subscribe.framework_info.user: is required")?,
        roles,
        principal: text("principal"),
        failover_timeout_secs: info["failover_timeout"]
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(0, |s| s.min(u64::MAX as f64) as u64),
        hostname: text("hostname"),
        webui_url: text("webui_url"),
    })
}

/// `SUBSCRIBE`: registers or re-registers the framework and answers its event stream.
async fn subscribe(c: Compat, actor: Actor, body: &Value) -> Response {
    let info = &body["subscribe"]["framework_info"];
    let info_parsed = match framework_info(info) {
        Ok(info) => info,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let requested = value(body, "framework_id")
        .or_else(|| value(info, "id"))
        .map(FrameworkId::new)
        .transpose();
    let requested = match requested {
        Ok(id) => id,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("framework_id: {e}")),
    };
    let (id, generation) = match c
        .runner
        .subscribe_framework(actor.clone(), info_parsed, requested)
        .await
    {
        Ok(subscribed) => subscribed,
        Err(e) => return refused(e),
    };
    // 128 random bits (each `RandomState` is seeded afresh by the standard library).
    let stream_id = {
        let random = || {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(c.log.head());
            h.finish()
        };
        format!("{:016x}{:016x}", random(), random())
    };
    let (tx, rx) = mpsc::channel(OUT_OF_BAND);
    // A newer subscription replaces the older: its sender goes, and its stream ends.
    c.sessions.lock().insert(
        id.clone(),
        Session {
            stream_id: stream_id.clone(),
            out: tx,
        },
    );
    let mut first = VecDeque::new();
    let mut offered = BTreeSet::new();
    let from = {
        let state = c.projector.current().await;
        let leader = c.log.leader_elsewhere().is_none();
        first.push_back(json!({ "type": "SUBSCRIBED", "subscribed": {
            "framework_id": { "value": id },
            "heartbeat_interval_seconds": HEARTBEAT_SECS as f64,
            "master_info": { "id": "cairn", "ip": 0, "port": 0, "hostname": "cairn",
                "version": crate::mesos::VERSION, "elected": leader },
        }}));
        let offers: Vec<Value> = state
            .cluster
            .offers
            .iter()
            .filter(|(_, o)| o.framework_id == id)
            .filter_map(|(offer_id, _)| {
                offered.insert(offer_id.clone());
                offer_json(&state, offer_id)
            })
            .collect();
        if !offers.is_empty() {
            first.push_back(json!({ "type": "OFFERS", "offers": { "offers": offers } }));
        }
        // The stream goes on exactly after the state these came from.
        state.offset + 1
    };
    // Before anything can fail: a stream that never starts ends the subscription too.
    let guard = Disconnect {
        c: c.clone(),
        framework: id.clone(),
        stream_id: stream_id.clone(),
        generation,
        actor,
    };
    let follow = match c.follow(from) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let heartbeat = heartbeats();
    let lapses = c.runner.leadership_lapses();
    let stream = futures_util::stream::unfold(
        (follow, rx, heartbeat, first, offered, guard, lapses),
        |(mut follow, mut rx, mut heartbeat, mut ready, mut offered, guard, mut lapses)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    let bytes = record_io(&event);
                    return Some((
                        Ok::<_, std::convert::Infallible>(bytes),
                        (follow, rx, heartbeat, ready, offered, guard, lapses),
                    ));
                }
                tokio::select! {
                    record = follow.next() => {
                        let Some(Ok(record)) = record else { return None };
                        let projector = &guard.c.projector;
                        if projector.wait_for(record.offset.get()).await.is_err() {
                            return None;
                        }
                        let state = projector.current().await;
                        let removed = matches!(&record.event,
                            Event::FrameworkRemoved(r) if r.framework_id == guard.framework);
                        ready.extend(scheduler_events(&state, &guard.framework, &record, &mut offered));
                        if removed && ready.is_empty() {
                            return None;
                        }
                    }
                    message = rx.recv() => match message {
                        Some(event) => ready.push_back(event),
                        // Replaced by a newer subscription, or torn down.
                        None => return None,
                    },
                    _ = heartbeat.tick() => ready.push_back(json!({ "type": "HEARTBEAT" })),
                    // This master no longer leads: the framework must find the one that does.
                    _ = lapses.changed() => return None,
                }
            }
        },
    );
    (
        StatusCode::OK,
        [
            ("mesos-stream-id", stream_id),
            (header::CONTENT_TYPE.as_str(), "application/json".into()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor_task(executor: Value) -> Value {
        json!({
            "task_id": { "value": "t1" },
            "name": "t",
            "executor": executor,
            "data": "aGVsbG8=",
            "resources": [{ "name": "cpus", "type": "SCALAR", "scalar": { "value": 0.1 } }],
        })
    }

    #[test]
    fn a_task_for_an_executor_carries_it_and_its_data_but_no_command() {
        let launch = task_info(&executor_task(json!({
            "executor_id": { "value": "pool-1" },
            "name": "pool",
            "command": { "value": "./run", "environment": { "variables": [{ "name": "A", "value": "1" }] } },
            "resources": [{ "name": "mem", "type": "SCALAR", "scalar": { "value": 32 } }],
        })))
        .unwrap();
        let executor = launch.spec.executor.expect("an executor");
        assert_eq!(executor.executor_id, "pool-1");
        assert_eq!(executor.command.value.as_deref(), Some("./run"));
        assert_eq!(executor.command.env["A"], "1");
        assert_eq!(executor.resources.mem_mib, 32);
        assert_eq!(launch.spec.data.as_deref(), Some("aGVsbG8="));
        assert_eq!(launch.spec.command, None);
    }

    #[test]
    fn a_bad_executor_is_refused_naming_the_field() {
        let command = json!({ "value": "./run" });
        for (executor, says) in [
            (
                json!({ "command": command }),
                "executor.executor_id: is required",
            ),
            (
                json!({ "executor_id": { "value": "../up" }, "command": command }),
                "executor.executor_id:",
            ),
            (
                json!({ "executor_id": { "value": "e" } }),
                "executor.command: is required",
            ),
            (
                json!({ "executor_id": { "value": "e" }, "command": command, "container": {} }),
                "executor.container:",
            ),
        ] {
            let error = task_info(&executor_task(executor)).unwrap_err();
            assert!(error.starts_with(says), "{error}");
        }
        let mut both =
            executor_task(json!({ "executor_id": { "value": "e" }, "command": command }));
        both["command"] = json!({ "value": "true" });
        assert!(task_info(&both).unwrap_err().starts_with("command:"));
        let mut bad_data =
            executor_task(json!({ "executor_id": { "value": "e" }, "command": command }));
        bad_data["data"] = json!("not base64!");
        assert_eq!(task_info(&bad_data).unwrap_err(), "data: not base64");
    }
}
