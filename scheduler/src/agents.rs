//! The agents decider: what the leader logs when agents register, report, go quiet or come
//! back, and which commands each agent must receive. Pure: the runner passes `now` and the
//! ids it minted, and appends what comes out.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    AgentDisconnected, AgentId, AgentLost, AgentRegistered, AgentReregistered, Event, StatusSource,
    TaskId, TaskState, TaskStatusUpdated, Timestamp,
};
use cairn_log::protocol::{Command, Kill, KnownTask, Launch, Register, StatusUpdate};
use cairn_projections::cluster::AgentStatus;
use cairn_projections::State;

/// Mesos' reason for tasks of an agent that stayed away too long.
pub const REASON_AGENT_REMOVED: &str = "REASON_AGENT_REMOVED";
/// Mesos' reason for tasks an agent no longer has when it re-registers.
pub const REASON_RECONCILIATION: &str = "REASON_RECONCILIATION";

/// The outcome of a registration: the agent's id and what to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub agent_id: AgentId,
    pub events: Vec<Event>,
}

/// Registers `request`: an agent the log knows re-registers (and its tasks are reconciled);
/// any other gets `minted` as its new id.
pub fn register(state: &State, request: &Register, minted: AgentId) -> Registration {
    let known = request
        .agent_id
        .as_ref()
        .and_then(|id| state.cluster.agents.get_key_value(id));
    let Some((agent_id, agent)) = known else {
        return Registration {
            events: vec![Event::AgentRegistered(Box::new(AgentRegistered {
                agent_id: minted.clone(),
                hostname: request.hostname.clone(),
                address: request.address.clone(),
                resources: request.resources.clone(),
                attributes: request.attributes.clone(),
                version: request.version.clone(),
            }))],
            agent_id: minted,
        };
    };
    let reported: BTreeSet<&TaskId> = request.tasks.iter().map(|t| &t.task_id).collect();
    let mut events = vec![Event::AgentReregistered(Box::new(AgentReregistered {
        agent_id: agent_id.clone(),
        hostname: request.hostname.clone(),
        address: request.address.clone(),
        resources: request.resources.clone(),
        attributes: request.attributes.clone(),
        version: request.version.clone(),
        running_tasks: reported.iter().map(|t| (*t).clone()).collect(),
    }))];
    // A task the log has running here that the agent does not know is gone. One still staging
    // is not: its launch is sent again when the agent's command stream opens.
    for task_id in agent.tasks.iter().filter(|t| !reported.contains(t)) {
        let Some(task) = state.tasks.tasks.get(task_id) else {
            continue;
        };
        if task.state != TaskState::Staging {
            events.push(Event::TaskStatusUpdated(TaskStatusUpdated {
                task_id: task_id.clone(),
                agent_id: agent_id.clone(),
                state: TaskState::Gone,
                source: StatusSource::Master,
                reason: Some(REASON_RECONCILIATION.into()),
                message: Some("the agent re-registered without this task".into()),
                healthy: None,
                status_uuid: None,
            }));
        }
    }
    Registration {
        agent_id: agent_id.clone(),
        events,
    }
}

/// What an agent must hear when its command stream opens: launches it has not received,
/// kills asked for, and kills of tasks it runs that the log says ended or never knew.
pub fn on_connect(state: &State, agent_id: &AgentId, known: &[KnownTask]) -> Vec<Command> {
    let Some(agent) = state.cluster.agents.get(agent_id) else {
        return Vec::new();
    };
    let known_ids: BTreeSet<&TaskId> = known.iter().map(|t| &t.task_id).collect();
    let mut commands = Vec::new();
    for task_id in &agent.tasks {
        let Some(task) = state.tasks.tasks.get(task_id) else {
            continue;
        };
        if task.kill_requested {
            commands.push(kill(task_id));
        } else if !known_ids.contains(task_id) {
            commands.push(Command::Launch(Box::new(Launch {
                task_id: task_id.clone(),
                name: task.name.clone(),
                resources: task.resources.clone(),
                spec: (*task.spec).clone(),
                offset: task.statuses.first().map_or(0, |s| s.offset),
                framework_id: Some(task.framework_id.clone()),
            })));
        }
    }
    for k in known.iter().filter(|k| !k.state.is_terminal()) {
        let ended = state
            .tasks
            .tasks
            .get(&k.task_id)
            .is_none_or(|t| t.is_terminal() || t.agent_id != *agent_id);
        if ended {
            commands.push(kill(&k.task_id));
        }
    }
    commands
}

