//! The master's side of the agent protocol (`cairn_log::protocol`), over HTTP+JSON:
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/agents/register` | register or re-register; answers the agent id and the leader's term |
//! | `GET /v1/agents/{id}/commands` | the agent's command stream: NDJSON envelopes until the leader steps down |
//! | `POST /v1/agents/{id}/status` | a batch of status updates (at most 100); answers each with the offset it was logged at |
//!
//! A follower answers `307 Temporary Redirect` to the leader (the agent's HTTP client follows
//! it, body and all), or 503 when no leader is known. Other errors are `{"error": "…"}` with
//! 422 (bad input), 404 (unknown agent: register again) or 500.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_log::event::AgentId;
use cairn_log::protocol::{ErrorBody, Register, StatusUpdate};
use cairn_scheduler::{Error, Runner};

/// Largest registration or status body: 100 updates, or 100,000 known tasks.
const MAX_BODY: usize = 16 << 20;

pub fn routes(runner: Runner) -> Router {
    Router::new()
        .route("/v1/agents/register", post(register))
        .route("/v1/agents/{id}/commands", get(commands))
        .route("/v1/agents/{id}/status", post(status))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(runner)
}

/// The answer to a runner error; a follower redirects to the leader, same path.
pub fn error_response(e: &Error, uri: &Uri) -> Response {
    let status = match e {
        Error::NotLeader {
            leader: Some(leader),
        } => {
            let location = format!(
                "http://{leader}{}",
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
                Json(ErrorBody {
                    error: e.to_string(),
                    leader: Some(leader.clone()),
                }),
            )
                .into_response();
        }
        Error::NotLeader { leader: None } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Invalid(_) | Error::Unplaceable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Log(_) | Error::Projection(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = ErrorBody {
        error: e.to_string(),
        leader: None,
    };
    (status, Json(body)).into_response()
}

fn bad_agent_id(e: cairn_log::event::IdError) -> Response {
    let body = ErrorBody {
        error: format!("agent id: {e}"),
        leader: None,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

async fn register(
    State(runner): State<Runner>,
    uri: Uri,
    Json(request): Json<Register>,
) -> Response {
    match runner.register(request).await {
        Ok(registered) => Json(registered).into_response(),
        Err(e) => error_response(&e, &uri),
    }
}

async fn commands(State(runner): State<Runner>, uri: Uri, Path(id): Path<String>) -> Response {
    let agent_id = match AgentId::new(id) {
        Ok(id) => id,
        Err(e) => return bad_agent_id(e),
    };
    let receiver = match runner.commands(agent_id).await {
        Ok(receiver) => receiver,
        Err(e) => return error_response(&e, &uri),
    };
    let lines = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let envelope = receiver.recv().await?;
        let mut line = serde_json::to_vec(&envelope).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn status(
    State(runner): State<Runner>,
    uri: Uri,
    Path(id): Path<String>,
    Json(updates): Json<Vec<StatusUpdate>>,
) -> Response {
    let agent_id = match AgentId::new(id) {
        Ok(id) => id,
        Err(e) => return bad_agent_id(e),
    };
    match runner.statuses(agent_id, updates).await {
        Ok(acks) => Json(acks).into_response(),
        Err(e) => error_response(&e, &uri),
    }
}
