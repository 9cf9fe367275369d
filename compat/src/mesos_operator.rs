//! Mesos' v1 operator API, `POST /api/v1` (and `/api/v1/operator`, where pymesos sends it),
//! in JSON: `GET_HEALTH`, `GET_VERSION`, `GET_MASTER`, `GET_METRICS`, `GET_FLAGS`,
//! `GET_AGENTS`, `GET_FRAMEWORKS`, `GET_TASKS`, `GET_EXECUTORS`, `GET_STATE`, and `SUBSCRIBE`:
//! a RecordIO stream of `SUBSCRIBED` (with the state), then `TASK_ADDED`, `TASK_UPDATED`,
//! `FRAMEWORK_ADDED`, `FRAMEWORK_UPDATED`, `FRAMEWORK_REMOVED`, `AGENT_ADDED`,
//! `AGENT_REMOVED` as the log commits them, and heartbeats. Ids are `{"value": …}`, resources
//! lists, times `{"nanoseconds": …}`, as in Mesos' v1 JSON.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use cairn_log::event::{wire, AgentId, Event, FrameworkId, TaskId, Timestamp};
use cairn_log::Record;
use cairn_projections::cluster::{Agent, AgentStatus, Framework, FrameworkStatus};
use cairn_projections::tasks::Task;
use cairn_projections::State as Cluster;
use serde_json::{json, Value};

use crate::mesos::{metrics_json, VERSION};
use crate::mesos_scheduler::{heartbeats, record_io, HEARTBEAT_SECS};
use crate::{body, Compat};

pub(crate) fn routes() -> Router<Compat> {
    Router::new()
        .route("/api/v1", post(call))
        .route("/api/v1/operator", post(call))
        .route("/master/api/v1", post(call))
}

fn nanos(at: Timestamp) -> Value {
    json!({ "nanoseconds": at.as_micros().saturating_mul(1_000) })
}

/// An agent in v1 JSON.
pub fn agent_json(id: &AgentId, a: &Agent) -> Value {
    let (ip, port) = a.address.rsplit_once(':').unwrap_or((&a.address, "0"));
    json!({
        "agent_info": {
            "id": { "value": id },
            "hostname": a.hostname,
            "port": port.parse::<u16>().unwrap_or(0),
            "resources": a.total.mesos_json(),
            "attributes": a.attributes.iter().map(|(k, v)| json!({
                "name": k, "type": "TEXT", "text": { "value": v },
            })).collect::<Vec<_>>(),
        },
        "active": a.status == AgentStatus::Active,
        "deactivated": a.status != AgentStatus::Active,
        "version": a.version,
        "pid": format!("slave(1)@{ip}:{port}"),
        "registered_time": nanos(a.registered_at),
        "total_resources": a.total.mesos_json(),
        "allocated_resources": a.used.mesos_json(),
        "offered_resources": a.offered.mesos_json(),
        "capabilities": [],
    })
}

/// A framework in v1 JSON.
pub fn framework_json(id: &FrameworkId, f: &Framework) -> Value {
    json!({
        "framework_info": {
            "id": { "value": id },
            "name": f.name,
            "user": f.user,
            "roles": f.roles,
            "principal": f.principal,
            "failover_timeout": f.failover_timeout_secs as f64,
            "hostname": f.hostname,
            "webui_url": f.webui_url,
        },
        "active": f.status == FrameworkStatus::Active,
        "connected": f.status == FrameworkStatus::Active,
        "recovered": false,
        "registered_time": nanos(f.registered_at),
    })
}

/// A task in v1 JSON, its statuses oldest first.
pub fn task_json(id: &TaskId, t: &Task) -> Value {
    let mut task = json!({
        "name": t.name,
        "task_id": { "value": id },
        "framework_id": { "value": t.framework_id },
        "agent_id": { "value": t.agent_id },
        "state": wire(&t.state),
        "resources": t.resources.mesos_json(),
        "statuses": t.statuses.iter().map(|s| json!({
            "task_id": { "value": id },
            "agent_id": { "value": t.agent_id },
            "state": wire(&s.state),
            "timestamp": s.at.as_micros() as f64 / 1e6,
        })).collect::<Vec<_>>(),
    });
    if let Some(executor) = &t.spec.executor {
        task["executor_id"] = json!({ "value": executor.executor_id });
    }
    task
}

