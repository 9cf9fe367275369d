//! The Mesos master's read endpoints (its v0 JSON), as the Mesos CLIs and UIs read them:
//! `/master/state` (and `/state`, `*.json`), `/master/state-summary`, `/master/slaves`
//! (`/slaves`), `/master/frameworks` (`/frameworks`, with a trailing slash too),
//! `/master/tasks` (`/tasks`, `*.json`), `/master/redirect`, `/version`, `/health`,
//! `/metrics/snapshot`. Resources are flat maps (`{"cpus": 0.5, "mem": 64, "ports":
//! "[31000-31005]"}`), times float seconds, statuses oldest first.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_log::event::{wire, FrameworkId, Resources, TaskId, TaskState, Timestamp};
use cairn_projections::cluster::{Agent, AgentStatus, Framework, FrameworkStatus};
use cairn_projections::tasks::Task;
use cairn_projections::State as Cluster;
use serde_json::{json, Value};

use crate::{Compat, Failure};

/// The Mesos version cairn answers as (shared with the agent's Mesos views).
pub use cairn_log::protocol::MESOS_VERSION as VERSION;

/// Tasks `/master/tasks` answers with unless `limit` says otherwise (`-1`: all).
pub const DEFAULT_TASKS: usize = 100;

pub(crate) fn routes() -> Router<Compat> {
    let mut router = Router::new()
        .route("/version", get(version))
        .route("/health", get(health))
        .route("/master/health", get(health))
        .route("/metrics/snapshot", get(metrics))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect));
    for path in [
        "/master/state",
        "/master/state.json",
        "/state",
        "/state.json",
    ] {
        router = router.route(path, get(state));
    }
    for path in ["/master/state-summary", "/state-summary"] {
        router = router.route(path, get(summary));
    }
    for path in ["/master/slaves", "/slaves", "/master/slaves/", "/slaves/"] {
        router = router.route(path, get(slaves));
    }
    for path in [
        "/master/frameworks",
        "/master/frameworks/",
        "/frameworks",
        "/frameworks/",
    ] {
        router = router.route(path, get(frameworks));
    }
    for path in [
        "/master/tasks",
        "/master/tasks.json",
        "/tasks",
        "/tasks.json",
    ] {
        router = router.route(path, get(tasks));
    }
    router
}

type Params = Query<Vec<(String, String)>>;

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn secs(at: Timestamp) -> f64 {
    at.as_micros() as f64 / 1e6
}

/// `ip:port` of an agent's address, `("", 0)` when it has none.
fn ip_port(address: &str) -> (&str, u16) {
    match address.rsplit_once(':') {
        Some((ip, port)) => (ip, port.parse().unwrap_or(0)),
        None => (address, 0),
    }
}

/// An agent as `/master/slaves` lists it.
pub fn slave_json(id: &cairn_log::event::AgentId, agent: &Agent) -> Value {
    let (ip, port) = ip_port(&agent.address);
    json!({
        "id": id,
        "hostname": agent.hostname,
        "port": port,
        "pid": format!("slave(1)@{ip}:{port}"),
        "attributes": agent.attributes,
        "registered_time": secs(agent.registered_at),
        "resources": agent.total.mesos_v0_json(),
        "used_resources": agent.used.mesos_v0_json(),
        "offered_resources": agent.offered.mesos_v0_json(),
        "reserved_resources": {},
        "unreserved_resources": agent.total.mesos_v0_json(),
        "active": agent.status == AgentStatus::Active,
        "deactivated": agent.status != AgentStatus::Active,
        "version": agent.version,
        "capabilities": [],
    })
}

/// A task in Mesos' v0 JSON.
pub fn task_json(state: &Cluster, id: &TaskId, task: &Task) -> Value {
    let ip = state
        .cluster
        .agents
        .get(&task.agent_id)
        .map(|a| ip_port(&a.address).0.to_owned())
        .unwrap_or_default();
    let statuses: Vec<Value> = task
        .statuses
        .iter()
        .map(|s| {
            let mut status = json!({
                "state": wire(&s.state),
                "timestamp": secs(s.at),
                "container_status": {
                    "container_id": { "value": id },
                    "network_infos": [{ "ip_addresses": [{ "ip_address": ip }] }],
                },
            });
            if let Some(healthy) = s.healthy {
                status["healthy"] = json!(healthy);
            }
            status
        })
        .collect();
    let mut out = json!({
        "id": id,
        "name": task.name,
        "framework_id": task.framework_id,
        // Empty for command tasks, as Mesos writes it.
        "executor_id": task.spec.executor.as_ref().map_or("", |e| e.executor_id.as_str()),
        "slave_id": task.agent_id,
        "state": wire(&task.state),
        "resources": task.resources.mesos_v0_json(),
        "role": "*",
        "statuses": statuses,
    });
    if let Some(docker) = task.spec.container.as_ref().and_then(|c| c.docker.as_ref()) {
        out["container"] = json!({
            "type": "DOCKER",
            "docker": { "image": docker.image, "network": docker.network },
        });
    }
    if !task.spec.labels.is_empty() {
        out["labels"] = json!(task
            .spec
            .labels
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect::<Vec<_>>());
    }
    out
}

