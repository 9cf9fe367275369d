//! The log engine against real sled storage in temp dirs.

use std::sync::Arc;

use cairn_log::codec::{self, Header, FORMAT};
use cairn_log::engine::{Log, LogConfig, ManualClock, OpenMode, Store, SystemClock};
use cairn_log::event::{Actor, Entry, Event, FormatBarrier, NodeId, Term, Timestamp};
use cairn_log::{Error, Offset};
use prometheus_client::registry::Registry;

fn entry(n: u16) -> Entry {
    Entry {
        actor: Actor::master(NodeId(7)),
        event: Event::FormatBarrier(FormatBarrier { min_format: n }),
    }
}

/// Opens a single-node log. Offset 1 is then its own `LeaderElected`: tests count from 2.
async fn open(dir: &std::path::Path) -> Log {
    open_with(LogConfig::new(dir.join("log"))).await
}

async fn open_with(config: LogConfig) -> Log {
    Log::open_single_node(config, Arc::new(SystemClock), &mut Registry::default())
        .await
        .unwrap()
}

/// The log's sled database opened directly, to damage it the way a crash or a disk would.
fn raw_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir.join("log"))
        .segment_size(cairn_log::engine::SEGMENT_BYTES)
        .open()
        .unwrap()
}

fn min_format(record: &cairn_log::Record) -> u16 {
    match &record.event {
        Event::FormatBarrier(b) => b.min_format,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_appends_are_dense_ordered_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    assert_eq!(log.term(), Term(1));
    assert_eq!(log.head(), 1, "the member recorded its leadership");
    let mut tasks = Vec::new();
    for writer in 0..8u16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..20u16 {
                let batch = (0..5).map(|j| entry(writer * 1000 + i * 10 + j)).collect();
                acks.push(log.append(batch).await.unwrap());
            }
            acks
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(log.head(), 801);
    let records = log.read(Offset::FIRST, 10_000).unwrap();
    let offsets: Vec<u64> = records.iter().map(|r| r.offset.get()).collect();
    assert_eq!(offsets, (1..=801).collect::<Vec<_>>());
    assert!(matches!(records[0].event, Event::LeaderElected(_)));
    // A read into a buffer appends to what it holds, the same records as a read.
    let mut buffer = records[..3].to_vec();
    log.read_into(Offset::new(400).unwrap(), 50, &mut buffer)
        .unwrap();
    assert_eq!(buffer[..3], records[..3]);
    assert_eq!(buffer[3..], records[399..449]);
    log.read_into(Offset::new(802).unwrap(), 50, &mut buffer)
        .unwrap();
    assert_eq!(buffer.len(), 53, "nothing past the head");
    // Each append's five entries are contiguous and in the order given.
    for ack in &acked {
        let got: Vec<u16> = (ack.first.get()..=ack.last.get())
            .map(|o| min_format(&records[o as usize - 1]))
            .collect();
        assert_eq!(got.len(), 5);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    }
    log.close().await;
    assert!(matches!(
        log.append(vec![entry(1)]).await,
        Err(Error::Closed)
    ));
    drop(log);

    let log = open(dir.path()).await;
    assert!(log.head() >= 801, "and it may record leading again");
    let ack = log.append(vec![entry(9)]).await.unwrap();
    assert_eq!(ack.first.get(), log.head());
    let report = log.verify().unwrap();
    assert_eq!(report.records, log.head());
    let last = log.read(ack.first, 10).unwrap();
    assert_eq!(last[0].term, log.term());
    assert!(records.iter().all(|r| r.term <= log.term()));
}

#[tokio::test]
async fn time_in_the_log_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(5_000_000)));
    let log = Log::open_single_node(
        LogConfig::new(dir.path().join("log")),
        clock.clone(),
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let first = log.append(vec![entry(1)]).await.unwrap();
    clock.set(Timestamp::from_micros(1_000_000));
    let second = log.append(vec![entry(2)]).await.unwrap();
    assert_eq!(first.at, Timestamp::from_micros(5_000_000));
    assert_eq!(
        second.at, first.at,
        "a clock stepping back does not move `at` back"
    );
    clock.set(Timestamp::from_micros(9_000_000));
    assert_eq!(
        log.append(vec![entry(3)]).await.unwrap().at,
        Timestamp::from_micros(9_000_000)
    );
}

