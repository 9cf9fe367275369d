//! The apps scheduler (Marathon semantics) as a pure decider: a built-in framework that takes
//! offers like any other and keeps every app at its definition.
//!
//! Each cycle looks at every app afresh, so a new leader continues exactly where the old one
//! stopped: nothing is remembered between cycles but the log.
//! - An app's *current* instances run its current definition (launched at or after its
//!   config version); *old* ones run an earlier one and are replaced by a rolling upgrade
//!   that honours `upgradeStrategy` as Marathon does: `minHealthy = ⌈n · minimumHealthCapacity⌉`
//!   instances stay healthy, at most `⌊n · (1 + maximumOverCapacity)⌋` run at once, and old
//!   instances go only as new ones become healthy.
//! - Missing instances are launched on the framework's offers, where the constraints allow,
//!   spread over agents; not before the app's backoff after failures runs out.
//! - Surplus instances, instances whose health checks failed `maxConsecutiveFailures` times,
//!   and instances of deleted apps are killed.
//! - Deployments advance a step when every action of the step holds.
//! - The framework suppresses offers when no app wants any, and revives when one does.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use cairn_log::event::{
    AgentId, AppId, CommandSpec, DeploymentFinished, DeploymentId, DeploymentStepFinished, Event,
    FrameworkId, Resources, TaskId, TaskKillRequested, TaskLaunched, TaskOwner, TaskSpec,
    TaskState, Timestamp,
};
use cairn_log::event::{DeploymentActionKind, DockerNetwork};
use cairn_projections::apps::{App, DeploymentStatus};
use cairn_projections::cluster::{Agent, AgentStatus};
use cairn_projections::tasks::Task;
use cairn_projections::State;
use serde::Serialize;

use crate::constraints::{self, Constraint, Counts};
use crate::framework::{self, Avail};
use crate::tasks::{assign, port_count, take_ports};

/// The built-in apps framework's id.
pub const FRAMEWORK: &str = "cairn-apps";
/// Most instances launched and killed, together, in one cycle: one record each (a launch
/// accepts its offer), so that with the cycle's few others (a decline, deployment steps) a
/// decision stays within the log's 10,000 entries per append; the rest follow in the next
/// cycle, at once. Each cycle also offers and declines every agent, so bigger cycles place
/// faster (4,000 placed 8,300 a second in `cairn bench apps`, 8,000 over 10,000).
pub const PER_CYCLE: usize = 8_000;

pub fn framework_id() -> FrameworkId {
    FrameworkId::new(FRAMEWORK).expect("a valid id")
}

/// Registers the built-in apps framework once the first app exists.
pub fn ensure_framework(state: &State) -> Vec<Event> {
    framework::ensure(
        state,
        &framework_id(),
        "marathon",
        !state.apps.apps.is_empty(),
    )
}

/// What one cycle decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub events: Vec<Event>,
    /// Another cycle should follow at once: offers were revived, or a limit cut it short.
    pub again: bool,
}

/// One cycle of the apps scheduler at `now`. New tasks are named `<app>.<mint>-<n>`.
pub fn decide(state: &State, now: Timestamp, mint: &str) -> Cycle {
    let framework_id = framework_id();
    let Some(framework) = state.cluster.frameworks.get(&framework_id) else {
        return Cycle {
            events: Vec::new(),
            again: false,
        };
    };
    // Kills and launches so far: together at most `PER_CYCLE`.
    let mut spent = 0usize;
    let mut events = Vec::new();
    let held = held(state);
    let orphans = orphans(state);
    for (task_id, task) in orphans.values().flatten() {
        if !task.kill_requested && spent < PER_CYCLE {
            events.push(kill(task_id, "its app was deleted"));
            spent += 1;
        }
    }

    let mut offers = framework::offers(state, &framework_id);
    // Whether instances wait for offers after this cycle, and whether offers were refused.
    let mut wants = false;
    let mut unmet = false;
    let mut minted = 0u64;
    let mut bytes = 0usize;
    // A limit cut the cycle short: the next follows at once.
    let mut full = false;
    // Where the search for the next offer starts: it moves on past each offer used, across
    // apps, so that instances spread over agents.
    let mut cursor = 0usize;
    let mut fields = FieldValues::new(state);
    for (app_id, app) in &state.apps.apps {
        if held.contains_key(app_id) {
            continue;
        }
        let census = Census::of(state, app);
        let plan = census.plan(app);
        for (id, why) in plan.kills.iter().take(PER_CYCLE.saturating_sub(spent)) {
            events.push(kill(id, why));
            spent += 1;
        }
        if plan.launch == 0 || in_backoff(app, now) {
            continue;
        }
        let want = Want::of(app_id, app);
        let mut placement = Placement::new(state, &census, &want, &mut fields);
        let launch_bytes = framework::launch_bytes(&want.spec, &want.name, want.ports.len());
        for _ in 0..plan.launch {
            if spent >= PER_CYCLE || bytes + launch_bytes > framework::LAUNCH_BYTES {
                wants = true;
                full = true;
                break;
            }
            // What this cycle cannot place needs offers (more, or other ones).
            let Some((i, ports)) = placement.choose(&offers, &mut cursor) else {
                wants = true;
                unmet = true;
                break;
            };
            let offer = &mut offers[i];
            let task_id =
                TaskId::new(format!("{}.{mint}-{minted}", want.name)).expect("a valid task id");
            minted += 1;
            spent += 1;
            bytes += launch_bytes;
            let (resources, spec) = assign(&want.resources, &want.spec, ports);
            offer.free = offer
                .free
                .checked_sub(&resources)
                .expect("fit checked the offer holds it");
            placement.add(offer.agent_id, offer.agent);
            offer.launched.push(TaskLaunched {
                task_id,
                name: want.name.clone(),
                framework_id: framework_id.clone(),
                agent_id: offer.agent_id.clone(),
                owner: TaskOwner::App {
                    app_id: app_id.clone(),
                    version: app.version,
                },
                resources,
                spec: Box::new(spec),
                offer_id: None,
            });
        }
    }

    framework::settle(offers, &framework_id, unmet, &mut events);

    let progressed = progress(state, &orphans);
    // A finished step releases the apps of the next one: go round again at once.
    let stepped = !progressed.is_empty();
    events.extend(progressed);

    let revive = framework::pace(framework, &framework_id, wants, &mut events);
    Cycle {
        events,
        again: revive || stepped || full || spent >= PER_CYCLE,
    }
}

