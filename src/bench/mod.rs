//! `cairn bench …`: measurements on this machine, printed as Markdown rows for BENCHMARKS.md.
//!
//! Benchmarks run against the real engine on the real disk (fsync on), in a scratch directory
//! that is removed afterwards.

use std::future::Future;
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

mod agent;
mod allocator;
mod apps;
mod graphql;
mod jobs;
mod projections;
mod ui;

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
    /// Three masters on loopback (separate processes): batched throughput, commit latency at a
    /// steady 1,000 appends/s, and failover time over repeated leader kills.
    Replication {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        /// Length of the throughput and latency runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent clients in the throughput run.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Entries per append in the throughput run.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Leader kills for the failover figures.
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
    /// Replay of synthetic, realistic histories into the projections: in memory, and from a log.
    /// Then the state as of offsets all over the log, from its checkpoints.
    Projections {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        /// Events in the history.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// `asOf` queries to time.
        #[arg(long, default_value_t = 200)]
        as_of_queries: usize,
    },
    /// One agent and its master (separate processes): launch latency of process and Docker
    /// tasks, agent memory per running task, sustained launches.
    Agent {
        /// Scratch directory (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        /// Process tasks launched one at a time and left running (latency, memory).
        #[arg(long, default_value_t = 200)]
        running: usize,
        /// Docker tasks launched one at a time and left running (0: skip Docker).
        #[arg(long, default_value_t = 50)]
        docker: usize,
        /// Short tasks for the sustained rate.
        #[arg(long, default_value_t = 1000)]
        tasks: usize,
        /// Concurrent clients launching them.
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// Allocation cycles of the DRF allocator (the pure decider, in memory).
    Allocator {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 100)]
        frameworks: usize,
        #[arg(long, default_value_t = 50)]
        cycles: usize,
    },
    /// The apps scheduler with simulated agents (in memory): placements per second from
    /// offers, the cost of an idle cycle, and memory per app.
    Apps {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// One app scaled from 0 to this many instances, end to end.
        #[arg(long, default_value_t = 100_000)]
        scale_to: u32,
        /// Apps for the deciders alone, in memory.
        #[arg(long, default_value_t = 1_000)]
        apps: usize,
        /// Instances per app, for the deciders alone.
        #[arg(long, default_value_t = 10)]
        instances: u32,
    },
    /// The jobs scheduler end to end with fake agents: trigger lateness, the cost of a tick
    /// over all the jobs, memory per job.
    Jobs {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Wall-clock seconds of scheduling measured.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// How long each run's task runs on the fake agents, in milliseconds.
        #[arg(long, default_value_t = 2_000)]
        run_for_ms: u64,
    },
    /// The web UI in headless Chromium over a cluster of fake agents: each view's time to its
    /// first render, and what an idle page costs.
    Ui {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Instances per app.
        #[arg(long, default_value_t = 10)]
        instances: u32,
        #[arg(long, default_value_t = 1_000)]
        agents: usize,
        /// Loads of each view.
        #[arg(long, default_value_t = 5)]
        loads: usize,
        /// Seconds the idle page is watched.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
    },
    /// GraphQL over HTTP: pages of apps with their tasks, at a given number of apps.
    Graphql {
        /// Scratch directory on the disk to measure (removed afterwards).
        #[arg(long, default_value = "./cairn-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Tasks per app.
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// Timed requests.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
    },
}

