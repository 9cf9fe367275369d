//! Marathon's REST API (`/v2`, `/ping`) as marathon-python 0.13 and marathon-deploy 3 use it:
//! apps (create, list with `embed`, get, partial update, scale, rollback, restart, delete,
//! tasks, versions), tasks, deployments, the launch queue, groups (read), info and leader.
//! Responses carry only the keys marathon-python accepts (it rejects unknown ones); errors
//! are Marathon's: 422 `{message, details}`, 409 `{message, deployments}`, 404 `{message}`.
//!
//! Paths are read as Marathon's clients write them: `/v2/apps//web` (an absolute id after a
//! slash) is `/web`; query booleans may be Python's `True`/`False`.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cairn_log::event::{
    wire, AgentId, AppId, DeploymentActionKind, DeploymentId, TaskId, TaskOwner, TaskState,
    Timestamp,
};
use cairn_projections::apps::{App, Deployment, DeploymentStatus};
use cairn_projections::State as Cluster;
use cairn_scheduler::deployments::Put;
use cairn_scheduler::marathon::{app_id, parse_app, parse_group, to_marathon, Invalid};
use cairn_scheduler::runner::Error;
use serde_json::{json, Value};

use crate::{body, Compat, Failure};

/// The Marathon version cairn answers as (numeric, dotted: clients parse it).
pub const VERSION: &str = "1.11.0";

pub(crate) fn routes() -> Router<Compat> {
    Router::new()
        .route("/ping", get(ping))
        .route("/v2/info", get(info))
        .route("/v2/leader", get(leader))
        .route("/v2/apps", get(list_apps).post(create_app))
        .route(
            "/v2/apps/{*path}",
            get(get_app_path)
                .put(update_app_path)
                .patch(update_app_path)
                .delete(delete_app_path)
                .post(post_app_path),
        )
        .route("/v2/tasks", get(list_tasks))
        .route("/v2/tasks/delete", post(kill_tasks))
        .route("/v2/deployments", get(list_deployments))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(cancel_deployment),
        )
        .route("/v2/events", get(crate::marathon_events::stream))
        .route("/v2/queue", get(queue))
        .route("/v2/queue/{*path}", axum::routing::delete(reset_delay))
        .route(
            "/v2/groups",
            get(root_group)
                .post(create_group)
                .put(update_group)
                .delete(delete_group),
        )
        .route(
            "/v2/groups/{*path}",
            get(group).put(update_group).delete(delete_group),
        )
}

type Params = Query<Vec<(String, String)>>;

/// A boolean query parameter, as Python's `requests` writes `True` and `False` too.
fn flag(params: &[(String, String)], key: &str) -> bool {
    params
        .iter()
        .any(|(k, v)| k == key && v.eq_ignore_ascii_case("true"))
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn message(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        body: json!({ "message": message.into() }),
    }
}

/// What the runner refused, Marathon's way; a conflict lists the deployments in the way.
fn refused(e: Error, state: &Cluster, apps: &[AppId]) -> Failure {
    let status = match &e {
        Error::Invalid(_) | Error::Unplaceable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Log(_) | Error::Projection(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut body = json!({ "message": e.to_string() });
    if status == StatusCode::CONFLICT {
        body["deployments"] = json!(running_deployments(state, apps)
            .into_iter()
            .map(|(id, _)| json!({ "id": id }))
            .collect::<Vec<_>>());
    }
    Failure { status, body }
}

fn running_deployments<'a>(
    state: &'a Cluster,
    apps: &[AppId],
) -> Vec<(&'a DeploymentId, &'a Deployment)> {
    state
        .apps
        .deployments
        .iter()
        .filter(|(_, d)| d.status == DeploymentStatus::Running)
        .filter(|(_, d)| apps.is_empty() || d.app_ids.iter().any(|a| apps.contains(a)))
        .collect()
}

/// Marathon's answer to a change: the deployment carrying it out.
fn deployed(result: Option<(DeploymentId, Timestamp)>, fallback: Timestamp) -> Response {
    match result {
        Some((id, version)) => (
            [("Marathon-Deployment-Id", id.to_string())],
            axum::Json(json!({ "deploymentId": id, "version": version.to_string() })),
        )
            .into_response(),
        // Nothing changed: no deployment, the current version.
        None => axum::Json(json!({ "deploymentId": Value::Null, "version": fallback.to_string() }))
            .into_response(),
    }
}

/// Carries out `change` to app `id` and answers Marathon's way: the deployment (or, when
/// nothing changed, the version the app had), or the refusal.
async fn deploy(
    c: &Compat,
    id: &AppId,
    change: impl std::future::Future<Output = Result<Option<(DeploymentId, Timestamp)>, Error>>,
) -> Result<Response, Failure> {
    let before = {
        let state = c.projector.current().await;
        state
            .apps
            .apps
            .get(id)
            .map(|a| a.version)
            .unwrap_or_default()
    };
    match change.await {
        Ok(result) => Ok(deployed(result, before)),
        Err(e) => Err(refused(
            e,
            &*c.projector.current().await,
            std::slice::from_ref(id),
        )),
    }
}

fn json_of(value: Value) -> Response {
    axum::Json(value).into_response()
}

// ---- Renderers: pure functions of the state, pinned by the golden tests. ----

/// What to embed in an app (`embed=app.tasks`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct Embed {
    pub tasks: bool,
    pub last_task_failure: bool,
}