fn kill(task_id: &TaskId) -> Command {
    Command::Kill(Kill {
        task_id: task_id.clone(),
        grace_period_secs: None,
    })
}

/// Routes committed events to agents' command streams. Keeps which agent runs each task that
/// has not ended, so that a kill (which names only the task) reaches the right agent.
#[derive(Debug, Clone, Default)]
pub struct Router {
    placement: BTreeMap<TaskId, AgentId>,
}

impl Router {
    /// A router that knows the tasks not ended in `state`.
    pub fn new(state: &State) -> Self {
        let placement = state
            .tasks
            .tasks
            .iter()
            .filter(|(_, t)| !t.is_terminal())
            .map(|(id, t)| (id.clone(), t.agent_id.clone()))
            .collect();
        Self { placement }
    }

    /// The command `event` (logged at `offset`) means for some agent, if any.
    pub fn route(&mut self, offset: u64, event: &Event) -> Option<(AgentId, Command)> {
        match event {
            Event::TaskLaunched(e) => {
                self.placement.insert(e.task_id.clone(), e.agent_id.clone());
                Some((
                    e.agent_id.clone(),
                    Command::Launch(Box::new(Launch {
                        task_id: e.task_id.clone(),
                        name: e.name.clone(),
                        resources: e.resources.clone(),
                        spec: cairn_log::event::TaskSpec::clone(&e.spec),
                        offset,
                        framework_id: Some(e.framework_id.clone()),
                    })),
                ))
            }
            Event::TaskKillRequested(e) => {
                let agent_id = self.placement.get(&e.task_id)?.clone();
                Some((
                    agent_id,
                    Command::Kill(Kill {
                        task_id: e.task_id.clone(),
                        grace_period_secs: e.grace_period_secs,
                    }),
                ))
            }
            Event::TaskStatusUpdated(e) if e.state.is_terminal() => {
                self.placement.remove(&e.task_id);
                None
            }
            _ => None,
        }
    }
}

/// What to do with one status update from an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOutcome {
    /// Log this event (boxed: the other outcomes are a few words).
    Log(Box<Event>),
    /// Already logged at this offset (a retry).
    Logged(u64),
    /// Not loggable; acknowledged so the agent drops it.
    Dropped(String),
}

/// Decides each update of a batch from `agent_id`, in order.
pub fn statuses(state: &State, agent_id: &AgentId, updates: &[StatusUpdate]) -> Vec<StatusOutcome> {
    // Tasks this batch ends, so that an update after the end within the batch is dropped too.
    let mut ended: BTreeSet<&TaskId> = BTreeSet::new();
    updates
        .iter()
        .map(|u| {
            let Some(task) = state.tasks.tasks.get(&u.task_id) else {
                return StatusOutcome::Dropped(format!("task {} is unknown", u.task_id));
            };
            if task.agent_id != *agent_id {
                return StatusOutcome::Dropped(format!(
                    "task {} runs on agent {}, not {agent_id}",
                    u.task_id, task.agent_id
                ));
            }
            if let Some(s) = task
                .statuses
                .iter()
                .find(|s| s.uuid.as_deref() == Some(&u.uuid))
            {
                return StatusOutcome::Logged(s.offset);
            }
            if task.is_terminal() || ended.contains(&u.task_id) {
                return StatusOutcome::Dropped(format!("task {} has already ended", u.task_id));
            }
            if u.state.is_terminal() {
                ended.insert(&u.task_id);
            }
            StatusOutcome::Log(Box::new(Event::TaskStatusUpdated(TaskStatusUpdated {
                task_id: u.task_id.clone(),
                agent_id: agent_id.clone(),
                state: u.state,
                source: u.source,
                reason: u.reason.clone(),
                message: u.message.clone(),
                healthy: u.healthy,
                status_uuid: Some(u.uuid.clone()),
            })))
        })
        .collect()
}