fn kill(task_id: &TaskId, why: &str) -> Event {
    Event::TaskKillRequested(TaskKillRequested {
        task_id: task_id.clone(),
        grace_period_secs: None,
        reason: why.to_owned(),
    })
}

fn in_backoff(app: &App, now: Timestamp) -> bool {
    app.backoff.as_ref().is_some_and(|b| b.until > now)
}

/// Apps a running deployment holds back: those in its steps after the current one.
fn held(state: &State) -> BTreeMap<&AppId, &DeploymentId> {
    let mut held = BTreeMap::new();
    for (id, d) in &state.apps.deployments {
        if d.status != DeploymentStatus::Running {
            continue;
        }
        for step in d.steps.iter().skip(d.completed_steps as usize + 1) {
            for action in &step.actions {
                held.insert(&action.app_id, id);
            }
        }
    }
    held
}

/// Live tasks of apps that no longer exist, by app.
fn orphans(state: &State) -> BTreeMap<&AppId, Vec<(&TaskId, &Task)>> {
    let mut orphans: BTreeMap<&AppId, Vec<_>> = BTreeMap::new();
    for (task_id, task) in &state.tasks.tasks {
        if let TaskOwner::App { app_id, .. } = &task.owner {
            if !task.is_terminal() && !state.apps.apps.contains_key(app_id) {
                orphans.entry(app_id).or_default().push((task_id, task));
            }
        }
    }
    orphans
}

/// Running deployments whose current step now holds advance.
fn progress(state: &State, orphans: &BTreeMap<&AppId, Vec<(&TaskId, &Task)>>) -> Vec<Event> {
    let mut events = Vec::new();
    for (id, d) in &state.apps.deployments {
        if d.status != DeploymentStatus::Running {
            continue;
        }
        let step = d.completed_steps as usize;
        let done = d.steps.get(step).is_none_or(|s| {
            s.actions.iter().all(|a| match a.action {
                DeploymentActionKind::StopApplication => {
                    !state.apps.apps.contains_key(&a.app_id) && !orphans.contains_key(&a.app_id)
                }
                _ => state
                    .apps
                    .apps
                    .get(&a.app_id)
                    .is_none_or(|app| Census::of(state, app).converged(app)),
            })
        });
        if !done {
            continue;
        }
        if step < d.steps.len() {
            events.push(Event::DeploymentStepFinished(DeploymentStepFinished {
                deployment_id: id.clone(),
                step: step as u32 + 1,
            }));
        }
        if step + 1 >= d.steps.len() {
            events.push(Event::DeploymentFinished(DeploymentFinished {
                deployment_id: id.clone(),
            }));
        }
    }
    events
}

/// An app's live instances, sorted out.
struct Census<'a> {
    /// Running the current definition, not being killed.
    new: Vec<(&'a TaskId, &'a Task)>,
    /// Running an earlier definition, not being killed.
    old: Vec<(&'a TaskId, &'a Task)>,
    /// Whose health checks failed too often, not yet being killed.
    failed: Vec<&'a TaskId>,
    /// Being killed.
    killing: usize,
    /// Every live instance, for constraints and spread.
    all: Vec<&'a Task>,
}

struct Plan<'a> {
    kills: Vec<(&'a TaskId, String)>,
    launch: usize,
}

impl<'a> Census<'a> {
    fn of(state: &'a State, app: &'a App) -> Self {
        let config = app.config_version();
        let mut census = Census {
            new: Vec::new(),
            old: Vec::new(),
            failed: Vec::new(),
            killing: 0,
            all: Vec::new(),
        };
        for id in &app.instances {
            let Some(task) = state.tasks.tasks.get(id) else {
                continue;
            };
            census.all.push(task);
            if task.kill_requested {
                census.killing += 1;
                continue;
            }
            if task.healthy == Some(false) {
                census.failed.push(id);
                continue;
            }
            let current =
                matches!(&task.owner, TaskOwner::App { version, .. } if *version >= config);
            if current {
                census.new.push((id, task));
            } else {
                census.old.push((id, task));
            }
        }
        census
    }

    /// The app runs exactly its definition: `instances` current instances, all healthy, and
    /// nothing else.
    fn converged(&self, app: &App) -> bool {
        self.old.is_empty()
            && self.failed.is_empty()
            && self.killing == 0
            && self.new.len() == app.spec.instances as usize
            && self.new.iter().all(|(_, t)| healthy(app, t))
    }

