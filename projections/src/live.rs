//! The projections a master serves: the live [`State`], folded from every committed record as
//! it commits, and the state as of any earlier offset or time.
//!
//! The only I/O in this crate (feature `live`), kept apart from the pure fold. The live state
//! sits behind a read-write lock: a query holds a read guard for its whole run, so it sees
//! one offset throughout, and the fold takes the write lock per batch of records.
//!
//! **Checkpoints** are the serialized state at offsets that are multiples of a spacing, in
//! `<data-dir>/checkpoints/<offset>.ckpt`: a line of JSON (the header), then the state in
//! MessagePack, which loads 1.5 times as fast as the same state in JSON and is a fifth
//! smaller. They are a cache, never the truth: one that does not check out (torn, from
//! another cluster, of another format, past the log's head, or not matching the record at its
//! offset) is ignored and deleted, and deleting them all changes no answer, only speed.
//! At most `kept` are kept: when there would be more, the spacing doubles and every other one
//! goes, so that they stay evenly spread over the whole log. A big state is checkpointed less
//! often (see [`STATE_BYTES_PER_RECORD`]): writing one costs in proportion to its size, and at
//! a fixed spacing that cost outgrows the fold it is meant to save.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_log::engine::Log;
use cairn_log::event::Timestamp;
use cairn_log::{Offset, Record};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};
use tracing::{debug, warn};

use crate::{Fold, Retention, State};

/// Records read from the log per step of a replay.
const REPLAY_CHUNK: usize = 8192;
/// Chunks a replay reads ahead of its fold (or of loading the checkpoint it starts from):
/// about 20 MiB of decoded records at most.
const READ_AHEAD: usize = 8;
/// Records folded under one write lock: bounds how long a query waits behind the fold.
const FOLD_BATCH: usize = 1024;
/// Longest header line read from a checkpoint (they are ~200 bytes).
const MAX_HEADER: u64 = 4096;
/// Checkpoint file format; a file of another format is ignored (and deleted). Format 1 held the
/// state as JSON, in `<offset>.json` files; format 2 kept every removed framework.
const CHECKPOINT_FORMAT: u32 = 3;
/// Bytes of checkpoint per record folded, at most: the next checkpoint waits for at least
/// (the last one's size / this) records, rounded up to the spacing times a power of two.
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
    /// Most checkpoints kept.
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
            checkpoints_kept: 128,
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
}

#[derive(Debug)]
struct Checkpoints {
    /// Offset → file, of every checkpoint on disk.
    files: BTreeMap<u64, PathBuf>,
    spacing: u64,
    /// The size of the last checkpoint written, in bytes.
    last_bytes: u64,
}

