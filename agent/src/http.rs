//! The agent's own endpoints (port 5051 by default):
//!
//! | route | what |
//! |---|---|
//! | `GET /livez` | `ok` while the agent runs |
//! | `GET /state` | the agent's id, resources, isolation, tasks and undelivered updates |
//! | `GET /files/browse?path=P` | a sandbox directory's entries (Mesos' shape) |
//! | `GET /files/read?path=P&offset=N&length=M` | `{data, offset}`: part of a sandbox file; `offset=-1` gives its size |
//! | `GET /metrics` | Prometheus text |
//!
//! Paths are relative to the sandboxes' root (`<task-id>/stdout`); nothing outside it is
//! served. A read returns at most 1 MiB.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_log::event::TaskState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::agent::Shared;

/// Most bytes one `/files/read` returns.
pub const MAX_READ: u64 = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) launches: Counter,
    pub(crate) refused: Counter,
    running: Gauge,
    pending: Gauge,
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
        .route("/metrics", get(metrics))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the agent's server failed");
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let identity = shared.identity.lock().expect("identity").clone();
    let tasks: Vec<_> = shared
        .tasks
        .lock()
        .expect("tasks")
        .values()
        .cloned()
        .collect();
    let pending = shared.pending.lock().expect("pending").len();
    Json(serde_json::json!({
        "agent_id": identity.agent_id,
        "term": identity.term,
        "hostname": shared.config.hostname,
        "resources": shared.config.resources,
        "attributes": shared.config.attributes,
        "isolation": shared.isolation,
        "sandboxes": shared.sandboxes.root(),
        "leader": *shared.leader.borrow(),
        "tasks": tasks,
        "pending_updates": pending,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct PathQuery {
    path: String,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    length: Option<u64>,
}

/// `path` under the sandboxes' root, refusing anything that would leave it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    inside.then(|| root.join(relative))
}

fn outside(path: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("path: {path:?} must stay inside the sandboxes"),
    )
}

async fn browse(State(shared): State<Arc<Shared>>, Query(q): Query<PathQuery>) -> Response {
    let Some(dir) = resolve(shared.sandboxes.root(), &q.path) else {
        return outside(&q.path);
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return error(StatusCode::NOT_FOUND, format!("path: {}: {e}", q.path)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        use std::os::unix::fs::MetadataExt;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push(serde_json::json!({
            "path": format!("{}/{}", q.path.trim_end_matches('/'), name),
            "size": meta.len(),
            "mode": meta.mode(),
            "mtime": meta.mtime(),
            "nlink": meta.nlink(),
            "uid": meta.uid(),
            "gid": meta.gid(),
            "is_dir": meta.is_dir(),
        }));
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Json(out).into_response()
}

async fn read(State(shared): State<Arc<Shared>>, Query(q): Query<PathQuery>) -> Response {
    let Some(path) = resolve(shared.sandboxes.root(), &q.path) else {
        return outside(&q.path);
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => return error(StatusCode::NOT_FOUND, format!("path: {}: {e}", q.path)),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let offset = match q.offset {
        None => 0,
        Some(-1) => return Json(serde_json::json!({ "data": "", "offset": size })).into_response(),
        Some(o) if o < 0 => {
            return error(StatusCode::BAD_REQUEST, format!("offset: {o} is negative"))
        }
        Some(o) => (o as u64).min(size),
    };
    let length = q.length.unwrap_or(MAX_READ).min(MAX_READ);
    let mut data = Vec::new();
    let result = file
        .seek(SeekFrom::Start(offset))
        .and_then(|_| file.take(length).read_to_end(&mut data));
    if let Err(e) = result {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("path: {}: {e}", q.path),
        );
    }
    Json(serde_json::json!({
        "data": String::from_utf8_lossy(&data),
        "offset": offset,
    }))
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let running = shared
        .tasks
        .lock()
        .expect("tasks")
        .values()
        .filter(|t| matches!(t.state, TaskState::Starting | TaskState::Running))
        .count();
    shared.metrics.running.set(running as i64);
    let pending = shared.pending.lock().expect("pending").len();
    shared.metrics.pending.set(pending as i64);
    let mut registry = Registry::with_prefix("cairn_agent");
    registry.register(
        "launches",
        "Launch commands received",
        shared.metrics.launches.clone(),
    );
    registry.register(
        "commands_refused",
        "Commands refused because they came from a stale leader term",
        shared.metrics.refused.clone(),
    );
    registry.register(
        "tasks_running",
        "Tasks starting or running",
        shared.metrics.running.clone(),
    );
    registry.register(
        "status_updates_pending",
        "Status updates stored and not yet acknowledged",
        shared.metrics.pending.clone(),
    );
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
