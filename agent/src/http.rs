//! The agent's own endpoints (port 5051 by default):
//!
//! | route | what |
//! |---|---|
//! | `GET /livez` | `ok` while the agent runs |
//! | `GET /state` | the agent's id, resources, isolation, tasks, frameworks' executors and undelivered updates |
//! | `GET /slave(1)/state` (`.json`, `/state.json`) | Mesos' agent state: frameworks, executors, tasks (see `mesos`) |
//! | `GET /monitor/statistics` (`.json`) | each executor's CPU times, RSS and limits, Mesos' shape |
//! | `GET /files/browse?path=P` | a sandbox directory's entries (Mesos' shape) |
//! | `GET /files/read?path=P&offset=N&length=M` | `{data, offset}`: part of a sandbox file; `offset=-1` gives its size |
//! | `GET /files/download?path=P` | a sandbox file whole, as an attachment (as much as it held when asked) |
//! | `GET /metrics` | Prometheus text |
//! | `POST /api/v1/executor` | Mesos' executor API, for frameworks' own executors (see `executors`) |
//!
//! Paths are relative to the sandboxes' root (`<task-id>/stdout`), or absolute under it (as
//! the Mesos state's `directory` gives them); nothing outside it is served. The files routes
//! answer with a `.json` suffix too, as Mesos' did. A read returns at most 1 MiB.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
        .route("/files/browse.json", get(browse))
        .route("/files/read", get(read))
        .route("/files/read.json", get(read))
        .route("/files/download", get(download))
        .route("/files/download.json", get(download))
        .route("/slave(1)/state", get(crate::mesos::state))
        .route("/slave(1)/state.json", get(crate::mesos::state))
        .route("/state.json", get(crate::mesos::state))
        .route("/monitor/statistics", get(crate::mesos::statistics))
        .route("/monitor/statistics.json", get(crate::mesos::statistics))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/executor",
            post(crate::executors::call).layer(DefaultBodyLimit::max(crate::executors::MAX_CALL)),
        )
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
    let tasks = shared.task_records();
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
        "executors": shared.executor_sandboxes(),
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

/// `path` under the sandboxes' root, refusing anything that would leave it, symbolic links
/// included (a task controls what its sandbox holds): the path is resolved and must still
/// be under the resolved root.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("path: {path}: {e}"))?;
    // An absolute path under the root (the Mesos state's `directory`) is taken as such; any
    // other path is relative to the root.
    let relative = Path::new(path)
        .strip_prefix(&root)
        .map(Path::to_owned)
        .unwrap_or_else(|_| PathBuf::from(path.trim_start_matches('/')));
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let outside = || format!("path: {path:?} must stay inside the sandboxes");
    if !plain {
        return Err(outside());
    }
    let resolved = root
        .join(relative)
        .canonicalize()
        .map_err(|e| format!("path: {path}: {e}"))?;
    if resolved.starts_with(&root) {
        Ok(resolved)
    } else {
        Err(outside())
    }
}

fn refused(message: String) -> Response {
    let status = if message.contains("inside the sandboxes") || message.starts_with("offset:") {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::NOT_FOUND
    };
    error(status, message)
}

