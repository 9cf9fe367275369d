//! The raft transport: JSON over HTTP on the master's own port, plus the read a member uses to
//! fetch the events it lacks when it installs a snapshot.
//!
//! Requests are the openraft messages as JSON (`POST /raft/append`, `/raft/vote`,
//! `/raft/snapshot`); a response is the handler's `Result` as JSON, so remote errors arrive
//! typed. `GET /raft/events?from=N&to=M` returns stored frames, byte for byte.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::raft::{Node, NodeId, Raft, TypeConfig};
use super::Shared;
use crate::codec::Payload;

const APPEND: &str = "/raft/append";
const VOTE: &str = "/raft/vote";
const SNAPSHOT: &str = "/raft/snapshot";
pub(crate) const EVENTS: &str = "/raft/events";

/// Largest raft request accepted: `max_payload_entries` (32) entries of at most a group commit
/// each (1 MiB of payload, ~1.3 MiB as JSON), with room to spare.
const MAX_RAFT_BODY: usize = 64 << 20;
/// Frames returned per catch-up read.
pub(crate) const CATCH_UP_BYTES: usize = 4 << 20;

/// The header carrying the sender's cluster id: a master refuses raft messages from another
/// cluster's member, even one with the same node id and address.
pub(crate) const CLUSTER_HEADER: &str = "x-cairn-cluster";

/// Makes a client per peer; they share one HTTP connection pool.
#[derive(Clone)]
pub struct Network {
    pub(crate) shared: Arc<Shared>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        Peer {
            target,
            addr: node.addr.clone(),
            shared: self.shared.clone(),
        }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    shared: Arc<Shared>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        let url = format!("http://{}{path}", self.addr);
        let mut request = self
            .shared
            .http
            .post(url)
            .json(req)
            .timeout(option.hard_ttl());
        if let Some(cluster) = self.shared.cluster() {
            request = request.header(CLUSTER_HEADER, cluster);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("{path} answered {status}: {text}"));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(VOTE, &rpc, &option).await
    }
}

#[derive(Clone)]
struct Served {
    raft: Raft,
    shared: Arc<Shared>,
    log: super::Log,
}

/// The routes other members call, to be merged into the master's router.
pub(crate) fn router(log: super::Log) -> Router {
    let served = Served {
        raft: log.raft.clone(),
        shared: log.shared.clone(),
        log,
    };
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(SNAPSHOT, post(snapshot))
        .route(EVENTS, get(events))
        .route(FORWARD, post(forwarded))
        .route(READ_INDEX, get(read_index_handler))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY))
        .with_state(served)
}

/// An append forwarded by a follower: appended here, never forwarded again.
async fn forwarded(
    State(s): State<Served>,
    Json(payloads): Json<Vec<Payload>>,
) -> Json<Result<super::Appended, String>> {
    // A peer sent these; still, nothing that does not decode enters the log.
    if let Some(e) = payloads.iter().find_map(|p| p.decode(0).err()) {
        return Json(Err(format!("forwarded entry does not decode: {e}")));
    }
    Json(
        s.log
            .append_payloads(payloads, super::Forwarding::AlreadyForwarded)
            .await
            .map_err(|e| e.to_string()),
    )
}

async fn read_index_handler(State(s): State<Served>) -> Json<Result<Option<u64>, String>> {
    Json(s.log.read_index().await.map_err(|e| e.to_string()))
}

/// What a raft message would put in this member's raft state.
#[derive(Clone, Copy)]
enum Carries {
    /// A leader's entries or snapshot.
    Entries,
    /// A candidate's request for a vote, with or without a log of its own.
    Vote { has_log: bool },
}

