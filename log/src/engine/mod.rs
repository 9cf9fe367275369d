//! The log engine: a replicated, durable event log with group commit, reads and live
//! subscriptions.
//!
//! The only module tree of `cairn-log` that does I/O. Appenders encode their entries on their
//! own tasks and queue them; a writer task takes everything queued (up to a group limit) and
//! proposes it to Raft as one entry, with the time it stamps; several groups may be in flight,
//! and openraft writes concurrent entries with one flush. An append is acknowledged once its
//! entry is committed (durable on a quorum) and applied. Applying frames the events at the
//! next offsets (see [`raft`]): every member does it, byte for byte the same. A single-node
//! log (`cairn dev`) is the same code with one voter.

mod clock;
mod metrics;
mod net;
pub mod raft;
mod store;
mod subscribe;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{RaftMetrics, SnapshotMeta};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tracing::{error, info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
use store::Chunks;
pub use store::{OpenMode, Store, TailCut, Tip, VerifyReport, SEGMENT_BYTES};
pub use subscribe::{Follow, Subscription};

use crate::codec::{self, ChainCheck, Frames, Header, Payload};
use crate::error::{Error, Result};
use crate::event::{Entry, Term, Timestamp};
use crate::record::{Offset, Record};
use metrics::Metrics;
use raft::{Applied, AppliedMarker, Node, NodeId, Proposal, Raft, SnapshotTip, TypeConfig};

/// How long a write that reaches a member with no known leader waits for one to be elected
/// ([`Log::leader_elsewhere_held`]): longer than an election takes here (a few election
/// timeouts), short enough that a client without a cluster gets its answer soon.
pub const LEADER_HOLD: Duration = Duration::from_secs(5);

/// How long [`Log::close`] waits for the appends in flight to commit: a commit takes
/// milliseconds, but a leader cut off from its quorum (or another cluster's member, refused by
/// all its peers) would wait forever.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Between two tries of a forward to a leader that did not take the connection.
const FORWARD_RETRY: Duration = Duration::from_millis(50);

/// Who leads, as `metrics` see it from member `me`: `None` if `me` does; otherwise the
/// leader's address, `None` while no leader is known or its address is not (a follower can
/// learn who won an election before the log entry that names the winner's address).
fn leader_seen_from(metrics: &RaftMetrics<NodeId, Node>, me: NodeId) -> Option<Option<String>> {
    match metrics.current_leader {
        Some(id) if id == me => None,
        Some(id) => Some(
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone()),
        ),
        None => Some(None),
    }
}

/// Placement, membership and limits of a log. Every limit says why its default was chosen.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    /// This member's id in the cluster.
    pub node_id: NodeId,
    /// Where other members reach this one (`host:port`).
    pub address: String,
    /// Most entries in one `append`. 10,000 covers the largest real batch (an offer round or a
    /// reconciliation of a big agent) while bounding a single request's memory.
    pub max_append_entries: usize,
    /// Most encoded bytes in one `append`, for the same reason.
    pub max_append_bytes: usize,
    /// Most payload bytes in one group commit (one raft entry). Larger groups stop amortizing
    /// the flush and only add latency; it also bounds a raft message.
    pub max_group_bytes: usize,
    /// Group commits in flight at once. One measured best on a single node (8 in flight made
    /// groups smaller: 7k instead of 31k single appends/s); groups grow with load instead.
    pub max_inflight_groups: usize,
    /// Queued append requests before appenders wait (backpressure).
    pub queue_depth: usize,
    /// Groups a live subscriber may fall behind before it is dropped with a resume offset.
    pub subscriber_buffer: usize,
    /// Most concurrent subscriptions.
    pub max_subscribers: usize,
    /// sled's page cache.
    pub cache_bytes: u64,
    /// Raft timing: a leader heartbeats this often; a follower that hears nothing for a random
    /// time between the election bounds stands for election. Loopback round trips are ~0.1 ms,
    /// so 50/300–600 ms leaves a wide margin against needless elections while keeping failover
    /// well under a second.
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Raft entries between snapshots. A snapshot is only the log's tip (the events stay), so
    /// it is cheap; what it buys is purging the raft log, which otherwise duplicates every
    /// event forever.
    pub snapshot_every: u64,
    /// Raft entries kept after a snapshot, so that a member a little behind catches up from the
    /// raft log rather than by fetching events.
    pub kept_after_snapshot: u64,
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            node_id: 1,
            address: "127.0.0.1:5050".to_owned(),
            max_append_entries: 10_000,
            max_append_bytes: 8 << 20,
            max_group_bytes: 1 << 20,
            max_inflight_groups: 1,
            queue_depth: 1024,
            subscriber_buffer: 1024,
            max_subscribers: 1024,
            cache_bytes: 1 << 30,
            heartbeat_ms: 50,
            election_timeout_ms: (300, 600),
            snapshot_every: 10_000,
            kept_after_snapshot: 1_000,
        }
    }
}