#[tokio::test]
async fn bad_appends_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path().join("log"));
    config.max_append_entries = 3;
    let log = open_with(config).await;
    assert!(matches!(log.append(vec![]).await, Err(Error::EmptyBatch)));
    let err = log.append((0..4).map(entry).collect()).await.unwrap_err();
    assert!(
        matches!(err, Error::BatchTooLarge { len: 4, limit: 3 }),
        "{err}"
    );
    assert_eq!(log.head(), 1, "only the member's own LeaderElected");
}

#[tokio::test]
async fn a_subscription_catches_up_then_follows_with_no_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for i in 0..100 {
        log.append(vec![entry(i)]).await.unwrap();
    }
    let mut sub = log.subscribe(Offset::new(40).unwrap()).unwrap();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                log.append(vec![entry(i), entry(i)]).await.unwrap();
            }
        })
    };
    let mut expected = 40;
    while expected <= 501 {
        let record = sub.next().await.unwrap().unwrap();
        assert_eq!(record.offset.get(), expected);
        expected += 1;
    }
    writer.await.unwrap();
    log.close().await;
    assert!(
        sub.next().await.is_none(),
        "a closed log ends its subscriptions"
    );
}

/// Polls a future once: puts a subscription into live mode without waiting for a record.
async fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = f => Some(out),
        () = std::future::ready(()) => None,
    }
}

#[tokio::test]
async fn a_lagging_live_subscriber_is_dropped_with_its_resume_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path().join("log"));
    config.subscriber_buffer = 4;
    config.max_subscribers = 1;
    let log = open_with(config).await;
    log.append(vec![entry(0)]).await.unwrap();
    let mut sub = log.subscribe(Offset::new(2).unwrap()).unwrap();
    assert!(matches!(
        log.subscribe(Offset::FIRST),
        Err(Error::TooManySubscribers { limit: 1 })
    ));
    assert_eq!(sub.next().await.unwrap().unwrap().offset.get(), 2);
    assert!(
        poll_once(sub.next()).await.is_none(),
        "caught up: now live and waiting"
    );
    for i in 0..10 {
        log.append(vec![entry(i)]).await.unwrap();
    }
    let err = sub.next().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Lagged {
                resume_from: 3,
                limit: 4
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("resume from offset 3"), "{err}");
    assert!(sub.next().await.is_none());
    drop(sub);
    // Resuming from the named offset yields everything after it, from storage.
    let mut sub = log.subscribe(Offset::new(3).unwrap()).unwrap();
    for expected in 3..=12 {
        assert_eq!(sub.next().await.unwrap().unwrap().offset.get(), expected);
    }
}

