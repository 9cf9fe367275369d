//! One-off tasks a user launches directly (`cairn task run`, GraphQL `launchTask`): where each
//! goes. The offer-based allocator of built-in and external frameworks is separate; this is
//! the direct path Nomad's `alloc exec`-style users expect for a quick command.

use cairn_log::event::{
    AgentId, Event, FrameworkId, OffersSuppressed, PortRange, Resources, TaskId, TaskLaunched,
    TaskOwner, TaskSpec,
};
use cairn_projections::cluster::AgentStatus;
use cairn_projections::State;

/// The framework every user-launched task belongs to.
pub const USER_FRAMEWORK: &str = "cairn";

/// Most ports one task may ask for.
pub const MAX_PORTS: usize = 100;

/// A task to place: resources without ports, and how many host ports it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub name: String,
    pub resources: Resources,
    pub ports: usize,
    pub spec: TaskSpec,
}

/// Why a task cannot be placed; names what is short.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    #[error("no agent is active")]
    NoAgents,
    #[error(
        "no active agent has {cpus} CPUs, {mem} MiB of memory, {disk} MiB of disk and {ports} \
         ports free (the most any has free: {best})"
    )]
    Insufficient {
        cpus: f64,
        mem: u64,
        disk: u64,
        ports: usize,
        best: String,
    },
}

/// The user framework's registration, the first time, or its return: one-off tasks have a
/// framework like every task, so that Mesos' tools listing tasks by framework find them. It
/// places its tasks directly, so it takes no offers (suppressed).
pub fn user_framework(state: &State) -> Vec<Event> {
    let id = FrameworkId::new(USER_FRAMEWORK).expect("a valid id");
    let mut events = crate::framework::ensure(state, &id, USER_FRAMEWORK, true);
    let suppressed = state
        .cluster
        .frameworks
        .get(&id)
        .is_some_and(|f| !f.suppressed.is_empty());
    if !suppressed {
        events.push(Event::OffersSuppressed(OffersSuppressed {
            framework_id: id,
            roles: Vec::new(),
        }));
    }
    events
}

/// Places `request` on the active agent with the most free CPU (then memory; then the
/// smallest id), taking its lowest free ports; returns the event that launches it as
/// `task_id`.
pub fn place(state: &State, request: &TaskRequest, task_id: TaskId) -> Result<Event, PlaceError> {
    let mut best: Option<(&AgentId, Resources)> = None;
    let mut biggest: Option<Resources> = None;
    let mut any = false;
    for (agent_id, agent) in &state.cluster.agents {
        if agent.status != AgentStatus::Active {
            continue;
        }
        any = true;
        let Some(free) = state.cluster.free(agent_id) else {
            continue;
        };
        let roomier =
            |a: &Resources, b: &Resources| (a.cpus_milli, a.mem_mib) > (b.cpus_milli, b.mem_mib);
        if biggest.as_ref().is_none_or(|b| roomier(&free, b)) {
            biggest = Some(free.clone());
        }
        let fits = free.cpus_milli >= request.resources.cpus_milli
            && free.mem_mib >= request.resources.mem_mib
            && free.disk_mib >= request.resources.disk_mib
            && port_count(&free.ports) >= request.ports as u64;
        if fits && best.as_ref().is_none_or(|(_, b)| roomier(&free, b)) {
            best = Some((agent_id, free));
        }
    }
    let Some((agent_id, free)) = best else {
        if !any {
            return Err(PlaceError::NoAgents);
        }
        let best = biggest.map_or_else(
            || "nothing".to_owned(),
            |b| {
                format!(
                    "{} CPUs, {} MiB, {} MiB disk, {} ports",
                    b.cpus_milli as f64 / 1000.0,
                    b.mem_mib,
                    b.disk_mib,
                    port_count(&b.ports)
                )
            },
        );
        return Err(PlaceError::Insufficient {
            cpus: request.resources.cpus_milli as f64 / 1000.0,
            mem: request.resources.mem_mib,
            disk: request.resources.disk_mib,
            ports: request.ports,
            best,
        });
    };
    let ports = take_ports(&free.ports, &vec![0; request.ports]).expect("counted above");
    let (resources, spec) = assign(&request.resources, &request.spec, ports);
    Ok(Event::TaskLaunched(Box::new(TaskLaunched {
        task_id,
        name: request.name.clone(),
        framework_id: FrameworkId::new(USER_FRAMEWORK).expect("a valid id"),
        agent_id: agent_id.clone(),
        owner: TaskOwner::User,
        resources,
        spec: Box::new(spec),
        offer_id: None,
    })))
}

