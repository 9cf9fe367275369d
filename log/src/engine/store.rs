//! Durable storage of frames in sled.
//!
//! Layout: tree `events` maps the first offset of each appended group (big-endian `u64`, so key
//! order is offset order) to the group's frames, concatenated. One sled value per group rather
//! than per record is what makes group commit cheap: sled's cost is per key (measured in
//! ARCHITECTURE.md, "The log"). Tree `meta` holds the store format and the standalone term;
//! tree `quarantine` keeps any torn tail cut at open, for forensics, never served.
//!
//! Reads never go past the committed head the caller passes: a group is inserted before it is
//! flushed, and nothing is served before it is durable.

use std::path::Path;

use tracing::warn;

use crate::codec::{ChainCheck, Frames, Hash, FORMAT, GENESIS};
use crate::error::{Error, Result};
use crate::event::Timestamp;
use crate::record::Record;

/// sled's log segment size, the largest it allows. sled writes any page bigger than a quarter
/// segment to a separate "blob" file that it never fsyncs (sled 0.34.7,
/// `pagecache/blob_io.rs`), which would make such a page's acknowledged data vanish on power
/// loss. With 16 MiB segments the blob threshold is 4 MiB; a leaf page holds at most ~17
/// values, so with values of at most [`CHUNK_BYTES`] (plus one record of up to
/// [`crate::codec::MAX_PAYLOAD`]) no page ever reaches it. `blobs_are_never_written` tests it.
pub const SEGMENT_BYTES: usize = 16 << 20;

/// Largest value of the raft log: an entry is split into values of at most this many bytes.
/// See [`SEGMENT_BYTES`].
pub const CHUNK_BYTES: usize = 64 << 10;

/// Largest value of the `events` tree: a group's frames are split into values of at most this
/// many bytes (a single larger frame gets a value of its own). Small, because sled 0.34 keeps
/// every page a scan reads in memory, whatever its `cache_capacity`, until its LRU has seen
/// ~16,000 page accesses (256 shards, each acting only once 64 accesses are queued: `lru.rs`),
/// and a scan touches each leaf once. A leaf holds 8 – 17 values: with 64 KiB values,
/// reading a 10M-record log kept all of it, 2.8 GiB, and the first replay spent half its time
/// in the kernel zeroing that memory; with 4 KiB the LRU acts after ~0.6 GiB, and sled then
/// holds to its cache however long the log (BENCHMARKS.md, "The log's values").
pub const VALUE_BYTES: usize = 4 << 10;

/// Reads of at least this many records decode on several threads; below it, spawning costs more
/// than it saves (a thread is ~20 µs, a record ~1 µs).
const PARALLEL_READ_MIN: u64 = 1024;
/// Threads per read, at most.
const MAX_READ_THREADS: usize = 4;

const META_FORMAT: &[u8] = b"format";
/// The state machine's applied position, written in the same transaction as the events.
const META_APPLIED: &[u8] = b"applied";

/// The last durable record, from which the next append continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Offset of the last record, 0 when the log is empty.
    pub last: u64,
    pub hash: Hash,
    pub at: Timestamp,
}

impl Tip {
    const EMPTY: Tip = Tip {
        last: 0,
        hash: GENESIS,
        at: Timestamp::UNIX_EPOCH,
    };
}

/// What opening the log had to repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The first offset that was cut.
    pub from_offset: u64,
    pub bytes: usize,
    pub reason: String,
}

/// How to open: a writer repairs a torn tail; an inspector (verify, dump) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Write,
    Inspect,
}

/// The result of walking the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub tip: Tip,
}

#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    events: sled::Tree,
    meta: sled::Tree,
    quarantine: sled::Tree,
    tip: Tip,
    cut: Option<TailCut>,
}

/// A stored value: the offset of its first frame, and its frames.
type Group = (u64, sled::IVec);