impl Embed {
    fn of(params: &[(String, String)]) -> Self {
        let has = |what: &str| {
            params
                .iter()
                .any(|(k, v)| k == "embed" && (v == what || v == &format!("apps.{}", &what[4..])))
        };
        Embed {
            tasks: has("app.tasks"),
            last_task_failure: has("app.lastTaskFailure"),
        }
    }
}

/// An app as `GET /v2/apps/{id}` shows it: its definition, version, counts, deployments,
/// and what `embed` asks for.
pub fn app_json(state: &Cluster, app: &App, embed: Embed) -> Value {
    let mut out = to_marathon(&app.spec);
    out.insert("version".into(), json!(app.version.to_string()));
    out.insert(
        "versionInfo".into(),
        json!({
            "lastScalingAt": app.version.to_string(),
            "lastConfigChangeAt": app.config_version().to_string(),
        }),
    );
    let tasks: Vec<_> = app
        .instances
        .iter()
        .filter_map(|id| Some((id, state.tasks.tasks.get(id)?)))
        .collect();
    let count = |f: &dyn Fn(&cairn_projections::tasks::Task) -> bool| {
        tasks.iter().filter(|(_, t)| f(t)).count()
    };
    out.insert(
        "tasksStaged".into(),
        json!(count(&|t| matches!(
            t.state,
            TaskState::Staging | TaskState::Starting
        ))),
    );
    out.insert(
        "tasksRunning".into(),
        json!(count(&|t| t.state == TaskState::Running)),
    );
    out.insert(
        "tasksHealthy".into(),
        json!(count(&|t| t.healthy == Some(true))),
    );
    out.insert(
        "tasksUnhealthy".into(),
        json!(count(&|t| t.healthy == Some(false))),
    );
    out.insert(
        "deployments".into(),
        json!(
            running_deployments(state, std::slice::from_ref(&app.spec.id))
                .into_iter()
                .map(|(id, _)| json!({ "id": id }))
                .collect::<Vec<_>>()
        ),
    );
    if embed.tasks {
        out.insert(
            "tasks".into(),
            json!(tasks
                .iter()
                .filter_map(|(id, _)| task_json(state, id))
                .collect::<Vec<_>>()),
        );
    }
    if embed.last_task_failure {
        if let Some(f) = &app.last_failure {
            let task = state.tasks.tasks.get(&f.task_id);
            let agent = task.and_then(|t| state.cluster.agents.get(&t.agent_id));
            out.insert(
                "lastTaskFailure".into(),
                json!({
                    "appId": app.spec.id,
                    "host": agent.map(|a| a.hostname.clone()).unwrap_or_default(),
                    "message": f.message.clone().unwrap_or_default(),
                    "taskId": f.task_id,
                    "slaveId": task.map(|t| t.agent_id.to_string()).unwrap_or_default(),
                    "state": wire(&f.state),
                    "timestamp": f.at.to_string(),
                    "version": task.and_then(|t| match &t.owner {
                        TaskOwner::App { version, .. } => Some(version.to_string()),
                        _ => None,
                    }),
                }),
            );
        }
    }
    Value::Object(out)
}

/// An agent's host name and IP address, empty if it is unknown.
pub(crate) fn host_and_ip(state: &Cluster, agent: &AgentId) -> (String, String) {
    let agent = state.cluster.agents.get(agent);
    let host = agent.map(|a| a.hostname.clone()).unwrap_or_default();
    let ip = agent
        .and_then(|a| a.address.rsplit_once(':').map(|(ip, _)| ip.to_owned()))
        .unwrap_or_default();
    (host, ip)
}