    /// What to kill and how many to launch now.
    fn plan(&self, app: &App) -> Plan<'a> {
        let n = app.spec.instances as usize;
        let mut kills: Vec<(&TaskId, String)> = self
            .failed
            .iter()
            .map(|id| {
                let max = app
                    .spec
                    .health_checks
                    .iter()
                    .map(|h| h.max_consecutive_failures)
                    .max()
                    .unwrap_or(0);
                (
                    *id,
                    format!("it failed its health check {max} times in a row"),
                )
            })
            .collect();
        // Least useful first: not healthy, then the youngest (Marathon's YOUNGEST_FIRST).
        let by_use = |list: &[(&'a TaskId, &'a Task)], youngest_first: bool| {
            let mut list = list.to_vec();
            list.sort_by(|(ia, a), (ib, b)| {
                let age = if youngest_first {
                    b.launched_at.cmp(&a.launched_at)
                } else {
                    a.launched_at.cmp(&b.launched_at)
                };
                healthy(app, a)
                    .cmp(&healthy(app, b))
                    .then(age)
                    .then(ia.cmp(ib))
            });
            list
        };
        if self.old.is_empty() {
            if self.new.len() > n {
                for (id, _) in by_use(&self.new, true).into_iter().take(self.new.len() - n) {
                    kills.push((id, "the app was scaled down".into()));
                }
            }
            return Plan {
                kills,
                launch: n.saturating_sub(self.new.len()),
            };
        }
        // A rolling upgrade.
        let strategy = &app.spec.upgrade_strategy;
        let min_healthy = (n as f64 * strategy.minimum_health_capacity).ceil() as usize;
        let max_capacity = (n as f64 * (1.0 + strategy.maximum_over_capacity)).floor() as usize;
        let new_healthy = self.new.iter().filter(|(_, t)| healthy(app, t)).count();
        let mut healthy_total =
            new_healthy + self.old.iter().filter(|(_, t)| healthy(app, t)).count();
        let mut old_left = self.old.len();
        let upgraded = "it runs an old version of the app";
        for (id, task) in by_use(&self.old, false) {
            if !healthy(app, task) {
                kills.push((id, upgraded.into()));
            } else if healthy_total > min_healthy {
                kills.push((id, upgraded.into()));
                healthy_total -= 1;
            } else {
                break;
            }
            old_left -= 1;
        }
        let mut launch = n
            .saturating_sub(self.new.len())
            .min(max_capacity.saturating_sub(old_left + self.new.len()));
        // No room to start a new instance and none may stop: as Marathon does, one old
        // instance goes once every new one is healthy, so that the upgrade moves.
        let stuck = launch == 0 && old_left == self.old.len() && self.new.len() < n;
        if stuck && new_healthy == self.new.len() && self.killing == 0 {
            if let Some((id, _)) = by_use(&self.old, false).first() {
                kills.push((id, upgraded.into()));
                old_left -= 1;
                launch = n
                    .saturating_sub(self.new.len())
                    .min(max_capacity.saturating_sub(old_left + self.new.len()));
            }
        }
        Plan { kills, launch }
    }
}

/// Healthy as Marathon counts it: running, and passing its health checks if it has any.
fn healthy(app: &App, task: &Task) -> bool {
    task.state == TaskState::Running
        && (app.spec.health_checks.is_empty() || task.healthy == Some(true))
}

/// What one instance of an app needs.
struct Want {
    name: String,
    resources: Resources,
    /// Host ports, 0 for any.
    ports: Vec<u16>,
    spec: TaskSpec,
    constraints: Vec<Constraint>,
}

impl Want {
    fn of(app_id: &AppId, app: &App) -> Self {
        let spec = &app.spec;
        let docker = spec.container.as_ref().and_then(|c| c.docker.as_ref());
        let bridged = docker.is_some_and(|d| {
            matches!(d.network, DockerNetwork::Bridge | DockerNetwork::User)
                && !d.port_mappings.is_empty()
        });
        let ports = if bridged {
            docker
                .map(|d| d.port_mappings.iter().map(|m| m.host_port).collect())
                .unwrap_or_default()
        } else {
            spec.port_definitions
                .iter()
                .map(|p| if spec.require_ports { p.port } else { 0 })
                .collect()
        };
        let mut command = spec.command.clone().unwrap_or_else(|| CommandSpec {
            value: None,
            args: Vec::new(),
            shell: false,
            env: spec.env.clone(),
            user: spec.user.clone(),
        });
        command
            .env
            .insert("MARATHON_APP_ID".into(), app_id.to_string());
        command
            .env
            .insert("MARATHON_APP_VERSION".into(), app.version.to_string());
        Self {
            name: app_id.as_str().trim_matches('/').replace('/', "_"),
            resources: Resources {
                cpus_milli: spec.cpus_milli,
                mem_mib: spec.mem_mib,
                disk_mib: spec.disk_mib,
                ports: Vec::new(),
            },
            ports,
            spec: TaskSpec {
                command: Some(command),
                container: spec.container.clone().map(Box::new),
                ports: Vec::new(),
                health_checks: spec.health_checks.clone(),
                labels: spec.labels.clone(),
                kill_grace_period_secs: spec.kill_grace_period_secs,
                ..TaskSpec::default()
            },
            constraints: Constraint::parse_all(&spec.constraints),
        }
    }
}

/// Why an agent cannot take one more instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Misfit {
    Cpus,
    Mem,
    Disk,
    Ports,
    /// The constraint at this index.
    Constraint(usize),
}

/// Every value a field has among the active agents (for `GROUP_BY`), found once per cycle.
struct FieldValues<'a> {
    state: &'a State,
    known: BTreeMap<String, Rc<[&'a str]>>,
}

impl<'a> FieldValues<'a> {
    fn new(state: &'a State) -> Self {
        Self {
            state,
            known: BTreeMap::new(),
        }
    }

    fn of(&mut self, field: &str) -> Rc<[&'a str]> {
        if let Some(values) = self.known.get(field) {
            return values.clone();
        }
        let values: BTreeSet<&str> = self
            .state
            .cluster
            .agents
            .values()
            .filter(|a| a.status == AgentStatus::Active)
            .filter_map(|a| constraints::value_of(a, field))
            .collect();
        let values: Rc<[&str]> = values.into_iter().collect();
        self.known.insert(field.to_owned(), values.clone());
        values
    }
}

