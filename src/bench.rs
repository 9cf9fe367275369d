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

fn open(path: &Path) -> anyhow::Result<Log> {
    Ok(Log::open(
        LogConfig::new(path),
        Arc::new(SystemClock),
        &mut Registry::default(),
    )?)
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
        let log = open(&dir.join(format!("append-{batch}")))?;
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
    let log = open(&path)?;
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
    let log = open(&path)?;
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