/// An app's task as `/v2/tasks` shows it; `None` for a task that is not an app's.
pub fn task_json(state: &Cluster, task_id: &TaskId) -> Option<Value> {
    let task = state.tasks.tasks.get(task_id)?;
    let TaskOwner::App { app_id, version } = &task.owner else {
        return None;
    };
    let (host, ip) = host_and_ip(state, &task.agent_id);
    let app = state.apps.apps.get(app_id);
    // Service ports: the app's port definitions, as many as the task has ports.
    let service: Vec<u16> = (0..task.spec.ports.len())
        .map(|i| {
            app.and_then(|a| a.spec.port_definitions.get(i))
                .map_or(0, |p| p.port)
        })
        .collect();
    let started = task
        .statuses
        .iter()
        .find(|s| s.state == TaskState::Running)
        .map(|s| s.at.to_string());
    let checked = app.is_some_and(|a| !a.spec.health_checks.is_empty());
    let health: Vec<Value> = if checked && task.healthy.is_some() {
        vec![json!({
            "alive": task.healthy == Some(true),
            "consecutiveFailures": 0,
            "firstSuccess": Value::Null,
            "lastFailure": Value::Null,
            "lastFailureCause": Value::Null,
            "lastSuccess": Value::Null,
            "taskId": task_id,
            "instanceId": task_id,
        })]
    } else {
        Vec::new()
    };
    Some(json!({
        "id": task_id,
        "appId": app_id,
        "host": host,
        "slaveId": task.agent_id,
        "ports": task.spec.ports,
        "servicePorts": service,
        "stagedAt": task.launched_at.to_string(),
        "startedAt": started,
        "state": wire(&task.state),
        "version": version.to_string(),
        "ipAddresses": [{ "ipAddress": ip, "protocol": "IPv4" }],
        "healthCheckResults": health,
    }))
}

/// A deployment as `/v2/deployments` lists it.
pub fn deployment_json(id: &DeploymentId, d: &Deployment) -> Value {
    let action = |kind: DeploymentActionKind| wire(&kind);
    let steps: Vec<Value> = d
        .steps
        .iter()
        .map(|s| {
            json!({ "actions": s.actions.iter()
                .map(|a| json!({ "action": action(a.action), "app": a.app_id }))
                .collect::<Vec<_>>() })
        })
        .collect();
    let current = d
        .steps
        .get(d.completed_steps as usize)
        .map(|s| {
            s.actions
                .iter()
                .map(|a| {
                    json!({ "action": action(a.action), "app": a.app_id, "readinessCheckResults": [] })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    json!({
        "id": id,
        "version": d.version.to_string(),
        "affectedApps": d.app_ids,
        "affectedPods": [],
        "steps": steps,
        "currentActions": current,
        "currentStep": (d.completed_steps + 1).min(d.steps.len() as u32),
        "totalSteps": d.steps.len(),
    })
}

/// The launch queue: apps short of instances, with their launch delay as of `now`.
pub fn queue_json(state: &Cluster, now: Timestamp) -> Value {
    let items: Vec<Value> = state
        .apps
        .apps
        .iter()
        .filter_map(|(id, app)| {
            let waiting = cairn_scheduler::apps::waiting(state, id, now)?;
            let left = waiting
                .backoff_until
                .map_or(0, |t| (t.as_micros() - now.as_micros()).max(0) / 1_000_000);
            Some(json!({
                "app": app_json(state, app, Embed::default()),
                "count": waiting.instances_to_launch,
                "delay": { "timeLeftSeconds": left, "overdue": left == 0 },
                "since": app.version.to_string(),
                "overdue": left == 0,
            }))
        })
        .collect();
    json!({ "queue": items })
}

/// A group and the groups below it, from the apps' path ids.
pub fn group_json(state: &Cluster, id: &str) -> Option<Value> {
    let prefix = if id == "/" {
        "/".to_owned()
    } else {
        format!("{id}/")
    };
    let mut apps = Vec::new();
    let mut children = std::collections::BTreeSet::new();
    for (app_id, app) in &state.apps.apps {
        let Some(rest) = app_id.as_str().strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            None => apps.push(app_json(state, app, Embed::default())),
            Some((child, _)) => {
                children.insert(format!("{prefix}{child}"));
            }
        }
    }
    if id != "/" && apps.is_empty() && children.is_empty() {
        return None;
    }
    let version = state
        .apps
        .apps
        .iter()
        .filter(|(a, _)| a.as_str().starts_with(&prefix))
        .map(|(_, app)| app.version)
        .max()
        .unwrap_or_default();
    Some(json!({
        "id": id,
        "apps": apps,
        "groups": children.iter().filter_map(|c| group_json(state, c)).collect::<Vec<_>>(),
        "dependencies": [],
        "version": version.to_string(),
        "pods": [],
    }))
}

// ---- Handlers. ----

async fn ping(headers: HeaderMap) -> Response {
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if json {
        json_of(json!("pong"))
    } else {
        ([(header::CONTENT_TYPE, "text/plain")], "pong").into_response()
    }
}

async fn info(State(c): State<Compat>, headers: HeaderMap) -> Response {
    let leader = crate::leader_address(&c.log, &headers);
    let port = leader
        .as_deref()
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    json_of(json!({
        "name": "marathon",
        "version": VERSION,
        "buildref": concat!("cairn ", env!("CARGO_PKG_VERSION")),
        "elected": c.log.leader_elsewhere().is_none(),
        "leader": leader,
        "frameworkId": cairn_scheduler::apps::FRAMEWORK,
        "marathon_config": {
            "framework_name": "cairn",
            "ha": true,
            "hostname": leader.as_deref().and_then(|l| l.rsplit_once(':')).map(|(h, _)| h),
            "master": leader,
            "mesos_role": "*",
        },
        "zookeeper_config": {},
        "http_config": { "http_port": port },
    }))
}

async fn leader(State(c): State<Compat>, headers: HeaderMap) -> Result<Response, Failure> {
    match crate::leader_address(&c.log, &headers) {
        Some(leader) => Ok(json_of(json!({ "leader": leader }))),
        None => Err(message(
            StatusCode::NOT_FOUND,
            "There is no leader at the moment",
        )),
    }
}

fn id_of(raw: &str) -> Result<AppId, Failure> {
    app_id(raw).map_err(|e| {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "message": "Object is not valid", "details": [{ "path": "/id", "errors": [e] }] }),
        }
    })
}