fn agents(state: &Cluster) -> Value {
    json!({
        "agents": state.cluster.agents.iter()
            .filter(|(_, a)| a.status != AgentStatus::Removed)
            .map(|(id, a)| agent_json(id, a)).collect::<Vec<_>>(),
        "recovered_agents": [],
    })
}

fn frameworks(state: &Cluster) -> Value {
    let of = |removed: bool| {
        state
            .cluster
            .frameworks
            .iter()
            .filter(|(_, f)| (f.status == FrameworkStatus::Removed) == removed)
            .map(|(id, f)| framework_json(id, f))
            .collect::<Vec<_>>()
    };
    json!({ "frameworks": of(false), "completed_frameworks": of(true) })
}

fn tasks(state: &Cluster) -> Value {
    let of = |ended: bool| {
        state
            .tasks
            .tasks
            .iter()
            .filter(|(_, t)| t.is_terminal() == ended)
            .map(|(id, t)| task_json(id, t))
            .collect::<Vec<_>>()
    };
    json!({ "tasks": of(false), "completed_tasks": of(true), "pending_tasks": [],
        "orphan_tasks": [], "unreachable_tasks": [] })
}

/// `GET_STATE`'s body.
pub fn state_json(state: &Cluster) -> Value {
    json!({
        "get_tasks": tasks(state),
        "get_executors": { "executors": [], "orphan_executors": [] },
        "get_frameworks": frameworks(state),
        "get_agents": agents(state),
    })
}

