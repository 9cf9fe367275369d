//! `cairn bench apps`: the apps scheduler over simulated agents. First end to end (see
//! [`end_to_end`]); then the deciders alone, in memory: apps are created
//! (every other one with a `hostname UNIQUE` constraint, every fourth spread `GROUP_BY` rack),
//! then scheduling cycles run as the leader runs them — the allocator's offers folded in, the
//! apps decider's launches folded in — until every instance is placed. Times the deciders
//! (placements per second) apart from folding their events, then the cost of a cycle with
//! nothing to do, and the memory the apps and their instances take in the projections.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_log::engine::{Log, SystemClock};
use cairn_log::event::{
    Actor, AgentId, AppId, AppSpec, Backoff, CommandSpec, DeploymentId, Event, PortDefinition,
    TaskId, TaskState, Timestamp, UpgradeStrategy,
};
use cairn_log::protocol::{Command, Envelope, Register, StatusUpdate, MAX_UPDATES_PER_POST};
use cairn_projections::live::{Projector, ProjectorConfig};
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use cairn_scheduler::apps::{decide, ensure_framework};
use cairn_scheduler::deployments::{put, Put, MAX_APPS_PER_CHANGE};
use cairn_scheduler::{Runner, RunnerConfig};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::allocator::{agent, Folded};
use super::{machine, open, rss_kib};

pub(super) fn spec(i: usize, instances: u32) -> anyhow::Result<AppSpec> {
    let constraints = match i % 4 {
        0 => vec![vec!["hostname".to_owned(), "UNIQUE".to_owned()]],
        1 => vec![vec!["rack".to_owned(), "GROUP_BY".to_owned()]],
        _ => Vec::new(),
    };
    Ok(AppSpec {
        id: AppId::new(format!("/bench/app-{i:05}"))?,
        command: Some(CommandSpec {
            value: Some("sleep 1000".into()),
            ..CommandSpec::default()
        }),
        container: None,
        cpus_milli: 100,
        mem_mib: 64,
        disk_mib: 0,
        instances,
        port_definitions: vec![PortDefinition {
            port: 0,
            protocol: "tcp".into(),
            name: None,
        }],
        require_ports: false,
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        constraints,
        health_checks: Vec::new(),
        upgrade_strategy: UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        },
        backoff: Backoff {
            backoff_secs: 1.0,
            factor: 1.15,
            max_launch_delay_secs: 300.0,
        },
        user: None,
        dependencies: Vec::new(),
        kill_grace_period_secs: None,
    })
}

pub fn bench(agents: usize, apps: usize, instances: u32) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let mut cluster = Folded::new();
    for a in 0..agents {
        cluster.fold(agent(a)?);
    }
    let rss_agents = rss_kib(std::process::id());
    let specs = (0..apps)
        .map(|i| spec(i, instances))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (n, chunk) in specs.chunks(MAX_APPS_PER_CHANGE).enumerate() {
        let change = put(
            &cluster.state,
            chunk.to_vec(),
            Put::Create,
            cluster.now(),
            DeploymentId::new(format!("deployment-{n}"))?,
            false,
        )?;
        for event in change.events {
            cluster.fold(event);
        }
    }
    for event in ensure_framework(&cluster.state) {
        cluster.fold(event);
    }

    let wanted = apps * instances as usize;
    let config = AllocatorConfig::default();
    let (mut deciding, mut folding) = (Duration::ZERO, Duration::ZERO);
    let mut placed = 0;
    let mut cycles = 0;
    while placed < wanted {
        cycles += 1;
        anyhow::ensure!(cycles <= 1_000, "only {placed} of {wanted} placed");
        let started = Instant::now();
        let offers = allocate(
            &cluster.state,
            cluster.now(),
            &config,
            &format!("c{cycles}"),
        );
        deciding += started.elapsed();
        let started = Instant::now();
        for event in offers {
            cluster.fold(event);
        }
        folding += started.elapsed();
        let started = Instant::now();
        let cycle = decide(&cluster.state, cluster.now(), &format!("m{cycles}"));
        deciding += started.elapsed();
        let started = Instant::now();
        for event in cycle.events {
            placed += usize::from(matches!(event, Event::TaskLaunched(_)));
            cluster.fold(event);
        }
        folding += started.elapsed();
    }
    let rss_apps = rss_kib(std::process::id());
    println!(
        "placed {placed} instances of {apps} apps on {agents} agents in {cycles} cycles: \
         deciders {:.0} ms ({:.0} placements/s), folding their events {:.0} ms",
        deciding.as_secs_f64() * 1e3,
        placed as f64 / deciding.as_secs_f64(),
        folding.as_secs_f64() * 1e3,
    );

    // A cycle with nothing to do: what every leader pays each second.
    let mut idle = Histogram::<u64>::new(3)?;
    for n in 0..20 {
        let started = Instant::now();
        let offers = allocate(&cluster.state, cluster.now(), &config, &format!("i{n}"));
        let cycle = decide(&cluster.state, cluster.now(), &format!("i{n}"));
        idle.record(started.elapsed().as_micros() as u64)?;
        anyhow::ensure!(
            offers.is_empty() && cycle.events.is_empty(),
            "an idle cycle decided something: {:?}",
            cycle.events.first()
        );
    }
    println!(
        "idle cycle (allocator + apps decider) over {apps} apps, {placed} instances: p50 {:.2} ms, p99 {:.2} ms",
        idle.value_at_quantile(0.5) as f64 / 1000.0,
        idle.value_at_quantile(0.99) as f64 / 1000.0,
    );
    println!(
        "memory: {:.1} KiB per app with its {instances} instances ({} KiB RSS for apps and tasks; \
         state {:.1} MiB as JSON)",
        rss_apps.saturating_sub(rss_agents) as f64 / apps as f64,
        rss_apps.saturating_sub(rss_agents),
        serde_json::to_vec(&cluster.state)?.len() as f64 / (1 << 20) as f64,
    );
    Ok(())
}