pub fn main(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (dir, bench): (
        PathBuf,
        std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>>>>,
    ) = match command {
        // In memory: no scratch directory.
        BenchCommand::Allocator {
            agents,
            frameworks,
            cycles,
        } => {
            allocator::bench(agents, frameworks.max(1), cycles)?;
            return Ok(ExitCode::SUCCESS);
        }
        BenchCommand::Apps {
            dir,
            agents,
            scale_to,
            apps,
            instances,
        } => {
            let d = dir.clone();
            let agents = agents.max(1);
            (
                dir,
                Box::pin(async move {
                    apps::end_to_end(&d, agents, scale_to).await?;
                    apps::bench(agents, apps.max(1), instances)
                }),
            )
        }
        BenchCommand::Log {
            dir,
            appenders,
            batch_sizes,
            seconds,
            replay_events,
        } => {
            let d = dir.clone();
            (
                dir,
                Box::pin(async move {
                    bench_log(&d, appenders, &batch_sizes, seconds, replay_events).await
                }),
            )
        }
        BenchCommand::Replication {
            dir,
            seconds,
            clients,
            batch,
            kills,
        } => {
            let d = dir.clone();
            (
                dir,
                Box::pin(
                    async move { bench_replication(&d, seconds, clients, batch, kills).await },
                ),
            )
        }
        BenchCommand::Agent {
            dir,
            running,
            docker,
            tasks,
            clients,
        } => {
            let d = dir.clone();
            (
                dir,
                Box::pin(async move { agent::bench(&d, running, docker, tasks, clients).await }),
            )
        }
        BenchCommand::Jobs {
            dir,
            jobs,
            agents,
            seconds,
            run_for_ms,
        } => {
            let d = dir.clone();
            let run_for = Duration::from_millis(run_for_ms);
            (
                dir,
                Box::pin(
                    async move { jobs::bench(&d, jobs, agents.max(1), seconds, run_for).await },
                ),
            )
        }
        BenchCommand::Ui {
            dir,
            apps,
            instances,
            agents,
            loads,
            idle_seconds,
        } => {
            let d = dir.clone();
            let idle = Duration::from_secs(idle_seconds);
            (
                dir,
                Box::pin(async move {
                    ui::bench(&d, apps, instances, agents.max(1), loads.max(1), idle).await
                }),
            )
        }
        BenchCommand::Graphql {
            dir,
            apps,
            instances,
            requests,
        } => {
            let d = dir.clone();
            (
                dir,
                Box::pin(async move { graphql::bench(&d, apps, instances, requests).await }),
            )
        }
        BenchCommand::Projections {
            dir,
            events,
            as_of_queries,
        } => {
            let d = dir.clone();
            (
                dir,
                Box::pin(async move { projections::bench(&d, events, as_of_queries).await }),
            )
        }
    };
    // Every benchmark works in a scratch directory of its own, removed afterwards.
    anyhow::ensure!(
        !dir.exists(),
        "dir: {} exists; name a scratch dir",
        dir.display()
    );
    let result = runtime.block_on(bench);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
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

pub(crate) async fn open(path: &Path) -> anyhow::Result<Log> {
    let config = LogConfig::new(path);
    Ok(Log::open_single_node(config, Arc::new(SystemClock), &mut Registry::default()).await?)
}

/// RSS of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn machine() -> String {
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
    let payload = cairn_log::codec::Payload::pack(&status_update(1))?
        .bytes()
        .len();
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
pub(crate) fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0, |kib: u64| kib / 1024)
}

/// Three `cairn master` processes of this same binary, on loopback.
struct Masters {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Option<std::process::Child>>,
    http: reqwest::Client,
}

