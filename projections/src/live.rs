//! The projections a master serves: the live [`State`], folded from every committed record as
//! it commits, and the state as of any earlier offset or time.
//!
//! The only I/O in this crate (feature `live`), kept apart from the pure fold. The live state
//! sits behind a read-write lock: a query holds a read guard for its whole run, so it sees
//! one offset throughout, and the fold takes the write lock per batch of records.
//! Far behind the log's head, the fold catches up with a reader thread reading ahead, then
//! follows a subscription.
//!
//! **Checkpoints** are the serialized state every so many records, in
//! `<data-dir>/checkpoints/<offset>.ckpt`: a line of JSON (the header), then the state in
//! MessagePack with structs as arrays, or as maps keyed by field index where a field was left
//! out ([`cairn_log::indexed`]), which loads several times as fast as the same state in JSON. They
//! are a cache, never the truth: one that does not check out (torn, from another cluster, of
//! another format, past the log's head, or not matching the record at its offset) is ignored
//! and deleted, and deleting them all changes no answer, only speed.
//! At most `kept` are kept: when there would be more, the one whose removal leaves the smallest
//! gap goes, so that they stay spread over the whole log, and the spacing grows with the log.
//! A big state is checkpointed less often (see [`STATE_BYTES_PER_RECORD`]): writing one costs
//! in proportion to its size, and at a fixed spacing that cost outgrows the fold it is meant
//! to save.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_log::engine::Log;
use cairn_log::event::Timestamp;
use cairn_log::{Offset, Record};
use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};
use tracing::{debug, warn};

use crate::{Fold, Retention, State};

/// Records read from the log per step of a replay.
const REPLAY_CHUNK: usize = 8192;
/// Records behind the log's head from which the live fold catches up with a reader thread
/// reading ahead rather than a subscription.
const CATCH_UP_FROM: u64 = REPLAY_CHUNK as u64;
/// Chunks a replay reads ahead of its fold (or of loading the checkpoint it starts from):
/// about 20 MiB of decoded records at most.
const READ_AHEAD: usize = 8;
/// Records folded under one write lock: bounds how long a query waits behind the fold.
const FOLD_BATCH: usize = 1024;
/// States computed for `as_of` at once; more callers wait their turn. Each loads a checkpoint
/// and replays after it on up to two threads, and holds a whole state (up to ~130 MB at 10M
/// events: the bench's process peaks at 134 MiB folding them in memory): two keep both cores
/// busy and bound that memory, however many queries ask.
pub const AS_OF_AT_ONCE: usize = 2;
/// Longest header line read from a checkpoint (they are ~200 bytes).
const MAX_HEADER: u64 = 4096;
/// Checkpoint file format; a file of another format is ignored (and deleted). Format 1 held the
/// state as JSON, in `<offset>.json` files; format 2 kept every removed framework; format 3
/// held times as RFC 3339 text; format 4 named every field; format 5 was one MessagePack
/// document, decoded on one thread; format 6 keyed every struct's fields by index; format 7
/// kept the runs triggered for every job in one map beside the jobs.
const CHECKPOINT_FORMAT: u32 = 8;
/// Bytes of checkpoint per record folded, at most: the next checkpoint waits for at least
/// (the last one's size / this) records.
/// Copying, serializing and writing a checkpoint takes ~7 ns a byte here, so this holds
/// checkpoints to ~7 µs a record in the worst case, about one live fold's own cost, on the
/// other core (measured in BENCHMARKS.md, "The apps scheduler, end to end": at a fixed 10,000
/// records, 100,000 tasks' 100 MB checkpoints took a third of the master's time).
pub const STATE_BYTES_PER_RECORD: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("offset {offset} is beyond the log's head ({head})")]
    Beyond { offset: u64, head: u64 },
    #[error(transparent)]
    Log(#[from] cairn_log::Error),
    #[error("the projections stopped: the log is closed")]
    Stopped,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Where checkpoints live (`<data-dir>/checkpoints`).
    pub checkpoint_dir: PathBuf,
    /// The smallest spacing between checkpoints, in records.
    pub checkpoint_every: u64,
    /// Most checkpoints kept. 512: at the spacing that keeps them within
    /// [`STATE_BYTES_PER_RECORD`] (~20,000 records for a 10M log's ~20 MB state), a 10M log
    /// fills about that many (measured: 512, 10,000 to ~23,000 records apart, so an as-of query
    /// replays at most ~20,000 records; BENCHMARKS.md); the disk they take is bounded by that
    /// rule, not by this one.
    pub checkpoints_kept: usize,
    /// States computed for `as_of` kept in memory, for incidents replayed step by step.
    pub as_of_cache: usize,
    pub retention: Retention,
}

impl ProjectorConfig {
    pub fn new(checkpoint_dir: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint_dir: checkpoint_dir.into(),
            checkpoint_every: 10_000,
            checkpoints_kept: 512,
            as_of_cache: 4,
            retention: Retention::default(),
        }
    }
}

/// A state to read: the live one (under a read guard) or one computed as of an offset.
#[derive(Debug)]
pub enum View {
    Live(OwnedRwLockReadGuard<State>),
    AsOf(Arc<State>),
}

impl Deref for View {
    type Target = State;
    fn deref(&self) -> &State {
        match self {
            View::Live(guard) => guard,
            View::AsOf(state) => state,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Projector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Log,
    config: ProjectorConfig,
    genesis: Mutex<Option<String>>,
    state: Arc<RwLock<State>>,
    folded: watch::Sender<u64>,
    checkpoints: Mutex<Checkpoints>,
    recent: Mutex<Vec<Arc<State>>>,
    /// Turns to compute an as-of state ([`AS_OF_AT_ONCE`]).
    computing: tokio::sync::Semaphore,
    /// Whether a catch-up's checkpoints are still being added to (see `fill_gaps`).
    filling: watch::Sender<Filling>,
    metrics: Metrics,
}

/// What `/metrics` shows of the projections, as `cairn_projections_*`
/// ([`Projector::register_metrics`]).
#[derive(Debug, Clone, Default)]
struct Metrics {
    /// The last record folded into the live state.
    folded_offset: Gauge,
    /// As-of states being computed now: at most [`AS_OF_AT_ONCE`].
    as_of_computing: Gauge,
    /// As-of queries waiting for a turn to compute their state.
    as_of_waiting: Gauge,
    as_of_computed: Counter,
    /// As-of queries answered by the live state or a recently computed one.
    as_of_reused: Counter,
}

/// Counts itself in a gauge for as long as it lives, however the future holding it ends.
struct Counted<'a>(&'a Gauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Who is adding checkpoints: a catch-up (far apart), then the filler (in the gaps it left).
/// Changed only under the watch's lock, so that a catch-up ending while the filler is about to
/// stop is never left unfilled, and waiters are released only when both are done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Filling {
    catching_up: bool,
    filler_running: bool,
    /// A catch-up ended while the filler ran: it looks at the gaps once more before stopping.
    again: bool,
}

impl Filling {
    fn done(&self) -> bool {
        !self.catching_up && !self.filler_running
    }