/// Refuses a raft message from another cluster or from a node that is not a member: a stray,
/// removed or foreign master must not move this one's term or log. A member that does not
/// know its cluster yet (about to be added, or just made) learns it from its leader's first
/// entries, durably, before taking them; and a sender holding a log it cannot name the
/// cluster of is another cluster's.
async fn check_sender(
    s: &Served,
    headers: &HeaderMap,
    from: NodeId,
    carries: Carries,
) -> Result<(), (StatusCode, String)> {
    let theirs = match headers.get(CLUSTER_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(id) if is_cluster_id(id) => Some(id),
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("{CLUSTER_HEADER}: not a cluster id (1 to 64 hex digits)"),
                ))
            }
        },
    };
    let foreign = |theirs: &str, ours: &str| {
        Err((
            StatusCode::FORBIDDEN,
            format!("node {from} belongs to another cluster: its cluster is {theirs}, this one is {ours}"),
        ))
    };
    match (theirs, s.shared.cluster()) {
        (Some(theirs), Some(ours)) if theirs != ours => return foreign(theirs, ours),
        // Every member holding entries knows its cluster (see `Shared::cluster`).
        (None, _) if !matches!(carries, Carries::Vote { has_log: false }) => {
            return Err((
                StatusCode::FORBIDDEN,
                format!("node {from} sent a log without naming its cluster ({CLUSTER_HEADER})"),
            ))
        }
        _ => {}
    }
    let members = s.log.members();
    if !members.is_empty() && !members.contains_key(&from) {
        let ids: Vec<NodeId> = members.keys().copied().collect();
        return Err((
            StatusCode::FORBIDDEN,
            format!("node {from} is not a member of this cluster (members: {ids:?})"),
        ));
    }
    if let (Some(theirs), None, Carries::Entries) = (theirs, s.shared.cluster(), carries) {
        let ours = s.shared.join_cluster(theirs).await.map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store the cluster id: {e}"),
            )
        })?;
        if ours != theirs {
            // Another sender taught it first.
            return foreign(theirs, &ours);
        }
    }
    Ok(())
}

fn is_cluster_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

type Reply<T, E = RaftError<NodeId>> = Result<Json<Result<T, E>>, (StatusCode, String)>;

async fn append(
    State(s): State<Served>,
    headers: HeaderMap,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Reply<AppendEntriesResponse<NodeId>> {
    check_sender(&s, &headers, req.vote.leader_id().node_id, Carries::Entries).await?;
    Ok(Json(s.raft.append_entries(req).await))
}

async fn vote(
    State(s): State<Served>,
    headers: HeaderMap,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Reply<VoteResponse<NodeId>> {
    let carries = Carries::Vote {
        has_log: req.last_log_id.is_some(),
    };
    check_sender(&s, &headers, req.vote.leader_id().node_id, carries).await?;
    Ok(Json(s.raft.vote(req).await))
}

async fn snapshot(
    State(s): State<Served>,
    headers: HeaderMap,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Reply<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
    check_sender(&s, &headers, req.vote.leader_id().node_id, Carries::Entries).await?;
    Ok(Json(s.raft.install_snapshot(req).await))
}

#[derive(Debug, Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

async fn events(
    State(s): State<Served>,
    Query(range): Query<Range>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let to = range.to.min(s.shared.head());
    s.shared
        .store
        .raw_frames(range.from, to, CATCH_UP_BYTES)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

const FORWARD: &str = "/raft/forward";
const READ_INDEX: &str = "/raft/read-index";

/// Sends an append to the leader at `addr` (a follower forwarding a client's append). `Err`
/// when no connection could be made: nothing was sent, so asking again cannot append twice.
/// Otherwise the leader's answer.
pub(crate) async fn forward(
    http: &reqwest::Client,
    addr: &str,
    payloads: &[Payload],
) -> Result<crate::Result<super::Appended>, reqwest::Error> {
    let url = format!("http://{addr}{FORWARD}");
    let response = match http.post(url).json(payloads).send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Err(e),
        Err(e) => return Ok(Err(unreachable(addr, &e))),
    };
    let result: Result<super::Appended, String> = match response.json().await {
        Ok(result) => result,
        Err(e) => return Ok(Err(crate::Error::Raft(format!("forwarded append: {e}")))),
    };
    Ok(result.map_err(crate::Error::Raft))
}

/// A leader at `addr` that a request could not reach (or hear back from).
pub(crate) fn unreachable(addr: &str, e: &reqwest::Error) -> crate::Error {
    crate::Error::NotLeader {
        leader: Some(format!("{addr} (unreachable: {e})")),
    }
}

/// Asks the leader at `addr` for its read index.
pub(crate) async fn read_index(http: &reqwest::Client, addr: &str) -> crate::Result<Option<u64>> {
    let url = format!("http://{addr}{READ_INDEX}");
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(addr, &e))?;
    let result: Result<Option<u64>, String> = response
        .json()
        .await
        .map_err(|e| crate::Error::Raft(format!("read index: {e}")))?;
    result.map_err(crate::Error::Raft)
}