/// A framework as `/master/frameworks` lists it, with its tasks and offers.
pub fn framework_json(state: &Cluster, id: &FrameworkId, f: &Framework) -> Value {
    let mine = || {
        state
            .tasks
            .tasks
            .iter()
            .filter(|(_, t)| &t.framework_id == id)
    };
    let (live, ended): (Vec<_>, Vec<_>) = mine().partition(|(_, t)| !t.is_terminal());
    let used = live
        .iter()
        .try_fold(Resources::default(), |sum, (_, t)| {
            sum.checked_add(&t.resources)
        })
        .unwrap_or_default();
    let offers: Vec<_> = state
        .cluster
        .offers
        .iter()
        .filter(|(_, o)| &o.framework_id == id)
        .collect();
    let offered = offers
        .iter()
        .try_fold(Resources::default(), |sum, (_, o)| {
            sum.checked_add(&o.resources)
        })
        .unwrap_or_default();
    let active = f.status == FrameworkStatus::Active;
    json!({
        "id": id,
        "name": f.name,
        "pid": "",
        "user": f.user,
        "hostname": f.hostname.clone().unwrap_or_default(),
        "webui_url": f.webui_url.clone().unwrap_or_default(),
        "principal": f.principal,
        "role": f.roles.first().cloned().unwrap_or_else(|| "*".into()),
        "roles": f.roles,
        "active": active,
        "connected": active,
        "recovered": false,
        "checkpoint": true,
        "capabilities": [],
        "failover_timeout": f.failover_timeout_secs as f64,
        "registered_time": secs(f.registered_at),
        "unregistered_time": 0,
        "resources": used.mesos_v0_json(),
        "used_resources": used.mesos_v0_json(),
        "offered_resources": offered.mesos_v0_json(),
        "tasks": live.iter().map(|(t, task)| task_json(state, t, task)).collect::<Vec<_>>(),
        "unreachable_tasks": [],
        "completed_tasks": ended.iter().map(|(t, task)| task_json(state, t, task)).collect::<Vec<_>>(),
        "offers": offers.iter().map(|(offer, o)| json!({
            "id": { "value": offer },
            "framework_id": o.framework_id,
            "slave_id": o.agent_id,
            "resources": o.resources.mesos_v0_json(),
        })).collect::<Vec<_>>(),
        "executors": [],
    })
}

fn frameworks_of(state: &Cluster, completed: bool) -> Vec<Value> {
    state
        .cluster
        .frameworks
        .iter()
        .filter(|(_, f)| (f.status == FrameworkStatus::Removed) == completed)
        .map(|(id, f)| framework_json(state, id, f))
        .collect()
}

fn slaves_of(state: &Cluster) -> Vec<Value> {
    state
        .cluster
        .agents
        .iter()
        .filter(|(_, a)| a.status != AgentStatus::Removed)
        .map(|(id, a)| slave_json(id, a))
        .collect()
}

/// `/master/state`: the master, its agents and frameworks with their tasks. `leader` is the
/// address of the leading master, if known.
pub fn state_json(state: &Cluster, leader: Option<&str>) -> Value {
    let count = |status: AgentStatus| {
        state
            .cluster
            .agents
            .values()
            .filter(|a| a.status == status)
            .count()
    };
    let leader_info = state.cluster.leader.as_ref();
    let (ip, port) = ip_port(leader.unwrap_or_default());
    json!({
        "version": VERSION,
        "build_user": "cairn",
        "start_time": leader_info.map(|l| secs(l.since)),
        "elected_time": leader_info.map(|l| secs(l.since)),
        "id": leader_info.map(|l| l.node_id.to_string()),
        "pid": format!("master@{ip}:{port}"),
        "hostname": ip,
        "leader": format!("master@{ip}:{port}"),
        "leader_info": { "hostname": ip, "port": port, "version": VERSION },
        "activated_slaves": count(AgentStatus::Active),
        "deactivated_slaves": count(AgentStatus::Disconnected),
        "unreachable_slaves": count(AgentStatus::Lost),
        "capabilities": [],
        "flags": {},
        "slaves": slaves_of(state),
        "recovered_slaves": [],
        "frameworks": frameworks_of(state, false),
        "completed_frameworks": frameworks_of(state, true),
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })
}

