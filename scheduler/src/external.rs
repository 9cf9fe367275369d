//! External frameworks (Mesos' scheduler API): what each of their calls means, as events.
//! Pure, like every decider: the API layer parses the call, the runner appends what this
//! decides, and the framework learns the outcome from the log (its offers, its tasks'
//! statuses) like everyone else.
//!
//! A framework subscribes (registered, or re-registered under its id after a failover),
//! receives the allocator's DRF offers, and accepts them with tasks (launched on the offers'
//! agent, within their resources), declines them (optionally refusing the agent for a
//! while), revives or suppresses offers, kills its tasks, and tears itself down (its tasks
//! killed, its offers taken back). The built-in frameworks cannot be driven from outside.

use std::collections::BTreeSet;

use cairn_log::event::{
    AgentId, Event, FrameworkDisconnected, FrameworkId, FrameworkRegistered, FrameworkRemoved,
    FrameworkReregistered, OfferAccepted, OfferId, OfferRescinded, OffersDeclined, OffersRevived,
    OffersSuppressed, Resources, TaskId, TaskKillRequested, TaskLaunched, TaskOwner, TaskSpec,
    Timestamp,
};
use cairn_projections::cluster::FrameworkStatus;
use cairn_projections::State;

use crate::deployments::Refusal;

/// Most tasks one `ACCEPT` may launch.
pub const MAX_TASKS_PER_ACCEPT: usize = 1_000;
/// The longest `refuse_seconds` honoured (Mesos caps it at a year too).
pub const MAX_REFUSE_MILLIS: u64 = 365 * 86_400 * 1_000;

/// What a framework says about itself when it subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkInfo {
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub principal: Option<String>,
    pub failover_timeout_secs: u64,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
}

/// A task a framework launches on its offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub task_id: TaskId,
    pub name: String,
    pub resources: Resources,
    pub spec: TaskSpec,
}

/// One call of a subscribed framework.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Accept {
        offer_ids: Vec<OfferId>,
        launches: Vec<Launch>,
        refuse_millis: u64,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse_millis: u64,
    },
    Revive,
    Suppress,
    Kill {
        task_id: TaskId,
    },
    /// Its subscription's stream ended (the failover timeout starts).
    Disconnected,
    Teardown,
}

fn builtin(id: &FrameworkId) -> bool {
    [crate::apps::FRAMEWORK, crate::jobs::FRAMEWORK].contains(&id.as_str())
}

/// A framework subscribes: a new one is registered as `minted`; one naming its id must exist
/// and not have been removed (then it is re-registered). Returns its id and the events.
pub fn subscribe(
    state: &State,
    info: FrameworkInfo,
    id: Option<FrameworkId>,
    minted: FrameworkId,
) -> Result<(FrameworkId, Vec<Event>), Refusal> {
    if info.user.trim().is_empty() {
        return Err(Refusal::Invalid(
            "framework_info.user: must not be empty".into(),
        ));
    }
    if info.name.trim().is_empty() {
        return Err(Refusal::Invalid(
            "framework_info.name: must not be empty".into(),
        ));
    }
    let Some(id) = id else {
        return Ok((
            minted.clone(),
            vec![Event::FrameworkRegistered(Box::new(FrameworkRegistered {
                framework_id: minted,
                name: info.name,
                user: info.user,
                roles: if info.roles.is_empty() {
                    vec!["*".into()]
                } else {
                    info.roles
                },
                principal: info.principal,
                failover_timeout_secs: info.failover_timeout_secs,
                hostname: info.hostname,
                webui_url: info.webui_url,
            }))],
        ));
    };
    if builtin(&id) {
        return Err(Refusal::Invalid(format!(
            "framework_id: {id} is cairn's own framework"
        )));
    }
    match state.cluster.frameworks.get(&id) {
        None => Err(Refusal::NotFound(format!("framework {id} is unknown"))),
        Some(f) if f.status == FrameworkStatus::Removed => Err(Refusal::Invalid(format!(
            "framework {id} was removed; subscribe without an id"
        ))),
        Some(_) => Ok((
            id.clone(),
            vec![Event::FrameworkReregistered(FrameworkReregistered {
                framework_id: id,
            })],
        )),
    }
}