/// One member's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub address: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    /// The last raft index known committed (durable on a quorum).
    pub commit_index: u64,
    pub last_applied: u64,
    /// Offset of the last applied event.
    pub head: u64,
    /// The hash of record 1 (hex), once this member holds it.
    pub genesis: Option<String>,
    /// The id of the cluster this member belongs to, once it knows it (see [`Log::initialize`]).
    pub cluster: Option<String>,
    /// The raft index of the last snapshot, and the index up to which the raft log is purged.
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: Vec<NodeId>,
    pub members: BTreeMap<NodeId, String>,
    /// On the leader: how many raft entries each member is behind.
    pub lag: BTreeMap<NodeId, u64>,
}

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub first: Offset,
    pub last: Offset,
    pub term: Term,
    pub at: Timestamp,
}

/// Whether an append may be forwarded to the leader: once, from the member it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarding {
    Allowed,
    AlreadyForwarded,
}

struct Request {
    payloads: Vec<Payload>,
    bytes: usize,
    reply: oneshot::Sender<Result<Appended>>,
}

enum Command {
    Append(Request),
    /// Finish what was queued before this, then stop.
    Close(oneshot::Sender<()>),
}

/// What the state machine keeps between applies. A std `Mutex`: it is never held across an
/// `.await`.
struct Applying {
    tip: Tip,
    marker: AppliedMarker,
}

/// Where the cluster's id is kept, in the store's meta tree.
const META_CLUSTER: &[u8] = b"cluster_id";

pub(crate) struct Shared {
    store: Store,
    config: LogConfig,
    applying: Mutex<Applying>,
    /// Offset of the last applied record: the bound of every read.
    head: AtomicU64,
    /// Live groups for subscribers; `None` once the log closed, which ends them.
    live: Mutex<Option<broadcast::Sender<Arc<[Record]>>>>,
    subscribers: AtomicUsize,
    metrics: Metrics,
    http: reqwest::Client,
    /// The hash of record 1, once there is one: checkpoints name the log they were folded from.
    genesis: std::sync::OnceLock<String>,
    /// The cluster's id, once this member knows it: made by the member that initializes the
    /// cluster, learned by the others from their leader before they take any of its entries,
    /// and durable before it is used. So a member holding any entry knows its cluster, and
    /// another cluster's member is told apart even when it has the same ids and addresses.
    cluster: std::sync::OnceLock<String>,
    /// Serializes learning the cluster id.
    learning_cluster: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The hash of record 1 as hex, if this member holds it.
    fn genesis(&self) -> Option<String> {
        if let Some(g) = self.genesis.get() {
            return Some(g.clone());
        }
        if self.head() == 0 {
            return None;
        }
        let frames = self.store.raw_frames(1, 1, 1).ok()?;
        let frame = Frames::new(&frames, 1).next()?.ok()?;
        let hex: String = frame.hash().iter().map(|b| format!("{b:02x}")).collect();
        Some(self.genesis.get_or_init(|| hex).clone())
    }

    fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    fn cluster(&self) -> Option<&str> {
        self.cluster.get().map(String::as_str)
    }

    /// Makes `id` this member's cluster id, durably, unless it has one; the id it has after.
    async fn join_cluster(&self, id: &str) -> Result<String> {
        let _learning = self.learning_cluster.lock().await;
        if let Some(ours) = self.cluster.get() {
            return Ok(ours.clone());
        }
        self.store.put_meta_json(META_CLUSTER, &id)?;
        self.store.flush().await?;
        Ok(self.cluster.get_or_init(|| id.to_owned()).clone())
    }

    fn applied(&self) -> (AppliedMarker, Tip) {
        let a = self.applying.lock().expect("applying lock");
        (a.marker.clone(), a.tip)
    }