const STATES: [TaskState; 7] = [
    TaskState::Staging,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Finished,
    TaskState::Killed,
    TaskState::Failed,
    TaskState::Lost,
];

/// `/master/state-summary`: agents and frameworks with counts of their tasks by state.
pub fn summary_json(state: &Cluster, leader: Option<&str>) -> Value {
    let counts = |keep: &dyn Fn(&Task) -> bool| {
        let mut out = serde_json::Map::new();
        for s in STATES {
            let n = state
                .tasks
                .tasks
                .values()
                .filter(|t| t.state == s && keep(t))
                .count();
            out.insert(wire(&s), json!(n));
        }
        out
    };
    let slaves: Vec<Value> = state
        .cluster
        .agents
        .iter()
        .filter(|(_, a)| a.status != AgentStatus::Removed)
        .map(|(id, a)| {
            let mut slave = slave_json(id, a);
            let object = slave.as_object_mut().expect("an object");
            object.extend(counts(&|t| &t.agent_id == id));
            let frameworks: std::collections::BTreeSet<&FrameworkId> = state
                .tasks
                .tasks
                .values()
                .filter(|t| &t.agent_id == id && !t.is_terminal())
                .map(|t| &t.framework_id)
                .collect();
            object.insert("framework_ids".into(), json!(frameworks));
            slave
        })
        .collect();
    let frameworks: Vec<Value> = state
        .cluster
        .frameworks
        .iter()
        .filter(|(_, f)| f.status != FrameworkStatus::Removed)
        .map(|(id, f)| {
            let agents: std::collections::BTreeSet<_> = state
                .tasks
                .tasks
                .values()
                .filter(|t| &t.framework_id == id && !t.is_terminal())
                .map(|t| &t.agent_id)
                .collect();
            let mut out = json!({
                "id": id, "name": f.name, "active": f.status == FrameworkStatus::Active,
                "slave_ids": agents,
            });
            out.as_object_mut()
                .expect("an object")
                .extend(counts(&|t| &t.framework_id == id));
            out
        })
        .collect();
    json!({
        "hostname": ip_port(leader.unwrap_or_default()).0,
        "slaves": slaves,
        "frameworks": frameworks,
    })
}

/// `/metrics/snapshot`: Mesos' flat map of the master's gauges.
pub fn metrics_json(state: &Cluster, elected: bool) -> Value {
    let agents = || {
        state
            .cluster
            .agents
            .values()
            .filter(|a| a.status == AgentStatus::Active)
    };
    let total = agents()
        .try_fold(Resources::default(), |sum, a| sum.checked_add(&a.total))
        .unwrap_or_default();
    let used = agents()
        .try_fold(Resources::default(), |sum, a| sum.checked_add(&a.used))
        .unwrap_or_default();
    let tasks = |s: TaskState| state.tasks.tasks.values().filter(|t| t.state == s).count() as f64;
    json!({
        "master/elected": if elected { 1.0 } else { 0.0 },
        "master/slaves_active": agents().count() as f64,
        "master/slaves_disconnected": state.cluster.agents.values()
            .filter(|a| a.status == AgentStatus::Disconnected).count() as f64,
        "master/frameworks_active": state.cluster.frameworks.values()
            .filter(|f| f.status == FrameworkStatus::Active).count() as f64,
        "master/cpus_total": total.cpus_milli as f64 / 1000.0,
        "master/cpus_used": used.cpus_milli as f64 / 1000.0,
        "master/mem_total": total.mem_mib as f64,
        "master/mem_used": used.mem_mib as f64,
        "master/disk_total": total.disk_mib as f64,
        "master/disk_used": used.disk_mib as f64,
        "master/tasks_staging": tasks(TaskState::Staging),
        "master/tasks_starting": tasks(TaskState::Starting),
        "master/tasks_running": tasks(TaskState::Running),
        "master/tasks_finished": tasks(TaskState::Finished),
        "master/tasks_failed": tasks(TaskState::Failed),
        "master/tasks_killed": tasks(TaskState::Killed),
        "master/tasks_lost": tasks(TaskState::Lost),
        "master/outstanding_offers": state.cluster.offers.len() as f64,
    })
}

