//! `cairn bench apps`: the apps scheduler over simulated agents, in memory. Apps are created
//! (every other one with a `hostname UNIQUE` constraint, every fourth spread `GROUP_BY` rack),
//! then scheduling cycles run as the leader runs them — the allocator's offers folded in, the
//! apps decider's launches folded in — until every instance is placed. Times the deciders
//! (placements per second) apart from folding their events, then the cost of a cycle with
//! nothing to do, and the memory the apps and their instances take in the projections.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_log::event::{
    AppId, AppSpec, Backoff, CommandSpec, DeploymentId, Event, PortDefinition, UpgradeStrategy,
};
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use cairn_scheduler::apps::{decide, ensure_framework};
use cairn_scheduler::deployments::{put, Put, MAX_APPS_PER_CHANGE};
use hdrhistogram::Histogram;

use super::allocator::{agent, Folded};
use super::{machine, rss_kib};

fn spec(i: usize, instances: u32) -> anyhow::Result<AppSpec> {
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