/// The operator events a committed record means.
pub fn operator_events(state: &Cluster, record: &Record) -> Vec<Value> {
    let framework = |id: &FrameworkId| {
        state
            .cluster
            .frameworks
            .get(id)
            .map(|f| framework_json(id, f))
    };
    let event = match &record.event {
        Event::TaskLaunched(e) => state.tasks.tasks.get(&e.task_id).map(|t| {
            json!({ "type": "TASK_ADDED", "task_added": { "task": task_json(&e.task_id, t) } })
        }),
        Event::TaskStatusUpdated(u) => state.tasks.tasks.get(&u.task_id).map(|t| {
            json!({ "type": "TASK_UPDATED", "task_updated": {
                "framework_id": { "value": t.framework_id },
                "state": wire(&u.state),
                "status": {
                    "task_id": { "value": u.task_id },
                    "agent_id": { "value": u.agent_id },
                    "state": wire(&u.state),
                    "timestamp": record.at.as_micros() as f64 / 1e6,
                },
            }})
        }),
        Event::FrameworkRegistered(e) => framework(&e.framework_id)
            .map(|f| json!({ "type": "FRAMEWORK_ADDED", "framework_added": { "framework": f } })),
        Event::FrameworkReregistered(e) => framework(&e.framework_id).map(
            |f| json!({ "type": "FRAMEWORK_UPDATED", "framework_updated": { "framework": f } }),
        ),
        Event::FrameworkDisconnected(e) => framework(&e.framework_id).map(
            |f| json!({ "type": "FRAMEWORK_UPDATED", "framework_updated": { "framework": f } }),
        ),
        Event::FrameworkRemoved(e) => framework(&e.framework_id).map(|f| {
            json!({ "type": "FRAMEWORK_REMOVED", "framework_removed": {
                "framework_info": f["framework_info"] } })
        }),
        Event::AgentRegistered(e) => state
            .cluster
            .agents
            .get(&e.agent_id)
            .map(|a| json!({ "type": "AGENT_ADDED", "agent_added": { "agent": agent_json(&e.agent_id, a) } })),
        Event::AgentRemoved(e) => Some(
            json!({ "type": "AGENT_REMOVED", "agent_removed": { "agent_id": { "value": e.agent_id } } }),
        ),
        Event::AgentLost(e) => Some(
            json!({ "type": "AGENT_REMOVED", "agent_removed": { "agent_id": { "value": e.agent_id } } }),
        ),
        _ => None,
    };
    event.into_iter().collect()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// `POST /api/v1`.
async fn call(State(c): State<Compat>, request: Request) -> Response {
    let protobuf = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    if protobuf {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "cairn speaks the operator API in JSON only (Content-Type: application/json)",
        );
    }
    let headers: HeaderMap = request.headers().clone();
    let body = match body(request).await {
        Ok(body) => body,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let kind = body["type"].as_str().unwrap_or_default();
    let answer =
        |key: &str, value: Value| axum::Json(json!({ "type": kind, key: value })).into_response();
    match kind {
        "GET_HEALTH" => answer("get_health", json!({ "healthy": true })),
        "GET_VERSION" => answer(
            "get_version",
            json!({ "version_info": { "version": VERSION, "build_user": "cairn",
                "build_date": "", "build_time": 0.0 } }),
        ),
        "GET_FLAGS" => answer("get_flags", json!({ "flags": [] })),
        "GET_MASTER" => {
            let leader = crate::leader_address(&c.log, &headers).unwrap_or_default();
            let (ip, port) = leader.rsplit_once(':').unwrap_or((&leader, "0"));
            let port = port.parse::<u16>().unwrap_or(0);
            answer(
                "get_master",
                json!({ "master_info": { "id": "cairn", "ip": 0, "port": port, "hostname": ip,
                    "pid": format!("master@{ip}:{port}"), "version": VERSION,
                    "address": { "hostname": ip, "ip": ip, "port": port } } }),
            )
        }
        "GET_METRICS" => {
            let elected = c.log.leader_elsewhere().is_none();
            let metrics = metrics_json(&*c.projector.current().await, elected);
            let list: Vec<Value> = metrics
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect();
            answer("get_metrics", json!({ "metrics": list }))
        }
        "GET_AGENTS" => answer("get_agents", agents(&*c.projector.current().await)),
        "GET_FRAMEWORKS" => answer("get_frameworks", frameworks(&*c.projector.current().await)),
        "GET_TASKS" => answer("get_tasks", tasks(&*c.projector.current().await)),
        "GET_EXECUTORS" => answer(
            "get_executors",
            json!({ "executors": [], "orphan_executors": [] }),
        ),
        "GET_STATE" => answer("get_state", state_json(&*c.projector.current().await)),
        "SUBSCRIBE" => subscribe(c).await,
        other => refuse(
            StatusCode::BAD_REQUEST,
            format!("type: {other:?} is not supported by cairn"),
        ),
    }
}

/// `SUBSCRIBE`: the state now, then what changes, as the log commits it.
async fn subscribe(c: Compat) -> Response {
    let (from, first) = {
        let state = c.projector.current().await;
        // Exactly what follows the state it starts from.
        let from = state.offset + 1;
        let subscribed = json!({ "type": "SUBSCRIBED", "subscribed": {
            "get_state": state_json(&state),
            "heartbeat_interval_seconds": HEARTBEAT_SECS as f64,
        }});
        (from, subscribed)
    };
    let follow = match c.follow(from) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let heartbeat = heartbeats();
    let ready = std::collections::VecDeque::from([first]);
    let stream = futures_util::stream::unfold(
        (follow, heartbeat, ready, c.projector.clone()),
        |(mut follow, mut heartbeat, mut ready, projector)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((
                        Ok::<_, std::convert::Infallible>(record_io(&event)),
                        (follow, heartbeat, ready, projector),
                    ));
                }
                tokio::select! {
                    record = follow.next() => {
                        let Some(Ok(record)) = record else { return None };
                        if projector.wait_for(record.offset.get()).await.is_err() {
                            return None;
                        }
                        ready.extend(operator_events(&*projector.current().await, &record));
                    }
                    _ = heartbeat.tick() => ready.push_back(json!({ "type": "HEARTBEAT" })),
                }
            }
        },
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
