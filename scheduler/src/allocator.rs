//! The allocator: turns agents' free resources into offers to frameworks, by Dominant
//! Resource Fairness (DRF) across frameworks, weighted by role. Pure: the runner passes `now`,
//! the weights and the prefix of the offer ids it minted, and appends what comes out.
//!
//! One cycle, as Mesos' hierarchical allocator does it:
//! 1. offers outstanding longer than the offer timeout are rescinded (their resources free up);
//! 2. each active framework's allocation is what its live tasks use plus what it holds in
//!    offers; its *dominant share* is the largest fraction of the cluster's total CPUs, memory
//!    or disk that allocation is, divided by its role's weight;
//! 3. agents are visited in id order; each agent's free resources (if at least a minimal
//!    offer) go whole to the framework with the lowest weighted dominant share that wants
//!    offers (not suppressed) and has not declined this agent for a while (filters); its
//!    share grows, and the next agent goes to whoever is lowest then.
//!
//! A heap keyed by share makes a cycle O(agents · log frameworks) (plus the frameworks a
//! filter skips), so 10,000 agents and 100 frameworks take milliseconds (`cairn bench
//! allocator`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use cairn_log::event::{
    AgentId, Event, FrameworkId, Offer, OfferId, OfferRescinded, OffersMade, Resources, Timestamp,
};
use cairn_projections::cluster::{AgentStatus, FrameworkStatus};
use cairn_projections::State;

/// Offers in one `OffersMade` record: keeps each record well under the log's size limit.
pub const OFFERS_PER_EVENT: usize = 1000;
/// The least worth offering (Mesos: 0.01 CPUs or 32 MiB).
const MIN_CPUS_MILLI: u64 = 10;
const MIN_MEM_MIB: u64 = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorConfig {
    /// Offers outstanding this long are rescinded.
    pub offer_timeout_micros: i64,
    /// Role weights (default 1): a role of weight 2 is entitled to twice the share.
    pub weights: BTreeMap<String, f64>,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            offer_timeout_micros: 60_000_000,
            weights: BTreeMap::new(),
        }
    }
}

/// One allocation cycle at `now`. New offers are named `<offer_prefix>-O<n>`.
pub fn allocate(
    state: &State,
    now: Timestamp,
    config: &AllocatorConfig,
    offer_prefix: &str,
) -> Vec<Event> {
    let mut events = Vec::new();
    // 1. Expired offers go back to their agents.
    let mut rescinded: BTreeMap<&AgentId, Vec<&Resources>> = BTreeMap::new();
    let mut held: BTreeMap<&FrameworkId, Resources> = BTreeMap::new();
    for (offer_id, offer) in &state.cluster.offers {
        if now.as_micros() - offer.made_at.as_micros() >= config.offer_timeout_micros {
            events.push(Event::OfferRescinded(OfferRescinded {
                offer_id: offer_id.clone(),
                reason: "the offer timed out".into(),
            }));
            rescinded
                .entry(&offer.agent_id)
                .or_default()
                .push(&offer.resources);
            continue;
        }
        add(
            held.entry(&offer.framework_id).or_default(),
            &offer.resources,
        );
    }

    // 2. Totals and each framework's allocation.
    let mut total = Resources::default();
    for agent in state
        .cluster
        .agents
        .values()
        .filter(|a| a.status == AgentStatus::Active)
    {
        add(&mut total, &agent.total);
    }
    for task in state.tasks.tasks.values().filter(|t| !t.is_terminal()) {
        if let Some(h) = held.get_mut(&task.framework_id) {
            add(h, &task.resources);
        } else if state.cluster.frameworks.contains_key(&task.framework_id) {
            let mut r = Resources::default();
            add(&mut r, &task.resources);
            held.insert(&task.framework_id, r);
        }
    }
    // The heap orders frameworks by (weighted dominant share, id); their weights and
    // allocations sit beside it.
    let mut heap = BinaryHeap::new();
    let mut allocations: BTreeMap<&FrameworkId, (f64, Resources)> = BTreeMap::new();
    for (id, framework) in &state.cluster.frameworks {
        if framework.status != FrameworkStatus::Active {
            continue;
        }
        let role = framework.roles.first().map_or("*", String::as_str);
        let suppressed = framework.suppressed.contains("*")
            || (!framework.roles.is_empty()
                && framework
                    .roles
                    .iter()
                    .all(|r| framework.suppressed.contains(r)));
        if suppressed {
            continue;
        }
        let weight = config
            .weights
            .get(role)
            .copied()
            .filter(|w| *w > 0.0)
            .unwrap_or(1.0);
        let allocation = held.get(id).cloned().unwrap_or_default();
        heap.push(Reverse((share_key(&allocation, &total, weight), id)));
        allocations.insert(id, (weight, allocation));
    }
    if heap.is_empty() {
        return events;
    }

    // 3. Each agent's free resources to the framework with the lowest share that takes them.
    let mut offers = Vec::new();
    let mut skipped = Vec::new();
    for (agent_id, agent) in &state.cluster.agents {
        if agent.status != AgentStatus::Active {
            continue;
        }
        // What no task uses and no outstanding offer holds (ports included), with what the
        // offers rescinded above held.
        let Some(mut free) = state.cluster.free(agent_id) else {
            continue;
        };
        for back in rescinded.get(agent_id).into_iter().flatten() {
            free = free.checked_add(back).unwrap_or(free);
        }
        if free.cpus_milli < MIN_CPUS_MILLI && free.mem_mib < MIN_MEM_MIB {
            continue;
        }
        let mut chosen = None;
        while let Some(Reverse((key, framework_id))) = heap.pop() {
            let filtered = state.cluster.frameworks[framework_id]
                .filters
                .get(agent_id)
                .is_some_and(|until| *until > now);
            if filtered {
                skipped.push(Reverse((key, framework_id)));
            } else {
                chosen = Some(framework_id);
                break;
            }
        }
        heap.extend(skipped.drain(..));
        let Some(framework_id) = chosen else {
            continue;
        };
        let (weight, allocation) = allocations.get_mut(framework_id).expect("in the heap");
        add(allocation, &free);
        let key = share_key(allocation, &total, *weight);
        offers.push(Offer {
            offer_id: OfferId::new(format!("{offer_prefix}-O{}", offers.len()))
                .expect("a valid id"),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            resources: free,
        });
        heap.push(Reverse((key, framework_id)));
    }
    while !offers.is_empty() {
        let rest = offers.split_off(offers.len().min(OFFERS_PER_EVENT));
        events.push(Event::OffersMade(OffersMade { offers }));
        offers = rest;
    }
    events
}

