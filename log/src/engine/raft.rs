//! Replication: openraft's storage, with the event log as its state machine.
//!
//! - **Raft log** (tree `raft_log`): each entry as JSON, split into values of at most
//!   [`CHUNK_BYTES`] (key: index and chunk number, big-endian) so that no sled page reaches
//!   the blob threshold (see `store.rs`). The vote and the last purged id live in `meta`.
//! - **State machine**: applying a `Normal` entry frames its events at the next offsets, with
//!   the entry's term and time, and stores them in `events` in the same sled transaction as the
//!   applied marker: after a crash either both or neither are there, and openraft re-applies
//!   the rest from the raft log — deterministically, to the same offsets.
//! - **Snapshot**: the state machine is the event log itself, which is never truncated, so a
//!   snapshot is only a descriptor (the tip: last offset, its hash and time). A member that
//!   installs one must already hold those events or fetch them (`Fetcher`), checking that the
//!   hash chain ends at the descriptor's hash.
//!
//! Payloads travel as raw JSON (`Proposal::entries`): encoded once by the appender, embedded
//! verbatim in the raft entry and framed verbatim at apply, never re-encoded.

// openraft's traits fix the error type (`StorageError`, ~224 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry as RaftEntry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use super::store::{Tip, CHUNK_BYTES};
use super::{Appended, Shared};
use crate::codec::{Hash, Payload};
use crate::event::Timestamp;

/// A member's id.
pub type NodeId = u64;
/// A member's address (`host:port` of its API).
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft's types for cairn's log.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Node,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub(crate) type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// What the leader replicates for one group commit: the time it stamped and the encoded
/// entries, in order (packed, a base64 string each; JSON objects in entries an older binary
/// wrote).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proposal {
    pub at: Timestamp,
    pub entries: Vec<Payload>,
}

/// What applying a raft entry produced: the offsets of its events, if it had any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied(pub Option<Appended>);

/// The applied position, stored atomically with the events it covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AppliedMarker {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
    /// The last event offset the applied entries produced. Events past it are not applied
    /// (an interrupted catch-up) and are trimmed at open.
    pub tip_offset: u64,
}

/// A snapshot's data: the tip of the event log it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTip {
    pub last_offset: u64,
    pub hash: Hash,
    pub at: Timestamp,
}

impl From<Tip> for SnapshotTip {
    fn from(t: Tip) -> Self {
        Self {
            last_offset: t.last,
            hash: t.hash,
            at: t.at,
        }
    }
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn raft_key(index: u64, chunk: u16) -> [u8; 10] {
    let mut key = [0; 10];
    key[..8].copy_from_slice(&index.to_be_bytes());
    key[8..].copy_from_slice(&chunk.to_be_bytes());
    key
}

fn key_index(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("raft keys are 10 bytes"))
}

const META_VOTE: &[u8] = b"raft_vote";
const META_PURGED: &[u8] = b"raft_last_purged";
const META_COMMITTED: &[u8] = b"raft_committed";

/// The raft log on sled.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    metrics: Metrics,
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db, metrics: Metrics) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("meta")?,
            metrics,
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let Some(v) = self
            .meta
            .get(key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn put_json<T: Serialize>(&self, key: &[u8], value: &T) -> StorageResult<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        Ok(())
    }

    /// Reads entries with index in `[start, end)`, reassembling their chunks.
    fn entries(&self, start: u64, end: u64) -> StorageResult<Vec<RaftEntry<TypeConfig>>> {
        let read_err = |e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let mut out = Vec::new();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for item in self.log.range(raft_key(start, 0)..raft_key(end, 0)) {
            let (k, v) = item.map_err(read_err)?;
            let index = key_index(&k);
            match &mut current {
                Some((i, bytes)) if *i == index => bytes.extend_from_slice(&v),
                _ => {
                    if let Some((_, bytes)) = current.take() {
                        out.push(decode_entry(&bytes)?);
                    }
                    current = Some((index, v.to_vec()));
                }
            }
        }
        if let Some((_, bytes)) = current {
            out.push(decode_entry(&bytes)?);
        }
        Ok(out)
    }

    fn remove_range(&self, start: u64, end: u64) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(raft_key(start, 0)..raft_key(end, 0)) {
            let (k, _) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

fn decode_entry(bytes: &[u8]) -> StorageResult<RaftEntry<TypeConfig>> {
    serde_json::from_slice(bytes).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<RaftEntry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&x) => x.saturating_add(1),
            Bound::Excluded(&x) => x,
            Bound::Unbounded => u64::MAX,
        };
        self.entries(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_json(META_PURGED)?;
        let last = self
            .log
            .last()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((k, _)) => {
                let index = key_index(&k);
                self.entries(index, index + 1)?.pop().map(|e| e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_json(META_VOTE, vote)?;
        self.db
            .flush_async()
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_json(META_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not flushed on its own: a commit index that lags after a crash is only re-learned.
        self.put_json(META_COMMITTED, &committed)?;
        self.metrics
            .commit_index
            .set(committed.map_or(0, |id| id.index) as i64);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_json::<Option<LogId<NodeId>>>(META_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = RaftEntry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            for (chunk, piece) in bytes.chunks(CHUNK_BYTES).enumerate() {
                batch.insert(&raft_key(entry.log_id.index, chunk as u16), piece);
            }
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let started = std::time::Instant::now();
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.remove_range(log_id.index, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.put_json(META_PURGED, &log_id)?;
        self.remove_range(0, log_id.index + 1)
    }
}

const META_SNAPSHOT: &[u8] = b"raft_snapshot";

/// The state machine: the event log. Cheap to clone (shares the log's state).
#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("head", &self.shared.head())
            .finish()
    }
}

/// A stored snapshot: its meta and its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    tip: SnapshotTip,
}

impl StateMachine {
    fn snapshot_of(stored: StoredSnapshot) -> StorageResult<Snapshot<TypeConfig>> {
        let data = serde_json::to_vec(&stored.tip)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // The raft log may be purged up to this snapshot: what it covers must be durable first.
        self.shared
            .store
            .flush()
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let (marker, tip) = self.shared.applied();
        let snapshot_id = match marker.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, tip.last),
            None => format!("0-0-{}", tip.last),
        };
        let meta = SnapshotMeta {
            last_log_id: marker.last_applied,
            last_membership: marker.membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta,
            tip: tip.into(),
        };
        self.shared
            .store
            .put_meta_json(META_SNAPSHOT, &stored)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Self::snapshot_of(stored)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let (marker, _) = self.shared.applied();
        Ok((marker.last_applied, marker.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = RaftEntry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let applied = self
                .shared
                .apply_entry(entry)
                .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
            out.push(applied);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let sig = Some(meta.signature());
        let tip: SnapshotTip = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig.clone()), ErrorVerb::Read, e))?;
        self.shared
            .install(meta, tip)
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig.clone()), ErrorVerb::Write, e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            tip,
        };
        self.shared
            .store
            .put_meta_json(META_SNAPSHOT, &stored)
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig), ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = self
            .shared
            .store
            .get_meta_json(META_SNAPSHOT)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        stored.map(Self::snapshot_of).transpose()
    }
}

/// Whether an entry carries events.
pub(crate) fn proposal_of(
    entry: RaftEntry<TypeConfig>,
) -> (
    LogId<NodeId>,
    Option<Proposal>,
    Option<openraft::Membership<NodeId, Node>>,
) {
    match entry.payload {
        EntryPayload::Blank => (entry.log_id, None, None),
        EntryPayload::Normal(p) => (entry.log_id, Some(p), None),
        EntryPayload::Membership(m) => (entry.log_id, None, Some(m)),
    }
}