/// The whole master path with in-process fake agents: `agents` register with a real runner
/// over a real (single-node, fsynced) log, follow their command streams, and answer every
/// launch at once with `TASK_RUNNING`. An app goes from 0 to `instances`; the figure is how
/// fast instances are placed (logged `TaskLaunched`) and running, and what the master's
/// memory grows by.
pub async fn end_to_end(dir: &Path, agents: usize, instances: u32) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let master = Master::start(dir).await?;
    let (log, projector, runner) = (&master.log, &master.projector, &master.runner);
    let running_logged = master.fake_agents(agents, None).await?;

    let actor = Actor::system();
    let app = spec(2, 0)?;
    let app_id = app.id.clone();
    runner
        .put_apps(actor.clone(), vec![app], Put::Create, false)
        .await?;
    let rss_before = rss_kib(std::process::id());
    let started = Instant::now();
    // Forced: the creation's (empty) deployment may not have been seen to finish yet.
    runner
        .scale_app(actor, app_id.clone(), instances, true)
        .await?;
    let (mut placed_at, mut running_at) = (None, None);
    // Watching costs next to nothing: a count in the projections, and the agents' counter.
    while running_at.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1_800),
            "not all running after 30 minutes"
        );
        if placed_at.is_none() {
            let state = projector.current().await;
            let placed = state
                .apps
                .apps
                .get(&app_id)
                .map_or(0, |a| a.instances.len());
            if placed == instances as usize {
                placed_at = Some(started.elapsed());
            }
        }
        if running_logged.load(Ordering::Relaxed) == u64::from(instances) {
            running_at = Some(started.elapsed());
        }
    }
    let (placed, running) = (
        placed_at.expect("placed before running"),
        running_at.expect("the loop ends on it"),
    );
    let rss_after = rss_kib(std::process::id());
    println!(
        "0 → {instances} instances over {agents} agents: all placed in {:.2} s ({:.0} placements/s), \
         all running in {:.2} s ({:.0}/s); log head {}",
        placed.as_secs_f64(),
        f64::from(instances) / placed.as_secs_f64(),
        running.as_secs_f64(),
        f64::from(instances) / running.as_secs_f64(),
        log.head(),
    );
    println!(
        "master memory: +{:.1} MiB for {instances} running tasks ({:.1} MiB per 100,000)",
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0 * 100_000.0 / f64::from(instances),
    );
    master.stop().await;
    Ok(())
}

/// A single-node master (fsynced log, projector, runner) for benchmarks driven by fake agents.
pub(super) struct Master {
    pub log: Log,
    pub projector: Projector,
    pub runner: Runner,
    stop: CancellationToken,
}

