//! `cairn bench allocator`: allocation cycles of the DRF allocator over a cluster folded into
//! the projections in memory: agents with a share of their resources used by tasks, and
//! frameworks in a few weighted roles. Times the pure decider alone.

use std::collections::BTreeMap;
use std::time::Instant;

use cairn_log::event::{
    Actor, AgentId, AgentRegistered, Event, FrameworkId, FrameworkRegistered, PortRange, Resources,
    TaskId, TaskLaunched, TaskOwner, TaskSpec, Term, Timestamp,
};
use cairn_log::{Offset, Record};
use cairn_projections::{Fold, State};
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use hdrhistogram::Histogram;

use super::machine;

pub fn bench(agents: usize, frameworks: usize, cycles: usize) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let mut state = State::default();
    let mut offset = 0;
    let mut fold = |state: &mut State, event: Event| {
        offset += 1;
        state.apply(&Record {
            offset: Offset::new(offset).expect("offsets start at 1"),
            term: Term(1),
            at: Timestamp::from_micros(offset as i64),
            actor: Actor::system(),
            event,
        });
    };
    for f in 0..frameworks {
        fold(
            &mut state,
            Event::FrameworkRegistered(FrameworkRegistered {
                framework_id: FrameworkId::new(format!("f{f:03}"))?,
                name: format!("framework {f}"),
                user: "root".into(),
                roles: vec![format!("role{}", f % 4)],
                principal: None,
                failover_timeout_secs: 0,
                hostname: None,
                webui_url: None,
            }),
        );
    }
    for a in 0..agents {
        let agent_id = AgentId::new(format!("agent-{a:05}"))?;
        fold(
            &mut state,
            Event::AgentRegistered(AgentRegistered {
                agent_id: agent_id.clone(),
                hostname: format!("host-{a}"),
                address: format!("10.0.{}.{}:5051", a / 250, a % 250),
                resources: Resources {
                    cpus_milli: 32_000,
                    mem_mib: 256 << 10,
                    disk_mib: 1 << 20,
                    ports: vec![PortRange {
                        begin: 31000,
                        end: 32000,
                    }],
                },
                attributes: BTreeMap::new(),
                version: "bench".into(),
            }),
        );
        // Half of each agent in use by one framework's task.
        fold(
            &mut state,
            Event::TaskLaunched(TaskLaunched {
                task_id: TaskId::new(format!("t{a}"))?,
                name: "t".into(),
                framework_id: FrameworkId::new(format!("f{:03}", a % frameworks))?,
                agent_id,
                owner: TaskOwner::Framework,
                resources: Resources {
                    cpus_milli: 16_000,
                    mem_mib: 128 << 10,
                    ..Resources::default()
                },
                spec: TaskSpec::default(),
            }),
        );
    }
    let config = AllocatorConfig {
        weights: BTreeMap::from([("role0".to_owned(), 2.0), ("role1".to_owned(), 0.5)]),
        ..AllocatorConfig::default()
    };
    let now = Timestamp::from_micros(offset as i64 + 1);
    let mut latency = Histogram::<u64>::new(3)?;
    let mut made = 0;
    for cycle in 0..cycles {
        let started = Instant::now();
        let events = allocate(&state, now, &config, &format!("c{cycle}"));
        latency.record(started.elapsed().as_micros() as u64)?;
        made = events
            .iter()
            .map(|e| match e {
                Event::OffersMade(m) => m.offers.len(),
                _ => 0,
            })
            .sum();
    }
    println!(
        "allocation cycle over {agents} agents × {frameworks} frameworks ({made} offers): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {cycles} cycles",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
    );
    Ok(())
}