fn not_found(id: &AppId) -> Failure {
    message(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"))
}

async fn list_apps(State(c): State<Compat>, Query(params): Params) -> Response {
    let embed = Embed::of(&params);
    let (id, cmd) = (param(&params, "id"), param(&params, "cmd"));
    let state = c.projector.current().await;
    let apps: Vec<Value> = state
        .apps
        .apps
        .values()
        .filter(|app| id.is_none_or(|id| app.spec.id.as_str().contains(id)))
        .filter(|app| {
            cmd.is_none_or(|cmd| {
                app.spec
                    .command
                    .as_ref()
                    .and_then(|c| c.value.as_deref())
                    .is_some_and(|v| v.contains(cmd))
            })
        })
        .map(|app| app_json(&state, app, embed))
        .collect();
    json_of(json!({ "apps": apps }))
}

/// Reads an app definition from the body; every error at once, Marathon's 422.
fn definition(value: &Value) -> Result<cairn_log::event::AppSpec, Failure> {
    parse_app(value).map_err(unprocessable)
}

fn unprocessable(invalid: Invalid) -> Failure {
    Failure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!(invalid),
    }
}

async fn create_app(State(c): State<Compat>, request: Request) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "marathon");
    let value = body(request)
        .await
        .map_err(|e| message(StatusCode::BAD_REQUEST, e))?;
    let spec = definition(&value)?;
    let id = spec.id.clone();
    if let Err(e) = c
        .runner
        .put_apps(actor, vec![spec], Put::Create, false)
        .await
    {
        let state = c.projector.current().await;
        return Err(refused(e, &state, std::slice::from_ref(&id)));
    }
    let state = c.projector.current().await;
    let app = state.apps.apps.get(&id).ok_or_else(|| not_found(&id))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(app_json(&state, app, Embed::default())),
    )
        .into_response())
}