/// Decodes the records from `from` to `last` held in `values`, appending them to `out`.
fn decode_values(values: &[Group], from: u64, last: u64, out: &mut Vec<Record>) -> Result<()> {
    for (first, value) in values {
        for frame in Frames::new(value, *first) {
            let frame = frame?;
            let offset = frame.header.offset;
            if offset > last {
                break;
            }
            if offset >= from {
                out.push(frame.decode()?);
            }
        }
    }
    Ok(())
}

fn key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

fn key_offset(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        offset: 0,
        detail: format!("bad key {key:?}"),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl Store {
    /// Opens (or creates) the log at `path`, refusing a store written by a newer format and,
    /// in [`OpenMode::Write`], cutting a torn tail.
    pub fn open(path: &Path, mode: OpenMode, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // We flush once per group commit; sled's own timer would only add fsyncs.
            .flush_every_ms(None)
            .segment_size(SEGMENT_BYTES)
            .open()
            .map_err(|e| open_error(path, e))?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_FORMAT)? {
            Some(v) => {
                let found = u16::from_le_bytes(v.as_ref().try_into().map_err(|_| Error::Open {
                    path: path.display().to_string(),
                    reason: "not a cairn log (bad format marker)".into(),
                })?);
                if found > FORMAT {
                    return Err(Error::Open {
                        path: path.display().to_string(),
                        reason: format!(
                            "written by a newer cairn (store format {found}, this binary \
                             writes {FORMAT}); upgrade this binary"
                        ),
                    });
                }
            }
            None if mode == OpenMode::Write => {
                meta.insert(META_FORMAT, &FORMAT.to_le_bytes())?;
            }
            None => {}
        }
        let mut store = Store {
            events: db.open_tree("events")?,
            quarantine: db.open_tree("quarantine")?,
            meta,
            db,
            tip: Tip::EMPTY,
            cut: None,
        };
        store.tip = store.find_tip(mode)?;
        if mode == OpenMode::Write {
            store.db.flush()?;
        }
        Ok(store)
    }

    /// The last durable record when the store was opened.
    pub fn tip(&self) -> Tip {
        self.tip
    }

    /// The tail cut at open, if any.
    pub fn tail_cut(&self) -> Option<&TailCut> {
        self.cut.as_ref()
    }

    /// Walks back from the last group to the last valid record. In write mode a broken group
    /// at the tail is trimmed to its valid prefix, the original kept in quarantine.
    fn find_tip(&mut self, mode: OpenMode) -> Result<Tip> {
        loop {
            let Some((k, value)) = self.events.last()? else {
                return Ok(Tip::EMPTY);
            };
            let first = key_offset(&k)?;
            let mut chain = self.chain_before(first)?;
            let scan = scan_group(&value, first, &mut chain);
            let Some(error) = scan.failure else {
                let last = first + scan.records - 1;
                return Ok(Tip {
                    last,
                    hash: chain.prev_hash,
                    at: chain.prev_at,
                });
            };
            if mode == OpenMode::Inspect {
                return Err(error);
            }
            let cut = TailCut {
                from_offset: first + scan.records,
                bytes: value.len() - scan.valid_bytes,
                reason: error.to_string(),
            };
            warn!(from_offset = cut.from_offset, bytes = cut.bytes, reason = %cut.reason,
                "cutting a torn tail; the cut bytes are kept in the quarantine tree");
            self.quarantine.insert(k.clone(), value.clone())?;
            if scan.valid_bytes == 0 {
                self.events.remove(&k)?;
            } else {
                self.events.insert(&k, &value[..scan.valid_bytes])?;
            }
            self.cut = Some(cut);
        }
    }

    /// The chain state just before offset `first` (the tip of the group that precedes it).
    fn chain_before(&self, first: u64) -> Result<ChainCheck> {
        let Some((k, value)) = self.events.range(..key(first)).next_back().transpose()? else {
            return Ok(ChainCheck::genesis());
        };
        let mut chain = ChainCheck::genesis();
        let mut last = None;
        for frame in Frames::new(&value, key_offset(&k)?) {
            last = Some(frame?);
        }
        if let Some(frame) = last {
            chain.prev_hash = frame.hash();
            chain.prev_at = frame.header.at;
        }
        Ok(chain)
    }

    /// Stores a group of frames and `marker` (the applied position covering them) in one
    /// transaction: after a crash either both are there or neither. `chunks` are
    /// `(first offset, byte range)` pieces of `frames`, each stored as one value. Not durable
    /// until [`Store::flush`].
    pub fn apply_group(
        &self,
        chunks: &[(u64, std::ops::Range<usize>)],
        frames: &[u8],
        marker: &[u8],
    ) -> Result<()> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let result = (&self.events, &self.meta).transaction(|(events, meta)| {
            for (first, range) in chunks {
                events.insert(&key(*first), &frames[range.clone()])?;
            }
            meta.insert(META_APPLIED, marker)?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Stores fetched frames (a member catching up from a snapshot), without moving the applied
    /// marker: if the catch-up is interrupted, [`Store::trim_past`] removes them at open.
    pub fn insert_frames(&self, first: u64, frames: &[u8]) -> Result<()> {
        let mut chunks = Chunks::default();
        let mut it = Frames::new(frames, first);
        let mut offset = first;
        loop {
            let start = it.position();
            let Some(frame) = it.next() else { break };
            frame?;
            chunks.push(offset, start..it.position());
            offset += 1;
        }
        let mut batch = sled::Batch::default();
        for (first, range) in chunks.0 {
            batch.insert(&key(first), &frames[range]);
        }
        self.events.apply_batch(batch)?;
        Ok(())
    }

    /// The applied marker, as stored with the last group.
    pub fn applied_marker(&self) -> Result<Option<sled::IVec>> {
        Ok(self.meta.get(META_APPLIED)?)
    }

    /// Sets the applied marker alone (after a snapshot install).
    pub fn put_applied_marker(&self, marker: &[u8]) -> Result<()> {
        self.meta.insert(META_APPLIED, marker)?;
        Ok(())
    }

    pub fn get_meta_json<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        match self.meta.get(k)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    offset: 0,
                    detail: format!("meta {}: {e}", String::from_utf8_lossy(k)),
                }),
            None => Ok(None),
        }
    }

    pub fn put_meta_json<T: serde::Serialize>(&self, k: &[u8], value: &T) -> Result<()> {
        self.meta
            .insert(k, serde_json::to_vec(value).map_err(Error::Encode)?)?;
        Ok(())
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Moves every record after `offset` to quarantine: records stored past the applied
    /// marker by an interrupted catch-up are not part of the log (they will be fetched or
    /// applied again). Returns how many were moved.
    pub fn trim_past(&mut self, offset: u64) -> Result<u64> {
        if self.tip.last <= offset {
            return Ok(0);
        }
        let moved = self.tip.last - offset;
        let start = match self
            .events
            .range(..=key(offset.max(1)))
            .next_back()
            .transpose()?
        {
            Some((k, _)) => k,
            None => sled::IVec::from(&key(1)),
        };
        let mut batch = sled::Batch::default();
        for item in self.events.range(start..) {
            let (k, value) = item?;
            let first = key_offset(&k)?;
            self.quarantine.insert(k.clone(), value.clone())?;
            if first > offset {
                batch.remove(k);
            } else {
                let keep = prefix_bytes(&value, first, offset - first + 1)?;
                batch.insert(k, &value[..keep]);
            }
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        self.tip = self.find_tip(OpenMode::Inspect)?;
        tracing::warn!(
            moved,
            kept_up_to = offset,
            "records past the applied marker moved to quarantine"
        );
        Ok(moved)
    }

    /// The frames of offsets `from..=to` as stored, at most about `max_bytes` of them (at least
    /// one frame), for a member catching up.
    pub fn raw_frames(&self, from: u64, to: u64, max_bytes: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let start = match self.events.range(..=key(from)).next_back().transpose()? {
            Some((k, _)) => k,
            None => return Ok(out),
        };
        for item in self.events.range(start..) {
            let (k, value) = item?;
            let mut frames = Frames::new(&value, key_offset(&k)?);
            let mut begin = 0;
            while let Some(frame) = frames.next() {
                let offset = frame?.header.offset;
                let end = frames.position();
                if offset > to || (out.len() >= max_bytes && !out.is_empty()) {
                    return Ok(out);
                }
                if offset >= from {
                    out.extend_from_slice(&value[begin..end]);
                }
                begin = end;
            }
        }
        Ok(out)
    }

    /// Makes every insert so far durable (fsync), on a blocking thread: the async callers must
    /// not stall a runtime worker for a disk's round trip. The thread drops its handle on the
    /// database before this returns, so a log closed after it can be reopened at once (sled's
    /// own `flush_async` finishes on a pool that may still hold the database a moment after).
    pub async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(drop).map_err(Error::from),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: nothing more is written.
            Err(_) => Err(Error::Closed),
        }
    }

    /// Reads up to `limit` records from `from`, never past `head`. A large read decodes on
    /// several threads: decoding JSON is where replay spends most of its time. (Scanning sled
    /// from several threads too was measured slower: its page cache contends.)
    pub fn read(&self, from: u64, limit: usize, head: u64) -> Result<Vec<Record>> {
        let Some((last, values)) = self.scan(from, limit, head)? else {
            return Ok(Vec::new());
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_READ_THREADS);
        if threads < 2 || values.len() < 2 || last - from < PARALLEL_READ_MIN {
            let mut out = Vec::new();
            decode_values(&values, from, last, &mut out)?;
            return Ok(out);
        }
        let per_thread = values.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = values
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        decode_values(part, from, last, &mut out).map(|()| out)
                    })
                })
                .collect();
            let mut out = Vec::with_capacity((last - from + 1) as usize);
            for part in parts {
                out.extend(part.join().expect("decode thread panicked")?);
            }
            Ok(out)
        })
    }

    /// Like [`Store::read`], appending to `out` and decoding on this thread: for a reader that
    /// already runs beside its consumer (a replay reading ahead of its fold), where more
    /// threads would only contend for the same cores. A buffer handed back and reused keeps
    /// its capacity: a fresh multi-megabyte vector per chunk is page faults and copies into
    /// cold memory.
    pub fn read_into(
        &self,
        from: u64,
        limit: usize,
        head: u64,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        match self.scan(from, limit, head)? {
            Some((last, values)) => decode_values(&values, from, last, out),
            None => Ok(()),
        }
    }

    /// The stored values holding the records from `from` to the last one a read of `limit`
    /// returns (also returned), `None` if there is none.
    fn scan(&self, from: u64, limit: usize, head: u64) -> Result<Option<(u64, Vec<Group>)>> {
        if from > head || limit == 0 {
            return Ok(None);
        }
        let last = head.min(from.saturating_add(limit as u64 - 1));
        let start = match self.events.range(..=key(from)).next_back().transpose()? {
            Some((k, _)) => k,
            None => sled::IVec::from(&key(1)),
        };
        let mut values = Vec::new();
        for item in self.events.range(start..=sled::IVec::from(&key(last))) {
            let (k, value) = item?;
            values.push((key_offset(&k)?, value));
        }
        Ok(Some((last, values)))
    }

    /// Walks every record up to `head`: checksums, dense offsets, hash chain, monotonic time,
    /// and that each payload decodes. The error names the first bad offset.
    pub fn verify(&self, head: u64, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
        let mut chain = ChainCheck::genesis();
        let mut expected = 1;
        for group in self.events.iter() {
            let (k, value) = group?;
            let first = key_offset(&k)?;
            if first > head {
                break;
            }
            if first != expected {
                return Err(Error::Corrupt {
                    offset: expected,
                    detail: format!("missing: the next stored group starts at {first}"),
                });
            }
            for frame in Frames::new(&value, first) {
                let frame = frame?;
                chain.check(&frame)?;
                frame.decode()?;
                expected += 1;
            }
            progress(expected - 1);
        }
        let last = expected - 1;
        if last < head {
            return Err(Error::Corrupt {
                offset: expected,
                detail: "missing".into(),
            });
        }
        Ok(VerifyReport {
            records: last,
            tip: Tip {
                last,
                hash: chain.prev_hash,
                at: chain.prev_at,
            },
        })
    }
}

