//! `cairn-compat`: the Marathon `/v2`, Chronos `/scheduler` and Mesos master/agent HTTP APIs,
//! so that existing clients work against cairn unchanged.
//!
//! **Status.** Chronos' REST API ([`chronos`]), Marathon's ([`marathon`]) and the Mesos
//! master's read endpoints ([`mesos`]), its v1 scheduler API ([`mesos_scheduler`]) and operator
//! API ([`mesos_operator`]); the agent's endpoints follow (#9).
//!
//! **Boundary.** HTTP translation only. Reads come from the live projections; every write goes
//! through the same [`Runner`] calls as the GraphQL mutations, with the caller as the actor
//! (`origin.api` names the API), so history, audit and time travel cover them. Depends on
//! `cairn-projections`, `cairn-scheduler`, `cairn-log`, and `cairn-graphql` for the one way
//! a caller is named.
//!
//! **Followers.** A write (any method but `GET`/`HEAD`) that reaches a follower is forwarded
//! to the leader and its answer streamed back (`forward.rs`); a read is answered locally once
//! this master has folded what the leader had committed.
//!
//! **Invariants.** No logic of its own: what a change means is decided by the scheduler's
//! deciders, what the state is by the projections. A refused change changes nothing and
//! answers with the product's own error shape.
//!
//! **Limits.** Request bodies: [`MAX_BODY`] bytes; search results: [`chronos::MAX_SEARCH`].

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use cairn_log::engine::{Follow, Log};
use cairn_log::{Offset, Record};
use cairn_projections::live::Projector;
use cairn_scheduler::Runner;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod chronos;
mod forward;
pub mod marathon;
pub mod marathon_events;
pub mod mesos;
pub mod mesos_operator;
pub mod mesos_scheduler;

/// Largest request body accepted (a job or an app definition).
pub const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct Compat {
    projector: Projector,
    runner: Runner,
    log: Log,
    sessions: mesos_scheduler::Sessions,
    forwarder: cairn_graphql::forward::Forwarder,
    /// The master is stopping: streams end, so that they never hold up its graceful stop.
    stop: CancellationToken,
}

impl Compat {
    /// Follows the log from `from` until the master stops.
    pub(crate) fn follow(&self, from: u64) -> cairn_log::Result<Following> {
        Ok(Following {
            follow: self
                .log
                .follow(Offset::new(from).expect("offsets start at 1"))?,
            stop: self.stop.clone(),
        })
    }
}

/// A log subscription that ends when the master stops.
pub(crate) struct Following {
    follow: Follow,
    stop: CancellationToken,
}

impl Following {
    /// The next record; `None` once the master stops or the log closes.
    pub(crate) async fn next(&mut self) -> Option<cairn_log::Result<Record>> {
        tokio::select! {
            () = self.stop.cancelled() => None,
            record = self.follow.next() => record,
        }
    }
}

/// The compatible APIs over a projector, the runner and the log (for who leads, and for the
/// streams); their streams end when `stop` is cancelled.
pub fn router(projector: Projector, runner: Runner, log: Log, stop: CancellationToken) -> Router {
    let compat = Compat {
        projector,
        runner,
        log,
        sessions: mesos_scheduler::Sessions::default(),
        forwarder: cairn_graphql::forward::Forwarder::default(),
        stop,
    };
    chronos::routes()
        .merge(marathon::routes())
        .merge(mesos::routes())
        .merge(mesos_scheduler::routes())
        .merge(mesos_operator::routes())
        .layer(axum::middleware::from_fn_with_state(
            compat.clone(),
            forward::writes_to_leader,
        ))
        .with_state(compat)
}

/// A refused request: the status and the product's own error body.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The leading master's address: this one's as the client reached it (`Host`), or the
/// other's; `None` while no leader is known.
pub(crate) fn leader_address(log: &Log, headers: &axum::http::HeaderMap) -> Option<String> {
    match log.leader_elsewhere() {
        Some(other) => other,
        None => headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
    }
}

/// The request's JSON body, at most [`MAX_BODY`] bytes.
pub(crate) async fn body(request: Request) -> Result<Value, String> {
    let bytes = to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| format!("the body is over the limit of {MAX_BODY} bytes"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the body is not JSON: {e}"))
}