impl Master {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let log = open(&dir.join("log")).await?;
        let projector =
            Projector::start(log.clone(), ProjectorConfig::new(dir.join("checkpoints"))).await?;
        let config = RunnerConfig {
            // Fake agents answer pings; nothing here may be lost while the benchmark runs.
            agent_timeout: Duration::from_secs(86_400),
            reconnect_grace: Duration::from_secs(86_400),
            ..RunnerConfig::default()
        };
        let stop = CancellationToken::new();
        let runner = Runner::start(
            log.clone(),
            projector.clone(),
            Arc::new(SystemClock),
            config,
            stop.clone(),
        );
        Ok(Self {
            log,
            projector,
            runner,
            stop,
        })
    }

    /// Registers `agents` fake agents (see [`fake_agent`]); returns the count of their
    /// `TASK_RUNNING` updates the master has logged.
    pub async fn fake_agents(
        &self,
        agents: usize,
        finish_after: Option<Duration>,
    ) -> anyhow::Result<Arc<AtomicU64>> {
        let started = Instant::now();
        let mut registering = tokio::task::JoinSet::new();
        let running_logged = Arc::new(AtomicU64::new(0));
        for a in 0..agents {
            let (runner, term) = (self.runner.clone(), self.log.term());
            let logged = running_logged.clone();
            registering.spawn(async move {
                let Event::AgentRegistered(agent) = agent(a)? else {
                    unreachable!("agent() registers")
                };
                let registered = runner
                    .register(Register {
                        agent_id: None,
                        hostname: agent.hostname,
                        address: agent.address,
                        resources: agent.resources,
                        attributes: agent.attributes,
                        version: "bench".into(),
                        tasks: Vec::new(),
                        term,
                    })
                    .await?;
                let commands = runner.commands(registered.agent_id.clone()).await?;
                tokio::spawn(fake_agent(
                    runner,
                    registered.agent_id,
                    commands,
                    logged,
                    finish_after,
                ));
                Ok::<(), anyhow::Error>(())
            });
        }
        while let Some(done) = registering.join_next().await {
            done??;
        }
        println!(
            "{agents} fake agents registered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(running_logged)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.log.close().await;
    }
}

/// An agent that does nothing but say yes: every launch is running at once (posted in
/// batches, as a real agent posts what it has), and finished `finish_after` later if given;
/// every ping is answered with a heartbeat.
async fn fake_agent(
    runner: Runner,
    agent_id: AgentId,
    mut commands: mpsc::Receiver<Envelope>,
    logged: Arc<AtomicU64>,
    finish_after: Option<Duration>,
) {
    while let Some(first) = commands.recv().await {
        let mut launched = Vec::new();
        let mut next = Some(first);
        while let Some(envelope) = next.take() {
            match envelope.command {
                Command::Launch(launch) => launched.push(launch.task_id),
                Command::Ping => {
                    let _ = runner.heartbeat(&agent_id);
                }
                Command::Kill(_) => {}
            }
            next = commands.try_recv().ok();
        }
        match post(&runner, &agent_id, &launched, TaskState::Running).await {
            Some(n) => logged.fetch_add(n, Ordering::Relaxed),
            None => return,
        };
        if let Some(after) = finish_after {
            let (runner, agent_id) = (runner.clone(), agent_id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                post(&runner, &agent_id, &launched, TaskState::Finished).await
            });
        }
    }
}

/// Posts `state` for each of `tasks`; returns how many updates were logged, `None` once the
/// master refuses.
async fn post(
    runner: &Runner,
    agent_id: &AgentId,
    tasks: &[TaskId],
    state: TaskState,
) -> Option<u64> {
    let mut logged = 0;
    for chunk in tasks.chunks(MAX_UPDATES_PER_POST) {
        let updates = chunk
            .iter()
            .map(|task_id| StatusUpdate {
                uuid: format!("{task_id}-{state:?}"),
                task_id: task_id.clone(),
                state,
                reason: None,
                message: None,
                healthy: None,
                at: Timestamp::default(),
                source: Default::default(),
            })
            .collect();
        let acks = runner.statuses(agent_id.clone(), updates).await.ok()?;
        logged += acks.iter().filter(|a| a.offset > 0).count() as u64;
    }
    Some(logged)
}