/// How much of a group is intact and chained.
struct GroupScan {
    valid_bytes: usize,
    records: u64,
    /// Why the scan stopped early, if it did.
    failure: Option<Error>,
}

fn scan_group(value: &[u8], first: u64, chain: &mut ChainCheck) -> GroupScan {
    let mut scan = GroupScan {
        valid_bytes: 0,
        records: 0,
        failure: None,
    };
    let mut frames = Frames::new(value, first);
    while let Some(frame) = frames.next() {
        if let Err(e) = frame.and_then(|f| chain.check(&f)) {
            scan.failure = Some(e);
            return scan;
        }
        scan.records += 1;
        scan.valid_bytes = frames.position();
    }
    if scan.records == 0 {
        scan.failure = Some(Error::Corrupt {
            offset: first,
            detail: "empty group".into(),
        });
    }
    scan
}

/// How a run of frames is split into stored values: consecutive frames share a value while it
/// stays within [`VALUE_BYTES`] (a single larger frame gets a value of its own).
#[derive(Debug, Default)]
pub struct Chunks(pub Vec<(u64, std::ops::Range<usize>)>);

impl Chunks {
    /// Adds the frame of `offset`, at `frame` in the buffer, right after the previous one.
    pub fn push(&mut self, offset: u64, frame: std::ops::Range<usize>) {
        match self.0.last_mut() {
            Some((_, range)) if frame.end - range.start <= VALUE_BYTES => range.end = frame.end,
            _ => self.0.push((offset, frame)),
        }
    }
}

