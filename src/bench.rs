//! `cairn bench …`: measurements on this machine, printed as Markdown rows for BENCHMARKS.md.
//!
//! Benchmarks run against the real engine on the real disk (fsync on), in a scratch directory
//! that is removed afterwards.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_log::engine::{Log, LogConfig, SystemClock};
use cairn_log::event::{
    Actor, AgentId, Entry, Event, StatusSource, TaskId, TaskState, TaskStatusUpdated,
};
use cairn_log::Offset;
use hdrhistogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Durable appends (group commit, fsync on) and replay of the event log.
    Log {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 32)]
        appenders: usize,
        /// Entries per append, one run each.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
        batch_sizes: Vec<usize>,
        /// Length of each append run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Events to write and then read back for the replay figures.
        #[arg(long, default_value_t = 1_000_000)]
        replay_events: u64,
    },
    /// Replay of synthetic, realistic histories into the projections: in memory, and from a log.
    Projections {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        /// Events in the history.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
}

pub fn main(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        BenchCommand::Log {
            dir,
            appenders,
            batch_sizes,
            seconds,
            replay_events,
        } => {
            anyhow::ensure!(
                !dir.exists(),
                "dir: {} exists; name a scratch dir",
                dir.display()
            );
            let result = runtime.block_on(bench_log(
                &dir,
                appenders,
                &batch_sizes,
                seconds,
                replay_events,
            ));
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        BenchCommand::Projections { dir, events } => {
            anyhow::ensure!(
                !dir.exists(),
                "dir: {} exists; name a scratch dir",
                dir.display()
            );
            let result = runtime.block_on(bench_projections(&dir, events));
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A realistic event: a task status update from an agent, ~250 bytes encoded.
fn status_update(n: u64) -> Entry {
    let agent_id = AgentId::new(format!("agent-{:06}", n % 1000)).expect("valid id");
    Entry {
        actor: Actor {
            principal: cairn_log::event::Principal::Agent {
                agent_id: agent_id.clone(),
            },
            origin: None,
        },
        event: Event::TaskStatusUpdated(TaskStatusUpdated {
            task_id: TaskId::new(format!("web.instance-{n:012}")).expect("valid id"),
            agent_id,
            state: TaskState::Running,
            source: StatusSource::Executor,
            reason: None,
            message: Some("container started".into()),
            healthy: Some(true),
            status_uuid: Some(format!("{n:032x}")),
        }),
    }
}

async fn open(path: &Path) -> anyhow::Result<Log> {
    let config = LogConfig::new(path);
    Ok(Log::open_single_node(config, Arc::new(SystemClock), &mut Registry::default()).await?)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

async fn bench_log(
    dir: &Path,
    appenders: usize,
    batch_sizes: &[usize],
    seconds: u64,
    replay_events: u64,
) -> anyhow::Result<()> {
    let payload = cairn_log::codec::encode_payload(&status_update(1))?.len();
    println!("machine: {}; event payload {payload} bytes; {appenders} appenders; {seconds} s per run; fsync on", machine());
    println!();
    println!("| batch | appends/s | events/s | p50 append | p99 append | p99.9 append | events per flush |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &batch in batch_sizes {
        anyhow::ensure!(batch >= 1, "batch-sizes: each must be at least 1");
        let log = open(&dir.join(format!("append-{batch}"))).await?;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for a in 0..appenders {
            let log = log.clone();
            let entries: Vec<Entry> = (0..batch as u64)
                .map(|i| status_update(a as u64 * 1_000_000 + i))
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new(3).expect("histogram");
                while Instant::now() < deadline {
                    let t = Instant::now();
                    log.append(entries.clone()).await?;
                    latency
                        .record(t.elapsed().as_micros() as u64)
                        .expect("in range");
                }
                anyhow::Ok(latency)
            }));
        }
        let mut latency = Histogram::<u64>::new(3)?;
        for t in tasks {
            latency.add(t.await??)?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let appends = latency.len();
        let events = appends * batch as u64;
        let flushes = log.group_commits().max(1);
        println!(
            "| {batch} | {:.0} | {:.0} | {} | {} | {} | {:.0} |",
            appends as f64 / elapsed,
            events as f64 / elapsed,
            ms(latency.value_at_quantile(0.5)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.value_at_quantile(0.999)),
            events as f64 / flushes as f64
        );
        log.close().await;
    }

    println!();
    let path = dir.join("replay");
    let log = open(&path).await?;
    let started = Instant::now();
    let mut written = 0;
    while written < replay_events {
        let n = (replay_events - written).min(1000);
        log.append((written..written + n).map(status_update).collect())
            .await?;
        written += n;
    }
    let write_secs = started.elapsed().as_secs_f64();
    log.close().await;
    drop(log);
    let log = open(&path).await?;
    let head = log.head();
    let started = Instant::now();
    let mut next = Offset::FIRST;
    let mut read = 0;
    while next.get() <= head {
        let records = log.read(next, 10_000)?;
        read += records.len() as u64;
        next = records.last().context("short read")?.offset.next();
    }
    let read_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut sub = log.subscribe(Offset::FIRST)?;
    let mut followed = 0;
    while followed < head {
        sub.next().await.context("subscription ended")??;
        followed += 1;
    }
    let sub_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let verified = log.verify()?.records;
    let verify_secs = started.elapsed().as_secs_f64();
    println!("| replay of {head} events | events/s |");
    println!("|---|---:|");
    println!(
        "| written by one appender in batches of 1,000 | {:.0} |",
        replay_events as f64 / write_secs
    );
    println!(
        "| read back (`read`, decoded) | {:.0} |",
        read as f64 / read_secs
    );
    println!(
        "| followed by a subscription from offset 1 | {:.0} |",
        followed as f64 / sub_secs
    );
    println!(
        "| verified (checksums, hash chain, decode) | {:.0} |",
        verified as f64 / verify_secs
    );
    Ok(())
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// The process's peak resident memory so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0, |kib: u64| kib / 1024)
}

/// A synthetic history of at least `events` records, the same for every run (a fixed
/// splitmix64 sequence drives the choices).
fn synthetic_history(events: usize) -> Vec<cairn_log::Record> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // Some choices yield no event (e.g. a kill with no task alive); 10% headroom covers them.
    let ops: Vec<(u8, u16)> = (0..events + events / 10)
        .map(|_| {
            let r = next();
            (r as u8, (r >> 8) as u16)
        })
        .collect();
    let mut records = cairn_projections::synth::history(&ops);
    records.truncate(events);
    records
}

async fn bench_projections(dir: &Path, events: usize) -> anyhow::Result<()> {
    use cairn_projections::{Fold, State};
    println!("machine: {}", machine());
    let base = peak_rss_mib();
    let records = synthetic_history(events);
    anyhow::ensure!(
        records.len() == events,
        "the synthetic history came out short"
    );
    let with_records = peak_rss_mib();

    let started = Instant::now();
    let mut state = State::default();
    for r in &records {
        state.apply(r);
    }
    let fold_secs = started.elapsed().as_secs_f64();
    let folded_peak = peak_rss_mib();
    let state_bytes = serde_json::to_vec(&state)?.len();
    println!(
        "history: {events} events ({} agents, {} tasks, {} apps, {} jobs, {} runs at the end; {} anomalies)",
        state.cluster.agents.len(),
        state.tasks.tasks.len(),
        state.apps.apps.len(),
        state.jobs.jobs.len(),
        state.jobs.runs.len(),
        state.anomalies.count
    );
    println!();
    println!("| replay into projections | events/s | peak RSS |");
    println!("|---|---:|---:|");
    println!(
        "| in memory (records already decoded) | {:.0} | {} MiB (records alone {} MiB; state {} MiB as JSON) |",
        events as f64 / fold_secs,
        folded_peak,
        with_records.saturating_sub(base),
        state_bytes >> 20
    );

    let path = dir.join("log");
    let log = open(&path).await?;
    for chunk in records.chunks(1000) {
        let entries = chunk
            .iter()
            .map(|r| Entry {
                actor: r.actor.clone(),
                event: r.event.clone(),
            })
            .collect();
        log.append(entries).await?;
    }
    log.close().await;
    drop(log);
    drop(records);
    let log = open(&path).await?;
    let head = log.head();
    let started = Instant::now();
    let mut replayed = State::default();
    let mut next = Offset::FIRST;
    while next.get() <= head {
        let records = log.read(next, 10_000)?;
        next = records.last().context("short read")?.offset.next();
        for r in &records {
            replayed.apply(r);
        }
    }
    let log_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        replayed.offset == head,
        "replayed {} of {head}",
        replayed.offset
    );
    println!(
        "| from the log after reopening (read, decode, fold) | {:.0} | {} MiB |",
        head as f64 / log_secs,
        peak_rss_mib()
    );
    Ok(())
}