/// Where an app's instances are, as placement goes on.
struct Placement<'w, 's> {
    want: &'w Want,
    counts: Counts,
    /// Keyed by reference into the state: no id is copied per instance.
    per_agent: BTreeMap<&'s AgentId, u32>,
    /// For `GROUP_BY`: every value of the constrained field among active agents.
    values: BTreeMap<String, Rc<[&'s str]>>,
    /// Offers whose agents hold more instances than this are passed over (see `choose`).
    level: u32,
}

impl<'w, 's> Placement<'w, 's> {
    fn new(
        state: &'s State,
        census: &Census<'s>,
        want: &'w Want,
        fields: &mut FieldValues<'s>,
    ) -> Self {
        let mut placement = Self {
            want,
            counts: Counts::new(),
            per_agent: BTreeMap::new(),
            values: BTreeMap::new(),
            level: 0,
        };
        for c in want.constraints.iter().filter(|c| c.spreads()) {
            placement
                .values
                .insert(c.field.clone(), fields.of(&c.field));
        }
        for task in &census.all {
            if let Some(agent) = state.cluster.agents.get(&task.agent_id) {
                placement.add(&task.agent_id, agent);
            }
        }
        placement
    }

    fn add(&mut self, agent_id: &'s AgentId, agent: &Agent) {
        constraints::count(&mut self.counts, &self.want.constraints, agent);
        *self.per_agent.entry(agent_id).or_default() += 1;
    }

    fn on_agent(&self, agent_id: &AgentId) -> u32 {
        self.per_agent.get(agent_id).copied().unwrap_or(0)
    }

    /// The offer for one more instance, and its ports: among the offers whose agents hold
    /// the fewest of the app's instances, the first that fits from `cursor` on (which then
    /// moves past it). Each instance costs a few checks while room is plentiful, not one per
    /// offer, so a cycle places thousands of instances over thousands of agents.
    fn choose(&mut self, offers: &[Avail], cursor: &mut usize) -> Option<(usize, Vec<u16>)> {
        let n = offers.len();
        loop {
            for step in 0..n {
                let i = (*cursor + step) % n;
                let offer = &offers[i];
                if self.on_agent(offer.agent_id) > self.level {
                    continue;
                }
                if let Ok(ports) = self.fit(offer.agent, &offer.free) {
                    *cursor = i + 1;
                    return Some((i, ports));
                }
            }
            // None fits at this level: allow agents holding one more instance, if any do.
            let most = offers.iter().map(|o| self.on_agent(o.agent_id)).max()?;
            if self.level >= most {
                return None;
            }
            self.level += 1;
        }
    }

    /// The host ports one more instance gets on `agent` with `free` resources, or why not.
    fn fit(&self, agent: &Agent, free: &Resources) -> Result<Vec<u16>, Misfit> {
        let need = &self.want.resources;
        if free.cpus_milli < need.cpus_milli {
            return Err(Misfit::Cpus);
        }
        if free.mem_mib < need.mem_mib {
            return Err(Misfit::Mem);
        }
        if free.disk_mib < need.disk_mib {
            return Err(Misfit::Disk);
        }
        for (i, c) in self.want.constraints.iter().enumerate() {
            let values = self.values.get(&c.field).map_or(&[][..], |v| &v[..]);
            if !c.allows(agent, self.counts.get(&c.field), values) {
                return Err(Misfit::Constraint(i));
            }
        }
        take_ports(&free.ports, &self.want.ports).ok_or(Misfit::Ports)
    }
}

/// "Why isn't it running?": what an app waits for, as of `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    /// Instances it should have and does not run yet (current definition).
    pub instances_to_launch: u32,
    /// No instance is launched before this time, after failures.
    pub backoff_until: Option<Timestamp>,
    /// A deployment holds it until the apps it depends on are deployed.
    pub held_by: Option<DeploymentId>,
    /// Why the active agents cannot take another instance now, one line per reason with how
    /// many agents it rules out; empty when some agent can (the launch waits for an offer).
    pub unplaceable: Vec<String>,
}

/// What `app_id` waits for, or `None` when it has all its instances.
pub fn waiting(state: &State, app_id: &AppId, now: Timestamp) -> Option<Waiting> {
    let app = state.apps.apps.get(app_id)?;
    let census = Census::of(state, app);
    let missing = (app.spec.instances as usize).saturating_sub(census.new.len());
    if missing == 0 {
        return None;
    }
    let want = Want::of(app_id, app);
    let placement = Placement::new(state, &census, &want, &mut FieldValues::new(state));
    let mut misfits: BTreeMap<Misfit, usize> = BTreeMap::new();
    let mut active = 0;
    let mut fits = false;
    for agent in state.cluster.agents.values() {
        if agent.status != AgentStatus::Active {
            continue;
        }
        active += 1;
        // What is offered is free for this purpose: offers are taken back or declined.
        let free = agent.total.checked_sub(&agent.used).unwrap_or_default();
        match placement.fit(agent, &free) {
            Ok(_) => fits = true,
            Err(m) => *misfits.entry(m).or_default() += 1,
        }
    }
    let unplaceable = if active == 0 {
        vec!["no agent is active".to_owned()]
    } else if fits {
        Vec::new()
    } else {
        let need = &want.resources;
        misfits
            .into_iter()
            .map(|(m, n)| {
                let what = match m {
                    Misfit::Cpus => {
                        format!("fewer than {} CPUs free", need.cpus_milli as f64 / 1000.0)
                    }
                    Misfit::Mem => format!("less than {} MiB of memory free", need.mem_mib),
                    Misfit::Disk => format!("less than {} MiB of disk free", need.disk_mib),
                    Misfit::Ports => format!(
                        "not the ports it needs free ({:?}, 0 = any; {} free at most)",
                        want.ports,
                        state
                            .cluster
                            .agents
                            .keys()
                            .filter_map(|a| state.cluster.free(a))
                            .map(|f| port_count(&f.ports))
                            .max()
                            .unwrap_or(0)
                    ),
                    Misfit::Constraint(i) => {
                        format!("excluded by the constraint {}", want.constraints[i].text)
                    }
                };
                format!("{n} of {active} agents: {what}")
            })
            .collect()
    };
    Some(Waiting {
        instances_to_launch: missing as u32,
        backoff_until: app.backoff.as_ref().map(|b| b.until).filter(|u| *u > now),
        held_by: held(state).get(app_id).map(|d| (*d).clone()),
        unplaceable,
    })
}