/// What follows the app id in `/v2/apps/{id}/…`.
enum Sub<'a> {
    App,
    Restart,
    Tasks,
    Task(&'a str),
    Versions,
    Version(&'a str),
}

/// Splits `/v2/apps/<path>` into the app id and what is asked of it.
fn split(path: &str) -> Result<(AppId, Sub<'_>), Failure> {
    let path = path.trim_matches('/');
    let (id, sub) = if let Some(id) = path.strip_suffix("/restart") {
        (id, Sub::Restart)
    } else if let Some(id) = path.strip_suffix("/tasks") {
        (id, Sub::Tasks)
    } else if let Some(id) = path.strip_suffix("/versions") {
        (id, Sub::Versions)
    } else if let Some((id, task)) = path.rsplit_once("/tasks/") {
        (id, Sub::Task(task))
    } else if let Some((id, version)) = path.rsplit_once("/versions/") {
        (id, Sub::Version(version))
    } else {
        (path, Sub::App)
    };
    Ok((id_of(id)?, sub))
}

async fn get_app_path(
    State(c): State<Compat>,
    Path(path): Path<String>,
) -> Result<Response, Failure> {
    let (id, sub) = split(&path)?;
    let state = c.projector.current().await;
    let app = state.apps.apps.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(match sub {
        Sub::App => {
            // One app comes with its tasks and last failure, as Marathon's does.
            let embed = Embed {
                tasks: true,
                last_task_failure: true,
            };
            json_of(json!({ "app": app_json(&state, app, embed) }))
        }
        Sub::Tasks => json_of(json!({ "tasks": app.instances.iter()
            .filter_map(|t| task_json(&state, t)).collect::<Vec<_>>() })),
        Sub::Versions => {
            let mut versions: Vec<String> =
                app.versions.iter().map(|v| v.version.to_string()).collect();
            versions.reverse();
            json_of(json!({ "versions": versions }))
        }
        Sub::Version(v) => {
            let at = Timestamp::parse_rfc3339(v).map_err(|e| {
                message(
                    StatusCode::NOT_FOUND,
                    format!("version {v:?} is not a time: {e}"),
                )
            })?;
            let spec = c
                .runner
                .spec_at(app, at)
                .map_err(|e| refused(e, &state, &[]))?;
            let mut out = to_marathon(&spec);
            out.insert("version".into(), json!(at.to_string()));
            json_of(Value::Object(out))
        }
        Sub::Restart | Sub::Task(_) => {
            return Err(message(StatusCode::METHOD_NOT_ALLOWED, "not with GET"))
        }
    })
}

/// `PUT`/`PATCH /v2/apps/{id}`: a partial update merged onto the app (Marathon's default),
/// or a scale (`{"instances": n}`) or a rollback (`{"version": v}`); creates a missing app.
async fn update_app_path(
    State(c): State<Compat>,
    Path(path): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let (id, Sub::App) = split(&path)? else {
        return Err(message(StatusCode::METHOD_NOT_ALLOWED, "not with PUT"));
    };
    let force = flag(&params, "force");
    let actor = cairn_graphql::actor(&request, "marathon");
    let value = body(request)
        .await
        .map_err(|e| message(StatusCode::BAD_REQUEST, e))?;
    let Value::Object(update) = value else {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "the body must be an app object",
        ));
    };
    let state = c.projector.current().await;
    let current = state.apps.apps.get(&id);
    let fallback = current.map(|a| a.version).unwrap_or_default();
    let keys: Vec<&str> = update
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "id")
        .collect();
    let result = match (current, keys.as_slice()) {
        (Some(_), ["instances"]) => {
            let n = update["instances"].as_u64().filter(|n| *n <= 1_000_000);
            let Some(n) = n else {
                return Err(Failure {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: json!({ "message": "Object is not valid", "details": [{ "path": "/instances", "errors": ["must be a whole number of at most 1000000"] }] }),
                });
            };
            drop(state);
            c.runner.scale_app(actor, id.clone(), n as u32, force).await
        }
        (Some(_), ["version"]) => {
            let v = update["version"].as_str().unwrap_or_default();
            let at = Timestamp::parse_rfc3339(v).map_err(|e| {
                message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("/version: {v:?}: {e}"),
                )
            })?;
            drop(state);
            c.runner.rollback_app(actor, id.clone(), at, force).await
        }
        _ => {
            let mut merged = current.map(|a| to_marathon(&a.spec)).unwrap_or_default();
            merged.extend(update);
            merged.insert("id".into(), json!(id));
            let spec = definition(&Value::Object(merged))?;
            drop(state);
            c.runner
                .put_apps(actor, vec![spec], Put::CreateOrUpdate, force)
                .await
        }
    };
    match result {
        Ok(result) => Ok(deployed(result, fallback)),
        Err(e) => Err(refused(e, &*c.projector.current().await, &[id])),
    }
}

async fn delete_app_path(
    State(c): State<Compat>,
    Path(path): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let (id, sub) = split(&path)?;
    let force = flag(&params, "force");
    let actor = cairn_graphql::actor(&request, "marathon");
    match sub {
        Sub::App => deploy(&c, &id, c.runner.delete_app(actor, id.clone(), force)).await,
        Sub::Task(task) => {
            let task =
                TaskId::new(task).map_err(|e| message(StatusCode::NOT_FOUND, e.to_string()))?;
            let killed = kill(&c, actor, &id, &[task], flag(&params, "scale"), force).await?;
            Ok(killed)
        }
        Sub::Tasks => {
            let host = param(&params, "host");
            let tasks: Vec<TaskId> = {
                let state = c.projector.current().await;
                let app = state.apps.apps.get(&id).ok_or_else(|| not_found(&id))?;
                app.instances
                    .iter()
                    .filter(|t| {
                        let agent = state
                            .tasks
                            .tasks
                            .get(*t)
                            .and_then(|t| state.cluster.agents.get(&t.agent_id));
                        host.is_none_or(|h| agent.is_some_and(|a| a.hostname == h))
                    })
                    .cloned()
                    .collect()
            };
            kill(&c, actor, &id, &tasks, flag(&params, "scale"), force).await
        }
        _ => Err(message(StatusCode::METHOD_NOT_ALLOWED, "not with DELETE")),
    }
}