    fn catch_up_started(&mut self) {
        self.catching_up = true;
    }

    /// A catch-up ended, having folded records (and left gaps) or not; true if a filler must
    /// be started (none is running to take the new gaps).
    fn caught_up(&mut self, folded: bool) -> bool {
        self.catching_up = false;
        if !folded {
            return false;
        }
        if self.filler_running {
            self.again = true;
            return false;
        }
        self.filler_running = true;
        true
    }

    /// A pass of the filler ended (no gap left, the log closed, or a checkpoint failed); true if
    /// it must look again (a catch-up ended meanwhile).
    fn filler_ended(&mut self) -> bool {
        let again = std::mem::take(&mut self.again);
        self.filler_running = again;
        again
    }
}

#[derive(Debug)]
struct Checkpoints {
    /// Offset → file, of every checkpoint on disk.
    files: BTreeMap<u64, PathBuf>,
    /// The offset of the last state taken to be written (written or not).
    last_taken: u64,
    /// The size of the last checkpoint written, in bytes.
    last_bytes: u64,
}

impl Checkpoints {
    /// The first offset at which the next checkpoint is due: the largest of three distances
    /// after the last one taken. The configured spacing; the spacing at which `kept`
    /// checkpoints cover the log up to `offset` (a longer log has them further apart, as it
    /// can keep no more); and the one that keeps writing them within
    /// [`STATE_BYTES_PER_RECORD`]. A distance, not a multiple: a checkpoint that could not be
    /// taken when due (the last one still being written) is taken as soon as it can be.
    fn next_due(&self, offset: u64, config: &ProjectorConfig) -> u64 {
        self.last_taken.saturating_add(self.spacing(offset, config))
    }

    /// The distance between checkpoints of a log `offset` records long (see `next_due`).
    fn spacing(&self, offset: u64, config: &ProjectorConfig) -> u64 {
        let kept = u64::try_from(config.checkpoints_kept.max(1)).unwrap_or(u64::MAX);
        config
            .checkpoint_every
            .max(1)
            .max(offset / kept)
            .max(self.last_bytes / STATE_BYTES_PER_RECORD)
    }

    /// Where a checkpoint would best fill the widest gap between two (or before the first, or
    /// from the newest to `head`), while fewer than `kept` exist: the base to replay from (an
    /// offset and its file, or the empty state) and the offset to replay to, the first of the
    /// points that cut the gap into equal parts no longer than [`Checkpoints::fill_length`]
    /// (then, once none is longer, than the spacing). `None` if no gap is longer than the
    /// spacing. The stretch after the newest counts: a catch-up ends up to a write's time past
    /// its last checkpoint, and the live fold takes the next only when more records come.
    fn widest_gap(
        &self,
        head: u64,
        config: &ProjectorConfig,
    ) -> Option<(u64, Option<PathBuf>, u64)> {
        if self.files.len() >= config.checkpoints_kept {
            return None;
        }
        let length = self.fill_length(head, config);
        // The first of the widest, so that ties go to the older gap.
        let (at, path, gap) =
            self.gaps(head)
                .reduce(|widest, gap| if gap.2 > widest.2 { gap } else { widest })?;
        // Once none is longer, the checkpoints still free cut the widest gaps at the spacing.
        let parts = match gap.div_ceil(length) {
            1 => gap.div_ceil(self.spacing(head, config)),
            parts => parts,
        };
        (parts >= 2).then(|| (at, path.cloned(), at + gap / parts))
    }

    /// The stretches with no checkpoint inside, in order: before the first, between two, and
    /// from the newest to `head`; each as its start, the file there (`None`: the empty state
    /// at 0) and its length.
    fn gaps(&self, head: u64) -> impl Iterator<Item = (u64, Option<&PathBuf>, u64)> {
        let starts =
            std::iter::once((0, None)).chain(self.files.iter().map(|(o, p)| (*o, Some(p))));
        let ends = self.files.keys().copied().chain(std::iter::once(head));
        starts
            .zip(ends)
            .map(|((at, path), end)| (at, path, end.saturating_sub(at)))
    }

