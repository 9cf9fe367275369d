//! The log engine: durable appends with group commit, reads, and live subscriptions.
//!
//! The only module of `cairn-log` that does I/O. One writer thread owns the store's write path:
//! appenders encode their payloads on their own tasks, queue them on a bounded channel, and the
//! writer takes everything queued (up to a group limit), frames it, inserts it as one sled
//! value and flushes once. Requests that arrive during a flush form the next group, so many
//! concurrent appenders share each fsync. An append is acknowledged only after its flush.

mod clock;
mod metrics;
mod store;
mod subscribe;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::error;

pub use clock::{Clock, ManualClock, SystemClock};
pub use store::{OpenMode, Store, TailCut, Tip, VerifyReport, CHUNK_BYTES, SEGMENT_BYTES};
pub use subscribe::Subscription;

use crate::codec::{self, Header, FORMAT};
use crate::error::{Error, Result};
use crate::event::{Entry, Term, Timestamp};
use crate::record::{Offset, Record};
use metrics::Metrics;

/// Limits and placement of a log. Every limit says why its default was chosen.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Most entries in one `append`. 10,000 covers the largest real batch (an offer round or a
    /// reconciliation of a big agent) while bounding a single request's memory.
    pub max_append_entries: usize,
    /// Most frame bytes in one group commit. Past ~8 MiB a flush no longer gets cheaper per
    /// byte on this disk (592 MiB/s synced), and latency of the whole group grows.
    pub max_group_bytes: usize,
    /// Queued append requests before appenders wait (backpressure).
    pub queue_depth: usize,
    /// Groups a live subscriber may fall behind before it is dropped with a resume offset.
    pub subscriber_buffer: usize,
    /// Most concurrent subscriptions.
    pub max_subscribers: usize,
    /// sled's page cache.
    pub cache_bytes: u64,
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_append_entries: 10_000,
            max_group_bytes: 1 << 20,
            queue_depth: 1024,
            subscriber_buffer: 1024,
            max_subscribers: 1024,
            cache_bytes: 1 << 30,
        }
    }
}

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: Offset,
    pub last: Offset,
    pub term: Term,
    pub at: Timestamp,
}

struct Request {
    entries: Vec<Entry>,
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Appended>>,
}

enum Command {
    Append(Request),
    /// Finish what was queued before this, then stop.
    Close(oneshot::Sender<()>),
}

struct Shared {
    store: Store,
    /// Offset of the last durable record: the bound of every read.
    head: AtomicU64,
    /// Live groups for subscribers; `None` once the writer stopped, which ends them.
    live: Mutex<Option<broadcast::Sender<Arc<[Record]>>>>,
    subscribers: AtomicUsize,
    metrics: Metrics,
    config: LogConfig,
    term: Term,
}

/// A handle to an open log. Cheap to clone; the log closes when [`Log::close`] is called or
/// the last handle is dropped.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.shared.config.path)
            .field("head", &self.head())
            .field("term", &self.shared.term)
            .finish()
    }
}

impl Log {
    /// Opens the log for writing: repairs a torn tail, takes the next standalone term and
    /// starts the writer thread. Must be called within a tokio runtime.
    pub fn open(config: LogConfig, clock: Arc<dyn Clock>, registry: &mut Registry) -> Result<Self> {
        let store = Store::open(&config.path, OpenMode::Write, config.cache_bytes)?;
        let term = store.next_term()?;
        let tip = store.tip();
        let metrics = Metrics::new(registry);
        metrics.head_offset.set(tip.last as i64);
        let (live, _) = broadcast::channel(config.subscriber_buffer);
        let (tx, rx) = mpsc::channel(config.queue_depth);
        let shared = Arc::new(Shared {
            store,
            head: AtomicU64::new(tip.last),
            live: Mutex::new(Some(live)),
            subscribers: AtomicUsize::new(0),
            metrics,
            config,
            term,
        });
        let writer = Writer {
            shared: shared.clone(),
            clock,
            tip,
            frames: Vec::new(),
        };
        std::thread::Builder::new()
            .name("cairn-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Open {
                path: shared.config.path.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Log { shared, tx })
    }