/// Host ports from `free` for each of `wanted`: that port if it is not 0 (it must be free),
/// else the lowest free one not already taken. `None` when they cannot all be had.
pub(crate) fn take_ports(free: &[PortRange], wanted: &[u16]) -> Option<Vec<u16>> {
    let is_free = |p: u16| free.iter().any(|r| r.begin <= p && p <= r.end);
    let mut taken: Vec<u16> = wanted.iter().copied().filter(|p| *p != 0).collect();
    if !taken.iter().all(|p| is_free(*p)) {
        return None;
    }
    let mut any = free.iter().flat_map(|r| r.begin..=r.end);
    let mut out = Vec::with_capacity(wanted.len());
    for want in wanted {
        if *want != 0 {
            out.push(*want);
            continue;
        }
        let port = any.find(|p| !taken.contains(p))?;
        taken.push(port);
        out.push(port);
    }
    Some(out)
}

/// A task's resources and spec once it has its host `ports`: the ports become single-port
/// ranges, `PORT0…`, and the host side of Docker port mappings that asked for any port.
pub(crate) fn assign(
    resources: &Resources,
    spec: &TaskSpec,
    ports: Vec<u16>,
) -> (Resources, TaskSpec) {
    let mut resources = resources.clone();
    resources.ports = ports
        .iter()
        .map(|p| PortRange { begin: *p, end: *p })
        .collect();
    let mut spec = spec.clone();
    if let Some(docker) = spec.container.as_mut().and_then(|c| c.docker.as_mut()) {
        for (mapping, port) in docker.port_mappings.iter_mut().zip(&ports) {
            if mapping.host_port == 0 {
                mapping.host_port = *port;
            }
        }
    }
    spec.ports = ports;
    (resources, spec)
}

pub(crate) fn port_count(ranges: &[PortRange]) -> u64 {
    ranges
        .iter()
        .map(|r| u64::from(r.end) - u64::from(r.begin) + 1)
        .sum()
}

/// A task name made safe for a task id (and so a directory name): letters, digits, `-`, `_`.
pub(crate) fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "task".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use cairn_log::event::{AgentLost, CommandSpec};

    use super::*;
    use crate::agents::tests::{agent, registered, state_of};

    fn request(cpus_milli: u64, ports: usize) -> TaskRequest {
        TaskRequest {
            name: "t".into(),
            resources: Resources {
                cpus_milli,
                mem_mib: 32,
                ..Resources::default()
            },
            ports,
            spec: TaskSpec {
                command: Some(CommandSpec::default()),
                ..TaskSpec::default()
            },
        }
    }

    fn placed(event: Event) -> TaskLaunched {
        match event {
            Event::TaskLaunched(e) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tasks_go_where_there_is_most_room_with_the_lowest_free_ports() {
        let mut state = state_of(vec![registered("small", 1000), registered("big", 4000)]);
        let id = |n: &str| TaskId::new(n).unwrap();
        let first = placed(place(&state, &request(500, 2), id("t1")).unwrap());
        assert_eq!(first.agent_id, agent("big"));
        assert_eq!(first.spec.ports, [31000, 31001]);
        // Fold it in: the next task gets the next ports.
        state = state_of(vec![
            registered("small", 1000),
            registered("big", 4000),
            Event::TaskLaunched(Box::new(first)),
        ]);
        let second = placed(place(&state, &request(500, 1), id("t2")).unwrap());
        assert_eq!(
            (second.agent_id, second.spec.ports),
            (agent("big"), vec![31002])
        );
    }

    #[test]
    fn the_user_framework_registers_once_and_takes_no_offers() {
        let state = state_of(vec![registered("a", 1000)]);
        let first = user_framework(&state);
        assert!(
            matches!(first.as_slice(), [Event::FrameworkRegistered(r), Event::OffersSuppressed(_)]
                if r.framework_id.as_str() == USER_FRAMEWORK),
            "{first:?}"
        );
        let mut events = vec![registered("a", 1000)];
        events.extend(first);
        assert_eq!(user_framework(&state_of(events)), Vec::<Event>::new());
    }

    #[test]
    fn an_unplaceable_task_is_refused_naming_what_is_short() {
        let state = state_of(vec![registered("a", 1000)]);
        let err = place(&state, &request(2000, 0), TaskId::new("t").unwrap()).unwrap_err();
        assert!(err.to_string().contains("2 CPUs"), "{err}");
        assert!(err.to_string().contains("1 CPUs"), "{err}");
        let err = place(&state, &request(100, 11), TaskId::new("t").unwrap()).unwrap_err();
        assert!(err.to_string().contains("11 ports"), "{err}");
        let lost = state_of(vec![
            registered("a", 1000),
            Event::AgentLost(AgentLost {
                agent_id: agent("a"),
                reason: "test".into(),
            }),
        ]);
        assert_eq!(
            place(&lost, &request(100, 0), TaskId::new("t").unwrap()),
            Err(PlaceError::NoAgents)
        );
    }
}