/// Adds `b`'s scalars to `a` (ports do not count towards shares).
fn add(a: &mut Resources, b: &Resources) {
    a.cpus_milli = a.cpus_milli.saturating_add(b.cpus_milli);
    a.mem_mib = a.mem_mib.saturating_add(b.mem_mib);
    a.disk_mib = a.disk_mib.saturating_add(b.disk_mib);
}

/// The weighted dominant share in parts per billion: an integer, so that ordering is exact
/// and the same on every machine.
fn share_key(allocation: &Resources, total: &Resources, weight: f64) -> u64 {
    let fraction = |used: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            used as f64 / of as f64
        }
    };
    let dominant = fraction(allocation.cpus_milli, total.cpus_milli)
        .max(fraction(allocation.mem_mib, total.mem_mib))
        .max(fraction(allocation.disk_mib, total.disk_mib));
    (dominant / weight * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use cairn_log::event::{
        FrameworkRegistered, OffersDeclined, OffersRevived, OffersSuppressed, TaskLaunched,
        TaskOwner,
    };

    use super::*;
    use crate::agents::tests::{agent, registered, state_of};

    fn framework(id: &str, role: &str) -> Event {
        Event::FrameworkRegistered(Box::new(FrameworkRegistered {
            framework_id: FrameworkId::new(id).unwrap(),
            name: id.into(),
            user: "root".into(),
            roles: vec![role.into()],
            principal: None,
            failover_timeout_secs: 0,
            hostname: None,
            webui_url: None,
        }))
    }

    fn offers(events: &[Event]) -> Vec<(String, String)> {
        events
            .iter()
            .flat_map(|e| match e {
                Event::OffersMade(m) => m.offers.clone(),
                _ => Vec::new(),
            })
            .map(|o| (o.agent_id.to_string(), o.framework_id.to_string()))
            .collect()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    #[test]
    fn agents_alternate_between_frameworks_with_equal_shares() {
        let state = state_of(vec![
            registered("a1", 1000),
            registered("a2", 1000),
            registered("a3", 1000),
            registered("a4", 1000),
            framework("f1", "*"),
            framework("f2", "*"),
        ]);
        let got = offers(&allocate(&state, at(10), &AllocatorConfig::default(), "c1"));
        let to = |f: &str| got.iter().filter(|(_, x)| x == f).count();
        assert_eq!((to("f1"), to("f2")), (2, 2), "{got:?}");
    }

    #[test]
    fn the_framework_using_least_gets_the_next_agent() {
        let big = Event::TaskLaunched(Box::new(TaskLaunched {
            task_id: cairn_log::event::TaskId::new("t").unwrap(),
            name: "t".into(),
            framework_id: FrameworkId::new("f1").unwrap(),
            agent_id: agent("a1"),
            owner: TaskOwner::Framework,
            resources: Resources {
                cpus_milli: 1000,
                mem_mib: 1024,
                ..Resources::default()
            },
            spec: Box::default(),
            offer_id: None,
        }));
        let state = state_of(vec![
            registered("a1", 1000),
            registered("a2", 1000),
            framework("f1", "*"),
            framework("f2", "*"),
            big,
        ]);
        // a1 is full (f1's task); f1 holds half the cluster, so a2 goes to f2.
        let got = offers(&allocate(&state, at(10), &AllocatorConfig::default(), "c1"));
        assert_eq!(got, [("a2".to_owned(), "f2".to_owned())]);
    }

    #[test]
    fn weights_declines_and_suppression_shape_who_is_offered_what() {
        let base = vec![
            registered("a1", 1000),
            registered("a2", 1000),
            registered("a3", 1000),
            framework("f1", "heavy"),
            framework("f2", "light"),
        ];
        // Weight 2 on `heavy`: it gets two of three agents.
        let config = AllocatorConfig {
            weights: BTreeMap::from([("heavy".to_owned(), 2.0)]),
            ..AllocatorConfig::default()
        };
        let got = offers(&allocate(&state_of(base.clone()), at(10), &config, "c"));
        assert_eq!(got.iter().filter(|(_, f)| f == "f1").count(), 2, "{got:?}");

        // f1 declines a1 for 5 s: a1 goes to f2 until the filter runs out; a revive clears it.
        let mut events = base.clone();
        events.push(Event::OffersMade(OffersMade {
            offers: vec![Offer {
                offer_id: OfferId::new("o").unwrap(),
                framework_id: FrameworkId::new("f1").unwrap(),
                agent_id: agent("a1"),
                resources: Resources {
                    cpus_milli: 1000,
                    mem_mib: 1024,
                    ..Resources::default()
                },
            }],
        }));
        events.push(Event::OffersDeclined(OffersDeclined {
            offer_ids: vec![OfferId::new("o").unwrap()],
            framework_id: FrameworkId::new("f1").unwrap(),
            refuse_millis: 5000,
        }));
        let declined = state_of(events.clone());
        // Which framework agent a1 is offered to, at `secs`.
        let a1_to = |state: &State, secs: i64| {
            offers(&allocate(state, at(secs), &AllocatorConfig::default(), "c"))
                .into_iter()
                .find(|(a, _)| a == "a1")
                .map(|(_, f)| f)
        };
        // The decline was logged at 7 s (its offset): filtered until 12 s.
        assert_eq!(a1_to(&declined, 11).as_deref(), Some("f2"));
        assert_eq!(a1_to(&declined, 12).as_deref(), Some("f1"));
        events.push(Event::OffersRevived(OffersRevived {
            framework_id: FrameworkId::new("f1").unwrap(),
            roles: vec![],
        }));
        let revived = state_of(events.clone());
        assert_eq!(a1_to(&revived, 12).as_deref(), Some("f1"));

        // Suppressed, f1 gets nothing.
        events.push(Event::OffersSuppressed(OffersSuppressed {
            framework_id: FrameworkId::new("f1").unwrap(),
            roles: vec![],
        }));
        let suppressed = state_of(events);
        let got = offers(&allocate(
            &suppressed,
            at(12),
            &AllocatorConfig::default(),
            "c",
        ));
        assert!(got.iter().all(|(_, f)| f == "f2"), "{got:?}");
    }

    #[test]
    fn expired_offers_are_rescinded_and_offered_again() {
        let state = state_of(vec![
            registered("a1", 1000),
            framework("f1", "*"),
            Event::OffersMade(OffersMade {
                offers: vec![Offer {
                    offer_id: OfferId::new("old").unwrap(),
                    framework_id: FrameworkId::new("f1").unwrap(),
                    agent_id: agent("a1"),
                    resources: Resources {
                        cpus_milli: 1000,
                        mem_mib: 1024,
                        ..Resources::default()
                    },
                }],
            }),
        ]);
        let config = AllocatorConfig::default();
        // Made at 3 s: outstanding, nothing to offer at 30 s.
        assert!(allocate(&state, at(30), &config, "c").is_empty());
        let events = allocate(&state, at(63), &config, "c");
        assert!(matches!(&events[0], Event::OfferRescinded(r) if r.offer_id.as_str() == "old"));
        assert_eq!(offers(&events), [("a1".to_owned(), "f1".to_owned())]);
    }

    #[test]
    fn a_cycle_is_a_pure_function_of_its_inputs() {
        let state = state_of(vec![
            registered("a1", 1000),
            framework("f1", "*"),
            framework("f2", "*"),
        ]);
        let config = AllocatorConfig::default();
        assert_eq!(
            allocate(&state, at(5), &config, "x"),
            allocate(&state, at(5), &config, "x")
        );
    }
}