    /// Appends `entries` in order; returns once they are durable. Concurrent appends are
    /// group-committed: they share one flush.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Appended> {
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
            .map(codec::encode_payload)
            .collect::<Result<Vec<_>>>()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(Request {
                entries,
                payloads,
                reply,
            }))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Offset of the last durable record (0 when empty).
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// Whether appends are accepted (false once closed or after a storage failure).
    pub fn is_accepting(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Group commits (flushes) so far.
    pub fn group_commits(&self) -> u64 {
        self.shared.metrics.group_commits.get()
    }

    /// The term this writer stamps on its records.
    pub fn term(&self) -> Term {
        self.shared.term
    }

    /// The tail cut when the log was opened, if it had a torn one.
    pub fn tail_cut(&self) -> Option<TailCut> {
        self.shared.store.tail_cut().cloned()
    }

    /// Reads up to `limit` durable records from `from`.
    pub fn read(&self, from: Offset, limit: usize) -> Result<Vec<Record>> {
        let head = self.head();
        self.shared.store.read(from.get(), limit, head)
    }

    /// Walks every durable record checking checksums and the hash chain.
    pub fn verify(&self) -> Result<VerifyReport> {
        let head = self.head();
        self.shared.store.verify(head, |_| {})
    }

    /// Follows the log from `from`: catches up from storage, then tails live appends.
    pub fn subscribe(&self, from: Offset) -> Result<Subscription> {
        Subscription::new(self.clone(), from)
    }

    /// Finishes every append queued so far, then stops the writer. Appends after this fail
    /// with [`Error::Closed`].
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The single owner of the write path.
struct Writer {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    tip: Tip,
    frames: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut group = Vec::new();
        let mut closing = None;
        while closing.is_none() {
            match rx.blocking_recv() {
                Some(Command::Append(req)) => group.push(req),
                Some(Command::Close(done)) => closing = Some(done),
                None => break,
            }
            let mut bytes: usize = group.iter().map(request_bytes).sum();
            while closing.is_none() && bytes < self.shared.config.max_group_bytes {
                match rx.try_recv() {
                    Ok(Command::Append(req)) => {
                        bytes += request_bytes(&req);
                        group.push(req);
                    }
                    Ok(Command::Close(done)) => closing = Some(done),
                    Err(_) => break,
                }
            }
            if !group.is_empty() && !self.commit(std::mem::take(&mut group), bytes) {
                // Storage failed: the log is poisoned; queued appenders see `Closed`.
                break;
            }
        }
        // Dropping the sender ends live subscriptions once they drained storage.
        self.shared.live.lock().expect("live lock").take();
        // Release our hold on the store before saying we are done, so that once the caller
        // drops its handles the files are closed (and may be reopened at once).
        drop(self);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// Frames, stores and flushes one group, then acknowledges it. Returns false if storage
    /// failed.
    fn commit(&mut self, group: Vec<Request>, bytes: usize) -> bool {
        let shared = &*self.shared;
        let records_in_group: usize = group.iter().map(|r| r.entries.len()).sum();
        let at = self.clock.now().max(self.tip.at);
        let mut tip = self.tip;
        // Reused across groups: a fresh multi-megabyte buffer per group costs page faults.
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        frames.reserve(bytes + records_in_group * 66);
        let mut chunks: Vec<(u64, Range<usize>)> = Vec::new();
        let mut acks = Vec::with_capacity(group.len());
        for req in &group {
            let req_first = tip.last + 1;
            for payload in &req.payloads {
                tip.last += 1;
                let start = frames.len();
                let header = Header {
                    format: FORMAT,
                    offset: tip.last,
                    term: shared.term,
                    at,
                    prev_hash: tip.hash,
                };
                tip.hash = codec::write_frame(&mut frames, &header, payload);
                match chunks.last_mut() {
                    Some((_, range)) if frames.len() - range.start <= CHUNK_BYTES => {
                        range.end = frames.len()
                    }
                    _ => chunks.push((tip.last, start..frames.len())),
                }
            }
            acks.push((req_first, tip.last));
        }
        tip.at = at;
        let started = Instant::now();
        let stored = shared
            .store
            .insert_group(&chunks, &frames)
            .and_then(|()| shared.store.flush());
        if let Err(e) = stored {
            error!(error = %e, first = self.tip.last + 1, "log append failed; the log stops accepting writes");
            for req in group {
                let _ = req.reply.send(Err(Error::Poisoned(e.to_string())));
            }
            return false;
        }
        shared
            .metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        self.tip = tip;
        shared.head.store(tip.last, Ordering::Release);
        let m = &shared.metrics;
        m.appended_records.inc_by(records_in_group as u64);
        m.appended_bytes.inc_by(frames.len() as u64);
        m.group_commits.inc();
        m.group_records.observe(records_in_group as f64);
        m.head_offset.set(tip.last as i64);
        self.frames = frames;

        let sender = shared.live.lock().expect("live lock").clone();
        let live = sender.as_ref().is_some_and(|s| s.receiver_count() > 0);
        let mut records = Vec::with_capacity(if live { records_in_group } else { 0 });
        for (req, (req_first, req_last)) in group.into_iter().zip(acks) {
            let ack = Appended {
                first: Offset::new(req_first).expect("offsets start at 1"),
                last: Offset::new(req_last).expect("offsets start at 1"),
                term: shared.term,
                at,
            };
            if live {
                records.extend(
                    req.entries
                        .into_iter()
                        .zip(req_first..)
                        .map(|(entry, offset)| Record {
                            offset: Offset::new(offset).expect("offsets start at 1"),
                            term: shared.term,
                            at,
                            actor: entry.actor,
                            event: entry.event,
                        }),
                );
            }
            let _ = req.reply.send(Ok(ack));
        }
        if let Some(sender) = sender.filter(|_| live) {
            let _ = sender.send(records.into());
        }
        true
    }
}

fn request_bytes(req: &Request) -> usize {
    req.payloads.iter().map(Vec::len).sum()
}
