//! Chronos' REST API, under both `/scheduler` (Chronos 2) and `/v1/scheduler` (Chronos 3):
//! jobs in and out as Chronos writes them, runs now, kills, statistics and the dependency
//! graph. Writes answer `204 No Content` (chronos-python takes a `200` with an empty body for
//! an error); errors are Chronos 3's `{"status", "message"}`.
//!
//! Departures, on purpose: deleting a job that other jobs name as a parent is refused (Chronos
//! rewires the children silently, turning dependent jobs into scheduled ones); `PUT job/{name}`
//! with `arguments` is refused (a run has the job's own arguments).

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use cairn_log::event::{wire, JobName, TaskState, Timestamp};
use cairn_projections::jobs::{quantile, Job};
use cairn_projections::State as Cluster;
use cairn_scheduler::chronos::{job_name, parse_job, to_chronos};
use cairn_scheduler::deployments::Put;
use cairn_scheduler::runner::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{body, Compat, Failure};

/// Most jobs `jobs/search` answers with, whatever `limit` asks.
pub const MAX_SEARCH: usize = 1_000;

pub(crate) fn routes() -> Router<Compat> {
    let api = Router::new()
        .route("/jobs", get(jobs))
        .route("/jobs/search", get(search))
        .route("/iso8601", post(put_scheduled).put(put_scheduled))
        .route("/dependency", post(put_dependent).put(put_dependent))
        .route("/job/{name}", get(job).put(run).delete(remove))
        .route("/job/stat/{name}", get(stat))
        .route("/task/kill/{name}", delete(kill))
        .route("/stats/{percentile}", get(stats))
        .route("/graph/dot", get(dot))
        .route("/graph/csv", get(csv));
    Router::new()
        .nest("/scheduler", api.clone())
        .nest("/v1/scheduler", api)
}

/// Chronos' error body.
fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        body: json!({"status": status.to_string(), "message": message.into()}),
    }
}

/// What the runner refused, Chronos' way: a bad request, nothing there, a conflict, or no
/// leader here.
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Invalid(_) | Error::Unplaceable(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Log(_) | Error::Projection(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure {
            status,
            body: serde_json::json!({"status": status.to_string(), "message": e.to_string()}),
        }
    }
}

fn done() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A job as Chronos lists it: its definition and the counters Chronos keeps.
pub fn job_json(job: &Job) -> Value {
    let mut out = to_chronos(&job.spec);
    let time = |t: Option<Timestamp>| Value::from(t.map(|t| t.to_string()).unwrap_or_default());
    out.insert("successCount", Value::from(job.success_count));
    out.insert("errorCount", Value::from(job.error_count));
    // Strings, "" when never: chronos-nagios compares them as strings.
    out.insert("lastSuccess", time(job.last_success));
    out.insert("lastError", time(job.last_error));
    out.insert("async", Value::from(false));
    json!(out)
}

fn name_of(raw: &str) -> Result<JobName, Failure> {
    job_name(raw).map_err(|e| failure(StatusCode::BAD_REQUEST, e))
}

fn get_job<'a>(state: &'a Cluster, name: &JobName) -> Result<&'a Job, Failure> {
    state
        .jobs
        .jobs
        .get(name)
        .ok_or_else(|| failure(StatusCode::NOT_FOUND, format!("job '{name}' not found")))
}

async fn jobs(State(c): State<Compat>) -> Response {
    let state = c.projector.current().await;
    let jobs: Vec<Value> = state.jobs.jobs.values().map(job_json).collect();
    axum::Json(jobs).into_response()
}