/// Kills `tasks` of `app`; with `scale`, the app's instances go down by as many (one
/// deployment), else the tasks are answered as they were.
async fn kill(
    c: &Compat,
    actor: cairn_log::event::Actor,
    app: &AppId,
    tasks: &[TaskId],
    scale: bool,
    force: bool,
) -> Result<Response, Failure> {
    let before: Vec<Value> = {
        let state = c.projector.current().await;
        tasks.iter().filter_map(|t| task_json(&state, t)).collect()
    };
    if scale {
        let (instances, fallback) = {
            let state = c.projector.current().await;
            let a = state.apps.apps.get(app).ok_or_else(|| not_found(app))?;
            (a.spec.instances, a.version)
        };
        let n = instances.saturating_sub(tasks.len() as u32);
        let result = c
            .runner
            .scale_app(actor.clone(), app.clone(), n, force)
            .await;
        let result = result.map_err(|e| (e, app.clone()));
        return match result {
            Ok(result) => {
                for task in tasks {
                    kill_one(c, actor.clone(), task).await?;
                }
                Ok(deployed(result, fallback))
            }
            Err((e, app)) => Err(refused(e, &*c.projector.current().await, &[app])),
        };
    }
    for task in tasks {
        kill_one(c, actor.clone(), task).await?;
    }
    Ok(json_of(if before.len() == 1 && tasks.len() == 1 {
        json!({ "task": before[0] })
    } else {
        json!({ "tasks": before })
    }))
}

async fn kill_one(
    c: &Compat,
    actor: cairn_log::event::Actor,
    task: &TaskId,
) -> Result<(), Failure> {
    match c.runner.kill_task(actor, task.clone(), None).await {
        // Already ended: nothing left to kill, as Marathon answers.
        Ok(_) | Err(Error::Conflict(_)) => Ok(()),
        Err(e) => Err(refused(e, &*c.projector.current().await, &[])),
    }
}

async fn post_app_path(
    State(c): State<Compat>,
    Path(path): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let (id, Sub::Restart) = split(&path)? else {
        return Err(message(StatusCode::METHOD_NOT_ALLOWED, "not with POST"));
    };
    let actor = cairn_graphql::actor(&request, "marathon");
    let force = flag(&params, "force");
    deploy(&c, &id, c.runner.restart_app(actor, id.clone(), force)).await
}

async fn list_tasks(State(c): State<Compat>) -> Response {
    let state = c.projector.current().await;
    let tasks: Vec<Value> = state
        .apps
        .apps
        .values()
        .flat_map(|app| app.instances.iter())
        .filter_map(|t| task_json(&state, t))
        .collect();
    json_of(json!({ "tasks": tasks }))
}

/// `POST /v2/tasks/delete {"ids": [...]}`: kills the tasks, per app.
async fn kill_tasks(
    State(c): State<Compat>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "marathon");
    let value = body(request)
        .await
        .map_err(|e| message(StatusCode::BAD_REQUEST, e))?;
    let ids: Vec<TaskId> = value["ids"]
        .as_array()
        .ok_or_else(|| message(StatusCode::UNPROCESSABLE_ENTITY, "/ids: a list of task ids"))?
        .iter()
        .map(|id| {
            id.as_str()
                .and_then(|s| TaskId::new(s).ok())
                .ok_or_else(|| {
                    message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("/ids: {id} is not a task id"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let mut by_app: std::collections::BTreeMap<AppId, Vec<TaskId>> = Default::default();
    {
        let state = c.projector.current().await;
        for id in ids {
            match state.tasks.tasks.get(&id).map(|t| &t.owner) {
                Some(TaskOwner::App { app_id, .. }) => {
                    by_app.entry(app_id.clone()).or_default().push(id)
                }
                _ => {
                    return Err(message(
                        StatusCode::NOT_FOUND,
                        format!("Task '{id}' does not exist"),
                    ))
                }
            }
        }
    }
    for (app, tasks) in by_app {
        kill(
            &c,
            actor.clone(),
            &app,
            &tasks,
            flag(&params, "scale"),
            flag(&params, "force"),
        )
        .await?;
    }
    Ok(json_of(json!({})))
}

async fn list_deployments(State(c): State<Compat>) -> Response {
    let state = c.projector.current().await;
    json_of(Value::Array(
        running_deployments(&state, &[])
            .into_iter()
            .map(|(id, d)| deployment_json(id, d))
            .collect(),
    ))
}

/// Cancels a deployment: rolled back, or with `force` just stopped (then `202`, no body).
async fn cancel_deployment(
    State(c): State<Compat>,
    Path(id): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "marathon");
    let id = DeploymentId::new(id).map_err(|e| message(StatusCode::NOT_FOUND, e.to_string()))?;
    let force = flag(&params, "force");
    match c.runner.cancel_deployment(actor, id, !force).await {
        Ok(_) if force => {
            Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
        }
        Ok(result) => Ok(deployed(result, Timestamp::default())),
        Err(e) => Err(refused(e, &*c.projector.current().await, &[])),
    }
}

async fn queue(State(c): State<Compat>) -> Response {
    let now = c.runner.now();
    json_of(queue_json(&*c.projector.current().await, now))
}

/// `DELETE /v2/queue/{id}/delay`: the app's launch delay cleared; `204`, or Marathon's `404`
/// when the app has none.
async fn reset_delay(
    State(c): State<Compat>,
    Path(path): Path<String>,
    request: Request,
) -> Result<Response, Failure> {
    let Some(raw) = path.trim_end_matches('/').strip_suffix("/delay") else {
        return Err(message(
            StatusCode::NOT_FOUND,
            "DELETE /v2/queue/{appId}/delay",
        ));
    };
    let id = id_of(raw)?;
    let actor = cairn_graphql::actor(&request, "marathon");
    match c.runner.reset_backoff(actor, id.clone()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(Error::NotFound(_)) => Err(message(
            StatusCode::NOT_FOUND,
            format!("Application {id} not found in tasks queue."),
        )),
        Err(e) => Err(refused(e, &*c.projector.current().await, &[])),
    }
}

async fn root_group(State(c): State<Compat>) -> Response {
    json_of(group_json(&*c.projector.current().await, "/").unwrap_or(Value::Null))
}

async fn group(State(c): State<Compat>, Path(path): Path<String>) -> Result<Response, Failure> {
    let id = group_id(&path);
    let state = c.projector.current().await;
    group_json(&state, &id).map(json_of).ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            format!("Group '{id}' does not exist"),
        )
    })
}