/// The leading master's address: this one's as the client reached it, or the other's.
fn leader(c: &Compat, headers: &HeaderMap) -> Option<String> {
    crate::leader_address(&c.log, headers)
}

async fn version() -> Response {
    axum::Json(json!({
        "version": VERSION,
        "build_user": "cairn",
        "build_date": "",
        "build_time": 0,
        "git_tag": concat!("cairn-", env!("CARGO_PKG_VERSION")),
    }))
    .into_response()
}

async fn health() -> Response {
    (StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response()
}

async fn state(State(c): State<Compat>, headers: HeaderMap) -> Response {
    let leader = leader(&c, &headers);
    axum::Json(state_json(&*c.projector.current().await, leader.as_deref())).into_response()
}

async fn summary(State(c): State<Compat>, headers: HeaderMap) -> Response {
    let leader = leader(&c, &headers);
    axum::Json(summary_json(
        &*c.projector.current().await,
        leader.as_deref(),
    ))
    .into_response()
}

async fn slaves(State(c): State<Compat>, Query(params): Params) -> Response {
    let state = c.projector.current().await;
    let mut slaves = slaves_of(&state);
    if let Some(id) = param(&params, "slave_id") {
        slaves.retain(|s| s["id"] == id);
    }
    axum::Json(json!({ "slaves": slaves, "recovered_slaves": [] })).into_response()
}

async fn frameworks(State(c): State<Compat>, Query(params): Params) -> Response {
    let state = c.projector.current().await;
    let (mut active, mut completed) = (frameworks_of(&state, false), frameworks_of(&state, true));
    if let Some(id) = param(&params, "framework_id") {
        active.retain(|f| f["id"] == id);
        completed.retain(|f| f["id"] == id);
    }
    axum::Json(json!({
        "frameworks": active,
        "completed_frameworks": completed,
        "unregistered_frameworks": [],
    }))
    .into_response()
}

/// `/master/tasks`: by the time of their latest status, newest first (`order=asc` oldest),
/// `offset` skipped, at most `limit` (`-1`: all), optionally of one framework or one task.
async fn tasks(State(c): State<Compat>, Query(params): Params) -> Result<Response, Failure> {
    let bad = |what: &str| Failure {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "message": format!("{what}: must be a number") }),
    };
    let limit = match param(&params, "limit") {
        None => Some(DEFAULT_TASKS),
        Some("-1") => None,
        Some(n) => Some(n.parse().map_err(|_| bad("limit"))?),
    };
    let offset: usize = match param(&params, "offset") {
        None => 0,
        Some(n) => n.parse().map_err(|_| bad("offset"))?,
    };
    let ascending = param(&params, "order") == Some("asc");
    let (framework, task) = (param(&params, "framework_id"), param(&params, "task_id"));
    let state = c.projector.current().await;
    let mut chosen: Vec<(&TaskId, &Task)> = state
        .tasks
        .tasks
        .iter()
        .filter(|(id, t)| {
            framework.is_none_or(|f| t.framework_id.as_str() == f)
                && task.is_none_or(|want| id.as_str() == want)
        })
        .collect();
    chosen.sort_by_key(|(id, t)| (t.updated_at, *id));
    if !ascending {
        chosen.reverse();
    }
    let tasks: Vec<Value> = chosen
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|(id, t)| task_json(&state, id, t))
        .collect();
    Ok(axum::Json(json!({ "tasks": tasks })).into_response())
}

async fn metrics(State(c): State<Compat>) -> Response {
    let elected = c.log.leader_elsewhere().is_none();
    axum::Json(metrics_json(&*c.projector.current().await, elected)).into_response()
}

/// `/master/redirect`: 307 to the leading master.
async fn redirect(State(c): State<Compat>, headers: HeaderMap) -> Result<Response, Failure> {
    match leader(&c, &headers) {
        Some(leader) => Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, format!("//{leader}")),
                (header::CONTENT_LENGTH, "0".into()),
            ],
        )
            .into_response()),
        None => Err(Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({ "message": "no master leads at the moment" }),
        }),
    }
}