    /// Applies one committed raft entry: frames its events at the next offsets and stores them
    /// with the new applied marker, atomically.
    fn apply_entry(&self, entry: openraft::Entry<TypeConfig>) -> Result<Applied> {
        let (log_id, proposal, membership) = raft::proposal_of(entry);
        let mut a = self.applying.lock().expect("applying lock");
        let mut marker = AppliedMarker {
            last_applied: Some(log_id),
            ..a.marker.clone()
        };
        if let Some(m) = membership {
            marker.membership = openraft::StoredMembership::new(Some(log_id), m);
        }
        let Some(proposal) = proposal.filter(|p| !p.entries.is_empty()) else {
            marker.tip_offset = a.tip.last;
            self.store.put_applied_marker(&encode_marker(&marker)?)?;
            a.marker = marker;
            return Ok(Applied(None));
        };
        let term = Term(log_id.leader_id.term);
        let at = proposal.at.max(a.tip.at);
        let mut tip = a.tip;
        let first = tip.last + 1;
        let mut frames =
            Vec::with_capacity(proposal.entries.iter().map(|p| p.bytes().len() + 66).sum());
        let mut chunks = Chunks::default();
        for payload in &proposal.entries {
            tip.last += 1;
            let start = frames.len();
            let header = Header {
                format: payload.format(),
                offset: tip.last,
                term,
                at,
                prev_hash: tip.hash,
            };
            tip.hash = codec::write_frame(&mut frames, &header, payload.bytes());
            chunks.push(tip.last, start..frames.len());
        }
        tip.at = at;
        marker.tip_offset = tip.last;
        self.store
            .apply_group(&chunks.0, &frames, &encode_marker(&marker)?)?;
        a.tip = tip;
        a.marker = marker;
        drop(a);
        self.head.store(tip.last, Ordering::Release);

        let m = &self.metrics;
        m.appended_records.inc_by(proposal.entries.len() as u64);
        m.appended_bytes.inc_by(frames.len() as u64);
        m.group_records.observe(proposal.entries.len() as f64);
        m.head_offset.set(tip.last as i64);
        self.publish(first, term, at, &proposal.entries);
        let appended = Appended {
            first: Offset::new(first).expect("offsets start at 1"),
            last: Offset::new(tip.last).expect("offsets start at 1"),
            term,
            at,
        };
        Ok(Applied(Some(appended)))
    }

    /// Sends applied records to live subscribers, decoding them only if there are any.
    fn publish(&self, first: u64, term: Term, at: Timestamp, payloads: &[Payload]) {
        let Some(sender) = self.live.lock().expect("live lock").clone() else {
            return;
        };
        if sender.receiver_count() == 0 {
            return;
        }
        let mut records = Vec::with_capacity(payloads.len());
        for (payload, offset) in payloads.iter().zip(first..) {
            match payload.decode(offset) {
                Ok(entry) => records.push(Record {
                    offset: Offset::new(offset).expect("offsets start at 1"),
                    term,
                    at,
                    actor: entry.actor,
                    event: entry.event,
                }),
                // Subscribers will read it from storage and see the decode error there.
                Err(e) => return error!(offset, error = %e, "applied record does not decode"),
            }
        }
        let _ = sender.send(records.into());
    }

