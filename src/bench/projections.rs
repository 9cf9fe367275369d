//! `cairn bench projections`: replay of a synthetic, realistic history into the projections
//! (in memory, from the log, and as a master does it, writing checkpoints), then the state as
//! of offsets spread over the whole log.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_log::event::Entry;
use cairn_projections::live::{
    decode_checkpoint, decode_state, encode_checkpoint, encode_state, replay, Projector,
    ProjectorConfig,
};
use cairn_projections::synth::Seeded;
use cairn_projections::{Fold, State};
use hdrhistogram::Histogram;

use super::{machine, ms, open, peak_rss_mib};

/// Records generated (and folded, or appended) at a time: bounds the benchmark's own memory.
const CHUNK: usize = 10_000;

pub async fn bench(dir: &Path, events: usize, as_of_queries: usize) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    println!();

    // In memory: only the fold is timed, not the generation of each chunk.
    let mut history = Seeded::default();
    let mut state = State::default();
    let mut folding = Duration::ZERO;
    let mut left = events;
    while left > 0 {
        let chunk = history.next_chunk(left.min(CHUNK));
        left -= chunk.len();
        // Timed with dropping what the fold does not keep of the records, as a replay does.
        let started = Instant::now();
        for r in chunk {
            state.apply(r);
        }
        folding += started.elapsed();
    }
    let in_memory_peak = peak_rss_mib();
    let state_bytes = serde_json::to_vec(&state)?.len();
    println!(
        "history: {events} events; at the end {} agents, {} frameworks kept ({} removed), {} tasks kept ({} ended), {} apps, {} jobs, {} runs kept, {} audit entries; {} anomalies; state {:.1} MiB as JSON",
        state.cluster.agents.len(),
        state.cluster.frameworks.len(),
        state.cluster.removed_frameworks.len(),
        state.tasks.tasks.len(),
        state.tasks.ended.len(),
        state.apps.apps.len(),
        state.jobs.jobs.len(),
        state.jobs.runs.len(),
        state.audit.entries.len(),
        state.anomalies.count,
        state_bytes as f64 / (1 << 20) as f64,
    );
    checkpoint_costs(&state)?;
    drop(state);
    println!();
    println!("| replay into projections | events/s | peak RSS of the process so far |");
    println!("|---|---:|---:|");
    println!(
        "| in memory (records already decoded) | {:.0} | {in_memory_peak} MiB |",
        events as f64 / folding.as_secs_f64()
    );

    let path = dir.join("log");
    let log = open(&path).await?;
    let mut history = Seeded::default();
    let mut left = events;
    while left > 0 {
        let entries: Vec<Entry> = history
            .next_chunk(left.min(CHUNK))
            .into_iter()
            .map(|r| Entry {
                actor: r.actor,
                event: r.event,
            })
            .collect();
        left -= entries.len();
        log.append(entries).await?;
    }
    log.close().await;
    drop(log);

    let log = open(&path).await?;
    let head = log.head();
    let started = Instant::now();
    // As a master replays for `asOf`: reading ahead on another thread.
    let replayed = replay(&log, State::default(), head)?;
    let from_log = started.elapsed();
    anyhow::ensure!(
        replayed.offset == head,
        "replayed {} of {head}",
        replayed.offset
    );
    drop(replayed);
    println!(
        "| from the log after reopening (read, decode, fold) | {:.0} | {} MiB |",
        head as f64 / from_log.as_secs_f64(),
        peak_rss_mib()
    );

    // As a master does it: the live fold, writing checkpoints as it goes.
    let mut config = ProjectorConfig::new(dir.join("checkpoints"));
    config.as_of_cache = 0;
    let started = Instant::now();
    let projector = Projector::start(log.clone(), config).await?;
    projector.wait_for(head).await?;
    let live = started.elapsed();
    let started = Instant::now();
    projector.wait_for_checkpoints().await;
    let filled = started.elapsed();
    let checkpoints = projector.checkpoints();
    let checkpoint_bytes: u64 = std::fs::read_dir(dir.join("checkpoints"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "| a master's live fold from the log, writing checkpoints | {:.0} | {} MiB |",
        head as f64 / live.as_secs_f64(),
        peak_rss_mib()
    );
    println!();
    let gaps: Vec<u64> = checkpoints.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "checkpoints: {} kept ({:.1} s filling the catch-up's gaps after it), {} to {} records \
         apart, {:.0} MiB on disk in all",
        checkpoints.len(),
        filled.as_secs_f64(),
        gaps.iter().min().unwrap_or(&0),
        gaps.iter().max().unwrap_or(&0),
        checkpoint_bytes as f64 / (1 << 20) as f64
    );
    // Halfway between the two checkpoints around the middle of the log.
    let below = checkpoints.iter().rev().find(|c| **c <= head / 2);
    let above = checkpoints.iter().find(|c| **c > head / 2);
    let middle_offset = match (below, above) {
        (Some(b), Some(a)) => b + (a - b) / 2,
        _ => head / 2,
    };

    // The state as of offsets spread over the whole log (a golden-ratio walk), every one
    // computed afresh: no as-of cache.
    let mut latency = Histogram::<u64>::new(3)?;
    // Each query's offset, base checkpoint and time, to look again at the slowest.
    let mut queries = Vec::new();
    // How far each query replays: from the checkpoint at or before it.
    let mut distance = Histogram::<u64>::new(3)?;
    let mut middle = Duration::ZERO;
    let targets = (0..as_of_queries as u64).map(|k| 1 + (k * 0x9e37_79b9) % head);
    for (k, offset) in std::iter::once(middle_offset).chain(targets).enumerate() {
        let started = Instant::now();
        let view = projector.as_of(offset).await?;
        let took = started.elapsed();
        anyhow::ensure!(view.offset == offset, "as of {offset} gave {}", view.offset);
        drop(view);
        if k == 0 {
            middle = took;
        } else {
            let base = checkpoints.iter().rev().find(|c| **c <= offset);
            let base = base.copied().unwrap_or(0);
            distance.record(offset - base)?;
            latency.record(took.as_micros() as u64)?;
            queries.push((took, offset, base));
        }
    }
    println!();
    println!("| asOf, {as_of_queries} offsets over the log | p50 | p99 | max | the middle, halfway between checkpoints |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| state as of an offset | {} | {} | {} | {} |",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
        ms(middle.as_micros() as u64),
    );
    println!(
        "records replayed after the checkpoint: p50 {}, p99 {}, max {}",
        distance.value_at_quantile(0.5),
        distance.value_at_quantile(0.99),
        distance.max()
    );
    // The slowest again, and the checkpoint each starts from alone: whether a slow query was
    // its load, its replay, or something it met once (faster the second time).
    queries.sort_by_key(|q| std::cmp::Reverse(q.0));
    println!();
    println!("| slowest asOf queries | records replayed | first | again | its checkpoint alone |");
    println!("|---|---:|---:|---:|---:|");
    for (took, offset, base) in queries.into_iter().take(3) {
        // Timed without dropping the state, as the queries above are.
        let started = Instant::now();
        let view = projector.as_of(offset).await?;
        let again = started.elapsed();
        drop(view);
        let started = Instant::now();
        let view = projector.as_of(base).await?;
        let load = started.elapsed();
        drop(view);
        println!(
            "| as of {offset} | {} | {} | {} | {} |",
            offset - base,
            ms(took.as_micros() as u64),
            ms(again.as_micros() as u64),
            ms(load.as_micros() as u64)
        );
    }
    println!("peak RSS of the process: {} MiB", peak_rss_mib());
    log.close().await;
    Ok(())
}