#[cfg(test)]
mod tests {
    use cairn_log::event::{
        AppSpec, Backoff, HealthCheck, HealthProtocol, StatusSource, TaskStatusUpdated,
        UpgradeStrategy,
    };

    use super::*;
    use crate::agents::tests::{registered, state_of};
    use crate::allocator::{allocate, AllocatorConfig};
    use crate::deployments::{self, Put};

    /// A cluster run by the decider: every event is kept and folded again (one second apart).
    struct Sim {
        events: Vec<Event>,
        cycles: u32,
    }

    impl Sim {
        fn new(agents: &[(&str, u64)]) -> Self {
            let events: Vec<Event> = agents
                .iter()
                .map(|(id, cpus)| registered(id, *cpus))
                .collect();
            Self { events, cycles: 0 }
        }

        fn state(&self) -> State {
            state_of(self.events.clone())
        }

        fn now(&self) -> Timestamp {
            Timestamp::from_micros(self.events.len() as i64 * 1_000_000)
        }

        /// Allocation and the apps cycle, until a cycle asks for no other.
        fn cycle(&mut self) -> Vec<Event> {
            let mut out = Vec::new();
            loop {
                self.cycles += 1;
                let registered = ensure_framework(&self.state());
                self.events.extend(registered.clone());
                out.extend(registered);
                let now = self.now();
                let offers = allocate(
                    &self.state(),
                    now,
                    &AllocatorConfig::default(),
                    &format!("c{}", self.cycles),
                );
                self.events.extend(offers.clone());
                out.extend(offers);
                let cycle = decide(&self.state(), self.now(), &format!("m{}", self.cycles));
                self.events.extend(cycle.events.clone());
                out.extend(cycle.events);
                if !cycle.again {
                    return out;
                }
            }
        }

        fn put(&mut self, spec: AppSpec) {
            let change = deployments::put(
                &self.state(),
                vec![spec],
                Put::CreateOrUpdate,
                self.now(),
                DeploymentId::new(format!("d{}", self.events.len())).unwrap(),
                false,
            )
            .unwrap();
            self.events.extend(change.events);
        }

        fn report(&mut self, task_id: &TaskId, state: TaskState, healthy: Option<bool>) {
            let agent_id = self.state().tasks.tasks[task_id].agent_id.clone();
            self.events
                .push(Event::TaskStatusUpdated(TaskStatusUpdated {
                    task_id: task_id.clone(),
                    agent_id,
                    state,
                    source: StatusSource::Agent,
                    reason: None,
                    message: None,
                    healthy,
                    status_uuid: None,
                }));
        }

        /// Every launched-and-not-yet-running instance reports running (and healthy).
        fn start_all(&mut self) {
            let state = self.state();
            for (id, task) in &state.tasks.tasks {
                if task.state == TaskState::Staging && !task.kill_requested {
                    self.report(id, TaskState::Running, Some(true));
                }
            }
        }

        /// Everything launched starts, and the scheduler sees it.
        fn settle(&mut self) -> Vec<Event> {
            self.start_all();
            self.cycle()
        }

        /// Every instance asked to die dies.
        fn kill_all(&mut self) {
            let state = self.state();
            for (id, task) in &state.tasks.tasks {
                if task.kill_requested && !task.is_terminal() {
                    self.report(id, TaskState::Killed, None);
                }
            }
        }

        fn live(&self, app: &str) -> Vec<(TaskId, Task)> {
            let state = self.state();
            let app = &state.apps.apps[&AppId::new(app).unwrap()];
            app.instances
                .iter()
                .map(|id| (id.clone(), state.tasks.tasks[id].clone()))
                .collect()
        }
    }

    fn spec(id: &str, instances: u32) -> AppSpec {
        AppSpec {
            id: AppId::new(id).unwrap(),
            command: Some(CommandSpec {
                value: Some("sleep 1000".into()),
                ..CommandSpec::default()
            }),
            container: None,
            cpus_milli: 100,
            mem_mib: 32,
            disk_mib: 0,
            instances,
            port_definitions: Vec::new(),
            require_ports: false,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            constraints: Vec::new(),
            health_checks: Vec::new(),
            upgrade_strategy: UpgradeStrategy {
                minimum_health_capacity: 1.0,
                maximum_over_capacity: 1.0,
            },
            backoff: Backoff {
                backoff_secs: 10.0,
                factor: 2.0,
                max_launch_delay_secs: 100.0,
            },
            user: None,
            dependencies: Vec::new(),
            kill_grace_period_secs: None,
        }
    }