    /// Installs a snapshot: fetches the events it stands for that this member lacks, checks
    /// that the chain ends at its hash, then moves the applied marker to it.
    async fn install(&self, meta: &SnapshotMeta<NodeId, Node>, snap: SnapshotTip) -> Result<()> {
        let (_, mut tip) = self.applied();
        if tip.last < snap.last_offset {
            let peers: Vec<(NodeId, String)> = meta
                .last_membership
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.config.node_id)
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect();
            for (peer, addr) in &peers {
                match self.fetch(addr, tip, snap.last_offset).await {
                    Ok(t) => tip = t,
                    Err(e) => {
                        warn!(peer, error = %e, "catching up from this member failed; trying the next")
                    }
                }
                if tip.last >= snap.last_offset {
                    break;
                }
            }
        }
        if tip.last != snap.last_offset || tip.hash != snap.hash {
            return Err(Error::Corrupt {
                offset: snap.last_offset,
                detail: format!(
                    "snapshot ends at offset {} but this member holds {} with another hash: the logs diverged",
                    snap.last_offset, tip.last
                ),
            });
        }
        let marker = AppliedMarker {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            tip_offset: tip.last,
        };
        self.store.put_applied_marker(&encode_marker(&marker)?)?;
        self.store.flush().await?;
        let mut a = self.applying.lock().expect("applying lock");
        a.tip = tip;
        a.marker = marker;
        drop(a);
        self.head.store(tip.last, Ordering::Release);
        self.metrics.head_offset.set(tip.last as i64);
        info!(up_to = tip.last, "installed a snapshot");
        Ok(())
    }

    /// Streams frames `tip.last+1 ..= to` from a member at `addr`, checking the chain as it
    /// goes. Returns the new tip.
    async fn fetch(&self, addr: &str, mut tip: Tip, to: u64) -> Result<Tip> {
        while tip.last < to {
            let from = tip.last + 1;
            let fail = |detail: String| Error::Corrupt {
                offset: from,
                detail,
            };
            let url = format!("http://{addr}{}?from={from}&to={to}", net::EVENTS);
            let response = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| fail(format!("fetch from {addr}: {e}")))?;
            if !response.status().is_success() {
                return Err(fail(format!("fetch from {addr}: {}", response.status())));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| fail(format!("fetch from {addr}: {e}")))?;
            if bytes.is_empty() {
                return Err(fail(format!("{addr} has no records from {from}")));
            }
            let mut chain = ChainCheck {
                prev_hash: tip.hash,
                prev_at: tip.at,
            };
            let mut last = tip.last;
            for frame in Frames::new(&bytes, from) {
                let frame = frame?;
                chain.check(&frame)?;
                last = frame.header.offset;
            }
            self.store.insert_frames(from, &bytes)?;
            tip = Tip {
                last,
                hash: chain.prev_hash,
                at: chain.prev_at,
            };
        }
        Ok(tip)
    }
}

fn encode_marker(marker: &AppliedMarker) -> Result<Vec<u8>> {
    serde_json::to_vec(marker).map_err(Error::Encode)
}

/// The HTTP client for talking to other members. Its connections leave from this member's own
/// address, so that a member is told apart by its address on the wire too (firewall rules,
/// partition tests, traffic captures).
fn peer_client(address: &str) -> Result<reqwest::Client> {
    let local = address.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
    reqwest::Client::builder()
        .local_address(local)
        .build()
        .map_err(|e| Error::Raft(format!("cannot build the peer HTTP client: {e}")))
}

/// Opens the storage of a log: its raft log and its state machine (the event log), sharing one
/// sled database. `Log::open` runs a Raft member on them; openraft's storage suite tests them.
pub fn storage(
    config: LogConfig,
    registry: &mut Registry,
) -> Result<(raft::LogStore, raft::StateMachine)> {
    let mut store = Store::open(&config.path, OpenMode::Write, config.cache_bytes)?;
    let marker: AppliedMarker = match store.applied_marker()? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            offset: 0,
            detail: format!("applied marker: {e}"),
        })?,
        None => AppliedMarker::default(),
    };
    // Records past the marker come from an interrupted catch-up: they are not applied.
    store.trim_past(marker.tip_offset)?;
    let tip = store.tip();
    let metrics = Metrics::new(registry);
    metrics.head_offset.set(tip.last as i64);
    let log_store = raft::LogStore::new(store.db(), metrics.clone())?;
    let (live, _) = broadcast::channel(config.subscriber_buffer);
    let shared = Arc::new(Shared {
        store,
        applying: Mutex::new(Applying { tip, marker }),
        head: AtomicU64::new(tip.last),
        live: Mutex::new(Some(live)),
        subscribers: AtomicUsize::new(0),
        metrics,
        http: peer_client(&config.address)?,
        genesis: std::sync::OnceLock::new(),
        cluster: std::sync::OnceLock::new(),
        learning_cluster: tokio::sync::Mutex::new(()),
        config,
    });
    // A data dir from before cluster ids takes the hash of its record 1, as its cluster's other
    // members holding one do; one with no record yet learns the id from its leader.
    let known = match shared.store.get_meta_json::<String>(META_CLUSTER)? {
        Some(id) => Some(id),
        None => shared
            .genesis()
            .map(|g| shared.store.put_meta_json(META_CLUSTER, &g).map(|()| g))
            .transpose()?,
    };
    if let Some(id) = known {
        shared.cluster.get_or_init(|| id);
    }
    Ok((log_store, raft::StateMachine { shared }))
}