/// Builds a valid frame for `offset` following `prev`.
fn frame(offset: u64, prev: codec::Hash, at: Timestamp) -> (Vec<u8>, codec::Hash) {
    let mut out = Vec::new();
    let header = Header {
        format: FORMAT,
        offset,
        term: Term(1),
        at,
        prev_hash: prev,
    };
    let payload = codec::Payload::pack(&entry(1)).unwrap();
    let hash = codec::write_frame(&mut out, &header, payload.bytes());
    (out, hash)
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_open_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let ack = log.append(vec![entry(1), entry(2)]).await.unwrap();
    let tip = log.verify().unwrap().tip;
    assert_eq!(tip.last, ack.last.get());
    log.close().await;
    drop(log);
    let (first, second) = (tip.last + 1, tip.last + 2);
    {
        // A group that reached the disk half-written: one whole frame, then half of the next.
        let db = raw_sled(dir.path());
        let (mut torn, hash) = frame(first, tip.hash, tip.at);
        let (next, _) = frame(second, hash, tip.at);
        torn.extend_from_slice(&next[..next.len() / 2]);
        db.open_tree("events")
            .unwrap()
            .insert(first.to_be_bytes(), torn)
            .unwrap();
        db.flush().unwrap();
    }
    let inspect = Store::open(&dir.path().join("log"), OpenMode::Inspect, 1 << 20).unwrap_err();
    assert!(
        matches!(inspect, Error::Corrupt { offset, .. } if offset == second),
        "{inspect}"
    );

    let log = open(dir.path()).await;
    let cut = log.tail_cut().expect("the torn tail was cut");
    assert_eq!(cut.from_offset, second);
    assert!(cut.reason.contains("torn frame"), "{}", cut.reason);
    // The intact frame was never applied (it is past the applied marker): not part of the log.
    // Whatever the log holds now at that offset was appended after reopening.
    let records = log.read(Offset::FIRST, 100).unwrap();
    assert_eq!(
        min_format(&records[tip.last as usize - 1]),
        2,
        "acknowledged entries intact"
    );
    assert!(records
        .iter()
        .skip(tip.last as usize)
        .all(|r| matches!(r.event, Event::LeaderElected(_))));
    let next = log.append(vec![entry(5)]).await.unwrap();
    assert_eq!(next.first.get(), log.head());
    assert_eq!(log.verify().unwrap().records, log.head());
}

#[tokio::test]
async fn corruption_in_the_middle_is_named_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for i in 0..5 {
        log.append(vec![entry(i)]).await.unwrap();
    }
    log.close().await;
    drop(log);
    {
        let db = raw_sled(dir.path());
        let events = db.open_tree("events").unwrap();
        let mut group = events.get(3u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let last = group.len() - 3;
        group[last] ^= 0x20; // inside the JSON payload
        events.insert(3u64.to_be_bytes(), group).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&dir.path().join("log"), OpenMode::Inspect, 1 << 20).unwrap();
    let err = store.verify(store.tip().last, |_| {}).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset: 3, .. }), "{err}");
    assert!(err.to_string().contains("offset 3"), "{err}");
    let err = store.read(1, 10, 5).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { offset: 3, .. }),
        "reads never serve it: {err}"
    );
}

#[tokio::test]
async fn a_log_from_a_newer_cairn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_sled(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("format", &(FORMAT + 1).to_le_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Log::open(
        LogConfig::new(dir.path().join("log")),
        Arc::new(SystemClock),
        &mut Registry::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("newer cairn"), "{err}");
}

#[tokio::test]
async fn a_log_in_use_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path()).await;
    let err = Store::open(&dir.path().join("log"), OpenMode::Inspect, 1 << 20).unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

/// sled 0.34 writes pages over a quarter segment to "blob" files it never fsyncs; acknowledged
/// data there could vanish on power loss. Chunked values keep every page under that bound,
/// even with a record of the largest size allowed among many small ones.
#[tokio::test]
async fn blobs_are_never_written() {
    use cairn_log::event::{AgentId, AgentRegistered, Resources};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let big = Entry {
        actor: Actor::system(),
        event: Event::AgentRegistered(Box::new(AgentRegistered {
            agent_id: AgentId::new("agent-big").unwrap(),
            hostname: "h".repeat(codec::MAX_PAYLOAD - 400),
            address: "127.0.0.1:5051".into(),
            resources: Resources::default(),
            attributes: Default::default(),
            version: "0.1.0".into(),
        })),
    };
    assert!(codec::Payload::pack(&big).unwrap().bytes().len() > codec::MAX_PAYLOAD - 400);
    for round in 0..40u16 {
        let mut batch: Vec<Entry> = (0..2000).map(|i| entry(round.wrapping_mul(i))).collect();
        if round % 10 == 0 {
            batch.insert(1000, big.clone());
        }
        log.append(batch).await.unwrap();
    }
    assert_eq!(log.verify().unwrap().records, 1 + 40 * 2000 + 4);
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("log/blobs"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "sled wrote {} blob files", blobs.len());
}