/// What `call` by framework `id` does.
pub fn decide(state: &State, id: &FrameworkId, call: Call) -> Result<Vec<Event>, Refusal> {
    let framework = state
        .cluster
        .frameworks
        .get(id)
        .filter(|f| f.status != FrameworkStatus::Removed)
        .ok_or_else(|| Refusal::NotFound(format!("framework {id} is not subscribed")))?;
    if builtin(id) {
        return Err(Refusal::Invalid(format!("{id} is cairn's own framework")));
    }
    match call {
        Call::Accept {
            offer_ids,
            launches,
            refuse_millis,
        } => accept(state, id, offer_ids, launches, refuse_millis),
        Call::Decline {
            offer_ids,
            refuse_millis,
        } => {
            let offer_ids: Vec<OfferId> = offer_ids
                .into_iter()
                .filter(|o| {
                    state
                        .cluster
                        .offers
                        .get(o)
                        .is_some_and(|o| &o.framework_id == id)
                })
                .collect();
            Ok(if offer_ids.is_empty() {
                Vec::new()
            } else {
                vec![Event::OffersDeclined(OffersDeclined {
                    offer_ids,
                    framework_id: id.clone(),
                    refuse_millis: refuse_millis.min(MAX_REFUSE_MILLIS),
                })]
            })
        }
        Call::Revive => Ok(vec![Event::OffersRevived(OffersRevived {
            framework_id: id.clone(),
            roles: Vec::new(),
        })]),
        Call::Suppress => Ok(vec![Event::OffersSuppressed(OffersSuppressed {
            framework_id: id.clone(),
            roles: Vec::new(),
        })]),
        Call::Kill { task_id } => match state.tasks.tasks.get(&task_id) {
            Some(t) if &t.framework_id == id && !t.is_terminal() => {
                Ok(vec![Event::TaskKillRequested(TaskKillRequested {
                    task_id,
                    grace_period_secs: None,
                    reason: format!("killed by its framework {id}"),
                })])
            }
            Some(t) if &t.framework_id == id => Ok(Vec::new()),
            _ => Err(Refusal::NotFound(format!(
                "task {task_id} is not a task of {id}"
            ))),
        },
        Call::Disconnected if framework.status == FrameworkStatus::Active => {
            Ok(vec![Event::FrameworkDisconnected(FrameworkDisconnected {
                framework_id: id.clone(),
                reason: "its subscription ended".into(),
            })])
        }
        Call::Disconnected => Ok(Vec::new()),
        Call::Teardown => Ok(remove(state, id, "torn down by the framework")),
    }
}

/// External frameworks the state has connected whose subscription stream the leader does not
/// serve (it was on a master that no longer leads, or it ended there unrecorded): disconnected,
/// so that their failover timeout runs.
pub fn unsubscribed(state: &State, subscribed: &BTreeSet<FrameworkId>) -> Vec<Event> {
    state
        .cluster
        .frameworks
        .iter()
        .filter(|(id, f)| {
            !builtin(id) && f.status == FrameworkStatus::Active && !subscribed.contains(*id)
        })
        .map(|(id, _)| {
            Event::FrameworkDisconnected(FrameworkDisconnected {
                framework_id: id.clone(),
                reason: "it is not subscribed to the leader".into(),
            })
        })
        .collect()
}