/// A handle to an open log. Cheap to clone; it closes when [`Log::close`] is called.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    raft: Raft,
    tx: mpsc::Sender<Command>,
    /// The last term for which this member appended `LeaderElected`. An async mutex: it is
    /// held across that append, so two callers never record the same term twice.
    recorded_term: Arc<tokio::sync::Mutex<u64>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.shared.config.path)
            .field("node_id", &self.shared.config.node_id)
            .field("head", &self.head())
            .finish()
    }
}

impl Log {
    /// Opens the log and starts its Raft member and writer. A new log must then be
    /// [`Log::initialize`]d (once, on one member) before it accepts appends.
    pub async fn open(
        config: LogConfig,
        clock: Arc<dyn Clock>,
        registry: &mut Registry,
    ) -> Result<Self> {
        let (log_store, state_machine) = storage(config, registry)?;
        let shared = state_machine.shared.clone();
        let c = &shared.config;
        let raft_config = openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: c.heartbeat_ms,
            election_timeout_min: c.election_timeout_ms.0,
            election_timeout_max: c.election_timeout_ms.1,
            // Entries can be a whole group commit (up to 1 MiB); keep a message bounded.
            max_payload_entries: 32,
            // The raft log is purged once a snapshot covers it; the events stay forever.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every),
            max_in_snapshot_log_to_keep: c.kept_after_snapshot,
            install_snapshot_timeout: 10_000,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| Error::Open {
            path: c.path.display().to_string(),
            reason: format!("raft config: {e}"),
        })?;
        let network = net::Network {
            shared: shared.clone(),
        };
        let raft = Raft::new(
            c.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let (tx, rx) = mpsc::channel(c.queue_depth);
        let last_at = shared.applied().1.at;
        let writer = Writer {
            shared: shared.clone(),
            raft: raft.clone(),
            clock,
            last_at,
        };
        tokio::spawn(writer.run(rx));
        let log = Log {
            shared,
            raft,
            tx,
            recorded_term: Arc::default(),
        };
        tokio::spawn(watch_leadership(log.clone()));
        Ok(log)
    }

    /// Opens a log whose cluster is this member alone (`cairn dev`, tools, tests): the same
    /// code path as a cluster, with one voter. Returns once this member leads.
    pub async fn open_single_node(
        config: LogConfig,
        clock: Arc<dyn Clock>,
        registry: &mut Registry,
    ) -> Result<Self> {
        let members = BTreeMap::from([(config.node_id, config.address.clone())]);
        let log = Self::open(config, clock, registry).await?;
        log.initialize(members).await?;
        log.wait_for_leader(Duration::from_secs(30)).await?;
        log.record_leadership().await?;
        Ok(log)
    }