    /// The longest part the gaps are cut into when filled: the spacing, or longer if cutting
    /// every gap into parts that short would need more than `kept` checkpoints. Then, filling
    /// the widest gap first a part at a time, none would be free while gaps two parts wide are
    /// left: fewer, longer parts that fit leave the widest gap shorter (at 10M, ~20,000 records
    /// rather than ~34,000).
    fn fill_length(&self, head: u64, config: &ProjectorConfig) -> u64 {
        let spacing = self.spacing(head, config);
        let kept = u64::try_from(config.checkpoints_kept.max(1)).unwrap_or(u64::MAX);
        let gaps: Vec<u64> = self.gaps(head).map(|(_, _, gap)| gap).collect();
        let fits = |length: u64| gaps.iter().map(|g| g.div_ceil(length)).sum::<u64>() <= kept;
        // The least length that fits, between the spacing and the widest gap (which fits:
        // the gaps are fewer than `kept`).
        let (mut lo, mut hi) = (
            spacing,
            gaps.iter().copied().max().unwrap_or(spacing).max(spacing),
        );
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// Adds a written checkpoint; while there are more than `kept`, drops the one whose
    /// removal leaves the smallest gap (the older on a tie), so that they stay spread over the
    /// whole log however irregularly they were taken. Never the newest: a restart starts
    /// there. Returns the files to delete.
    fn insert(&mut self, offset: u64, path: PathBuf, bytes: u64, kept: usize) -> Vec<PathBuf> {
        // The spacing follows the newest state's size, not a gap filled behind it.
        if self
            .files
            .keys()
            .next_back()
            .is_none_or(|newest| offset > *newest)
        {
            self.last_bytes = bytes;
        }
        self.files.insert(offset, path);
        let mut gone = Vec::new();
        while self.files.len() > kept.max(1) {
            let offsets: Vec<u64> = self.files.keys().copied().collect();
            let drop = (0..offsets.len() - 1)
                .min_by_key(|&i| offsets[i + 1] - if i == 0 { 0 } else { offsets[i - 1] })
                .map(|i| offsets[i]);
            gone.extend(drop.and_then(|o| self.files.remove(&o)));
        }
        gone
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    offset: u64,
    at: Timestamp,
    /// The log's first record's hash: a checkpoint of another cluster's log never matches.
    genesis: Option<String>,
    crc32: u32,
    len: usize,
}

/// A state to start a replay from.
enum Base {
    Checkpoint(u64, PathBuf),
    Cached(Arc<State>),
    Empty,
}

impl Base {
    fn offset(&self) -> u64 {
        match self {
            Base::Checkpoint(at, _) => *at,
            Base::Cached(state) => state.offset,
            Base::Empty => 0,
        }
    }
}

impl Projector {
    /// Starts folding `log` from its newest usable checkpoint.
    pub async fn start(log: Log, config: ProjectorConfig) -> Result<Self> {
        let dir = config.checkpoint_dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "cannot create the checkpoint directory; running without checkpoints");
        }
        let files = list_checkpoints(&dir);
        let last_taken = files.keys().next_back().copied().unwrap_or(0);
        let (folded, _) = watch::channel(0);
        let projector = Projector {
            inner: Arc::new(Inner {
                genesis: Mutex::new(log.status().genesis),
                log,
                state: Arc::new(RwLock::new(State::with_retention(config.retention))),
                folded,
                checkpoints: Mutex::new(Checkpoints {
                    files,
                    last_taken,
                    last_bytes: 0,
                }),
                recent: Mutex::new(Vec::new()),
                computing: tokio::sync::Semaphore::new(AS_OF_AT_ONCE),
                filling: watch::channel(Filling::default()).0,
                metrics: Metrics::default(),
                config,
            }),
        };
        let start = projector.base(projector.inner.log.head()).await?;
        let from = start.offset;
        *projector.inner.state.write().await = start;
        projector.inner.metrics.folded_offset.set(from as i64);
        projector.inner.folded.send_replace(from);
        debug!(from, "projections start folding");
        let fold = projector.clone();
        tokio::spawn(async move {
            fold.follow(Offset::new(from + 1).unwrap_or(Offset::FIRST))
                .await
        });
        Ok(projector)
    }

    /// Registers the projections' metrics (`cairn_projections_*`) for `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        let r = registry.sub_registry_with_prefix("cairn_projections");
        for (name, help, gauge) in [
            (
                "folded_offset",
                "The last record folded into the live state",
                &m.folded_offset,
            ),
            (
                "as_of_computing",
                "As-of states being computed now",
                &m.as_of_computing,
            ),
            (
                "as_of_waiting",
                "As-of queries waiting for a turn to compute their state",
                &m.as_of_waiting,
            ),
        ] {
            r.register(name, help, gauge.clone());
        }
        for (name, help, counter) in [
            (
                "as_of_computed",
                "As-of states computed from a checkpoint and the log",
                &m.as_of_computed,
            ),
            (
                "as_of_reused",
                "As-of queries answered by the live state or a recently computed one",
                &m.as_of_reused,
            ),
        ] {
            r.register(name, help, counter.clone());
        }
    }

    /// The offset of the last record folded into the live state.
    pub fn folded(&self) -> u64 {
        *self.inner.folded.borrow()
    }

    /// Waits until the live state has folded `offset`. Callers bound the wait.
    pub async fn wait_for(&self, offset: u64) -> Result<()> {
        let mut folded = self.inner.folded.subscribe();
        folded
            .wait_for(|f| *f >= offset)
            .await
            .map(|_| ())
            .map_err(|_| Error::Stopped)
    }

    /// Waits until the gaps a catch-up left between checkpoints are filled (see
    /// `fill_gaps`). Callers bound the wait.
    pub async fn wait_for_checkpoints(&self) {
        let _ = self.inner.filling.subscribe().wait_for(Filling::done).await;
    }

    /// The live state, for as long as the guard is held.
    pub async fn current(&self) -> View {
        View::Live(self.inner.state.clone().read_owned().await)
    }

    /// The state as of `offset` (0: before the first record).
    pub async fn as_of(&self, offset: u64) -> Result<View> {
        let head = self.inner.log.head();
        if offset > head {
            return Err(Error::Beyond { offset, head });
        }
        // Never waits for the live state: a caller may already hold a read guard of it, and
        // waiting behind the fold's write lock would then wait forever.
        let metrics = &self.inner.metrics;
        if let Ok(live) = self.inner.state.clone().try_read_owned() {
            if live.offset == offset {
                metrics.as_of_reused.inc();
                return Ok(View::Live(live));
            }
        }
        if let Some(hit) = self.cached(|s| s.offset == offset) {
            metrics.as_of_reused.inc();
            return Ok(View::AsOf(hit));
        }
        let waiting = Counted::new(&metrics.as_of_waiting);
        let _turn = self
            .inner
            .computing
            .acquire()
            .await
            .map_err(|_| Error::Stopped)?;
        drop(waiting);
        // Whoever had the turn before may have computed this very state (a burst of the same
        // query).
        if let Some(hit) = self.cached(|s| s.offset == offset) {
            metrics.as_of_reused.inc();
            return Ok(View::AsOf(hit));
        }
        let _computing = Counted::new(&metrics.as_of_computing);
        // The records after the base are read while the base loads: each costs about as much.
        let state = loop {
            let this = self.clone();
            let base = self.pick_base(offset);
            let from = base.offset() + 1;
            let replayed = tokio::task::spawn_blocking(move || {
                replay_from(&this.inner.log, from, offset, || this.materialize(base))
            })
            .await
            .map_err(|_| Error::Stopped)??;
            // `None`: the checkpoint did not check out and is gone; the next base is older.
            if let Some(state) = replayed {
                break state;
            }
        };
        metrics.as_of_computed.inc();
        let state = Arc::new(state);
        let kept = self.inner.config.as_of_cache;
        if kept > 0 {
            let evicted = {
                let mut recent = self.inner.recent.lock().expect("as-of cache");
                let evicted = (recent.len() >= kept).then(|| recent.remove(0));
                recent.push(state.clone());
                evicted
            };
            // Freeing a big state frees every value in it (~16 ms at 10M events,
            // BENCHMARKS.md): not on this query's path.
            if let Some(evicted) = evicted {
                tokio::task::spawn_blocking(move || drop(evicted));
            }
        }
        Ok(View::AsOf(state))
    }