/// Frameworks disconnected for longer than their failover timeout — counted from
/// `leading_since` at the earliest, so that a new leader gives each its whole timeout — are
/// removed.
pub fn expired(state: &State, now: Timestamp, leading_since: Timestamp) -> Vec<Event> {
    let mut events = Vec::new();
    for (id, f) in &state.cluster.frameworks {
        if builtin(id) || f.status != FrameworkStatus::Disconnected {
            continue;
        }
        let since = f.updated_at.max(leading_since);
        let timeout = i64::try_from(f.failover_timeout_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        if now.as_micros().saturating_sub(since.as_micros()) > timeout {
            events.extend(remove(state, id, "its failover timeout ran out"));
        }
    }
    events
}

/// Removes a framework: its live tasks are killed, its outstanding offers taken back.
pub fn remove(state: &State, id: &FrameworkId, why: &str) -> Vec<Event> {
    let mut events: Vec<Event> = state
        .tasks
        .tasks
        .iter()
        .filter(|(_, t)| &t.framework_id == id && !t.is_terminal())
        .map(|(task_id, _)| {
            Event::TaskKillRequested(TaskKillRequested {
                task_id: task_id.clone(),
                grace_period_secs: None,
                reason: format!("framework {id}: {why}"),
            })
        })
        .collect();
    events.extend(
        state
            .cluster
            .offers
            .iter()
            .filter(|(_, o)| &o.framework_id == id)
            .map(|(offer_id, _)| {
                Event::OfferRescinded(OfferRescinded {
                    offer_id: offer_id.clone(),
                    reason: format!("framework {id}: {why}"),
                })
            }),
    );
    events.push(Event::FrameworkRemoved(FrameworkRemoved {
        framework_id: id.clone(),
        reason: why.into(),
    }));
    events
}

/// Launches `launches` on `offer_ids` (all the framework's, outstanding, on one agent): each
/// task must fit in what the offers hold together, with its ports among theirs. What is not
/// used is given back. No tasks is a decline.
fn accept(
    state: &State,
    id: &FrameworkId,
    offer_ids: Vec<OfferId>,
    launches: Vec<Launch>,
    refuse_millis: u64,
) -> Result<Vec<Event>, Refusal> {
    if launches.len() > MAX_TASKS_PER_ACCEPT {
        return Err(Refusal::Invalid(format!(
            "accept.operations: at most {MAX_TASKS_PER_ACCEPT} tasks at once"
        )));
    }
    let unique: BTreeSet<&OfferId> = offer_ids.iter().collect();
    if unique.is_empty() || unique.len() != offer_ids.len() {
        return Err(Refusal::Invalid(
            "accept.offer_ids: one or more offers, each once".into(),
        ));
    }
    let mut agent = None;
    let mut free = Resources::default();
    for offer_id in &offer_ids {
        let offer = state
            .cluster
            .offers
            .get(offer_id)
            .filter(|o| &o.framework_id == id)
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "accept.offer_ids: offer {offer_id} is not outstanding for {id} (used, \
                     declined, rescinded or never made)"
                ))
            })?;
        if agent.is_some_and(|a| a != &offer.agent_id) {
            return Err(Refusal::Invalid(
                "accept.offer_ids: the offers must all be of one agent".into(),
            ));
        }
        agent = Some(&offer.agent_id);
        free = free
            .checked_add(&offer.resources)
            .ok_or_else(|| Refusal::Invalid("accept.offer_ids: resources overflow".into()))?;
    }
    let agent = agent.expect("at least one offer").clone();
    if launches.is_empty() {
        return Ok(vec![Event::OffersDeclined(OffersDeclined {
            offer_ids,
            framework_id: id.clone(),
            refuse_millis: refuse_millis.min(MAX_REFUSE_MILLIS),
        })]);
    }
    let mut seen = BTreeSet::new();
    let mut tasks = Vec::new();
    for (i, launch) in launches.into_iter().enumerate() {
        let at = format!("accept.operations.launch.task_infos[{i}]");
        if !seen.insert(launch.task_id.clone()) || state.tasks.tasks.contains_key(&launch.task_id) {
            return Err(Refusal::Invalid(format!(
                "{at}.task_id: {} is already in use",
                launch.task_id
            )));
        }
        // An executor's own resources are charged with the task that starts it on the agent.
        let starts = launch.spec.executor.as_ref().filter(|e| {
            !executor_runs(state, id, &agent, &e.executor_id)
                && !tasks.iter().any(|t: &TaskLaunched| {
                    t.spec.executor.as_ref().map(|x| &x.executor_id) == Some(&e.executor_id)
                })
        });
        let mut resources = match starts {
            None => launch.resources,
            Some(e) => launch
                .resources
                .checked_add(&e.resources)
                .ok_or_else(|| Refusal::Invalid(format!("{at}.executor.resources: overflow")))?,
        };
        free = free.checked_sub(&resources).ok_or_else(|| {
            Refusal::Invalid(format!(
                "{at}.resources: more than the offers hold (cpus, mem, disk or ports{})",
                if starts.is_some() {
                    ", with its executor's"
                } else {
                    ""
                }
            ))
        })?;
        resources.ports.sort_by_key(|r| r.begin);
        tasks.push(TaskLaunched {
            task_id: launch.task_id,
            name: launch.name,
            framework_id: id.clone(),
            agent_id: agent.clone(),
            owner: TaskOwner::Framework,
            spec: Box::new(TaskSpec {
                ports: resources
                    .ports
                    .iter()
                    .flat_map(|r| r.begin..=r.end)
                    .collect(),
                ..launch.spec
            }),
            resources,
            offer_id: None,
        });
    }
    let mut events = vec![Event::OfferAccepted(OfferAccepted {
        offer_id: offer_ids[0].clone(),
        framework_id: id.clone(),
        task_ids: tasks.iter().map(|t| t.task_id.clone()).collect(),
    })];
    // The other offers are used up together with the first.
    events.extend(offer_ids[1..].iter().map(|offer_id| {
        Event::OfferAccepted(OfferAccepted {
            offer_id: offer_id.clone(),
            framework_id: id.clone(),
            task_ids: Vec::new(),
        })
    }));
    events.extend(tasks.into_iter().map(|t| Event::TaskLaunched(Box::new(t))));
    Ok(events)
}

