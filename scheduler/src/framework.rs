//! What the built-in frameworks (apps, jobs) share: registering themselves, the offers they
//! hold in a cycle, settling those offers (accept what launched, decline the rest), and
//! suppressing or reviving offers. Pure, like the deciders that use it.

use cairn_log::event::{
    AgentId, Event, FrameworkId, FrameworkRegistered, FrameworkReregistered, OfferId,
    OffersDeclined, OffersRevived, OffersSuppressed, Resources, TaskLaunched, TaskSpec,
};
use cairn_projections::cluster::{Agent, Framework, FrameworkStatus};
use cairn_projections::State;

/// How long a framework refuses an agent whose offer it could not use while work still waits
/// (Mesos' default filter).
pub const DECLINE_MILLIS: u64 = 5_000;

/// Most encoded bytes of one cycle's launches, estimated by [`launch_bytes`]: a decision stays
/// within the log's 8 MiB per append however big the definitions are (one launch may overshoot
/// it, and a definition is at most 1 MiB).
pub const LAUNCH_BYTES: usize = 6 << 20;

/// One launch's encoded size, from above: its spec, the name (as name and in the owner and
/// task ids), the assigned ports (twice), and the other ids, resources and the offer id in well
/// under 512 bytes.
pub fn launch_bytes(spec: &TaskSpec, name: &str, ports: usize) -> usize {
    let spec = serde_json::to_vec(spec).map_or(0, |b| b.len());
    spec + 3 * name.len() + 32 * ports + 512
}

/// Registers a built-in framework once it has work (an empty cluster's log stays quiet), or
/// brings it back when it is not active.
pub fn ensure(state: &State, id: &FrameworkId, name: &str, has_work: bool) -> Vec<Event> {
    match state.cluster.frameworks.get(id) {
        None if !has_work => Vec::new(),
        None => vec![Event::FrameworkRegistered(Box::new(FrameworkRegistered {
            framework_id: id.clone(),
            name: name.into(),
            user: "root".into(),
            roles: vec!["*".into()],
            principal: Some(id.as_str().into()),
            // A built-in framework never fails over: it is part of the leader.
            failover_timeout_secs: 604_800,
            hostname: None,
            webui_url: None,
        }))],
        Some(f) if f.status != FrameworkStatus::Active => {
            vec![Event::FrameworkReregistered(FrameworkReregistered {
                framework_id: id.clone(),
            })]
        }
        Some(_) => Vec::new(),
    }
}

/// An offer being used this cycle: what is left of it and what it launches.
#[derive(Debug)]
pub struct Avail<'a> {
    pub offer_id: &'a OfferId,
    pub agent_id: &'a AgentId,
    pub agent: &'a Agent,
    pub free: Resources,
    pub launched: Vec<TaskLaunched>,
}

/// The offers `framework_id` holds, in offer id order.
pub fn offers<'a>(state: &'a State, framework_id: &FrameworkId) -> Vec<Avail<'a>> {
    state
        .cluster
        .offers
        .iter()
        .filter(|(_, o)| o.framework_id == *framework_id)
        .filter_map(|(offer_id, o)| {
            Some(Avail {
                offer_id,
                agent_id: &o.agent_id,
                agent: state.cluster.agents.get(&o.agent_id)?,
                free: o.resources.clone(),
                launched: Vec::new(),
            })
        })
        .collect()
}

/// Accepts each offer that launched something (by its launches) and declines the rest, for
/// [`DECLINE_MILLIS`] when `unmet` (work waits that these offers could not take), else
/// without a filter.
pub fn settle(
    offers: Vec<Avail>,
    framework_id: &FrameworkId,
    unmet: bool,
    events: &mut Vec<Event>,
) {
    let mut unused = Vec::new();
    for offer in offers {
        if offer.launched.is_empty() {
            unused.push(offer.offer_id.clone());
            continue;
        }
        // Each launch names its offer, which accepts it: no `OfferAccepted` record.
        events.extend(offer.launched.into_iter().map(|launch| {
            Event::TaskLaunched(Box::new(TaskLaunched {
                offer_id: Some(offer.offer_id.clone()),
                ..launch
            }))
        }));
    }
    if !unused.is_empty() {
        events.push(Event::OffersDeclined(OffersDeclined {
            offer_ids: unused,
            framework_id: framework_id.clone(),
            refuse_millis: if unmet { DECLINE_MILLIS } else { 0 },
        }));
    }
}

/// Revives offers when work waits and they are suppressed, suppresses them when nothing
/// waits; returns whether it revived (the caller goes round again to use the new offers).
pub fn pace(
    framework: &Framework,
    framework_id: &FrameworkId,
    wants: bool,
    events: &mut Vec<Event>,
) -> bool {
    let suppressed = !framework.suppressed.is_empty();
    let revive = wants && suppressed;
    if revive {
        events.push(Event::OffersRevived(OffersRevived {
            framework_id: framework_id.clone(),
            roles: Vec::new(),
        }));
    } else if !wants && !suppressed {
        events.push(Event::OffersSuppressed(OffersSuppressed {
            framework_id: framework_id.clone(),
            roles: Vec::new(),
        }));
    }
    revive
}