/// The agent's command stream closed: it is disconnected (its tasks are not yet lost).
pub fn disconnected(state: &State, agent_id: &AgentId, reason: &str) -> Vec<Event> {
    match state.cluster.agents.get(agent_id) {
        Some(agent) if agent.status == AgentStatus::Active => {
            vec![Event::AgentDisconnected(AgentDisconnected {
                agent_id: agent_id.clone(),
                reason: reason.to_owned(),
            })]
        }
        _ => Vec::new(),
    }
}

/// Agents disconnected for `timeout_micros` or longer at `now` are lost, and so are their
/// tasks. Time away counts from `since` at the earliest: when this leader took over, so that
/// agents get the whole timeout to reach a new leader.
pub fn lose(state: &State, now: Timestamp, timeout_micros: i64, since: Timestamp) -> Vec<Event> {
    let mut events = Vec::new();
    for (agent_id, agent) in &state.cluster.agents {
        let away = now.as_micros() - agent.updated_at.max(since).as_micros();
        if agent.status != AgentStatus::Disconnected || away < timeout_micros {
            continue;
        }
        let reason = format!("no contact for {} s", away / 1_000_000);
        events.push(Event::AgentLost(AgentLost {
            agent_id: agent_id.clone(),
            reason: reason.clone(),
        }));
        for task_id in &agent.tasks {
            events.push(Event::TaskStatusUpdated(TaskStatusUpdated {
                task_id: task_id.clone(),
                agent_id: agent_id.clone(),
                state: TaskState::Lost,
                source: StatusSource::Master,
                reason: Some(REASON_AGENT_REMOVED.into()),
                message: Some(format!("agent {agent_id} was lost: {reason}")),
                healthy: None,
                status_uuid: None,
            }));
        }
    }
    events
}

#[cfg(test)]
pub(crate) mod tests {
    use cairn_log::event::{
        Actor, PortRange, Resources, TaskKillRequested, TaskLaunched, TaskOwner, Term,
    };
    use cairn_log::{Offset, Record};
    use cairn_projections::Fold;

    use super::*;

    /// The state after `events`, one second apart from the epoch.
    pub(crate) fn state_of(events: Vec<Event>) -> State {
        let mut state = State::default();
        for (i, event) in events.into_iter().enumerate() {
            let n = i as u64 + 1;
            state.apply(Record {
                offset: Offset::new(n).unwrap(),
                term: Term(1),
                at: Timestamp::from_micros(n as i64 * 1_000_000),
                actor: Actor::system(),
                event,
            });
        }
        state
    }

    pub(crate) fn agent(id: &str) -> AgentId {
        AgentId::new(id).unwrap()
    }

    fn task(id: &str) -> TaskId {
        TaskId::new(id).unwrap()
    }

    pub(crate) fn registered(id: &str, cpus_milli: u64) -> Event {
        Event::AgentRegistered(Box::new(AgentRegistered {
            agent_id: agent(id),
            hostname: id.into(),
            address: format!("{id}:5051"),
            resources: Resources {
                cpus_milli,
                mem_mib: 1024,
                disk_mib: 1024,
                ports: vec![PortRange {
                    begin: 31000,
                    end: 31009,
                }],
            },
            attributes: BTreeMap::new(),
            version: "0.1.0".into(),
        }))
    }

