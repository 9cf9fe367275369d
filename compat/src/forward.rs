//! Writes that reach a follower go to the leader, as Marathon and Chronos proxy them: the
//! old tools are pointed at any master (often through a load balancer) and keep working.
//!
//! Every request but `GET` and `HEAD` is forwarded when another master leads: method, path,
//! query, headers and body, with the caller's address in [`FORWARDED_FOR`] so the audit names
//! the caller, not this master. The answer, streams included (Mesos' `SUBSCRIBE`), comes back
//! as the leader sent it. Reads are answered here from this master's projections, after it
//! has caught up with what the leader had committed (read-your-writes). A request
//! already forwarded is never forwarded again: if leadership moved meanwhile, the handler's
//! own "not the leader" answer (503) is returned.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use cairn_graphql::FORWARDED_FOR;

use crate::{Compat, MAX_BODY};

/// Longest wait to connect to the leader; an answer itself may stream for as long as it lasts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that belong to one connection, not to the request or answer carried.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The HTTP client the forwards share.
#[derive(Clone)]
pub(crate) struct Forwarder(reqwest::Client);

impl Forwarder {
    pub(crate) fn new() -> Self {
        Forwarder(
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                // The leader's redirects (Mesos' `/master/redirect`) are the caller's to follow.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        )
    }
}

/// The middleware: forwards writes to the leader when this master follows.
pub(crate) async fn writes_to_leader(
    State(c): State<Compat>,
    request: Request,
    next: Next,
) -> Response {
    let Some(Some(leader)) = c.log.leader_elsewhere() else {
        // This master leads, or no leader is known (the handler says so).
        return next.run(request).await;
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        // Read here, once this master has folded every write the leader had committed: a
        // client that just wrote through any master reads its write back.
        let caught_up = async {
            c.log.sync_with_leader().await.map_err(|e| e.to_string())?;
            c.projector
                .wait_for(c.log.head())
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = caught_up.await {
            tracing::debug!(error = %e, "answering a read without catching up with the leader");
        }
        return next.run(request).await;
    }
    if request.headers().contains_key(FORWARDED_FOR) {
        return next.run(request).await;
    }
    match forward(&c, &leader, request).await {
        Ok(response) => response,
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

async fn forward(c: &Compat, leader: &str, request: Request) -> Result<Response, String> {
    let caller = request
        .headers()
        .get(FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string())
        });
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| format!("the body is over the limit of {MAX_BODY} bytes"))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = c
        .forwarder
        .0
        .request(parts.method, format!("http://{leader}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(caller) = caller {
        outgoing = outgoing.header(FORWARDED_FOR, caller);
    }
    let answer = outgoing.send().await.map_err(|e| {
        format!("this master follows, and the leader at {leader} cannot be reached: {e}")
    })?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    // A stream forwarded ends with this master, like the streams it serves itself.
    let stop = c.stop.clone();
    let stream = answer
        .bytes_stream()
        .take_until(async move { stop.cancelled().await });
    response
        .body(Body::from_stream(stream))
        .map_err(|e| e.to_string())
}
