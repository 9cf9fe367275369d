//! A request that must be answered by the leader, sent there from a follower: the compatible
//! APIs' writes and GraphQL mutations. The caller's address travels in [`FORWARDED_FOR`] so
//! the audit names the caller, not the follower; the answer, a stream included, comes back
//! as the leader sent it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderName};
use axum::response::Response;
use futures_util::StreamExt;

/// The caller's address, set by a master that forwards a request to the leader; trusted as
/// `x-cairn-user` is until cairn has authentication (masters listen on loopback only).
pub const FORWARDED_FOR: &str = "x-cairn-forwarded-for";

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

/// The HTTP client forwards share.
#[derive(Clone, Debug)]
pub struct Forwarder(reqwest::Client);

impl Default for Forwarder {
    fn default() -> Self {
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

/// Whether the request was forwarded by a master already (it is never forwarded twice).
pub fn was_forwarded(parts: &Parts) -> bool {
    parts.headers.contains_key(FORWARDED_FOR)
}

impl Forwarder {
    /// Sends the request (`parts` and its read `body`) to the leader at `leader` and answers
    /// what it answers; the answer's body ends early when `stop` completes.
    pub async fn forward(
        &self,
        leader: &str,
        parts: &Parts,
        body: Bytes,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Response, String> {
        let caller = parts
            .headers
            .get(FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.to_string())
            });
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut outgoing = self
            .0
            .request(parts.method.clone(), format!("http://{leader}{path}"))
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
        let stream = answer.bytes_stream().take_until(stop);
        response
            .body(Body::from_stream(stream))
            .map_err(|e| e.to_string())
    }
}
