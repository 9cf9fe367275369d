//! `cairn bench allocator`: allocation cycles of the DRF allocator over a cluster folded into
//! the projections in memory: agents with a share of their resources used by tasks, and
//! frameworks in a few weighted roles. Times the pure decider alone.

use std::collections::BTreeMap;
use std::time::Instant;

use cairn_log::event::{
    Actor, AgentId, AgentRegistered, Event, FrameworkId, FrameworkRegistered, PortRange, Resources,
    TaskId, TaskLaunched, TaskOwner, Term, Timestamp,
};
use cairn_log::{Offset, Record};
use cairn_projections::{Fold, State};
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use hdrhistogram::Histogram;

use super::machine;

/// A state folded in memory, one event at a time, one microsecond apart.
pub(super) struct Folded {
    pub state: State,
    offset: u64,
}

impl Folded {
    pub fn new() -> Self {
        Self {
            state: State::default(),
            offset: 0,
        }
    }

    pub fn fold(&mut self, event: Event) {
        self.offset += 1;
        self.state.apply(Record {
            offset: Offset::new(self.offset).expect("offsets start at 1"),
            term: Term(1),
            at: Timestamp::from_micros(self.offset as i64),
            actor: Actor::system(),
            event,
        });
    }

    /// A time after everything folded so far.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.offset as i64 + 1)
    }
}

/// Simulated agent `a`: 32 CPUs, 256 GiB, 1 TiB, ports 31000–32000, on its own host.
pub(super) fn agent(a: usize) -> anyhow::Result<Event> {
    Ok(Event::AgentRegistered(Box::new(AgentRegistered {
        agent_id: AgentId::new(format!("agent-{a:05}"))?,
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
        attributes: BTreeMap::from([("rack".to_owned(), format!("r{}", a % 20))]),
        version: "bench".into(),
    })))
}

pub fn bench(agents: usize, frameworks: usize, cycles: usize) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let mut cluster = Folded::new();
    for f in 0..frameworks {
        cluster.fold(Event::FrameworkRegistered(Box::new(FrameworkRegistered {
            framework_id: FrameworkId::new(format!("f{f:03}"))?,
            name: format!("framework {f}"),
            user: "root".into(),
            roles: vec![format!("role{}", f % 4)],
            principal: None,
            failover_timeout_secs: 0,
            hostname: None,
            webui_url: None,
        })));
    }
    for a in 0..agents {
        cluster.fold(agent(a)?);
        // Half of each agent in use by one framework's task.
        cluster.fold(Event::TaskLaunched(Box::new(TaskLaunched {
            task_id: TaskId::new(format!("t{a}"))?,
            name: "t".into(),
            framework_id: FrameworkId::new(format!("f{:03}", a % frameworks))?,
            agent_id: AgentId::new(format!("agent-{a:05}"))?,
            owner: TaskOwner::Framework,
            resources: Resources {
                cpus_milli: 16_000,
                mem_mib: 128 << 10,
                ..Resources::default()
            },
            spec: Box::default(),
            offer_id: None,
        })));
    }
    let state = cluster.state;
    let config = AllocatorConfig {
        weights: BTreeMap::from([("role0".to_owned(), 2.0), ("role1".to_owned(), 0.5)]),
        ..AllocatorConfig::default()
    };
    let now = Timestamp::from_micros(state.offset as i64 + 1);
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