    fn launched(events: &[Event]) -> Vec<&TaskLaunched> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::TaskLaunched(t) => Some(&**t),
                _ => None,
            })
            .collect()
    }

    fn killed(events: &[Event]) -> Vec<&TaskId> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::TaskKillRequested(k) => Some(&k.task_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_cycle_launches_no_more_than_one_append_can_hold() {
        let names: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
        let agents: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 10_000)).collect();
        let mut sim = Sim::new(&agents);
        let mut big = spec("/big", 1000);
        // About 17 KiB of environment in every launch: 1,000 of them would not fit 8 MiB.
        big.command.as_mut().unwrap().env = (0..256)
            .map(|i| (format!("VAR_{i:03}"), "x".repeat(60)))
            .collect();
        sim.put(big);
        let registered = ensure_framework(&sim.state());
        sim.events.extend(registered);
        let offers = allocate(&sim.state(), sim.now(), &AllocatorConfig::default(), "c");
        sim.events.extend(offers);
        let cycle = decide(&sim.state(), sim.now(), "m");
        let bytes: usize = cycle
            .events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .sum();
        let n = launched(&cycle.events).len();
        assert!(
            bytes <= framework::LAUNCH_BYTES && bytes > framework::LAUNCH_BYTES / 2,
            "{bytes} bytes, {n} launched"
        );
        assert!(n > 0 && n < 1000, "{n} launched");
        assert!(cycle.again, "the rest follows at once");
        sim.events.extend(cycle.events);
        sim.cycle();
        assert_eq!(sim.live("/big").len(), 1000);
    }

    #[test]
    fn instances_launch_on_offers_spread_over_agents_and_the_framework_then_suppresses() {
        let mut sim = Sim::new(&[("a1", 1000), ("a2", 1000)]);
        sim.put(spec("/web", 3));
        let events = sim.cycle();
        let tasks = launched(&events);
        assert_eq!(tasks.len(), 3);
        let on = |a: &str| tasks.iter().filter(|t| t.agent_id.as_str() == a).count();
        assert_eq!((on("a1"), on("a2")), (2, 1));
        assert!(tasks.iter().all(|t| t.spec.ports.is_empty()));
        // Each launch names the offer it accepts, one per agent; no offer stays outstanding.
        let offers: BTreeSet<_> = tasks.iter().map(|t| t.offer_id.clone().unwrap()).collect();
        assert_eq!(offers.len(), 2);
        assert!(!events.iter().any(|e| matches!(e, Event::OfferAccepted(_))));
        assert!(sim.state().cluster.offers.is_empty());
        assert!(matches!(events.last(), Some(Event::OffersSuppressed(_))));
        // Once all run, the deployment finishes; then a quiet cycle appends nothing.
        let events = sim.settle();
        assert!(
            matches!(
                events[..],
                [
                    Event::DeploymentStepFinished(_),
                    Event::DeploymentFinished(_)
                ]
            ),
            "{events:?}"
        );
        assert_eq!(sim.cycle(), Vec::<Event>::new());
    }

    #[test]
    fn unsatisfiable_constraints_decline_with_a_filter_and_say_why() {
        let mut sim = Sim::new(&[("a1", 1000), ("a2", 1000)]);
        let mut web = spec("/web", 3);
        web.constraints = vec![vec!["hostname".into(), "UNIQUE".into()]];
        sim.put(web);
        let events = sim.cycle();
        assert_eq!(launched(&events).len(), 2);
        sim.start_all();
        let events = sim.cycle();
        assert!(launched(&events).is_empty());
        let declined = events.iter().find_map(|e| match e {
            Event::OffersDeclined(d) => Some(d.refuse_millis),
            _ => None,
        });
        // Offers of both agents, refused for a while; no instance placed.
        assert!(
            declined.is_none() || declined == Some(framework::DECLINE_MILLIS),
            "{events:?}"
        );
        let why = waiting(&sim.state(), &AppId::new("/web").unwrap(), sim.now()).unwrap();
        assert_eq!(why.instances_to_launch, 1);
        assert_eq!(
            why.unplaceable,
            ["2 of 2 agents: excluded by the constraint [\"hostname\", \"UNIQUE\"]"]
        );
        // Too big for any agent: the resource is named.
        let mut big = spec("/big", 1);
        big.cpus_milli = 5000;
        sim.put(big);
        let why = waiting(&sim.state(), &AppId::new("/big").unwrap(), sim.now()).unwrap();
        assert_eq!(why.unplaceable, ["2 of 2 agents: fewer than 5 CPUs free"]);
    }

    #[test]
    fn scaling_down_kills_the_youngest_and_leaves_the_rest() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        sim.put(spec("/web", 2));
        sim.cycle();
        sim.settle();
        sim.put(spec("/web", 3));
        let third = launched(&sim.cycle())[0].task_id.clone();
        sim.settle();
        sim.put(spec("/web", 2));
        let events = sim.cycle();
        assert_eq!(killed(&events), [&third]);
        assert!(launched(&events).is_empty());
    }

    #[test]
    fn a_rolling_upgrade_keeps_minimum_health_capacity_and_maximum_over_capacity() {
        let mut sim = Sim::new(&[("a1", 8000)]);
        let mut v1 = spec("/web", 4);
        v1.upgrade_strategy = UpgradeStrategy {
            minimum_health_capacity: 0.5,
            maximum_over_capacity: 0.25,
        };
        sim.put(v1.clone());
        sim.cycle();
        sim.settle();
        let mut v2 = v1;
        v2.command = Some(CommandSpec {
            value: Some("sleep 2000".into()),
            ..CommandSpec::default()
        });
        sim.put(v2);
        // minHealthy = ⌈4·0.5⌉ = 2, maxCapacity = ⌊4·1.25⌋ = 5: two old go at once, three
        // new start (2 old + 3 new = 5).
        let events = sim.cycle();
        assert_eq!((killed(&events).len(), launched(&events).len()), (2, 3));
        sim.kill_all();
        let mut rounds = 0;
        loop {
            // While the new ones start, at least two instances are healthy and at most five run.
            let live = sim.live("/web");
            let healthy = live
                .iter()
                .filter(|(_, t)| t.state == TaskState::Running && !t.kill_requested)
                .count();
            assert!(healthy >= 2, "{healthy} healthy");
            assert!(live.len() <= 5, "{} live", live.len());
            sim.start_all();
            sim.cycle();
            sim.kill_all();
            rounds += 1;
            let state = sim.state();
            if state
                .apps
                .deployments
                .values()
                .all(|d| d.status == DeploymentStatus::Finished)
            {
                break;
            }
            assert!(rounds < 10, "the upgrade does not finish");
        }
        let config = sim.state().apps.apps[&AppId::new("/web").unwrap()].config_version();
        let live = sim.live("/web");
        assert_eq!(live.len(), 4);
        assert!(live
            .iter()
            .all(|(_, t)| matches!(t.owner, TaskOwner::App { version, .. } if version >= config)));
    }

    #[test]
    fn with_no_room_to_spare_one_old_instance_goes_at_a_time() {
        let mut sim = Sim::new(&[("a1", 8000)]);
        let mut v1 = spec("/web", 2);
        v1.upgrade_strategy = UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 0.0,
        };
        sim.put(v1.clone());
        sim.cycle();
        sim.settle();
        let mut v2 = v1;
        v2.mem_mib = 64;
        sim.put(v2);
        // As Marathon: one old instance goes, and its place is taken at once.
        let events = sim.cycle();
        assert_eq!((killed(&events).len(), launched(&events).len()), (1, 1));
        sim.kill_all();
        // The new one is not healthy yet: the other old one stays.
        assert!(killed(&sim.cycle()).is_empty());
        sim.start_all();
        assert_eq!(killed(&sim.cycle()).len(), 1);
    }

    #[test]
    fn failed_instances_are_replaced_after_a_growing_backoff_and_a_kill_on_request_is_not_one() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        sim.put(spec("/web", 1));
        sim.cycle();
        sim.start_all();
        let (first, _) = sim.live("/web").remove(0);
        sim.report(&first, TaskState::Failed, None);
        let failed_at = sim.state().at;
        // Backoff 10 s: not now.
        assert!(launched(&sim.cycle()).is_empty());
        let state = sim.state();
        let app = &state.apps.apps[&AppId::new("/web").unwrap()];
        assert_eq!(
            app.backoff.as_ref().unwrap().until.as_micros(),
            failed_at.as_micros() + 10_000_000
        );
        assert_eq!(app.last_failure.as_ref().unwrap().task_id, first);
        // Ten seconds of quiet cycles later it is launched.
        let mut waited = 0;
        let second = loop {
            let events = sim.cycle();
            if let Some(t) = launched(&events).first() {
                break t.task_id.clone();
            }
            sim.events
                .push(Event::OffersRevived(cairn_log::event::OffersRevived {
                    framework_id: framework_id(),
                    roles: Vec::new(),
                }));
            waited += 1;
            assert!(waited < 20);
        };
        sim.start_all();
        // A second failure doubles it.
        sim.report(&second, TaskState::Finished, None);
        let state = sim.state();
        let b = state.apps.apps[&AppId::new("/web").unwrap()]
            .backoff
            .clone()
            .unwrap();
        assert_eq!(
            (b.failures, b.until.as_micros() - state.at.as_micros()),
            (2, 20_000_000)
        );
        // Killed on request: no backoff counted.
        let mut sim = Sim::new(&[("a1", 4000)]);
        sim.put(spec("/web", 1));
        sim.cycle();
        sim.start_all();
        let (only, _) = sim.live("/web").remove(0);
        sim.events.push(kill(&only, "test"));
        sim.report(&only, TaskState::Killed, None);
        assert_eq!(launched(&sim.cycle()).len(), 1);
    }

    #[test]
    fn instances_failing_health_checks_are_killed_and_replaced() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        let mut web = spec("/web", 1);
        web.health_checks = vec![HealthCheck {
            protocol: HealthProtocol::Tcp,
            path: None,
            port_index: Some(0),
            command: None,
            grace_period_secs: 1,
            interval_secs: 1,
            timeout_secs: 1,
            max_consecutive_failures: 3,
        }];
        web.port_definitions = vec![cairn_log::event::PortDefinition {
            port: 0,
            protocol: "tcp".into(),
            name: None,
        }];
        sim.put(web);
        let first = launched(&sim.cycle())[0].clone();
        assert_eq!(first.spec.ports, [31000]);
        sim.report(&first.task_id, TaskState::Running, None);
        // Running but not yet healthy: the deployment waits.
        sim.cycle();
        assert!(sim
            .state()
            .apps
            .deployments
            .values()
            .all(|d| d.status == DeploymentStatus::Running));
        // Unhealthy (the agent says so after maxConsecutiveFailures): killed, and replaced
        // at once (not a failure of its own: no backoff).
        sim.report(&first.task_id, TaskState::Running, Some(false));
        let events = sim.cycle();
        assert_eq!(killed(&events), [&first.task_id]);
        assert_eq!(launched(&events).len(), 1);
    }

    #[test]
    fn dependencies_deploy_in_order_and_deleted_apps_lose_their_instances() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        let db = spec("/db", 1);
        let mut web = spec("/web", 1);
        web.dependencies = vec![AppId::new("/db").unwrap()];
        let change = deployments::put(
            &sim.state(),
            vec![web, db],
            Put::Create,
            sim.now(),
            DeploymentId::new("d1").unwrap(),
            false,
        )
        .unwrap();
        sim.events.extend(change.events);
        let events = sim.cycle();
        let names: Vec<&str> = launched(&events).iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["db"]);
        let why = waiting(&sim.state(), &AppId::new("/web").unwrap(), sim.now()).unwrap();
        assert_eq!(why.held_by, Some(DeploymentId::new("d1").unwrap()));
        // Once db runs, its step ends and web's begins in the same cycle.
        let events = sim.settle();
        let names: Vec<&str> = launched(&events).iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["web"]);
        sim.settle();
        assert_eq!(
            sim.state().apps.deployments[&DeploymentId::new("d1").unwrap()].status,
            DeploymentStatus::Finished
        );

        // Deleting: refused while another app depends on it; then its instances are killed
        // and the deployment finishes when they are gone.
        let state = sim.state();
        let db = AppId::new("/db").unwrap();
        let err = deployments::delete(
            &state,
            &db,
            sim.now(),
            DeploymentId::new("d2").unwrap(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("depends on"), "{err}");
        let web = AppId::new("/web").unwrap();
        let change = deployments::delete(
            &state,
            &web,
            sim.now(),
            DeploymentId::new("d2").unwrap(),
            false,
        )
        .unwrap();
        sim.events.extend(change.events);
        let events = sim.cycle();
        assert_eq!(killed(&events).len(), 1);
        assert_eq!(
            sim.state().apps.deployments[&DeploymentId::new("d2").unwrap()].status,
            DeploymentStatus::Running
        );
        sim.kill_all();
        sim.cycle();
        assert_eq!(
            sim.state().apps.deployments[&DeploymentId::new("d2").unwrap()].status,
            DeploymentStatus::Finished
        );
    }

    #[test]
    fn a_replaced_group_updates_creates_and_deletes_its_apps_in_one_deployment() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        sim.put(spec("/g/a", 1));
        sim.put(spec("/g/b", 1));
        let mut outside = spec("/x", 1);
        outside.dependencies = vec![AppId::new("/g/b").unwrap()];
        sim.put(outside);
        // Each deployment's instances start and report (one step per round).
        for _ in 0..3 {
            sim.settle();
        }
        let state = sim.state();
        let (a, b) = (AppId::new("/g/a").unwrap(), AppId::new("/g/b").unwrap());
        let id = || DeploymentId::new("d9").unwrap();

        // /x depends on /g/b: the group may not lose it, and nothing is decided.
        let err = deployments::replace(
            &state,
            vec![spec("/g/a", 2)],
            std::slice::from_ref(&b),
            sim.now(),
            id(),
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("app /x depends on /g/b"),
            "{err}"
        );
        // Given twice, or removing what does not exist: refused.
        let err = deployments::replace(
            &state,
            vec![spec("/g/a", 2)],
            std::slice::from_ref(&a),
            sim.now(),
            id(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = deployments::replace(
            &state,
            Vec::new(),
            &[AppId::new("/g/z").unwrap()],
            sim.now(),
            id(),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, deployments::Refusal::NotFound(_)), "{err}");

        // Without /x's dependency: /g/a scaled, /g/c created, /g/b deleted, one deployment.
        let mut x = spec("/x", 1);
        x.dependencies.clear();
        sim.put(x);
        for _ in 0..3 {
            sim.settle();
        }
        let change = deployments::replace(
            &sim.state(),
            vec![spec("/g/a", 2), spec("/g/c", 1)],
            std::slice::from_ref(&b),
            sim.now(),
            id(),
            false,
        )
        .unwrap();
        let kinds: Vec<&str> = change.events.iter().map(|e| e.kind().into()).collect();
        assert_eq!(
            kinds,
            ["AppDeleted", "AppScaled", "AppCreated", "DeploymentStarted"]
        );
        sim.events.extend(change.events);
        sim.settle();
        sim.kill_all();
        sim.settle();
        let state = sim.state();
        assert!(!state.apps.apps.contains_key(&b));
        assert_eq!(state.apps.apps[&a].spec.instances, 2);
        assert_eq!(
            state.apps.deployments[&id()].status,
            DeploymentStatus::Finished
        );
    }

    #[test]
    fn one_deployment_per_app_unless_forced_and_cycles_are_refused() {
        let mut sim = Sim::new(&[("a1", 4000)]);
        sim.put(spec("/web", 1));
        let state = sim.state();
        let again = deployments::put(
            &state,
            vec![spec("/web", 2)],
            Put::Update,
            sim.now(),
            DeploymentId::new("x").unwrap(),
            false,
        );
        let Err(deployments::Refusal::Conflict { deployments, .. }) = again else {
            panic!("{again:?}")
        };
        assert_eq!(deployments.len(), 1);
        let forced = deployments::put(
            &state,
            vec![spec("/web", 2)],
            Put::Update,
            sim.now(),
            DeploymentId::new("x").unwrap(),
            true,
        )
        .unwrap();
        assert!(matches!(forced.events[0], Event::DeploymentCanceled(_)));
        assert!(matches!(forced.events[1], Event::AppScaled(_)));
        let mut a = spec("/a", 1);
        a.dependencies = vec![AppId::new("/b").unwrap()];
        let mut b = spec("/b", 1);
        b.dependencies = vec![AppId::new("/a").unwrap()];
        let err = deployments::put(
            &state,
            vec![a, b],
            Put::Create,
            sim.now(),
            DeploymentId::new("y").unwrap(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
        // The same definition again changes nothing.
        let same = deployments::put(
            &state,
            vec![spec("/web", 1)],
            Put::Update,
            sim.now(),
            DeploymentId::new("z").unwrap(),
            true,
        )
        .unwrap();
        assert_eq!(same.events.len(), 0);
    }

    #[test]
    fn a_new_leader_decides_the_same_from_the_same_log() {
        let mut sim = Sim::new(&[("a1", 2000), ("a2", 2000)]);
        sim.put(spec("/web", 5));
        sim.cycle();
        sim.start_all();
        let state = sim.state();
        assert!(!decide(&state, sim.now(), "m").events.is_empty());
        let replayed = state_of(sim.events.clone());
        let now = sim.now();
        assert_eq!(decide(&state, now, "m"), decide(&replayed, now, "m"));
    }
}
