//! The live fold against a real log: catching up a long log (a reader thread reading ahead),
//! then following appends, gives the state a replay gives, and so does the state as of each
//! checkpoint it wrote on the way.
#![cfg(feature = "live")]

use std::sync::Arc;
use std::time::Duration;

use cairn_log::engine::{Log, LogConfig, SystemClock};
use cairn_log::event::Entry;
use cairn_log::Offset;
use cairn_projections::live::{replay, Projector, ProjectorConfig};
use cairn_projections::synth::Seeded;
use cairn_projections::State;
use prometheus_client::registry::Registry;

async fn append(log: &Log, history: &mut Seeded, records: usize) {
    let entries: Vec<Entry> = history
        .next_chunk(records)
        .into_iter()
        .map(|r| Entry {
            actor: r.actor,
            event: r.event,
        })
        .collect();
    log.append(entries).await.unwrap();
}

async fn open(dir: &std::path::Path) -> Log {
    Log::open_single_node(
        LogConfig::new(dir.join("log")),
        Arc::new(SystemClock),
        &mut Registry::default(),
    )
    .await
    .unwrap()
}

/// A log of `chunks` × 10,000 records of the synthetic history, and projections folding it that
/// take a checkpoint every 4,000 records.
async fn folding(dir: &std::path::Path, chunks: usize) -> (Log, Seeded, Projector) {
    let log = open(dir).await;
    let mut history = Seeded::default();
    for _ in 0..chunks {
        append(&log, &mut history, 10_000).await;
    }
    let mut config = ProjectorConfig::new(dir.join("checkpoints"));
    config.checkpoint_every = 4_000;
    let projector = Projector::start(log.clone(), config).await.unwrap();
    (log, history, projector)
}

/// Waits, within a minute, for `projector` to have folded up to `offset`.
async fn wait_for(projector: &Projector, offset: u64) {
    tokio::time::timeout(Duration::from_secs(60), projector.wait_for(offset))
        .await
        .expect("the live fold reaches the head in time")
        .unwrap()
}

fn json(state: &State) -> String {
    serde_json::to_string(state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_log_is_caught_up_and_followed_to_the_state_a_replay_gives() {
    let dir = tempfile::tempdir().unwrap();
    // Several read-ahead chunks behind: the fold catches up rather than subscribing.
    let (log, mut history, projector) = folding(dir.path(), 5).await;
    let head = log.head();
    wait_for(&projector, head).await;
    let replayed = replay(&log, State::default(), head).unwrap();
    assert_eq!(json(&*projector.current().await), json(&replayed));
    // Both read ahead into reused buffers; one plain read of the whole log folds the same.
    let mut folded = State::default();
    let all = log.read(Offset::FIRST, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, head);
    folded.advance(all, head);
    assert_eq!(json(&folded), json(&replayed));

    // Then it follows appends, through a subscription.
    append(&log, &mut history, 3_000).await;
    let head = log.head();
    wait_for(&projector, head).await;
    let replayed = replay(&log, State::default(), head).unwrap();
    assert_eq!(json(&*projector.current().await), json(&replayed));

    // Checkpoints were written on the way, and in the gaps the catch-up left, and the state
    // as of each (and just after) is the replay's.
    tokio::time::timeout(Duration::from_secs(60), projector.wait_for_checkpoints())
        .await
        .expect("the catch-up's gaps are filled in time");
    let checkpoints = projector.checkpoints();
    assert!(checkpoints.len() >= 2, "checkpoints: {checkpoints:?}");
    for offset in checkpoints.iter().flat_map(|c| [*c, c + 17]) {
        let offset = offset.min(head);
        let as_of = projector.as_of(offset).await.unwrap();
        let replayed = replay(&log, State::default(), offset).unwrap();
        assert_eq!(json(&as_of), json(&replayed), "as of {offset}");
    }
    log.close().await;
}

/// A replay reads ahead in chunks of 8,192 records: whatever offset it stops at (inside a
/// chunk, on either side of a boundary, the head) it folds exactly the records up to it, and
/// past the head it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_folds_exactly_the_records_up_to_where_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let mut history = Seeded::default();
    for _ in 0..3 {
        append(&log, &mut history, 10_000).await;
    }
    let head = log.head();
    let all = log.read(Offset::FIRST, usize::MAX).unwrap();
    // The read-ahead's chunks are 8,192 records.
    for until in [
        1,
        8_191,
        8_192,
        8_193,
        16_384,
        16_385,
        24_577,
        head - 1,
        head,
    ] {
        let mut folded = State::default();
        folded.advance(all[..until as usize].iter().cloned(), until);
        let replayed = replay(&log, State::default(), until).unwrap();
        assert_eq!(replayed.offset, until);
        assert_eq!(json(&replayed), json(&folded), "up to {until}");
    }
    for until in [head + 1, head + 8_192, head + 100_000] {
        match replay(&log, State::default(), until) {
            Err(cairn_projections::live::Error::Beyond { offset, head: h }) => {
                assert_eq!((offset, h), (until, head));
            }
            other => panic!("up to {until}: {:?}", other.map(|s| s.offset)),
        }
    }
    log.close().await;
}

/// The value `name` has in `registry`'s text exposition.
fn metric(registry: &Registry, name: &str) -> i64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"));
    value.parse().unwrap()
}

/// As-of queries asked together each compute their state (in turns) and show in the metrics:
/// computed or answered from memory, and none left counted as waiting or computing after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_queries_are_counted_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, projector) = folding(dir.path(), 3).await;
    let mut registry = Registry::default();
    projector.register_metrics(&mut registry);
    let head = log.head();
    wait_for(&projector, head).await;
    assert_eq!(
        metric(&registry, "cairn_projections_folded_offset"),
        head as i64
    );

    let offsets: Vec<u64> = (1..=6).map(|i| i * 4_001).collect();
    let asked: Vec<_> = offsets
        .iter()
        .map(|&offset| {
            let projector = projector.clone();
            tokio::spawn(async move { projector.as_of(offset).await.map(|v| v.offset) })
        })
        .collect();
    for (handle, offset) in asked.into_iter().zip(&offsets) {
        assert_eq!(handle.await.unwrap().unwrap(), *offset);
    }
    assert_eq!(
        metric(&registry, "cairn_projections_as_of_computed_total"),
        6
    );
    assert_eq!(metric(&registry, "cairn_projections_as_of_reused_total"), 0);
    assert_eq!(metric(&registry, "cairn_projections_as_of_computing"), 0);
    assert_eq!(metric(&registry, "cairn_projections_as_of_waiting"), 0);

    // One more, then the same again (kept), and the head (the live state): computed once.
    for offset in [25_555, 25_555, head] {
        assert_eq!(projector.as_of(offset).await.unwrap().offset, offset);
    }
    assert_eq!(
        metric(&registry, "cairn_projections_as_of_computed_total"),
        7
    );
    assert_eq!(metric(&registry, "cairn_projections_as_of_reused_total"), 2);
    log.close().await;
}