#[derive(Deserialize)]
struct Search {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Case-insensitive substrings of the name, the command, or (`any`) either.
async fn search(State(c): State<Compat>, Query(q): Query<Search>) -> Response {
    let lower = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase());
    let (name, command, any) = (lower(&q.name), lower(&q.command), lower(&q.any));
    let state = c.projector.current().await;
    let found: Vec<Value> = state
        .jobs
        .jobs
        .values()
        .filter(|job| {
            let (n, cmd) = (
                job.spec.name.as_str().to_lowercase(),
                job.spec.command.to_lowercase(),
            );
            name.as_ref().is_none_or(|s| n.contains(s))
                && command.as_ref().is_none_or(|s| cmd.contains(s))
                && any
                    .as_ref()
                    .is_none_or(|s| n.contains(s) || cmd.contains(s))
        })
        .skip(q.offset.unwrap_or(0))
        .take(q.limit.unwrap_or(10).min(MAX_SEARCH))
        .map(job_json)
        .collect();
    axum::Json(found).into_response()
}

async fn job(State(c): State<Compat>, Path(name): Path<String>) -> Result<Response, Failure> {
    let name = name_of(&name)?;
    let state = c.projector.current().await;
    Ok(axum::Json(job_json(get_job(&state, &name)?)).into_response())
}

async fn put_scheduled(State(c): State<Compat>, request: Request) -> Result<Response, Failure> {
    put(c, request, false).await
}

async fn put_dependent(State(c): State<Compat>, request: Request) -> Result<Response, Failure> {
    put(c, request, true).await
}

/// Creates or replaces a job (Chronos 2's `PUT` updates only, as it did).
async fn put(c: Compat, request: Request, dependent: bool) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "chronos");
    let mode = if request.method() == Method::PUT {
        Put::Update
    } else {
        Put::CreateOrUpdate
    };
    let definition = body(request)
        .await
        .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    let spec = parse_job(&definition).map_err(|invalid| {
        let details: Vec<String> = invalid
            .details
            .iter()
            .map(|d| format!("{}: {}", d.path, d.errors.join("; ")))
            .collect();
        failure(StatusCode::BAD_REQUEST, details.join(", "))
    })?;
    if dependent && spec.parents.is_empty() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "/parents: a dependent job needs parents (a scheduled one goes to iso8601)",
        ));
    }
    if !dependent && spec.schedule.is_none() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "/schedule: is required here (a dependent job goes to dependency)",
        ));
    }
    c.runner.put_job(actor, spec, mode).await?;
    Ok(done())
}

#[derive(Deserialize)]
struct RunArgs {
    arguments: Option<String>,
}

/// Runs the job now.
async fn run(
    State(c): State<Compat>,
    Path(name): Path<String>,
    Query(args): Query<RunArgs>,
    request: Request,
) -> Result<Response, Failure> {
    if args.arguments.is_some_and(|a| !a.is_empty()) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "arguments: runs take the job's own arguments; change the job to change them",
        ));
    }
    let actor = cairn_graphql::actor(&request, "chronos");
    c.runner.run_job(actor, name_of(&name)?).await?;
    Ok(done())
}

async fn remove(
    State(c): State<Compat>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "chronos");
    c.runner.delete_job(actor, name_of(&name)?).await?;
    Ok(done())
}