/// Where loading a checkpoint of the final state goes: decoding each part of it, and a clone
/// of it in memory, which no owned copy of the state can beat (it allocates as much).
fn checkpoint_costs(state: &State) -> anyhow::Result<()> {
    fn row<T>(
        name: &str,
        body: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let decoded = decode(body).map_err(anyhow::Error::msg)?;
        let took = started.elapsed();
        drop(decoded);
        println!(
            "| {name} | {} | {} |",
            body.len(),
            ms(took.as_micros() as u64)
        );
        Ok(())
    }
    fn part<T: serde::Serialize + serde::de::DeserializeOwned>(
        name: &str,
        value: &T,
    ) -> anyhow::Result<()> {
        row(name, &encode_state(value)?, decode_state::<T>)
    }
    println!();
    println!("| a checkpoint of the final state | bytes | decode |");
    println!("|---|---:|---:|");
    row(
        "all of it (its parts on two threads)",
        &encode_checkpoint(state)?,
        decode_checkpoint,
    )?;
    part("cluster", &state.cluster)?;
    part("tasks", &state.tasks)?;
    part("apps", &state.apps)?;
    part("jobs", &state.jobs)?;
    part("audit", &state.audit)?;
    let started = Instant::now();
    let copy = state.clone();
    let took = started.elapsed();
    drop(copy);
    println!(
        "| a clone of the state in memory | | {} |",
        ms(took.as_micros() as u64)
    );
    Ok(())
}