impl Masters {
    fn start_all(dir: &Path, size: usize) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push(
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port(),
            );
        }
        let mut masters = Masters {
            dir: dir.to_owned(),
            ports,
            children: (0..size).map(|_| None).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        for i in 0..size {
            masters.start(i)?;
        }
        Ok(masters)
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let peers: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        let child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "master",
                "--log-level",
                "warn",
                "--node-id",
                &(i + 1).to_string(),
            ])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.ports[i]),
                "--peers",
                &peers.join(","),
            ])
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{}", i + 1)))
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.children[i] = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.children[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    async fn status(&self, i: usize) -> Option<cairn_log::engine::MemberStatus> {
        let url = format!("http://127.0.0.1:{}/v1/cluster/status", self.ports[i]);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// The index of the live member that leads, as the live members agree.
    async fn leader(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            for i in (0..self.ports.len()).filter(|i| self.children[*i].is_some()) {
                if let Some(s) = self.status(i).await {
                    if s.role == "Leader" {
                        return Ok(i);
                    }
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every member has applied the same head.
    async fn converged(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let mut heads = Vec::new();
            for i in 0..self.ports.len() {
                heads.push(self.status(i).await.map(|s| s.head));
            }
            if heads.iter().all(|h| h.is_some() && *h == heads[0]) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "members did not converge: {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn append(&self, i: usize, body: &str) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/v1/log/append", self.ports[i]);
        post_append(&self.http, &url, body.to_owned()).await
    }
}

/// Posts one append (a JSON array of entries) and fails unless it is acknowledged.
async fn post_append(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "append answered {}",
        response.status()
    );
    Ok(())
}

impl Drop for Masters {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn bench_replication(
    dir: &Path,
    seconds: u64,
    clients: usize,
    batch: usize,
    kills: usize,
) -> anyhow::Result<()> {
    println!(
        "machine: {}; 3 masters on loopback, separate processes; fsync on each",
        machine()
    );
    let mut masters = Masters::start_all(dir, 3)?;
    let leader = masters.leader(Duration::from_secs(60)).await?;
    let http = masters.http.clone();
    let url = format!("http://127.0.0.1:{}/v1/log/append", masters.ports[leader]);

    // Batched throughput: `clients` concurrent appends of `batch` entries each, to the leader.
    let body = serde_json::to_string(&(0..batch as u64).map(status_update).collect::<Vec<_>>())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let runs: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new(3).expect("histogram");
                while Instant::now() < deadline {
                    let t = Instant::now();
                    post_append(&http, &url, body.clone()).await?;
                    latency.record(t.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok(latency)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3)?;
    for run in runs {
        latency.add(run.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!("| run | events/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {clients} clients, appends of {batch} | {:.0} | {} | {} |",
        (latency.len() * batch as u64) as f64 / elapsed,
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99))
    );

    // Commit latency at a steady 1,000 single-event appends per second.
    let one = serde_json::to_string(&[status_update(7)])?;
    let steady = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        ticker.tick().await;
        let (http, url, one, steady) = (http.clone(), url.clone(), one.clone(), steady.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .post(url)
                .header("content-type", "application/json")
                .body(one)
                .send()
                .await;
            if ok.is_ok_and(|r| r.status().is_success()) {
                let _ = steady
                    .lock()
                    .expect("histogram")
                    .record(t.elapsed().as_micros() as u64);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let steady = steady.lock().expect("histogram").clone();
    println!(
        "| 1,000 single appends/s, steady ({} acknowledged) | {:.0} | {} | {} |",
        steady.len(),
        steady.len() as f64 / seconds as f64,
        ms(steady.value_at_quantile(0.5)),
        ms(steady.value_at_quantile(0.99))
    );

    // Failover: kill the leader, time until a write is acknowledged by the new one.
    let mut failover = Histogram::<u64>::new(3)?;
    for _ in 0..kills {
        masters.converged(Duration::from_secs(60)).await?;
        let leader = masters.leader(Duration::from_secs(60)).await?;
        masters.kill(leader)?;
        let killed = Instant::now();
        'acked: loop {
            for i in (0..3).filter(|i| *i != leader) {
                if masters.append(i, &one).await.is_ok() {
                    break 'acked;
                }
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "no write acknowledged after a kill"
            );
        }
        failover.record(killed.elapsed().as_micros() as u64)?;
        masters.start(leader)?;
    }
    println!();
    println!("| failover (leader SIGKILLed → first write acknowledged), {kills} kills | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| | {} | {} | {} |",
        ms(failover.value_at_quantile(0.5)),
        ms(failover.value_at_quantile(0.99)),
        ms(failover.max())
    );
    Ok(())
}