async fn browse(State(shared): State<Arc<Shared>>, Query(q): Query<PathQuery>) -> Response {
    let root = shared.sandboxes.root().to_owned();
    // Directory walks are blocking file I/O: off the runtime's workers.
    let listed = tokio::task::spawn_blocking(move || list(&root, &q.path)).await;
    match listed {
        Ok(Ok(entries)) => Json(entries).into_response(),
        Ok(Err(message)) => refused(message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn list(root: &Path, path: &str) -> Result<Vec<serde_json::Value>, String> {
    use std::os::unix::fs::MetadataExt;
    let dir = resolve(root, path)?;
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("path: {path}: {e}"))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        // The entry itself, not what a link in it points to.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let uid = nix::unistd::User::from_uid(meta.uid().into())
            .ok()
            .flatten()
            .map_or_else(|| meta.uid().to_string(), |u| u.name);
        let gid = nix::unistd::Group::from_gid(meta.gid().into())
            .ok()
            .flatten()
            .map_or_else(|| meta.gid().to_string(), |g| g.name);
        out.push(serde_json::json!({
            "path": format!("{}/{}", path.trim_end_matches('/'), name),
            "size": meta.len(),
            "mode": mode_string(meta.mode(), meta.is_dir(), meta.is_symlink()),
            "mtime": meta.mtime(),
            "nlink": meta.nlink(),
            "uid": uid,
            "gid": gid,
            "is_dir": meta.is_dir(),
        }));
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(out)
}

/// `ls -l`'s mode column (`drwxr-xr-x`), as Mesos' browse writes it.
fn mode_string(mode: u32, dir: bool, link: bool) -> String {
    let kind = if dir {
        'd'
    } else if link {
        'l'
    } else {
        '-'
    };
    let bits =
        "rwxrwxrwx".chars().enumerate().map(
            |(i, c)| {
                if mode & (1 << (8 - i)) != 0 {
                    c
                } else {
                    '-'
                }
            },
        );
    std::iter::once(kind).chain(bits).collect()
}

async fn read(State(shared): State<Arc<Shared>>, Query(q): Query<PathQuery>) -> Response {
    let root = shared.sandboxes.root().to_owned();
    let read = tokio::task::spawn_blocking(move || read_part(&root, &q)).await;
    match read {
        Ok(Ok(part)) => Json(part).into_response(),
        Ok(Err(message)) => refused(message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A regular file in the sandboxes (a FIFO or device a task made would block or never end),
/// open, with its size and name.
fn open_file(root: &Path, path: &str) -> Result<(std::fs::File, u64, String), String> {
    let resolved = resolve(root, path)?;
    let meta = std::fs::metadata(&resolved).map_err(|e| format!("path: {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("path: {path} is not a regular file"));
    }
    let file = std::fs::File::open(&resolved).map_err(|e| format!("path: {path}: {e}"))?;
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((file, meta.len(), name))
}

fn read_part(root: &Path, q: &PathQuery) -> Result<serde_json::Value, String> {
    let (mut file, size, _) = open_file(root, &q.path)?;
    let offset = match q.offset {
        None => 0,
        Some(-1) => return Ok(serde_json::json!({ "data": "", "offset": size })),
        Some(o) if o < 0 => return Err(format!("offset: {o} is negative")),
        Some(o) => (o as u64).min(size),
    };
    let length = q.length.unwrap_or(MAX_READ).min(MAX_READ);
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.take(length).read_to_end(&mut data))
        .map_err(|e| format!("path: {}: {e}", q.path))?;
    Ok(serde_json::json!({
        "data": String::from_utf8_lossy(&data),
        "offset": offset,
    }))
}

/// The whole file, streamed; a file still growing (a task's stdout) is sent as long as it was
/// when asked, so that the length announced holds.
async fn download(State(shared): State<Arc<Shared>>, Query(q): Query<PathQuery>) -> Response {
    use tokio::io::AsyncReadExt;
    let root = shared.sandboxes.root().to_owned();
    let path = q.path.clone();
    let opened = tokio::task::spawn_blocking(move || open_file(&root, &path)).await;
    match opened {
        Ok(Ok((file, size, name))) => {
            let body =
                tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file).take(size));
            // The name comes from the task's sandbox: keep it to plain characters in the header.
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, size.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
        Ok(Err(message)) => refused(message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_string(0o755, true, false), "drwxr-xr-x");
        assert_eq!(mode_string(0o100644, false, false), "-rw-r--r--");
        assert_eq!(mode_string(0o777, false, true), "lrwxrwxrwx");
    }

    #[test]
    fn paths_resolve_inside_the_sandboxes_only_relative_or_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sandboxes");
        std::fs::create_dir_all(root.join("t1")).unwrap();
        std::fs::write(root.join("t1/stdout"), "hi").unwrap();
        let file = root.canonicalize().unwrap().join("t1/stdout");
        assert_eq!(resolve(&root, "t1/stdout").unwrap(), file);
        assert_eq!(resolve(&root, "/t1/stdout").unwrap(), file);
        // The Mesos state's `directory` is absolute.
        assert_eq!(resolve(&root, file.to_str().unwrap()).unwrap(), file);
        for outside in ["../sandboxes/t1/stdout", "/etc/passwd", "t1/../../x"] {
            assert!(resolve(&root, outside).is_err(), "{outside}");
        }
        let escape = format!("{}/../x", root.canonicalize().unwrap().display());
        assert!(resolve(&root, &escape).unwrap_err().contains("inside"));
    }
}