    /// The offset of the last record appended at or before `time` (0 if none was): the state
    /// as of a time is the state as of that offset.
    pub fn offset_at(&self, time: Timestamp) -> Result<u64> {
        // Record times never go back (the leader's clock is made monotonic), so search.
        let (mut lo, mut hi) = (0, self.inner.log.head());
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.record(mid)?.at <= time {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The offsets of the checkpoints on disk.
    pub fn checkpoints(&self) -> Vec<u64> {
        let checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
        checkpoints.files.keys().copied().collect()
    }

    fn record(&self, offset: u64) -> Result<Record> {
        let from = Offset::new(offset).ok_or(Error::Beyond { offset, head: 0 })?;
        self.inner
            .log
            .read(from, 1)?
            .pop()
            .ok_or_else(|| Error::Beyond {
                offset,
                head: self.inner.log.head(),
            })
    }

    fn cached(&self, fits: impl Fn(&State) -> bool) -> Option<Arc<State>> {
        let recent = self.inner.recent.lock().expect("as-of cache");
        recent
            .iter()
            .filter(|s| fits(s))
            .max_by_key(|s| s.offset)
            .cloned()
    }

    /// The best state to replay from towards `offset`: a cached one, a checkpoint, or empty.
    async fn base(&self, offset: u64) -> Result<State> {
        loop {
            let this = self.clone();
            let base = self.pick_base(offset);
            let loaded = tokio::task::spawn_blocking(move || this.materialize(base))
                .await
                .map_err(|_| Error::Stopped)?;
            if let Some(state) = loaded {
                return Ok(state);
            }
        }
    }

    /// Where to start towards `offset`: the latest cached state or checkpoint at or before it.
    fn pick_base(&self, offset: u64) -> Base {
        let cached = self.cached(|s| s.offset <= offset);
        let checkpoint = {
            let checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
            checkpoints
                .files
                .range(..=offset)
                .next_back()
                .map(|(o, p)| (*o, p.clone()))
        };
        match (checkpoint, cached) {
            (Some((at, path)), cached) if cached.as_ref().is_none_or(|c| c.offset < at) => {
                Base::Checkpoint(at, path)
            }
            (_, Some(cached)) => Base::Cached(cached),
            (_, None) => Base::Empty,
        }
    }

    /// The state `base` stands for; `None` if it is a checkpoint that does not check out,
    /// which is then deleted.
    fn materialize(&self, base: Base) -> Option<State> {
        match base {
            Base::Checkpoint(at, path) => match self.load(at, &path) {
                Ok(state) => Some(state),
                Err(why) => {
                    warn!(
                        offset = at,
                        why, "ignoring and deleting a checkpoint that does not check out"
                    );
                    self.forget(at);
                    None
                }
            },
            Base::Cached(state) => Some(State::clone(&state)),
            Base::Empty => Some(State::with_retention(self.inner.config.retention)),
        }
    }

    fn load(&self, offset: u64, path: &Path) -> Result<State, String> {
        // The header first: a checkpoint of another format or offset is refused without
        // reading its body (after an upgrade, every old one is, at a master's start).
        let mut file =
            std::io::BufReader::new(std::fs::File::open(path).map_err(|e| e.to_string())?);
        let mut line = Vec::new();
        (&mut file)
            .take(MAX_HEADER)
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if line.pop() != Some(b'\n') {
            return Err("no header".into());
        }
        let header: Header = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
        if header.format != CHECKPOINT_FORMAT || header.offset != offset {
            return Err(format!(
                "format {} at offset {}",
                header.format, header.offset
            ));
        }
        // Sized once (a torn header's length is capped by the file's).
        let size = file.get_ref().metadata().map_or(0, |m| m.len());
        let mut body = Vec::with_capacity(usize::try_from(size).map_or(0, |s| s.min(header.len)));
        file.read_to_end(&mut body).map_err(|e| e.to_string())?;
        let body = body.as_slice();
        if body.len() != header.len || crc32fast::hash(body) != header.crc32 {
            return Err("torn or corrupt".into());
        }
        if header.genesis != *self.inner.genesis.lock().expect("genesis") {
            return Err("taken from another cluster's log".into());
        }
        let record = self.record(offset).map_err(|e| e.to_string())?;
        if record.at != header.at {
            return Err(format!(
                "the record at {offset} is not the one it was taken at"
            ));
        }
        let state = decode_checkpoint(body)?;
        if state.offset != offset || state.retention != self.inner.config.retention {
            return Err("holds another offset or retention".into());
        }
        Ok(state)
    }

    fn forget(&self, offset: u64) {
        let mut checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
        if let Some(path) = checkpoints.files.remove(&offset) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Folds every committed record into the live state, for as long as the log is open.
    async fn follow(self, mut from: Offset) {
        let mut writing = None;
        loop {
            match self.catch_up(from, &mut writing).await {
                Ok(next) => {
                    let mut start = false;
                    self.inner
                        .filling
                        .send_modify(|f| start = f.caught_up(next != from));
                    if start {
                        let this = self.clone();
                        tokio::task::spawn_blocking(move || this.fill_gaps());
                    }
                    from = next;
                }
                Err(e) => return warn!(error = %e, "projections cannot catch up with the log"),
            }
            let mut subscription = match self.inner.log.subscribe(from) {
                Ok(s) => s,
                Err(e) => return warn!(error = %e, "projections cannot follow the log"),
            };
            loop {
                match self.fold_batch(&mut subscription, &mut writing).await {
                    Ok(Some(next)) => from = next,
                    Ok(None) => return debug!("the log closed; projections stop"),
                    Err(cairn_log::Error::Lagged { resume_from, .. }) => {
                        from = Offset::new(resume_from).unwrap_or(from);
                        break;
                    }
                    Err(e) => return warn!(error = %e, "projections stop following the log"),
                }
            }
        }
    }

    /// While the live state is far behind the log's head (a master starting on a long log, or
    /// a fold that lagged), folds what is durable with a reader thread reading and decoding
    /// ahead, as a replay does: a subscription reads and folds in turn, on one core. Returns
    /// the next offset to fold.
    async fn catch_up(
        &self,
        mut from: Offset,
        writing: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Offset, cairn_log::Error> {
        loop {
            let until = self.inner.log.head();
            if until < from.get().saturating_add(CATCH_UP_FROM) {
                return Ok(from);
            }
            let started = from;
            // Before the fold reaches the head: whoever waits for both sees the gaps filled.
            self.inner.filling.send_modify(Filling::catch_up_started);
            let (chunks, mut ready) = tokio::sync::mpsc::channel(READ_AHEAD);
            let (spent, buffers) = std::sync::mpsc::channel();
            let log = self.inner.log.clone();
            let reader = tokio::task::spawn_blocking(move || {
                read_ahead(&log, from.get(), until, &buffers, |chunk| {
                    chunks.blocking_send(chunk).is_ok()
                });
            });
            while let Some(records) = ready.recv().await {
                let mut records = records?;
                let mut folding = records.drain(..);
                while let Some(first) = folding.next() {
                    let (next, _) = self
                        .fold_ready(
                            first,
                            || Ok::<_, std::convert::Infallible>(folding.next()),
                            writing,
                        )
                        .await;
                    from = next;
                }
                drop(folding);
                let _ = spent.send(records);
            }
            let _ = reader.await;
            // Nothing read below the head: the subscription will say why.
            if from == started {
                return Ok(from);
            }
        }
    }

    /// Folds the next record and whatever else is ready, under one write lock; returns the
    /// next offset to fold, `None` once the log has closed.
    async fn fold_batch(
        &self,
        subscription: &mut cairn_log::engine::Subscription,
        writing: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Option<Offset>, cairn_log::Error> {
        let Some(first) = subscription.next().await.transpose()? else {
            return Ok(None);
        };
        // `next` is cancel-safe: polling it once loses nothing.
        let ready = || subscription.next().now_or_never().flatten().transpose();
        match self.fold_ready(first, ready, writing).await {
            (next, None) => Ok(Some(next)),
            (_, Some(e)) => Err(e),
        }
    }

    /// Folds `first` and the records `ready` gives without waiting, under one write lock, up
    /// to [`FOLD_BATCH`] or a checkpoint; returns the next offset to fold, and the error that
    /// ended the batch, if one did (what was folded before it is published).
    async fn fold_ready<E>(
        &self,
        first: Record,
        mut ready: impl FnMut() -> Result<Option<Record>, E>,
        writing: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> (Offset, Option<E>) {
        let mut state = self.inner.state.write().await;
        // While the last checkpoint is still being written (catching up on a long log), none
        // is due: checkpoints are a cache, and the fold must not wait for the disk. The next
        // is taken as soon as the writer is free.
        let busy = writing.as_ref().is_some_and(|w| !w.is_finished());
        let due_at = if busy {
            u64::MAX
        } else {
            let checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
            checkpoints.next_due(state.offset, &self.inner.config)
        };
        let mut next = first.offset.next();
        state.apply(first);
        let mut failed = None;
        // A batch ends where a checkpoint is due.
        for _ in 1..FOLD_BATCH {
            if state.offset >= due_at {
                break;
            }
            match ready() {
                Ok(Some(record)) => {
                    next = record.offset.next();
                    state.apply(record);
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let offset = state.offset;
        // Serializing takes longer than copying: the copy is written while folding goes on.
        let snapshot = (offset >= due_at).then(|| state.clone());
        drop(state);
        if snapshot.is_some() {
            self.inner
                .checkpoints
                .lock()
                .expect("checkpoints")
                .last_taken = offset;
        }
        // Before waiters on `folded` wake: what they read next agrees.
        self.inner.metrics.folded_offset.set(offset as i64);
        self.inner.folded.send_replace(offset);
        if let Some(snapshot) = snapshot {
            self.checkpoint(snapshot, writing).await;
        }
        (next, failed)
    }

    /// Writes a checkpoint of `state` in the background, one at a time.
    async fn checkpoint(&self, state: State, writing: &mut Option<tokio::task::JoinHandle<()>>) {
        if let Some(previous) = writing.take() {
            let _ = previous.await;
        }
        let this = self.clone();
        *writing = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = this.write_checkpoint(&state) {
                warn!(error = %e, offset = state.offset, "cannot write a checkpoint");
            }
        }));
    }

    fn write_checkpoint(&self, state: &State) -> std::io::Result<()> {
        let body = encode_checkpoint(state)?;
        let header = Header {
            format: CHECKPOINT_FORMAT,
            offset: state.offset,
            at: state.at,
            genesis: self.genesis_now(),
            crc32: crc32fast::hash(&body),
            len: body.len(),
        };
        let dir = &self.inner.config.checkpoint_dir;
        let path = dir.join(format!("{:020}.ckpt", state.offset));
        let tmp = dir.join(format!("{:020}.ckpt.tmp", state.offset));
        let mut file = std::fs::File::create(&tmp)?;
        serde_json::to_writer(&mut file, &header)?;
        file.write_all(b"\n")?;
        file.write_all(&body)?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        let gone = self.inner.checkpoints.lock().expect("checkpoints").insert(
            state.offset,
            path,
            body.len() as u64,
            self.inner.config.checkpoints_kept,
        );
        for path in gone {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// Adds checkpoints in the widest gaps between them (and after the newest, up to what is
    /// folded), one at a time, until none is longer than the part length
    /// ([`Checkpoints::fill_length`]) or as many are kept as may be; stops when the log closes.
    /// A catch-up takes them as far apart as one write takes (the writer is busy all through
    /// it, 100,000 records and more at 10M), and an as-of query replays the whole gap it falls
    /// in. Runs on a thread of its own, one at a time ([`Filling`]), and looks again when a
    /// catch-up ended while it ran.
    fn fill_gaps(&self) {
        loop {
            self.fill_widest_gaps();
            let mut again = false;
            self.inner.filling.send_modify(|f| again = f.filler_ended());
            if !again {
                return;
            }
        }
    }

    /// One pass of `fill_gaps`: until no gap is left, the log closes or a checkpoint cannot be
    /// made.
    fn fill_widest_gaps(&self) {
        while self.inner.log.is_accepting() {
            let gap = {
                let checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
                checkpoints.widest_gap(self.folded(), &self.inner.config)
            };
            let Some((at, path, until)) = gap else {
                return;
            };
            let base = match path {
                Some(path) => Base::Checkpoint(at, path),
                None => Base::Empty,
            };
            match replay_from(&self.inner.log, at + 1, until, || self.materialize(base)) {
                Ok(Some(state)) => {
                    if let Err(e) = self.write_checkpoint(&state) {
                        return warn!(error = %e, offset = until, "cannot write a checkpoint");
                    }
                }
                // The base did not check out and is gone: the gaps are looked at again.
                Ok(None) => {}
                Err(e) => return warn!(error = %e, "cannot fill a gap between checkpoints"),
            }
        }
    }

    /// The log's genesis, learned once the first record exists.
    fn genesis_now(&self) -> Option<String> {
        let mut genesis = self.inner.genesis.lock().expect("genesis");
        if genesis.is_none() {
            *genesis = self.inner.log.status().genesis;
        }
        genesis.clone()
    }
}

/// Folds the records after `state` up to `until`, read from `log`. The next chunk is read and
/// decoded on another thread while this one folds the last: reading costs about as much as
/// folding, and with two cores the replay then takes the longer of the two, not their sum.
pub fn replay(log: &Log, state: State, until: u64) -> Result<State> {
    let from = state.offset + 1;
    replay_from(log, from, until, || Some(state)).map(|s| s.expect("the state is given"))
}

/// Like [`replay`], from the state `load` makes, which must be as of `from - 1`: the records
/// from `from` on are read while it loads. `None` if `load` gives none.
fn replay_from(
    log: &Log,
    from: u64,
    until: u64,
    load: impl FnOnce() -> Option<State>,
) -> Result<Option<State>> {
    if from > until {
        return Ok(load());
    }
    let beyond = || Error::Beyond {
        offset: until,
        head: log.head(),
    };
    std::thread::scope(|scope| {
        let (chunks, ready) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let (spent, buffers) = std::sync::mpsc::channel();
        scope.spawn(move || {
            read_ahead(log, from, until, &buffers, |chunk| {
                chunks.send(chunk).is_ok()
            })
        });
        let Some(mut state) = load() else {
            return Ok(None);
        };
        debug_assert_eq!(
            state.offset + 1,
            from,
            "a base as of the record before `from`"
        );
        for records in ready {
            let mut records = records?;
            if records.is_empty() {
                return Err(beyond());
            }
            // The fold takes the records; what it keeps of them is moved, not copied.
            state.advance(records.drain(..), until);
            // Back to the reader, which reuses the buffer.
            let _ = spent.send(records);
        }
        if state.offset < until {
            return Err(beyond());
        }
        Ok(Some(state))
    })
}

/// Reads the records from `from` to `until` in chunks, handing each to `send` until it
/// returns false (its reader has stopped), the log ends, or a read fails (the error is sent).
/// Reads into the buffers its consumer hands back through `spent` (a new one while none has
/// come back), decoding on this thread: the consumer folds on the other core, and a fresh
/// vector of megabytes per chunk is page-faulted in and purged again (BENCHMARKS.md).
fn read_ahead(
    log: &Log,
    from: u64,
    until: u64,
    spent: &std::sync::mpsc::Receiver<Vec<Record>>,
    mut send: impl FnMut(Result<Vec<Record>, cairn_log::Error>) -> bool,
) {
    let mut next = from;
    while next <= until {
        let want = usize::try_from(until - next + 1).unwrap_or(usize::MAX);
        let mut chunk = spent.try_recv().unwrap_or_default();
        chunk.clear();
        let read = log
            .read_into(
                Offset::new(next).expect("offsets start at 1"),
                want.min(REPLAY_CHUNK),
                &mut chunk,
            )
            .map(|()| chunk);
        let last = read.as_ref().ok().and_then(|r| r.last()).map(|r| r.offset);
        if !send(read) {
            return;
        }
        match last {
            Some(last) => next = last.get() + 1,
            None => return,
        }
    }
}

/// A part of a checkpoint: MessagePack, structs as arrays or as maps from field indices
/// ([`cairn_log::indexed`]: no field names, and `skip_serializing_if` still holds).
/// Public, with [`decode_state`], for the benchmark that times loading each part of a state.
pub fn encode_state<T: serde::Serialize>(state: &T) -> std::io::Result<Vec<u8>> {
    cairn_log::indexed::to_vec(state).map_err(std::io::Error::other)
}

/// The state (or part of it) in a checkpoint's part.
pub fn decode_state<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| e.to_string())
}

/// How many parts a checkpoint's body has.
const PARTS: usize = 6;

/// A checkpoint's body: the state in [`PARTS`] parts ([`encode_state`]: the offset, time,
/// anomalies and retention; then cluster, tasks, apps, jobs and audit), each behind its length
/// (8 bytes, little-endian), so that [`decode_checkpoint`] decodes them on two threads.
pub fn encode_checkpoint(state: &State) -> std::io::Result<Vec<u8>> {
    let head = (state.offset, state.at, &state.anomalies, &state.retention);
    let parts: [Vec<u8>; PARTS] = [
        encode_state(&head)?,
        encode_state(&state.cluster)?,
        encode_state(&state.tasks)?,
        encode_state(&state.apps)?,
        encode_state(&state.jobs)?,
        encode_state(&state.audit)?,
    ];
    let mut body = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
    for part in &parts {
        body.extend_from_slice(&(part.len() as u64).to_le_bytes());
        body.extend_from_slice(part);
    }
    Ok(body)
}

/// The state in a checkpoint's body. Loading a large state is mostly allocating it, which
/// two threads do nearly twice as fast: jobs (the largest part at 10M events) decode on one,
/// the rest on the caller's.
pub fn decode_checkpoint(body: &[u8]) -> Result<State, String> {
    let [head, cluster, tasks, apps, jobs, audit] = split_parts(body)?;
    std::thread::scope(|scope| {
        let jobs = scope.spawn(|| Ok::<_, String>((decode_state(jobs)?, decode_state(audit)?)));
        let (offset, at, anomalies, retention) = decode_state(head)?;
        let cluster = decode_state(cluster)?;
        let tasks = decode_state(tasks)?;
        let apps = decode_state(apps)?;
        let (jobs, audit) = jobs
            .join()
            .map_err(|_| "decoding the jobs panicked".to_owned())??;
        Ok(State {
            offset,
            at,
            cluster,
            tasks,
            apps,
            jobs,
            audit,
            anomalies,
            retention,
        })
    })
}

/// The [`PARTS`] parts of a checkpoint's body, each checked to be within it.
fn split_parts(mut body: &[u8]) -> Result<[&[u8]; PARTS], String> {
    let mut parts = [&body[..0]; PARTS];
    for (i, part) in parts.iter_mut().enumerate() {
        let (len, rest) = body
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("part {i}: no length"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|len| *len <= rest.len())
            .ok_or_else(|| format!("part {i}: longer than the body"))?;
        (*part, body) = rest.split_at(len);
    }
    if !body.is_empty() {
        return Err(format!("{} bytes after the last part", body.len()));
    }
    Ok(parts)
}

fn list_checkpoints(dir: &Path) -> BTreeMap<u64, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?;
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                return None;
            }
            // `.json`: format 1, listed so that loading it finds it outdated and deletes it.
            let offset = name
                .strip_suffix(".ckpt")
                .or_else(|| name.strip_suffix(".json"))?
                .parse()
                .ok()?;
            Some((offset, path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checkpoints kept after folding `records`, taking one whenever due unless the last
    /// is still being written (for `busy` records after it is taken), each of `bytes`.
    fn kept_after(records: u64, every: u64, kept: usize, bytes: u64, busy: u64) -> Vec<u64> {
        let mut config = ProjectorConfig::new("unused");
        config.checkpoint_every = every;
        config.checkpoints_kept = kept;
        let mut checkpoints = Checkpoints {
            files: BTreeMap::new(),
            last_taken: 0,
            last_bytes: 0,
        };
        let mut free_at = 0;
        for offset in 1..=records {
            if offset >= free_at && offset >= checkpoints.next_due(offset, &config) {
                checkpoints.last_taken = offset;
                free_at = offset + busy;
                checkpoints.insert(offset, PathBuf::new(), bytes, kept);
            }
        }
        checkpoints.files.into_keys().collect()
    }

    /// The widest stretch of the log with no checkpoint in it.
    fn longest_span(offsets: &[u64], records: u64) -> u64 {
        std::iter::once(0)
            .chain(offsets.iter().copied())
            .chain(std::iter::once(records))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(records)
    }

    /// The race this guards: a catch-up ends just as the filler finds no gap and is about to
    /// stop. Its gaps must still be filled, and waiters released only once they are.
    #[test]
    fn a_catch_up_ending_while_the_filler_runs_sends_it_round_again() {
        let mut f = Filling::default();
        assert!(f.done());
        f.catch_up_started();
        assert!(!f.done());
        assert!(f.caught_up(true), "no filler runs: one is started");
        assert!(!f.done());
        // A second catch-up starts and ends while that filler runs.
        f.catch_up_started();
        assert!(!f.caught_up(true), "the running filler takes its gaps");
        assert!(!f.done());
        assert!(f.filler_ended(), "it looks again");
        assert!(!f.done());
        assert!(!f.filler_ended(), "then stops");
        assert!(f.done());
        // A catch-up that folded nothing starts no filler, and one still running is not
        // sent round again for it.
        f.catch_up_started();
        assert!(!f.caught_up(false));
        assert!(f.done());
        assert!(f.caught_up(true));
        f.catch_up_started();
        assert!(!f.caught_up(false));
        assert!(!f.filler_ended());
        assert!(f.done());
    }

    /// While a catch-up runs, a filler that stops (its earlier gaps filled) leaves waiters
    /// waiting: the catch-up is still adding checkpoints.
    #[test]
    fn waiters_wait_for_a_catch_up_in_progress_even_when_the_filler_stops() {
        let mut f = Filling::default();
        f.catch_up_started();
        assert!(f.caught_up(true));
        f.catch_up_started();
        assert!(!f.filler_ended());
        assert!(!f.done(), "the catch-up still runs");
        assert!(f.caught_up(true), "its gaps get a new filler");
        assert!(!f.filler_ended());
        assert!(f.done());
    }

    #[test]
    fn a_checkpoint_body_decodes_to_the_state_it_was_written_from() {
        let mut history = crate::synth::Seeded::default();
        let mut state = State::with_retention(Retention {
            ended_tasks: 500,
            ..Retention::default()
        });
        for step in 0..5 {
            state.advance(history.next_chunk(20_000), u64::MAX);
            let back = decode_checkpoint(&encode_checkpoint(&state).unwrap()).unwrap();
            assert!(back == state, "after {} records", (step + 1) * 20_000);
            // Byte-identical as the API serves it, too.
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                serde_json::to_string(&state).unwrap()
            );
        }
    }

    #[test]
    fn a_checkpoint_body_cut_short_or_overlong_is_refused() {
        let mut state = State::default();
        state.advance(crate::synth::Seeded::default().next_chunk(2_000), u64::MAX);
        let body = encode_checkpoint(&state).unwrap();
        for cut in [0, 7, 8, body.len() / 2, body.len() - 1] {
            assert!(decode_checkpoint(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(
            decode_checkpoint(&longer).unwrap_err(),
            "1 bytes after the last part"
        );
        assert!(decode_checkpoint(&body).unwrap() == state);
    }

    #[test]
    fn a_checkpoint_of_this_format_still_decodes_to_the_state_it_holds() {
        // The golden log's state, checkpointed when this format was made. If it no longer
        // decodes to what the log folds to, the format changed: bump CHECKPOINT_FORMAT (old
        // checkpoints are then refused, not misread), and regenerate with CAIRN_UPDATE_GOLDEN=1.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let records: Vec<Record> =
            std::fs::read_to_string(dir.join("../log/tests/golden/v1.events.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let mut state = State::default();
        state.advance(records, u64::MAX);
        let path = dir.join(format!("tests/golden/checkpoint.v{CHECKPOINT_FORMAT}.bin"));
        if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, encode_checkpoint(&state).unwrap()).unwrap();
        }
        let committed = std::fs::read(&path).expect("set CAIRN_UPDATE_GOLDEN=1 to create it");
        assert!(
            decode_checkpoint(&committed).unwrap() == state,
            "{} no longer decodes to the golden log's state",
            path.display()
        );
    }

    #[test]
    fn a_small_state_is_checkpointed_at_the_spacing() {
        let every_10k: Vec<u64> = (1..=10).map(|k| k * 10_000).collect();
        assert_eq!(kept_after(100_000, 10_000, 128, 0, 0), every_10k);
        assert_eq!(
            kept_after(100_000, 10_000, 128, 10_000 * STATE_BYTES_PER_RECORD, 0),
            every_10k
        );
    }

    #[test]
    fn a_big_state_waits_longer() {
        // 30,000 records' worth of bytes: every 30,000 records, never more often.
        assert_eq!(
            kept_after(100_000, 10_000, 128, 30_000 * STATE_BYTES_PER_RECORD, 0),
            [10_000, 40_000, 70_000, 100_000]
        );
    }

    #[test]
    fn a_long_log_keeps_as_many_spread_over_all_of_it() {
        let offsets = kept_after(1_000_000, 1_000, 16, 0, 0);
        assert_eq!(offsets.len(), 16);
        // Evenly would be 62,500 apart; thinning by the smallest gap keeps within twice that.
        let widest = longest_span(&offsets, 1_000_000);
        assert!(
            widest <= 125_000,
            "{widest} records with no checkpoint: {offsets:?}"
        );
    }

    #[test]
    fn the_gaps_a_catch_up_left_are_filled_to_the_spacing() {
        let mut config = ProjectorConfig::new("unused");
        config.checkpoint_every = 10_000;
        // A catch-up whose writer took 100,000 records' time per checkpoint.
        let taken = kept_after(1_000_000, 10_000, 128, 0, 100_000);
        assert_eq!(taken.len(), 10);
        // Its last checkpoint is 90,000 records behind the head, a stretch filled too. Kept:
        // 128 (every gap and that stretch cut at the spacing, 10,000); 40 (30,000 is the
        // shortest part that fits: nine gaps of four parts and the stretch in three, the one
        // left over cuts a part); 15 (only five more fit: too few to cut every gap).
        for (kept, files, widest) in [(128, 99, 10_000), (40, 40, 30_000), (15, 15, 100_000)] {
            config.checkpoints_kept = kept;
            let mut checkpoints = Checkpoints {
                files: taken.iter().map(|o| (*o, PathBuf::new())).collect(),
                last_taken: 1_000_000,
                last_bytes: 0,
            };
            while let Some((at, path, until)) = checkpoints.widest_gap(1_000_000, &config) {
                // From the checkpoint right below (or the empty state), none in between.
                assert_eq!(path.is_some(), checkpoints.files.contains_key(&at));
                assert!(checkpoints.files.range(at + 1..=until).next().is_none());
                checkpoints.insert(until, PathBuf::new(), 0, kept);
            }
            // Up to the head: the catch-up's last checkpoint is 90,000 records behind it.
            let offsets: Vec<u64> = checkpoints.files.into_keys().collect();
            assert_eq!(offsets.len(), files, "kept {kept}: {offsets:?}");
            assert_eq!(
                longest_span(&offsets, 1_000_000),
                widest,
                "kept {kept}: {offsets:?}"
            );
        }
    }

    #[test]
    fn a_long_catch_up_s_gaps_are_cut_into_as_many_parts_as_can_be_kept() {
        // A 10M catch-up: the writer busy for 120,000 records a checkpoint, 512 kept (19,531
        // records apart, evenly). Cut at the spacing, each 120,000-record gap would need seven
        // parts of ~17,000, more than fit: when none is free, gaps two parts wide (~34,000) are
        // left.
        let records = 10_000_000;
        let mut config = ProjectorConfig::new("unused");
        config.checkpoint_every = 10_000;
        config.checkpoints_kept = 512;
        let taken = kept_after(records, 10_000, 512, 0, 120_000);
        let mut checkpoints = Checkpoints {
            files: taken.iter().map(|o| (*o, PathBuf::new())).collect(),
            last_taken: *taken.last().unwrap(),
            last_bytes: 0,
        };
        while let Some((_, _, until)) = checkpoints.widest_gap(records, &config) {
            assert!(checkpoints.insert(until, PathBuf::new(), 0, 512).is_empty());
        }
        let offsets: Vec<u64> = checkpoints.files.into_keys().collect();
        assert_eq!(offsets.len(), 512);
        assert_eq!(longest_span(&offsets, records), 20_000);
    }

    #[test]
    fn one_not_taken_while_the_last_is_written_is_taken_when_the_writer_is_free() {
        // Writing takes 25,000 records' time: each is taken as soon as the last is written,
        // so none is more than that apart, however many were due meanwhile.
        let offsets = kept_after(400_000, 10_000, 128, 0, 25_000);
        assert_eq!(offsets.len(), 16);
        assert_eq!(longest_span(&offsets, 400_000), 25_000);
        // Thinned, they still cover the whole log.
        let offsets = kept_after(4_000_000, 10_000, 32, 0, 25_000);
        assert_eq!(offsets.len(), 32);
        let widest = longest_span(&offsets, 4_000_000);
        assert!(widest <= 2 * 4_000_000 / 32, "{widest}: {offsets:?}");
    }
}