/// Whether `framework`'s executor `executor_id` runs on `agent`: one of its tasks there has
/// not ended.
fn executor_runs(
    state: &State,
    framework: &FrameworkId,
    agent: &AgentId,
    executor_id: &str,
) -> bool {
    let Some(agent) = state.cluster.agents.get(agent) else {
        return false;
    };
    agent.tasks.iter().any(|t| {
        state.tasks.tasks.get(t).is_some_and(|t| {
            &t.framework_id == framework
                && !t.is_terminal()
                && t.spec
                    .executor
                    .as_ref()
                    .is_some_and(|e| e.executor_id == executor_id)
        })
    })
}

#[cfg(test)]
mod tests {
    use cairn_log::event::{Offer, OffersMade, PortRange};

    use super::*;
    use crate::agents::tests::{agent, registered, state_of};

    fn info() -> FrameworkInfo {
        FrameworkInfo {
            name: "ext".into(),
            user: "root".into(),
            roles: Vec::new(),
            principal: None,
            failover_timeout_secs: 60,
            hostname: None,
            webui_url: None,
        }
    }

    fn fw() -> FrameworkId {
        FrameworkId::new("fw").unwrap()
    }

    /// Two agents, the framework, and one offer of each agent's resources to it.
    fn offered() -> State {
        state_of(offered_events())
    }

    fn offered_events() -> Vec<Event> {
        let (_, events) = subscribe(&State::default(), info(), None, fw()).unwrap();
        let offer = |id: &str, a: &str| Offer {
            offer_id: OfferId::new(id).unwrap(),
            framework_id: fw(),
            agent_id: agent(a),
            resources: Resources {
                cpus_milli: 1000,
                mem_mib: 1024,
                disk_mib: 0,
                ports: vec![PortRange {
                    begin: 31000,
                    end: 31009,
                }],
            },
        };
        let mut all = vec![registered("a1", 1000), registered("a2", 1000)];
        all.extend(events);
        all.push(Event::OffersMade(OffersMade {
            offers: vec![offer("o1", "a1"), offer("o2", "a2")],
        }));
        all
    }

