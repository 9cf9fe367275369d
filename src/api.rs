//! The log's client API and cluster membership, over HTTP+JSON on the master's port.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/log/append` | body: a JSON array of `{actor, event}`; answers the `Appended` offsets once durable on a quorum. Any master accepts it (followers forward to the leader). |
//! | `GET /v1/log/events?from=N&limit=M&linearizable=true` | NDJSON records; `linearizable` waits until this master has applied everything committed when the read began |
//! | `GET /v1/cluster/status` | this master's view: role, term, indexes, members, lag |
//! | `POST /v1/cluster/members` | body `{node_id, address}`: add a master (leader only) |
//! | `DELETE /v1/cluster/members/{id}` | remove a master (leader only) |
//! | `GET /v1/state?as_of=N\|RFC3339` | the whole projected state, as folded (canonical JSON: byte-identical on every master at the same offset); the live one without `as_of` |
//!
//! Errors are `{"error": "…"}` with 422 (the request is wrong), 413 (too large), 404 (past
//! the log's head), 503 (no leader reachable; retry) or 500.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cairn_log::engine::Log;
use cairn_log::event::{Entry, Timestamp};
use cairn_log::{Error, Offset};
use cairn_projections::live::Projector;
use serde::Deserialize;

/// Largest request body: the log's own limit on an append (8 MiB encoded), plus room for
/// JSON whitespace.
const MAX_BODY: usize = 16 << 20;
/// Most records per `GET /v1/log/events`.
const MAX_READ: usize = 10_000;

/// `GET /v1/state`.
pub fn state_routes(projector: Projector) -> Router {
    Router::new()
        .route("/v1/state", get(state))
        .with_state(projector)
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    as_of: Option<String>,
}

async fn state(State(projector): State<Projector>, Query(q): Query<StateQuery>) -> Response {
    let unprocessable = |message: String| {
        let body = Json(serde_json::json!({ "error": message }));
        (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
    };
    let view = match q.as_of.as_deref() {
        None => projector.current().await,
        Some(as_of) => {
            let offset = match as_of.parse::<u64>() {
                Ok(offset) => Ok(offset),
                Err(_) => match Timestamp::parse_rfc3339(as_of) {
                    Ok(time) => projector.offset_at(time),
                    Err(_) => {
                        return unprocessable(format!(
                            "as_of: {as_of:?} is neither an offset nor an RFC 3339 time"
                        ))
                    }
                },
            };
            match offset {
                Ok(offset) => match projector.as_of(offset).await {
                    Ok(view) => view,
                    Err(e) => return projection_error(e),
                },
                Err(e) => return projection_error(e),
            }
        }
    };
    match serde_json::to_vec(&*view) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn projection_error(e: cairn_projections::live::Error) -> Response {
    let status = match e {
        cairn_projections::live::Error::Beyond { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

pub fn routes(log: Log) -> Router {
    Router::new()
        .route("/v1/log/append", post(append))
        .route("/v1/log/events", get(events))
        .route("/v1/cluster/status", get(status))
        .route("/v1/cluster/members", post(add_member))
        .route("/v1/cluster/members/{id}", delete(remove_member))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(log)
}

struct ApiError(Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::EmptyBatch | Error::Encode(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BatchTooLarge { .. }
            | Error::RecordTooLarge { .. }
            | Error::AppendTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotLeader { .. } | Error::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.0.to_string() })),
        )
            .into_response()
    }
}

async fn append(
    State(log): State<Log>,
    Json(entries): Json<Vec<Entry>>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(log.append(entries).await.map_err(ApiError)?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default = "one")]
    from: u64,
    #[serde(default = "max_read")]
    limit: usize,
    #[serde(default)]
    linearizable: bool,
}

fn one() -> u64 {
    1
}

fn max_read() -> usize {
    MAX_READ
}

async fn events(
    State(log): State<Log>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let from = Offset::new(q.from).ok_or(ApiError(Error::Corrupt {
        offset: 0,
        detail: "from: must be at least 1".into(),
    }))?;
    if q.linearizable {
        log.sync_with_leader().await.map_err(ApiError)?;
    }
    let records = log.read(from, q.limit.min(MAX_READ)).map_err(ApiError)?;
    let mut body = Vec::new();
    for record in &records {
        serde_json::to_writer(&mut body, record).map_err(|e| ApiError(Error::Encode(e)))?;
        body.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn status(State(log): State<Log>) -> impl IntoResponse {
    Json(log.status())
}

#[derive(Debug, Deserialize)]
struct NewMember {
    node_id: u64,
    address: String,
}

async fn add_member(
    State(log): State<Log>,
    Json(m): Json<NewMember>,
) -> Result<impl IntoResponse, ApiError> {
    log.add_member(m.node_id, m.address)
        .await
        .map_err(ApiError)?;
    Ok(Json(log.status()))
}

async fn remove_member(
    State(log): State<Log>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    log.remove_member(id).await.map_err(ApiError)?;
    Ok(Json(log.status()))
}