    /// Appends `LeaderElected` if this member leads in a term it has not recorded yet. A
    /// task started by [`Log::open`] calls it whenever leadership changes; callers that need
    /// the record in place before going on call it too.
    pub async fn record_leadership(&self) -> Result<()> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(m.id) {
            return Ok(());
        }
        let mut recorded = self.recorded_term.lock().await;
        if *recorded >= m.current_term {
            return Ok(());
        }
        let node_id = crate::event::NodeId(m.id);
        let event = crate::event::Event::LeaderElected(crate::event::LeaderElected {
            node_id,
            term: Term(m.current_term),
            address: self.shared.config.address.clone(),
        });
        self.append(vec![Entry {
            actor: crate::event::Actor::master(node_id),
            event,
        }])
        .await?;
        *recorded = m.current_term;
        Ok(())
    }

    /// Makes a new cluster of `members` (id → address), this member among them. Does nothing
    /// if the log already belongs to a cluster.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<()> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?
        {
            return Ok(());
        }
        // The cluster is born here: its id is durable before its first entry exists. Random,
        // as two clusters made of the same members must still differ.
        let id = format!("{:032x}", rand::random::<u128>());
        self.shared.join_cluster(&id).await?;
        let nodes: BTreeMap<NodeId, Node> = members
            .into_iter()
            .map(|(id, addr)| (id, Node { addr }))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Waits until some member leads, at most `within`; returns the leader's id.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<NodeId> {
        let metrics = self
            .raft
            .wait(Some(within))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| Error::Raft(format!("no leader within {within:?}: {e}")))?;
        Ok(metrics.current_leader.expect("waited for it"))
    }

    /// The cluster's members (id → address) as of the last applied membership change: what
    /// this member's data dir says the cluster is.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let (marker, _) = self.shared.applied();
        marker
            .membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Adds a member: it joins as a learner, catches up, then becomes a voter. Leader only.
    pub async fn add_member(&self, node_id: NodeId, address: String) -> Result<()> {
        self.raft
            .add_learner(node_id, Node { addr: address }, true)
            .await
            .map_err(|e| write_error(&e))?;
        let mut voters = self.voters();
        voters.insert(node_id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| write_error(&e))?;
        Ok(())
    }

    /// Removes a member from the voters (and the cluster). Leader only.
    pub async fn remove_member(&self, node_id: NodeId) -> Result<()> {
        let mut voters = self.voters();
        if !voters.remove(&node_id) {
            return Err(Error::Raft(format!("node {node_id} is not a voter")));
        }
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| write_error(&e))?;
        Ok(())
    }

    fn voters(&self) -> std::collections::BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// This member's view of the cluster, for `cairn cluster status`.
    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let last_log_index = m.last_log_index.unwrap_or(0);
        MemberStatus {
            node_id: m.id,
            address: self.shared.config.address.clone(),
            role: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index,
            commit_index: self.shared.metrics.commit_index.get() as u64,
            last_applied: m.last_applied.map_or(0, |id| id.index),
            head: self.head(),
            genesis: self.shared.genesis(),
            cluster: self.shared.cluster().map(str::to_owned),
            snapshot_index: m.snapshot.map_or(0, |id| id.index),
            purged_index: m.purged.map_or(0, |id| id.index),
            voters: m.membership_config.membership().voter_ids().collect(),
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            lag: m
                .replication
                .map(|r| {
                    r.iter()
                        .map(|(id, matched)| {
                            (
                                *id,
                                last_log_index.saturating_sub(matched.map_or(0, |l| l.index)),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The routes other members call (raft RPCs, catch-up reads), to mount on the master's
    /// HTTP server.
    pub fn peer_routes(&self) -> axum::Router {
        net::router(self.clone())
    }

    /// Appends `entries` in order; returns once they are committed and applied. Concurrent
    /// appends are group-committed. On a follower the append is forwarded to the leader.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Appended> {
        self.append_entries(entries, Forwarding::Allowed).await
    }

    /// Like [`Log::append`], but only on the leader: a member that no longer leads answers
    /// [`Error::NotLeader`] rather than forwarding, so a decision taken on a deposed leader's
    /// state is never appended under the new one.
    pub async fn append_as_leader(&self, entries: Vec<Entry>) -> Result<Appended> {
        self.append_entries(entries, Forwarding::AlreadyForwarded)
            .await
    }

    async fn append_entries(
        &self,
        entries: Vec<Entry>,
        forwarding: Forwarding,
    ) -> Result<Appended> {
        if entries.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let limit = self.shared.config.max_append_entries;
        if entries.len() > limit {
            return Err(Error::BatchTooLarge {
                len: entries.len(),
                limit,
            });
        }
        let payloads = entries
            .iter()
            .map(Payload::pack)
            .collect::<Result<Vec<_>>>()?;
        self.append_payloads(payloads, forwarding).await
    }

    /// Appends encoded entries; forwards them to the leader if allowed and this member does
    /// not lead.
    async fn append_payloads(
        &self,
        payloads: Vec<Payload>,
        forwarding: Forwarding,
    ) -> Result<Appended> {
        let mut bytes = 0;
        for payload in &payloads {
            let len = payload.bytes().len();
            if len > codec::MAX_PAYLOAD {
                return Err(Error::RecordTooLarge {
                    len,
                    limit: codec::MAX_PAYLOAD,
                });
            }
            bytes += len;
        }
        let limit = self.shared.config.max_append_bytes;
        if bytes > limit {
            return Err(Error::AppendTooLarge { bytes, limit });
        }
        // A leader can be elected before it takes connections (its start-up still runs the
        // cluster check and the projections): within the hold, a forward that could not
        // connect is tried again, the leader read afresh (it may be this member by then). The
        // hold bounds the whole: waits for a leader included.
        let hold = tokio::time::Instant::now() + LEADER_HOLD;
        loop {
            let leader = match forwarding {
                Forwarding::Allowed => self.leader_elsewhere_until(hold).await,
                Forwarding::AlreadyForwarded => self.leader_elsewhere(),
            };
            match (forwarding, leader) {
                (_, None) => break,
                (Forwarding::Allowed, Some(Some(addr))) => {
                    match net::forward(&self.shared.http, &addr, &payloads).await {
                        Ok(answer) => return answer,
                        Err(_) if tokio::time::Instant::now() < hold => {
                            tokio::time::sleep(FORWARD_RETRY).await;
                        }
                        Err(e) => return Err(net::unreachable(&addr, &e)),
                    }
                }
                (_, Some(leader)) => return Err(Error::NotLeader { leader }),
            }
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(Request {
                payloads,
                bytes,
                reply,
            }))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// `None` if this member leads; otherwise `Some(leader's address, if one is known)`.
    pub fn leader_elsewhere(&self) -> Option<Option<String>> {
        // Called on every append: read the metrics in place rather than cloning them.
        leader_seen_from(&self.raft.metrics().borrow(), self.shared.config.node_id)
    }

    /// Like [`Log::leader_elsewhere`], but while no leader's address is known (an election
    /// is under way, or this member has just started and heard of the leader before the
    /// membership that names its address) waits up to [`LEADER_HOLD`] for one. A write that
    /// reaches a follower then goes to the new leader rather than failing: clients point at
    /// any master and expect that, as Nomad holds its RPCs through an election
    /// (`rpc_hold_timeout`, 5 s too).
    pub async fn leader_elsewhere_held(&self) -> Option<Option<String>> {
        self.leader_elsewhere_until(tokio::time::Instant::now() + LEADER_HOLD)
            .await
    }

    /// [`Log::leader_elsewhere_held`], holding no later than `deadline`.
    async fn leader_elsewhere_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Option<Option<String>> {
        let me = self.shared.config.node_id;
        if let Some(None) = self.leader_elsewhere() {
            // No leader in time is answered as before: "no leader is known".
            let _ = self
                .raft
                .wait(Some(
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                ))
                .metrics(
                    |m| leader_seen_from(m, me) != Some(None),
                    "a leader whose address is known",
                )
                .await;
        }
        self.leader_elsewhere()
    }

    /// Waits until this member has applied everything the leader had committed when asked: a
    /// read after this sees every append acknowledged before it (linearizable). Asks the leader
    /// over HTTP when this member follows.
    pub async fn sync_with_leader(&self) -> Result<()> {
        let index = match self.leader_elsewhere() {
            None => self.read_index().await?,
            Some(Some(addr)) => net::read_index(&self.shared.http, &addr).await?,
            Some(None) => return Err(Error::NotLeader { leader: None }),
        };
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(index, "the leader's read index")
            .await
            .map_err(|e| Error::Raft(format!("not caught up with the leader: {e}")))?;
        Ok(())
    }

    /// The leader's read index: confirms leadership with a quorum and returns the last log
    /// index a linearizable read must wait for.
    pub(crate) async fn read_index(&self) -> Result<Option<u64>> {
        match self.raft.ensure_linearizable().await {
            Ok(id) => Ok(id.map(|id| id.index)),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(Error::NotLeader {
                    leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
                }),
                None => Err(Error::Raft(e.to_string())),
            },
        }
    }

    /// Offset of the last applied record (0 when empty).
    pub fn head(&self) -> u64 {
        self.shared.head()
    }

    /// Whether appends are accepted (false once closed).
    pub fn is_accepting(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Group commits proposed so far.
    pub fn group_commits(&self) -> u64 {
        self.shared.metrics.group_commits.get()
    }

    /// The current Raft term as this member knows it.
    pub fn term(&self) -> Term {
        Term(self.raft.metrics().borrow().current_term)
    }

    /// The tail cut when the log was opened, if it had a torn one.
    pub fn tail_cut(&self) -> Option<TailCut> {
        self.shared.store.tail_cut().cloned()
    }

    /// Reads up to `limit` applied records from `from`.
    pub fn read(&self, from: Offset, limit: usize) -> Result<Vec<Record>> {
        self.shared.store.read(from.get(), limit, self.head())
    }

    /// Reads up to `limit` applied records from `from` into `out`, on this thread (see
    /// [`Store::read_into`]).
    pub fn read_into(&self, from: Offset, limit: usize, out: &mut Vec<Record>) -> Result<()> {
        self.shared
            .store
            .read_into(from.get(), limit, self.head(), out)
    }

    /// Walks every applied record checking checksums and the hash chain.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.shared.store.verify(self.head(), |_| {})
    }

    /// Follows the log from `from`: catches up from storage, then tails live appends.
    pub fn subscribe(&self, from: Offset) -> Result<Subscription> {
        Subscription::new(self.clone(), from)
    }

    /// Follows the log from `from` without ever ending for lagging (see [`Follow`]).
    pub fn follow(&self, from: Offset) -> Result<Follow> {
        Follow::new(self.clone(), from)
    }

    /// Finishes every append queued so far (those that cannot commit within [`CLOSE_GRACE`]
    /// fail), stops the Raft member and makes everything durable. Appends after this fail with
    /// [`Error::Closed`].
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        let queued = async {
            if self.tx.send(Command::Close(done)).await.is_ok() {
                let _ = rx.await;
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, queued).await.is_err() {
            // Raft's shutdown below ends them with an error: none is acknowledged.
            warn!(
                grace = ?CLOSE_GRACE,
                "appends still uncommitted when closing (no quorum?): they fail"
            );
        }
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft did not shut down cleanly");
        }
        self.shared.live.lock().expect("live lock").take();
        if let Err(e) = self.shared.store.flush().await {
            error!(error = %e, "final flush failed");
        }
    }
}

/// Records each new leadership of this member, until the log closes.
async fn watch_leadership(log: Log) {
    let mut metrics = log.raft.metrics();
    while metrics.changed().await.is_ok() && log.is_accepting() {
        let leads_new_term = {
            let m = metrics.borrow_and_update();
            m.current_leader == Some(m.id)
        };
        if leads_new_term {
            if let Err(e) = log.record_leadership().await {
                warn!(error = %e, "could not record this member's leadership");
            }
        }
    }
}

/// Groups queued appends and proposes each group to Raft.
struct Writer {
    shared: Arc<Shared>,
    raft: Raft,
    clock: Arc<dyn Clock>,
    last_at: Timestamp,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let max_inflight = self.shared.config.max_inflight_groups;
        let inflight = Arc::new(Semaphore::new(max_inflight));
        let mut closing = None;
        while closing.is_none() {
            let mut group = match rx.recv().await {
                Some(Command::Append(req)) => vec![req],
                Some(Command::Close(done)) => {
                    closing = Some(done);
                    break;
                }
                None => break,
            };
            let mut bytes = group[0].bytes;
            while bytes < self.shared.config.max_group_bytes {
                match rx.try_recv() {
                    Ok(Command::Append(req)) => {
                        bytes += req.bytes;
                        group.push(req);
                    }
                    Ok(Command::Close(done)) => {
                        closing = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let permit = inflight
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            self.last_at = self.clock.now().max(self.last_at);
            let shared = self.shared.clone();
            let raft = self.raft.clone();
            let at = self.last_at;
            tokio::spawn(async move {
                commit(&shared, &raft, at, group).await;
                drop(permit);
            });
        }
        // Wait for the groups in flight.
        let _ = inflight.acquire_many(max_inflight as u32).await;
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }
}

/// Proposes one group and acknowledges each of its requests with its own offsets.
async fn commit(shared: &Shared, raft: &Raft, at: Timestamp, group: Vec<Request>) {
    let mut sizes = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let mut entries = Vec::new();
    for req in group {
        sizes.push(req.payloads.len() as u64);
        replies.push(req.reply);
        entries.extend(req.payloads);
    }
    shared.metrics.group_commits.inc();
    let started = Instant::now();
    let result = raft.client_write(Proposal { at, entries }).await;
    shared
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => {
            let Some(appended) = response.data.0 else {
                for reply in replies {
                    let _ = reply.send(Err(Error::Raft(
                        "a proposal with entries applied to nothing".into(),
                    )));
                }
                return;
            };
            let mut next = appended.first.get();
            for (reply, n) in replies.into_iter().zip(sizes) {
                let ack = Appended {
                    first: Offset::new(next).expect("offsets start at 1"),
                    last: Offset::new(next + n - 1).expect("offsets start at 1"),
                    ..appended
                };
                next += n;
                let _ = reply.send(Ok(ack));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(write_error(&e)));
            }
        }
    }
}

fn write_error(e: &RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Error {
    match e.forward_to_leader() {
        Some(f) => Error::NotLeader {
            leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
        },
        None => Error::Raft(e.to_string()),
    }
}