    fn launch(id: &str, cpus_milli: u64, ports: Vec<PortRange>) -> Launch {
        Launch {
            task_id: TaskId::new(id).unwrap(),
            name: id.into(),
            resources: Resources {
                cpus_milli,
                mem_mib: 32,
                disk_mib: 0,
                ports,
            },
            spec: TaskSpec::default(),
        }
    }

    fn accept(offers: &[&str], launches: Vec<Launch>) -> Call {
        Call::Accept {
            offer_ids: offers.iter().map(|o| OfferId::new(*o).unwrap()).collect(),
            launches,
            refuse_millis: 5_000,
        }
    }

    fn refusal(r: Result<Vec<Event>, Refusal>) -> String {
        match r {
            Err(Refusal::Invalid(m) | Refusal::NotFound(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_executor_is_charged_with_the_first_of_its_tasks_on_an_agent_only() {
        let for_executor = |id: &str| Launch {
            spec: TaskSpec {
                executor: Some(Box::new(cairn_log::event::ExecutorSpec {
                    executor_id: "pool".into(),
                    name: String::new(),
                    command: cairn_log::event::CommandSpec::default(),
                    resources: Resources {
                        cpus_milli: 50,
                        mem_mib: 16,
                        ..Resources::default()
                    },
                })),
                ..TaskSpec::default()
            },
            ..launch(id, 100, Vec::new())
        };
        let charged = |events: &[Event]| -> Vec<(u64, u64)> {
            events
                .iter()
                .filter_map(|e| match e {
                    Event::TaskLaunched(t) => Some((t.resources.cpus_milli, t.resources.mem_mib)),
                    _ => None,
                })
                .collect()
        };
        let mut history = offered_events();
        let events = decide(
            &state_of(history.clone()),
            &fw(),
            accept(&["o1"], vec![for_executor("t1"), for_executor("t2")]),
        )
        .unwrap();
        assert_eq!(charged(&events), [(150, 48), (100, 32)]);
        history.extend(events);
        // On another agent it starts anew, so it is charged again.
        let elsewhere = decide(
            &state_of(history.clone()),
            &fw(),
            accept(&["o2"], vec![for_executor("t3")]),
        )
        .unwrap();
        assert_eq!(charged(&elsewhere), [(150, 48)]);
        // Where it runs, a later task pays for itself only.
        history.push(Event::OffersMade(OffersMade {
            offers: vec![Offer {
                offer_id: OfferId::new("o3").unwrap(),
                framework_id: fw(),
                agent_id: agent("a1"),
                resources: Resources {
                    cpus_milli: 500,
                    mem_mib: 512,
                    ..Resources::default()
                },
            }],
        }));
        let there = decide(
            &state_of(history),
            &fw(),
            accept(&["o3"], vec![for_executor("t5")]),
        )
        .unwrap();
        assert_eq!(charged(&there), [(100, 32)]);
        // An offer that holds the task but not its executor too is refused, saying so.
        let mut big = for_executor("t4");
        big.resources.cpus_milli = 980;
        let refused = refusal(decide(&offered(), &fw(), accept(&["o1"], vec![big])));
        assert!(refused.contains("with its executor's"), "{refused}");
    }

    #[test]
    fn an_accepted_offer_launches_tasks_on_its_agent_with_their_ports() {
        let port = vec![PortRange {
            begin: 31005,
            end: 31005,
        }];
        let events = decide(
            &offered(),
            &fw(),
            accept(&["o1"], vec![launch("t1", 500, port)]),
        )
        .unwrap();
        let Event::OfferAccepted(a) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(a.task_ids, [TaskId::new("t1").unwrap()]);
        let Event::TaskLaunched(t) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(t.agent_id, agent("a1"));
        assert_eq!(t.owner, TaskOwner::Framework);
        assert_eq!(t.spec.ports, [31005]);
    }

    #[test]
    fn an_accept_that_does_not_fit_its_offers_is_refused_by_field() {
        let state = offered();
        let too_big = refusal(decide(
            &state,
            &fw(),
            accept(&["o1"], vec![launch("t1", 2_000, vec![])]),
        ));
        assert!(too_big.contains("task_infos[0].resources"), "{too_big}");
        let foreign_port = vec![PortRange {
            begin: 40000,
            end: 40000,
        }];
        let port = refusal(decide(
            &state,
            &fw(),
            accept(&["o1"], vec![launch("t1", 100, foreign_port)]),
        ));
        assert!(port.contains("resources"), "{port}");
        let two_agents = refusal(decide(
            &state,
            &fw(),
            accept(&["o1", "o2"], vec![launch("t1", 100, vec![])]),
        ));
        assert!(two_agents.contains("one agent"), "{two_agents}");
        let unknown = refusal(decide(
            &state,
            &fw(),
            accept(&["o9"], vec![launch("t1", 100, vec![])]),
        ));
        assert!(unknown.contains("o9"), "{unknown}");
        let twice = refusal(decide(
            &state,
            &fw(),
            accept(
                &["o1"],
                vec![launch("t1", 100, vec![]), launch("t1", 100, vec![])],
            ),
        ));
        assert!(twice.contains("already in use"), "{twice}");
    }

    #[test]
    fn accepting_nothing_declines_and_teardown_takes_everything_back() {
        let state = offered();
        let events = decide(&state, &fw(), accept(&["o1"], Vec::new())).unwrap();
        assert!(matches!(&events[..], [Event::OffersDeclined(d)] if d.refuse_millis == 5_000));
        let events = decide(&state, &fw(), Call::Teardown).unwrap();
        let rescinded = events
            .iter()
            .filter(|e| matches!(e, Event::OfferRescinded(_)))
            .count();
        assert_eq!(rescinded, 2);
        assert!(matches!(events.last(), Some(Event::FrameworkRemoved(_))));
    }

    #[test]
    fn an_active_framework_without_a_stream_on_the_leader_is_disconnected_once() {
        let (_, events) = subscribe(&State::default(), info(), None, fw()).unwrap();
        let state = state_of(events.clone());
        let streaming = BTreeSet::from([fw()]);
        assert!(unsubscribed(&state, &streaming).is_empty());
        let found = unsubscribed(&state, &BTreeSet::new());
        assert!(
            matches!(&found[..], [Event::FrameworkDisconnected(d)] if d.framework_id == fw()),
            "{found:?}"
        );
        // Disconnected already (and the built-in frameworks, which have no stream): nothing.
        let mut events = events;
        events.extend(found);
        assert!(unsubscribed(&state_of(events), &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_disconnected_framework_is_removed_once_its_failover_timeout_runs_out() {
        let mut events = vec![registered("a1", 1000)];
        events.extend(subscribe(&State::default(), info(), None, fw()).unwrap().1);
        let connected = state_of(events.clone());
        events.extend(decide(&connected, &fw(), Call::Disconnected).unwrap());
        // Disconnected at second 3 (one event a second); the timeout is 60 s.
        let state = state_of(events);
        let at = |s: i64| Timestamp::from_micros(s * 1_000_000);
        assert!(expired(&state, at(62), at(0)).is_empty());
        assert!(matches!(
            expired(&state, at(64), at(0)).last(),
            Some(Event::FrameworkRemoved(_))
        ));
        // A leader that took over at second 30 gives it its whole timeout from then.
        assert!(expired(&state, at(64), at(30)).is_empty());
    }

    #[test]
    fn resubscribing_needs_a_known_framework_and_never_a_built_in_one() {
        let state = offered();
        let (id, events) = subscribe(&state, info(), Some(fw()), fw()).unwrap();
        assert_eq!(id, fw());
        assert!(matches!(&events[..], [Event::FrameworkReregistered(_)]));
        let unknown = subscribe(
            &state,
            info(),
            Some(FrameworkId::new("nope").unwrap()),
            fw(),
        );
        assert!(matches!(unknown, Err(Refusal::NotFound(_))));
        let builtin = FrameworkId::new(crate::apps::FRAMEWORK).unwrap();
        assert!(matches!(
            subscribe(&state, info(), Some(builtin), fw()),
            Err(Refusal::Invalid(_))
        ));
    }
}