async fn kill(
    State(c): State<Compat>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Failure> {
    let actor = cairn_graphql::actor(&request, "chronos");
    c.runner.kill_job_runs(actor, name_of(&name)?).await?;
    Ok(done())
}

async fn stat(State(c): State<Compat>, Path(name): Path<String>) -> Result<Response, Failure> {
    let name = name_of(&name)?;
    let state = c.projector.current().await;
    get_job(&state, &name)?;
    Ok(axum::Json(stat_json(&state, &name)).into_response())
}

/// A job's run durations (seconds) and the attempts of its runs still kept.
pub fn stat_json(state: &Cluster, name: &JobName) -> Value {
    let secs = state.jobs.durations(name);
    let mean = (!secs.is_empty()).then(|| secs.iter().sum::<f64>() / secs.len() as f64);
    let mut history = Vec::new();
    for (_, run) in state.jobs.runs_of(name) {
        for attempt in &run.attempts {
            let Some(task_id) = &attempt.task_id else {
                continue;
            };
            let task = state.tasks.tasks.get(task_id);
            let end = task.filter(|t| t.is_terminal()).map(|t| t.updated_at);
            let start = attempt.started_at;
            history.push(json!({
                "taskId": task_id,
                "jobName": name,
                "slaveId": task.map(|t| t.agent_id.to_string()).unwrap_or_default(),
                "startTime": start.map(|t| t.to_string()),
                "endTime": end.map(|t| t.to_string()),
                "duration": start
                    .zip(end)
                    .map(|(s, e)| (e.as_micros() - s.as_micros()) as f64 / 1e6),
                "status": task.map(|t| wire(&t.state)),
                "numElementsProcessed": Value::Null,
            }));
        }
    }
    json!({
        "histogram": {
            "75thPercentile": quantile(&secs, 0.75),
            "95thPercentile": quantile(&secs, 0.95),
            "98thPercentile": quantile(&secs, 0.98),
            "99thPercentile": quantile(&secs, 0.99),
            "median": quantile(&secs, 0.5),
            "mean": mean,
            "count": secs.len(),
        },
        "taskStatHistory": history,
    })
}

async fn stats(
    State(c): State<Compat>,
    Path(percentile): Path<String>,
) -> Result<Response, Failure> {
    let state = c.projector.current().await;
    let out = stats_json(&state, &percentile).map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    Ok(axum::Json(out).into_response())
}

/// Each job's run time at one statistic (`99thPercentile`, …, `median`, `mean`), in seconds,
/// longest first; jobs without finished runs are left out.
pub fn stats_json(state: &Cluster, statistic: &str) -> Result<Value, String> {
    let q = match statistic {
        "99thPercentile" => Some(0.99),
        "98thPercentile" => Some(0.98),
        "95thPercentile" => Some(0.95),
        "75thPercentile" => Some(0.75),
        "median" => Some(0.5),
        "mean" => None,
        other => {
            return Err(format!(
                "{other:?} is not a statistic: 99thPercentile, 98thPercentile, \
                 95thPercentile, 75thPercentile, median or mean"
            ))
        }
    };
    let mut times: Vec<(f64, &JobName)> = state
        .jobs
        .jobs
        .keys()
        .filter_map(|name| {
            let secs = state.jobs.durations(name);
            let time = match q {
                Some(q) => quantile(&secs, q)?,
                None if secs.is_empty() => return None,
                None => secs.iter().sum::<f64>() / secs.len() as f64,
            };
            Some((time, name))
        })
        .collect();
    times.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    Ok(times
        .into_iter()
        .map(|(time, name)| json!({"jobNameLabel": name, "time": time}))
        .collect())
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn dot(State(c): State<Compat>) -> Response {
    text(c.projector.current().await.jobs.dot())
}

async fn csv(State(c): State<Compat>) -> Response {
    text(graph_csv(&*c.projector.current().await))
}

/// `node,<name>,<fresh|success|failure>,<idle|queued|running>` per job, then
/// `link,<parent>,<child>` per edge.
pub fn graph_csv(state: &Cluster) -> String {
    let mut out = String::new();
    for (name, job) in &state.jobs.jobs {
        let last = match (job.last_success, job.last_error) {
            (None, None) => "fresh",
            (success, error) if success >= error => "success",
            _ => "failure",
        };
        let running = job.active_runs.iter().any(|run| {
            let task = state.jobs.runs.get(run).and_then(|r| r.attempts.last());
            let task = task.and_then(|a| a.task_id.as_ref());
            task.and_then(|t| state.tasks.tasks.get(t))
                .is_some_and(|t| t.state == TaskState::Running)
        });
        let now = match (running, job.active_runs.is_empty()) {
            (true, _) => "running",
            (false, false) => "queued",
            (false, true) => "idle",
        };
        out.push_str(&format!("node,{name},{last},{now}\n"));
    }
    for (parent, child) in state.jobs.edges() {
        out.push_str(&format!("link,{parent},{child}\n"));
    }
    out
}