/// A group's id from the path after `/v2/groups` (the root for none).
fn group_id(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

/// The apps under group `id` (every app, under the root).
fn apps_under(state: &Cluster, id: &str) -> Vec<AppId> {
    let prefix = format!("{}/", id.trim_end_matches('/'));
    state
        .apps
        .apps
        .keys()
        .filter(|a| a.as_str().starts_with(&prefix))
        .cloned()
        .collect()
}

/// The latest version among `apps`: a group's version.
fn version_of(state: &Cluster, apps: &[AppId]) -> Timestamp {
    apps.iter()
        .filter_map(|a| state.apps.apps.get(a))
        .map(|a| a.version)
        .max()
        .unwrap_or_default()
}

/// `POST /v2/groups`: a new group with its apps, in one deployment.
async fn create_group(
    State(c): State<Compat>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "marathon");
    let value = body(request)
        .await
        .map_err(|e| message(StatusCode::BAD_REQUEST, e))?;
    let (id, specs) = parse_group(&value, None).map_err(unprocessable)?;
    let exists = id == "/" || !apps_under(&*c.projector.current().await, &id).is_empty();
    if exists {
        return Err(message(
            StatusCode::CONFLICT,
            format!("Group {id} is already created. Use PUT to change this group."),
        ));
    }
    if specs.is_empty() {
        return Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("group {id} has no apps: cairn's groups are the apps under them, so an empty one is not kept"),
        ));
    }
    let ids: Vec<AppId> = specs.iter().map(|s| s.id.clone()).collect();
    match c
        .runner
        .put_apps(actor, specs, Put::Create, flag(&params, "force"))
        .await
    {
        Ok(result) => {
            let mut response = deployed(result, Timestamp::default());
            *response.status_mut() = StatusCode::CREATED;
            Ok(response)
        }
        Err(e) => Err(refused(e, &*c.projector.current().await, &ids)),
    }
}

/// `PUT /v2/groups/{id}` (the root without an id): the group becomes the definition given —
/// its apps created or updated, the others under it deleted (only among its own apps if `apps` is given, only
/// among its subgroups' if `groups` is) — or, with `scaleBy`, every app under it scaled by
/// the factor (rounded up); one deployment either way.
async fn update_group(
    State(c): State<Compat>,
    path: Option<Path<String>>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let id = group_id(path.as_ref().map_or("", |p| p.as_str()));
    let actor = cairn_graphql::actor(&request, "marathon");
    let value = body(request)
        .await
        .map_err(|e| message(StatusCode::BAD_REQUEST, e))?;
    let state = c.projector.current().await;
    let existing = apps_under(&state, &id);
    let fallback = version_of(&state, &existing);
    let (specs, remove) = if let Some(by) = value.get("scaleBy") {
        let Some(by) = by.as_f64().filter(|b| b.is_finite() && *b >= 0.0) else {
            return Err(Failure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({ "message": "Object is not valid", "details": [{ "path": "/scaleBy", "errors": ["must be a number of at least 0"] }] }),
            });
        };
        if existing.is_empty() {
            return Err(message(
                StatusCode::NOT_FOUND,
                format!("Group '{id}' does not exist"),
            ));
        }
        let specs = existing
            .iter()
            .map(|a| {
                let spec = &state.apps.apps[a].spec;
                let instances = (f64::from(spec.instances) * by).ceil().min(1_000_000.0) as u32;
                cairn_log::event::AppSpec {
                    instances,
                    ..(**spec).clone()
                }
            })
            .collect();
        (specs, Vec::new())
    } else if value.get("version").is_some() && value.get("apps").is_none() {
        return Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rolling a whole group back is not supported: roll back its apps (PUT /v2/apps/{id} with a version)",
        ));
    } else {
        let (_, specs) = parse_group(&value, Some(&id)).map_err(unprocessable)?;
        let kept: std::collections::BTreeSet<&AppId> = specs.iter().map(|s| &s.id).collect();
        // As Marathon applies a group update: `apps` left out keeps the group's own apps,
        // `groups` left out keeps its subgroups (marathon-python leaves out empty lists).
        let depth = id
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .count();
        let replaces = |a: &AppId| {
            let own = a.as_str().trim_matches('/').split('/').count() == depth + 1;
            value.get(if own { "apps" } else { "groups" }).is_some()
        };
        let remove: Vec<AppId> = existing
            .iter()
            .filter(|a| !kept.contains(a) && replaces(a))
            .cloned()
            .collect();
        (specs, remove)
    };
    drop(state);
    if specs.is_empty() && remove.is_empty() {
        return Ok(deployed(None, fallback));
    }
    replace(&c, actor, specs, remove, flag(&params, "force"), fallback).await
}