    fn launched(task_id: &str, agent_id: &str) -> Event {
        Event::TaskLaunched(Box::new(TaskLaunched {
            task_id: task(task_id),
            name: task_id.into(),
            framework_id: cairn_log::event::FrameworkId::new("cairn").unwrap(),
            agent_id: agent(agent_id),
            owner: TaskOwner::User,
            resources: Resources {
                cpus_milli: 100,
                mem_mib: 32,
                ..Resources::default()
            },
            spec: Box::default(),
            offer_id: None,
        }))
    }

    fn status(task_id: &str, agent_id: &str, state: TaskState, uuid: &str) -> Event {
        Event::TaskStatusUpdated(TaskStatusUpdated {
            task_id: task(task_id),
            agent_id: agent(agent_id),
            state,
            source: StatusSource::Agent,
            reason: None,
            message: None,
            healthy: None,
            status_uuid: Some(uuid.into()),
        })
    }

    fn request(agent_id: Option<&str>, tasks: &[(&str, TaskState)]) -> Register {
        Register {
            agent_id: agent_id.map(agent),
            hostname: "a".into(),
            address: "a:5051".into(),
            resources: Resources::default(),
            attributes: BTreeMap::new(),
            version: "0.1.0".into(),
            tasks: tasks
                .iter()
                .map(|(t, s)| KnownTask {
                    task_id: task(t),
                    state: *s,
                })
                .collect(),
            term: Term(1),
        }
    }

    fn update(task_id: &str, state: TaskState, uuid: &str) -> StatusUpdate {
        StatusUpdate {
            uuid: uuid.into(),
            task_id: task(task_id),
            state,
            reason: None,
            message: None,
            healthy: None,
            at: Timestamp::default(),
            source: StatusSource::Agent,
        }
    }

    #[test]
    fn a_new_agent_gets_the_minted_id_and_a_known_one_keeps_its_own() {
        let state = state_of(vec![registered("a", 1000)]);
        let fresh = register(&state, &request(None, &[]), agent("minted"));
        assert_eq!(fresh.agent_id, agent("minted"));
        assert!(matches!(fresh.events[..], [Event::AgentRegistered(_)]));
        // An id the log does not know (another cluster's) is replaced too.
        let stranger = register(&state, &request(Some("zz"), &[]), agent("minted"));
        assert_eq!(stranger.agent_id, agent("minted"));
        let back = register(&state, &request(Some("a"), &[]), agent("minted"));
        assert_eq!(back.agent_id, agent("a"));
        assert!(matches!(back.events[..], [Event::AgentReregistered(_)]));
    }