/// Bytes taken by the first `n` frames of a group.
fn prefix_bytes(value: &[u8], first: u64, n: u64) -> Result<usize> {
    let mut frames = Frames::new(value, first);
    for _ in 0..n {
        match frames.next() {
            Some(frame) => {
                frame?;
            }
            None => break,
        }
    }
    Ok(frames.position())
}

fn open_error(path: &Path, e: sled::Error) -> Error {
    let text = e.to_string();
    let reason = if text.contains("lock") || text.contains("WouldBlock") {
        format!("in use by another process ({text})")
    } else {
        format!("not openable ({text})")
    };
    Error::Open {
        path: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_share_values_of_at_most_value_bytes_and_a_larger_one_stands_alone() {
        // 300-byte frames, one of 10,000 bytes in the middle.
        let lens: Vec<usize> = (0..100)
            .map(|i| if i == 40 { 10_000 } else { 300 })
            .collect();
        let mut chunks = Chunks::default();
        let mut at = 0;
        for (i, len) in lens.iter().enumerate() {
            chunks.push(1 + i as u64, at..at + len);
            at += len;
        }
        // Contiguous, in order, each starting at the offset of its first frame.
        let mut next = (1, 0);
        for (first, range) in &chunks.0 {
            assert_eq!((*first, range.start), next);
            let frames = lens[(*first - 1) as usize..]
                .iter()
                .scan(0, |sum, len| {
                    *sum += len;
                    Some(*sum)
                })
                .position(|sum| sum == range.len())
                .expect("a value ends where a frame does")
                + 1;
            next = (first + frames as u64, range.end);
            assert!(
                range.len() <= VALUE_BYTES || frames == 1,
                "{frames} frames in {} bytes",
                range.len()
            );
        }
        assert_eq!(next, (101, at));
        // 13 frames of 300 bytes fit in 4 KiB: 40 frames in 4 values, the big one, then 59 in 5.
        let sizes: Vec<usize> = chunks.0.iter().map(|(_, r)| r.len()).collect();
        assert_eq!(
            sizes,
            [3900, 3900, 3900, 300, 10_000, 3900, 3900, 3900, 3900, 2100]
        );
    }
}