/// A group's change carried out, answered Marathon's way (the deployment, or the refusal
/// with the deployments in the way).
async fn replace(
    c: &Compat,
    actor: cairn_log::event::Actor,
    specs: Vec<cairn_log::event::AppSpec>,
    remove: Vec<AppId>,
    force: bool,
    fallback: Timestamp,
) -> Result<Response, Failure> {
    let touched: Vec<AppId> = specs
        .iter()
        .map(|s| s.id.clone())
        .chain(remove.iter().cloned())
        .collect();
    match c.runner.replace_apps(actor, specs, remove, force).await {
        Ok(result) => Ok(deployed(result, fallback)),
        Err(e) => Err(refused(e, &*c.projector.current().await, &touched)),
    }
}

/// `DELETE /v2/groups/{id}` (the root without an id): every app under the group deleted,
/// in one deployment.
async fn delete_group(
    State(c): State<Compat>,
    path: Option<Path<String>>,
    Query(params): Params,
    request: Request,
) -> Result<Response, Failure> {
    let id = group_id(path.as_ref().map_or("", |p| p.as_str()));
    let actor = cairn_graphql::actor(&request, "marathon");
    let (apps, fallback) = {
        let state = c.projector.current().await;
        let apps = apps_under(&state, &id);
        let version = version_of(&state, &apps);
        (apps, version)
    };
    if apps.is_empty() {
        return match id.as_str() {
            "/" => Ok(deployed(None, fallback)),
            _ => Err(message(
                StatusCode::NOT_FOUND,
                format!("Group '{id}' does not exist"),
            )),
        };
    }
    replace(
        &c,
        actor,
        Vec::new(),
        apps,
        flag(&params, "force"),
        fallback,
    )
    .await
}

/// `GET /metrics` as Marathon answers it to a client asking for JSON (marathon-python's
/// `get_metrics()`), from the master's OpenMetrics text: Dropwizard's shape, each counter
/// sample under `counters` as `{count}`, every other sample under `gauges` as `{value}`, keyed
/// by the sample's name and labels as written.
pub fn metrics_json(openmetrics: &str) -> Value {
    let mut counters = serde_json::Map::new();
    let mut gauges = serde_json::Map::new();
    let mut counter_families: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            if let Some((family, "counter")) = declared.split_once(' ') {
                counter_families.push(family);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let is_counter = counter_families.iter().any(|f| {
            name.strip_prefix(f)
                .is_some_and(|s| s.is_empty() || s == "_total")
        });
        if is_counter {
            counters.insert(series.to_owned(), json!({ "count": value }));
        } else {
            gauges.insert(series.to_owned(), json!({ "value": value }));
        }
    }
    json!({
        "version": "4.0.0",
        "counters": counters,
        "gauges": gauges,
        "histograms": {},
        "meters": {},
        "timers": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_become_dropwizard_counters_and_gauges() {
        let text = "# HELP cairn_appends Appends.\n# TYPE cairn_appends counter\n\
                    cairn_appends_total 12\n# TYPE cairn_log_head gauge\ncairn_log_head 40\n\
                    # TYPE cairn_latency histogram\ncairn_latency_bucket{le=\"0.1\"} 3\n\
                    cairn_latency_sum 0.2\n# EOF\n";
        assert_eq!(
            metrics_json(text),
            json!({
                "version": "4.0.0",
                "counters": { "cairn_appends_total": { "count": 12.0 } },
                "gauges": {
                    "cairn_log_head": { "value": 40.0 },
                    "cairn_latency_bucket{le=\"0.1\"}": { "value": 3.0 },
                    "cairn_latency_sum": { "value": 0.2 },
                },
                "histograms": {}, "meters": {}, "timers": {},
            })
        );
    }
}