    #[test]
    fn re_registration_reconciles_tasks_the_agent_no_longer_has() {
        let state = state_of(vec![
            registered("a", 1000),
            launched("running", "a"),
            status("running", "a", TaskState::Running, "u1"),
            launched("staging", "a"),
            launched("kept", "a"),
            status("kept", "a", TaskState::Running, "u2"),
        ]);
        let back = register(
            &state,
            &request(Some("a"), &[("kept", TaskState::Running)]),
            agent("minted"),
        );
        // `running` is gone; `staging` will be launched again; `kept` is fine.
        let gone: Vec<_> = back
            .events
            .iter()
            .filter_map(|e| match e {
                Event::TaskStatusUpdated(u) => Some((u.task_id.as_str(), u.state)),
                _ => None,
            })
            .collect();
        assert_eq!(gone, [("running", TaskState::Gone)]);
        let commands = on_connect(
            &state,
            &agent("a"),
            &request(Some("a"), &[("kept", TaskState::Running)]).tasks,
        );
        let launches: Vec<_> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Launch(l) => Some(l.task_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(launches, ["running", "staging"]);
    }

    #[test]
    fn on_connect_kills_what_the_log_says_ended_or_never_ran_here() {
        let state = state_of(vec![
            registered("a", 1000),
            launched("done", "a"),
            status("done", "a", TaskState::Finished, "u1"),
            launched("doomed", "a"),
            status("doomed", "a", TaskState::Running, "u2"),
            Event::TaskKillRequested(TaskKillRequested {
                task_id: task("doomed"),
                grace_period_secs: None,
                reason: "test".into(),
            }),
        ]);
        let known = request(
            Some("a"),
            &[
                ("done", TaskState::Running),
                ("doomed", TaskState::Running),
                ("stranger", TaskState::Running),
            ],
        )
        .tasks;
        let mut kills: Vec<_> = on_connect(&state, &agent("a"), &known)
            .iter()
            .filter_map(|c| match c {
                Command::Kill(k) => Some(k.task_id.as_str().to_owned()),
                _ => None,
            })
            .collect();
        kills.sort();
        assert_eq!(kills, ["done", "doomed", "stranger"]);
    }

    #[test]
    fn retried_and_late_updates_are_logged_once() {
        let state = state_of(vec![
            registered("a", 1000),
            registered("b", 1000),
            launched("t", "a"),
            status("t", "a", TaskState::Running, "u1"),
        ]);
        let outcomes = statuses(
            &state,
            &agent("a"),
            &[
                update("t", TaskState::Running, "u1"),
                update("t", TaskState::Finished, "u2"),
                update("t", TaskState::Failed, "u3"),
                update("nope", TaskState::Running, "u4"),
            ],
        );
        assert_eq!(outcomes[0], StatusOutcome::Logged(4));
        assert!(matches!(outcomes[1], StatusOutcome::Log(_)));
        assert!(matches!(&outcomes[2], StatusOutcome::Dropped(m) if m.contains("already ended")));
        assert!(matches!(&outcomes[3], StatusOutcome::Dropped(m) if m.contains("unknown")));
        // Another agent cannot report this task.
        let outcomes = statuses(&state, &agent("b"), &[update("t", TaskState::Failed, "u5")]);
        assert!(matches!(&outcomes[0], StatusOutcome::Dropped(m) if m.contains("not b")));
    }

    #[test]
    fn a_disconnected_agent_is_lost_after_the_timeout_counted_from_the_new_leader() {
        let state = state_of(vec![
            registered("a", 1000),
            launched("t", "a"),
            Event::AgentDisconnected(AgentDisconnected {
                agent_id: agent("a"),
                reason: "test".into(),
            }),
        ]);
        let secs = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let timeout = 10_000_000;
        // Disconnected at 3 s: not lost at 12 s, lost at 13 s.
        assert!(lose(&state, secs(12), timeout, secs(0)).is_empty());
        let lost = lose(&state, secs(13), timeout, secs(0));
        assert!(
            matches!(&lost[..], [Event::AgentLost(_), Event::TaskStatusUpdated(u)] if u.state == TaskState::Lost)
        );
        // A leader that took over at 5 s gives the agent until 15 s.
        assert!(lose(&state, secs(14), timeout, secs(5)).is_empty());
        assert!(disconnected(&state, &agent("a"), "again").is_empty());
    }

    #[test]
    fn the_router_sends_launches_and_kills_to_the_agent_that_runs_the_task() {
        let state = state_of(vec![registered("a", 1000), launched("old", "a")]);
        let mut router = Router::new(&state);
        let kill = |t: &str| {
            Event::TaskKillRequested(TaskKillRequested {
                task_id: task(t),
                grace_period_secs: Some(1),
                reason: "test".into(),
            })
        };
        assert!(
            matches!(router.route(3, &kill("old")), Some((a, Command::Kill(_))) if a == agent("a"))
        );
        assert!(
            matches!(router.route(4, &launched("new", "b")), Some((a, Command::Launch(l))) if a == agent("b") && l.offset == 4)
        );
        assert!(matches!(router.route(5, &kill("new")), Some((a, _)) if a == agent("b")));
        router.route(6, &status("new", "b", TaskState::Killed, "u"));
        assert!(router.route(7, &kill("new")).is_none());
    }
}