impl Checkpoints {
    /// Whether a checkpoint falls at `offset`: on a multiple of the spacing times the power
    /// of two that keeps checkpoint writing within [`STATE_BYTES_PER_RECORD`]. Always a
    /// multiple of `spacing`, so that thinning keeps them evenly spread.
    fn due_at(&self, offset: u64) -> bool {
        let wanted = self.last_bytes / STATE_BYTES_PER_RECORD;
        let mut every = self.spacing.max(1);
        while every < wanted {
            every = every.saturating_mul(2);
        }
        offset % every == 0
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
        let spacing = files
            .keys()
            .fold(0, |g, o| gcd(g, *o))
            .max(config.checkpoint_every);
        let (folded, _) = watch::channel(0);
        let projector = Projector {
            inner: Arc::new(Inner {
                genesis: Mutex::new(log.status().genesis),
                log,
                state: Arc::new(RwLock::new(State::with_retention(config.retention))),
                folded,
                checkpoints: Mutex::new(Checkpoints {
                    files,
                    spacing,
                    last_bytes: 0,
                }),
                recent: Mutex::new(Vec::new()),
                config,
            }),
        };
        let start = projector.base(projector.inner.log.head()).await?;
        let from = start.offset;
        *projector.inner.state.write().await = start;
        projector.inner.folded.send_replace(from);
        debug!(from, "projections start folding");
        let fold = projector.clone();
        tokio::spawn(async move {
            fold.follow(Offset::new(from + 1).unwrap_or(Offset::FIRST))
                .await
        });
        Ok(projector)
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
        if let Ok(live) = self.inner.state.clone().try_read_owned() {
            if live.offset == offset {
                return Ok(View::Live(live));
            }
        }
        if let Some(hit) = self.cached(|s| s.offset == offset) {
            return Ok(View::AsOf(hit));
        }
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
        let state = Arc::new(state);
        let kept = self.inner.config.as_of_cache;
        if kept > 0 {
            let mut recent = self.inner.recent.lock().expect("as-of cache");
            if recent.len() >= kept {
                recent.remove(0);
            }
            recent.push(state.clone());
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
        let state = decode_state(body)?;
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
        let mut state = self.inner.state.write().await;
        let mut due = self.fold_one(&mut state, &first);
        let mut next = first.offset.next();
        // A batch ends at a checkpoint's offset, so that checkpoints fall on the spacing.
        for _ in 1..FOLD_BATCH {
            if due {
                break;
            }
            let ready = tokio::select! {
                biased;
                r = subscription.next() => r,
                () = std::future::ready(()) => break,
            };
            let Some(record) = ready.transpose()? else {
                break;
            };
            due = self.fold_one(&mut state, &record);
            next = record.offset.next();
        }
        let offset = state.offset;
        // Serializing takes longer than copying: the copy is written while folding goes on.
        // While the previous one is still being written (catching up on a long log), this one
        // is skipped: checkpoints are a cache, and the fold must not wait for the disk.
        let busy = writing.as_ref().is_some_and(|w| !w.is_finished());
        let snapshot = (due && !busy).then(|| state.clone());
        drop(state);
        self.inner.folded.send_replace(offset);
        if let Some(snapshot) = snapshot {
            self.checkpoint(snapshot, writing).await;
        }
        Ok(Some(next))
    }

    /// Folds one record; whether a checkpoint is due after it.
    fn fold_one(&self, state: &mut State, record: &Record) -> bool {
        state.apply(record);
        let checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
        checkpoints.due_at(state.offset)
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
        let body = encode_state(state)?;
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
        let mut checkpoints = self.inner.checkpoints.lock().expect("checkpoints");
        checkpoints.files.insert(state.offset, path);
        checkpoints.last_bytes = body.len() as u64;
        while checkpoints.files.len() > self.inner.config.checkpoints_kept.max(1) {
            checkpoints.spacing *= 2;
            let spacing = checkpoints.spacing;
            checkpoints.files.retain(|offset, path| {
                let keep = offset % spacing == 0;
                if !keep {
                    let _ = std::fs::remove_file(path);
                }
                keep
            });
        }
        Ok(())
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
        scope.spawn(move || {
            let mut next = from;
            while next <= until {
                let want = usize::try_from(until - next + 1).unwrap_or(usize::MAX);
                let read = log.read(
                    Offset::new(next).expect("offsets start at 1"),
                    want.min(REPLAY_CHUNK),
                );
                let last = read.as_ref().ok().and_then(|r| r.last()).map(|r| r.offset);
                // The folder has stopped (an error, no base, or a short log): so does the reader.
                if chunks.send(read).is_err() {
                    return;
                }
                match last {
                    Some(last) => next = last.get() + 1,
                    None => return,
                }
            }
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
            let records = records?;
            if records.is_empty() {
                return Err(beyond());
            }
            state.advance(&records, until);
        }
        if state.offset < until {
            return Err(beyond());
        }
        Ok(Some(state))
    })
}

/// A checkpoint's body: the state in MessagePack, structs as maps (field names kept, so that
/// `default` and `skip_serializing_if` hold as in JSON).
fn encode_state(state: &State) -> std::io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(state).map_err(std::io::Error::other)
}

fn decode_state(body: &[u8]) -> Result<State, String> {
    rmp_serde::from_slice(body).map_err(|e| e.to_string())
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

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(spacing: u64, last_bytes: u64) -> Vec<u64> {
        let checkpoints = Checkpoints {
            files: BTreeMap::new(),
            spacing,
            last_bytes,
        };
        (1..=100_000).filter(|o| checkpoints.due_at(*o)).collect()
    }

    #[test]
    fn a_checkpoint_body_decodes_to_the_state_it_was_written_from() {
        let mut history = crate::synth::Seeded::default();
        let mut state = State::with_retention(Retention {
            ended_tasks: 500,
            ..Retention::default()
        });
        for step in 0..5 {
            state.advance(&history.next_chunk(20_000), u64::MAX);
            let back = decode_state(&encode_state(&state).unwrap()).unwrap();
            assert!(back == state, "after {} records", (step + 1) * 20_000);
            // Byte-identical as the API serves it, too.
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                serde_json::to_string(&state).unwrap()
            );
        }
    }

    #[test]
    fn a_small_state_is_checkpointed_at_the_spacing() {
        assert_eq!(due(10_000, 0).len(), 10);
        assert_eq!(due(10_000, 10_000 * STATE_BYTES_PER_RECORD).len(), 10);
    }

    #[test]
    fn a_big_state_waits_longer_on_multiples_of_the_spacing() {
        // 30,000 records' worth of bytes: every 40,000 (10,000 · 2²), never more often.
        assert_eq!(
            due(10_000, 30_000 * STATE_BYTES_PER_RECORD),
            [40_000, 80_000]
        );
        assert_eq!(
            due(10_000, 200_000 * STATE_BYTES_PER_RECORD),
            Vec::<u64>::new()
        );
    }
}
