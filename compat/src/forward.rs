//! Writes that reach a follower go to the leader, as Marathon and Chronos proxy them: the
//! old tools are pointed at any master (often through a load balancer) and keep working.
//!
//! Every request but `GET` and `HEAD` is forwarded when another master leads
//! ([`cairn_graphql::forward`]: method, path, headers, body, the caller's address), and the
//! answer, streams included (Mesos' `SUBSCRIBE`), comes back as the leader sent it, ending
//! when this master stops. Reads are answered here from this master's projections, after it
//! has caught up with what the leader had committed (read-your-writes). A request already
//! forwarded is never forwarded again: if leadership moved meanwhile, the handler's own "not
//! the leader" answer (503) is returned. A write that arrives while no leader is known waits
//! for one ([`cairn_log::engine::LEADER_HOLD`]) before it is forwarded or refused.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_graphql::forward::was_forwarded;

use crate::{Compat, MAX_BODY};

/// The middleware: forwards writes to the leader when this master follows.
pub(crate) async fn writes_to_leader(
    State(c): State<Compat>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    // A write waits out an election rather than failing; a read is answered here anyway.
    let leader = if read {
        c.log.leader_elsewhere()
    } else {
        c.log.leader_elsewhere_held().await
    };
    let Some(Some(leader)) = leader else {
        // This master leads, or no leader is known (the handler says so).
        return next.run(request).await;
    };
    if read {
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
    let (parts, body) = request.into_parts();
    if was_forwarded(&parts) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {MAX_BODY} bytes"),
        )
            .into_response();
    };
    match c
        .forwarder
        .forward(&leader, &parts, body, c.stop.clone().cancelled_owned())
        .await
    {
        Ok(response) => response,
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}
