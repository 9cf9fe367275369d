//! GraphQL objects over the projections. Each holds the view it was read from and a key, and
//! looks its model up per field: nothing is copied out of the state.

use std::sync::Arc;

use async_graphql::{Context, Enum, Json, Object, SimpleObject};
use cairn_log::event::{
    Actor, AgentId, AppId, DeploymentId, FrameworkId, JobName, OfferId, Principal, RunId, TaskId,
    TaskOwner, Timestamp,
};
use cairn_projections::apps::{App as AppModel, DeploymentStatus as DeploymentStatusModel};
use cairn_projections::cluster::{AgentStatus as AgentStatusModel, FrameworkStatus as FwStatus};
use cairn_projections::live::View;
use serde::Serialize;

use crate::views::Views;

/// Enums are given to GraphQL as strings, as they are spelled on the wire.
pub use cairn_log::event::wire;

pub fn json<T: Serialize>(value: &T) -> Json<serde_json::Value> {
    Json(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
}

pub fn time(at: Timestamp) -> String {
    at.to_string()
}

/// `kind:name`, e.g. `user:alice`, `scheduler:apps`, `master:1`, `system`.
pub fn principal(principal: &Principal) -> String {
    match principal {
        Principal::User { name } => format!("user:{name}"),
        Principal::Agent { agent_id } => format!("agent:{agent_id}"),
        Principal::Framework { framework_id } => format!("framework:{framework_id}"),
        Principal::Scheduler { name } => format!("scheduler:{name}"),
        Principal::Master { node_id } => format!("master:{node_id}"),
        Principal::System => "system".to_owned(),
    }
}

/// The state's position: the last record folded, and anything that did not fit.
pub struct StateInfo(pub Arc<View>);

#[Object]
impl StateInfo {
    /// The last record folded into this state (0: none).
    async fn offset(&self) -> u64 {
        self.0.offset
    }
    /// When that record was appended.
    async fn at(&self) -> String {
        time(self.0.at)
    }
    /// Records that did not fit the state they were folded into.
    async fn anomalies(&self) -> u64 {
        self.0.anomalies.count
    }
    /// The latest of them.
    async fn latest_anomaly(&self) -> Option<String> {
        let latest = self.0.anomalies.latest.as_ref()?;
        Some(format!("{}: {}", latest.offset, latest.what))
    }
}

#[derive(SimpleObject)]
pub struct Resources {
    /// CPUs (0.2 is a fifth of a core).
    cpus: f64,
    /// Memory, MiB.
    mem: f64,
    /// Disk, MiB.
    disk: f64,
    /// Port ranges, both ends included.
    ports: Vec<PortRange>,
}

#[derive(SimpleObject)]
pub struct PortRange {
    begin: u16,
    end: u16,
}

impl From<&cairn_log::event::Resources> for Resources {
    fn from(r: &cairn_log::event::Resources) -> Self {
        Resources {
            cpus: r.cpus_milli as f64 / 1000.0,
            mem: r.mem_mib as f64,
            disk: r.disk_mib as f64,
            ports: r
                .ports
                .iter()
                .map(|p| PortRange {
                    begin: p.begin,
                    end: p.end,
                })
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct Leader {
    node_id: u64,
    term: u64,
    address: String,
    since: String,
}

#[derive(SimpleObject)]
pub struct Master {
    node_id: u64,
    address: String,
    joined_at: String,
}

#[derive(SimpleObject)]
pub struct Attribute {
    key: String,
    value: String,
}

pub struct Cluster(pub Arc<View>);

#[Object]
impl Cluster {
    async fn leader(&self) -> Option<Leader> {
        let l = self.0.cluster.leader.as_ref()?;
        Some(Leader {
            node_id: l.node_id.0,
            term: l.term.0,
            address: l.address.clone(),
            since: time(l.since),
        })
    }
    async fn masters(&self) -> Vec<Master> {
        self.0
            .cluster
            .masters
            .iter()
            .map(|(id, m)| Master {
                node_id: id.0,
                address: m.address.clone(),
                joined_at: time(m.joined_at),
            })
            .collect()
    }
    async fn agents(&self, status: Option<AgentStatus>) -> Vec<Agent> {
        agents(&self.0, status)
    }
    async fn frameworks(&self) -> Vec<Framework> {
        frameworks(&self.0)
    }
    async fn offers(&self) -> Vec<Offer> {
        offers(&self.0)
    }
    /// Sums over active agents.
    async fn total(&self) -> Resources {
        self.sum(|a| &a.total)
    }
    async fn used(&self) -> Resources {
        self.sum(|a| &a.used)
    }
    async fn offered(&self) -> Resources {
        self.sum(|a| &a.offered)
    }
}

impl Cluster {
    fn sum(
        &self,
        which: impl Fn(&cairn_projections::cluster::Agent) -> &cairn_log::event::Resources,
    ) -> Resources {
        let sum = self
            .0
            .cluster
            .agents
            .values()
            .filter(|a| a.status == AgentStatusModel::Active)
            .fold(cairn_log::event::Resources::default(), |sum, a| {
                sum.checked_add(which(a)).unwrap_or(sum)
            });
        Resources::from(&sum)
    }
}

pub fn agents(view: &Arc<View>, status: Option<AgentStatus>) -> Vec<Agent> {
    view.cluster
        .agents
        .iter()
        .filter(|(_, a)| status.is_none_or(|s| AgentStatus::from(a.status) == s))
        .map(|(id, _)| Agent(view.clone(), id.clone()))
        .collect()
}

pub fn frameworks(view: &Arc<View>) -> Vec<Framework> {
    view.cluster
        .frameworks
        .keys()
        .map(|id| Framework(view.clone(), id.clone()))
        .collect()
}

pub fn offers(view: &Arc<View>) -> Vec<Offer> {
    view.cluster
        .offers
        .keys()
        .map(|id| Offer(view.clone(), id.clone()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum AgentStatus {
    Active,
    Disconnected,
    Lost,
    Removed,
}

impl From<AgentStatusModel> for AgentStatus {
    fn from(s: AgentStatusModel) -> Self {
        match s {
            AgentStatusModel::Active => AgentStatus::Active,
            AgentStatusModel::Disconnected => AgentStatus::Disconnected,
            AgentStatusModel::Lost => AgentStatus::Lost,
            AgentStatusModel::Removed => AgentStatus::Removed,
        }
    }
}

pub struct Agent(pub Arc<View>, pub AgentId);

impl Agent {
    fn get(&self) -> &cairn_projections::cluster::Agent {
        &self.0.cluster.agents[&self.1]
    }
}

#[Object]
impl Agent {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn hostname(&self) -> &str {
        &self.get().hostname
    }
    async fn address(&self) -> &str {
        &self.get().address
    }
    async fn attributes(&self) -> Vec<Attribute> {
        self.get()
            .attributes
            .iter()
            .map(|(k, v)| Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }
    async fn version(&self) -> &str {
        &self.get().version
    }
    async fn status(&self) -> AgentStatus {
        self.get().status.into()
    }
    async fn registered_at(&self) -> String {
        time(self.get().registered_at)
    }
    async fn updated_at(&self) -> String {
        time(self.get().updated_at)
    }
    async fn total(&self) -> Resources {
        (&self.get().total).into()
    }
    /// Held by tasks that are not terminal.
    async fn used(&self) -> Resources {
        (&self.get().used).into()
    }
    /// Held by outstanding offers.
    async fn offered(&self) -> Resources {
        (&self.get().offered).into()
    }
    /// Neither used nor offered.
    async fn free(&self) -> Option<Resources> {
        self.0.cluster.free(&self.1).as_ref().map(Resources::from)
    }
    /// Tasks on this agent that are not terminal.
    async fn tasks(&self) -> Vec<Task> {
        self.get()
            .tasks
            .iter()
            .filter(|id| self.0.tasks.tasks.contains_key(*id))
            .map(|id| Task(self.0.clone(), id.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum FrameworkStatus {
    Active,
    Disconnected,
    Removed,
}

pub struct Framework(pub Arc<View>, pub FrameworkId);

impl Framework {
    fn get(&self) -> &cairn_projections::cluster::Framework {
        &self.0.cluster.frameworks[&self.1]
    }
}

#[Object]
impl Framework {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn name(&self) -> &str {
        &self.get().name
    }
    async fn user(&self) -> &str {
        &self.get().user
    }
    async fn roles(&self) -> &[String] {
        &self.get().roles
    }
    async fn principal(&self) -> Option<&str> {
        self.get().principal.as_deref()
    }
    async fn failover_timeout_secs(&self) -> u64 {
        self.get().failover_timeout_secs
    }
    async fn hostname(&self) -> Option<&str> {
        self.get().hostname.as_deref()
    }
    async fn webui_url(&self) -> Option<&str> {
        self.get().webui_url.as_deref()
    }
    async fn status(&self) -> FrameworkStatus {
        match self.get().status {
            FwStatus::Active => FrameworkStatus::Active,
            FwStatus::Disconnected => FrameworkStatus::Disconnected,
            FwStatus::Removed => FrameworkStatus::Removed,
        }
    }
    async fn registered_at(&self) -> String {
        time(self.get().registered_at)
    }
    async fn updated_at(&self) -> String {
        time(self.get().updated_at)
    }
    /// Roles it asked not to be offered; `*` alone means all of them.
    async fn suppressed_roles(&self) -> Vec<String> {
        self.get().suppressed.iter().cloned().collect()
    }
}

pub struct Offer(pub Arc<View>, pub OfferId);

#[Object]
impl Offer {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn framework_id(&self) -> &str {
        self.0.cluster.offers[&self.1].framework_id.as_str()
    }
    async fn agent_id(&self) -> &str {
        self.0.cluster.offers[&self.1].agent_id.as_str()
    }
    async fn resources(&self) -> Resources {
        (&self.0.cluster.offers[&self.1].resources).into()
    }
    async fn made_at(&self) -> String {
        time(self.0.cluster.offers[&self.1].made_at)
    }
}

#[derive(SimpleObject)]
pub struct Status {
    offset: u64,
    at: String,
    /// The Mesos state, e.g. `TASK_RUNNING`.
    state: String,
    /// `master`, `agent` or `executor`.
    source: String,
    reason: Option<String>,
    message: Option<String>,
    healthy: Option<bool>,
}

pub struct Task(pub Arc<View>, pub TaskId);

impl Task {
    fn get(&self) -> &cairn_projections::tasks::Task {
        &self.0.tasks.tasks[&self.1]
    }
}

#[Object]
impl Task {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn name(&self) -> &str {
        &self.get().name
    }
    async fn framework_id(&self) -> &str {
        self.get().framework_id.as_str()
    }
    async fn agent_id(&self) -> &str {
        self.get().agent_id.as_str()
    }
    async fn agent(&self) -> Option<Agent> {
        let id = &self.get().agent_id;
        self.0
            .cluster
            .agents
            .contains_key(id)
            .then(|| Agent(self.0.clone(), id.clone()))
    }
    /// The app this task is an instance of, if any.
    async fn app_id(&self) -> Option<&str> {
        match &self.get().owner {
            TaskOwner::App { app_id, .. } => Some(app_id.as_str()),
            _ => None,
        }
    }
    /// The job run this task is an attempt of, if any.
    async fn run_id(&self) -> Option<&str> {
        match &self.get().owner {
            TaskOwner::JobRun { run_id, .. } => Some(run_id.as_str()),
            _ => None,
        }
    }
    async fn resources(&self) -> Resources {
        (&self.get().resources).into()
    }
    /// The host ports it was given, in order (`PORT0`, `PORT1`, …).
    async fn ports(&self) -> &[u16] {
        &self.get().spec.ports
    }
    /// The app version it was launched at, for an app's instance.
    async fn version(&self) -> Option<String> {
        match &self.get().owner {
            TaskOwner::App { version, .. } => Some(time(*version)),
            _ => None,
        }
    }
    /// What runs: command or container, health checks, as launched.
    async fn spec(&self) -> Json<serde_json::Value> {
        json(&self.get().spec)
    }
    /// The current Mesos state, e.g. `TASK_RUNNING`.
    async fn state(&self) -> String {
        wire(&self.get().state)
    }
    async fn terminal(&self) -> bool {
        self.get().is_terminal()
    }
    async fn healthy(&self) -> Option<bool> {
        self.get().healthy
    }
    async fn launched_at(&self) -> String {
        time(self.get().launched_at)
    }
    async fn updated_at(&self) -> String {
        time(self.get().updated_at)
    }
    async fn kill_requested(&self) -> bool {
        self.get().kill_requested
    }
    /// Its stdout or stderr, read from its agent's sandbox: the last `tail` bytes (default
    /// 8 KiB), or, to follow it, what was written from `offset` on; at most 64 KiB at once.
    async fn output(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] stream: crate::sandbox::Stream,
        offset: Option<u64>,
        tail: Option<u64>,
    ) -> async_graphql::Result<crate::sandbox::Output> {
        let agent = self
            .0
            .cluster
            .agents
            .get(&self.get().agent_id)
            .ok_or_else(|| crate::error(crate::Code::NotFound, "the task's agent is unknown"))?;
        let file = format!("{}/{}", self.1.as_str(), stream.file());
        let at = match offset {
            Some(offset) => crate::sandbox::From::Offset(offset),
            None => crate::sandbox::From::Tail(tail.unwrap_or(8 * 1024)),
        };
        ctx.data_unchecked::<crate::sandbox::Sandboxes>()
            .read(&agent.address, &file, at)
            .await
    }
    /// Every state it passed through, oldest first.
    async fn statuses(&self) -> Vec<Status> {
        self.get()
            .statuses
            .iter()
            .map(|s| Status {
                offset: s.offset,
                at: time(s.at),
                state: wire(&s.state),
                source: wire(&s.source),
                reason: s.reason.clone(),
                message: s.message.clone(),
                healthy: s.healthy,
            })
            .collect()
    }
}

#[derive(SimpleObject)]
pub struct AppWaiting {
    /// Instances of the current definition it should run and does not yet.
    instances_to_launch: u32,
    /// Launches wait until then after instances failed.
    backoff_until: Option<String>,
    /// A deployment holds the app until the apps it depends on are deployed.
    held_by_deployment: Option<String>,
    /// Why no active agent can take another instance, with how many agents each rules out;
    /// empty when one can (the launch waits for its offer).
    unplaceable: Vec<String>,
}

#[derive(SimpleObject)]
pub struct TaskFailure {
    task_id: String,
    state: String,
    message: Option<String>,
    at: String,
}

#[derive(SimpleObject)]
pub struct Backoff {
    failures: u32,
    until: String,
}

/// One version of an app (the `index`th, oldest first).
pub struct AppVersion(Arc<View>, AppId, usize);

impl AppVersion {
    fn get(&self) -> &cairn_projections::apps::AppVersion {
        &self.0.apps.apps[&self.1].versions[self.2]
    }
}

#[Object]
impl AppVersion {
    async fn version(&self) -> String {
        time(self.get().version)
    }
    /// Where it was logged.
    async fn offset(&self) -> u64 {
        self.get().offset
    }
    /// `Created`, `Updated` or `Scaled`.
    async fn change(&self) -> String {
        wire(&self.get().change)
    }
    /// The definition at this version, read back from the log.
    async fn spec(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<serde_json::Value>> {
        let runner = ctx.data_unchecked::<cairn_scheduler::Runner>();
        let app = &self.0.apps.apps[&self.1];
        runner
            .spec_at(app, self.get().version)
            .map(|spec| json(&spec))
            .map_err(|e| crate::error(crate::Code::Internal, e.to_string()))
    }
}

pub struct App(pub Arc<View>, pub AppId);

impl App {
    fn get(&self) -> &AppModel {
        &self.0.apps.apps[&self.1]
    }

    fn live_tasks(&self) -> impl Iterator<Item = &cairn_projections::tasks::Task> {
        self.get()
            .instances
            .iter()
            .filter_map(|id| self.0.tasks.tasks.get(id))
    }
}

#[Object]
impl App {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    /// The definition, as validated.
    async fn spec(&self) -> Json<serde_json::Value> {
        json(&self.get().spec)
    }
    /// The definition as Marathon writes it: what `updateApp` takes back.
    async fn definition(&self) -> Json<serde_json::Value> {
        Json(cairn_scheduler::marathon::to_marathon(&self.get().spec).into())
    }
    /// Instances wanted.
    async fn instances(&self) -> u32 {
        self.get().spec.instances
    }
    /// The current version (a timestamp, as in Marathon).
    async fn version(&self) -> String {
        time(self.get().version)
    }
    /// Every version, oldest first.
    async fn versions(&self) -> Vec<AppVersion> {
        (0..self.get().versions.len())
            .map(|i| AppVersion(self.0.clone(), self.1.clone(), i))
            .collect()
    }
    async fn created_at(&self) -> String {
        time(self.get().created_at)
    }
    /// Tasks of this app that are not terminal.
    async fn tasks(&self) -> Vec<Task> {
        self.get()
            .instances
            .iter()
            .filter(|id| self.0.tasks.tasks.contains_key(*id))
            .map(|id| Task(self.0.clone(), id.clone()))
            .collect()
    }
    async fn tasks_running(&self) -> usize {
        self.live_tasks()
            .filter(|t| t.state == cairn_log::event::TaskState::Running)
            .count()
    }
    async fn tasks_staged(&self) -> usize {
        self.live_tasks()
            .filter(|t| {
                matches!(
                    t.state,
                    cairn_log::event::TaskState::Staging | cairn_log::event::TaskState::Starting
                )
            })
            .count()
    }
    async fn tasks_healthy(&self) -> usize {
        self.live_tasks()
            .filter(|t| t.healthy == Some(true))
            .count()
    }
    async fn tasks_unhealthy(&self) -> usize {
        self.live_tasks()
            .filter(|t| t.healthy == Some(false))
            .count()
    }
    /// Instances wanted and not yet launched: the launch queue.
    async fn queued(&self) -> u32 {
        let live = u32::try_from(self.get().instances.len()).unwrap_or(u32::MAX);
        self.get().spec.instances.saturating_sub(live)
    }
    /// "Why isn't it running?": what the app waits for (none when it runs all its
    /// instances): offers, its backoff after failures, a deployment step, or the agents'
    /// room and its constraints.
    async fn waiting(&self, ctx: &Context<'_>) -> Option<AppWaiting> {
        // The live state is judged now; a past one as of its own time.
        let now = if Views::is_live(ctx, &self.0) {
            ctx.data_unchecked::<cairn_scheduler::Runner>()
                .now()
                .max(self.0.at)
        } else {
            self.0.at
        };
        cairn_scheduler::apps::waiting(&self.0, &self.1, now).map(|w| AppWaiting {
            instances_to_launch: w.instances_to_launch,
            backoff_until: w.backoff_until.map(time),
            held_by_deployment: w.held_by.map(|d| d.to_string()),
            unplaceable: w.unplaceable,
        })
    }
    /// The latest instance that ended by itself (not killed on request).
    async fn last_task_failure(&self) -> Option<TaskFailure> {
        self.get().last_failure.as_ref().map(|f| TaskFailure {
            task_id: f.task_id.to_string(),
            state: wire(&f.state),
            message: f.message.clone(),
            at: time(f.at),
        })
    }
    /// Consecutive failures counted towards the launch backoff, and until when it holds.
    async fn backoff(&self) -> Option<Backoff> {
        self.get().backoff.as_ref().map(|b| Backoff {
            failures: b.failures,
            until: time(b.until),
        })
    }
    /// Deployments of this app that are running.
    async fn deployments(&self) -> Vec<Deployment> {
        self.0
            .apps
            .deployments
            .iter()
            .filter(|(_, d)| {
                d.status == DeploymentStatusModel::Running && d.app_ids.contains(&self.1)
            })
            .map(|(id, _)| Deployment(self.0.clone(), id.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum DeploymentStatus {
    Running,
    Finished,
    Failed,
    Canceled,
}

pub struct Deployment(pub Arc<View>, pub DeploymentId);

impl Deployment {
    fn get(&self) -> &cairn_projections::apps::Deployment {
        &self.0.apps.deployments[&self.1]
    }
}

#[Object]
impl Deployment {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn version(&self) -> String {
        time(self.get().version)
    }
    async fn app_ids(&self) -> Vec<&str> {
        self.get().app_ids.iter().map(|a| a.as_str()).collect()
    }
    /// The plan: steps of actions, as Marathon shows them.
    async fn steps(&self) -> Json<serde_json::Value> {
        json(&self.get().steps)
    }
    async fn total_steps(&self) -> usize {
        self.get().steps.len()
    }
    async fn completed_steps(&self) -> u32 {
        self.get().completed_steps
    }
    async fn status(&self) -> DeploymentStatus {
        deployment_status(self.get())
    }
    /// Why it failed, or whether a canceled one was rolled back.
    async fn reason(&self) -> Option<String> {
        match &self.get().status {
            DeploymentStatusModel::Failed { reason } => Some(reason.clone()),
            DeploymentStatusModel::Canceled { rolled_back: true } => Some("rolled back".into()),
            DeploymentStatusModel::Canceled { rolled_back: false } => Some("canceled".into()),
            _ => None,
        }
    }
    async fn started_at(&self) -> String {
        time(self.get().started_at)
    }
    async fn ended_at(&self) -> Option<String> {
        self.get().ended_at.map(time)
    }
}

pub fn deployment_status(d: &cairn_projections::apps::Deployment) -> DeploymentStatus {
    match d.status {
        DeploymentStatusModel::Running => DeploymentStatus::Running,
        DeploymentStatusModel::Finished => DeploymentStatus::Finished,
        DeploymentStatusModel::Failed { .. } => DeploymentStatus::Failed,
        DeploymentStatusModel::Canceled { .. } => DeploymentStatus::Canceled,
    }
}

#[derive(SimpleObject)]
pub struct MissedRun {
    scheduled_for: String,
    at: String,
    reason: String,
}

pub struct Job(pub Arc<View>, pub JobName);

impl Job {
    fn get(&self) -> &cairn_projections::jobs::Job {
        &self.0.jobs.jobs[&self.1]
    }
}

#[Object]
impl Job {
    async fn name(&self) -> &str {
        self.1.as_str()
    }
    /// The definition, as validated.
    async fn spec(&self) -> Json<serde_json::Value> {
        json(&self.get().spec)
    }
    /// The definition as Chronos writes it: what `updateJob` takes back.
    async fn definition(&self) -> Json<serde_json::Value> {
        json(&cairn_scheduler::chronos::to_chronos(&self.get().spec))
    }
    /// ISO 8601 repeating interval, `R[n]/start/period`; null for a dependent job.
    async fn schedule(&self) -> Option<&str> {
        self.get().spec.schedule.as_deref()
    }
    async fn disabled(&self) -> bool {
        self.get().spec.disabled
    }
    /// The zone the schedule's days and months follow (UTC when null).
    async fn schedule_time_zone(&self) -> Option<&str> {
        self.get().spec.schedule_time_zone.as_deref()
    }
    async fn command(&self) -> &str {
        &self.get().spec.command
    }
    async fn owner(&self) -> Option<&str> {
        self.get().spec.owner.as_deref()
    }
    /// How late a run may still start, in seconds.
    async fn epsilon_seconds(&self) -> u64 {
        self.get().spec.epsilon_secs
    }
    /// Extra attempts after a failed one.
    async fn retries(&self) -> u32 {
        self.get().spec.retries
    }
    /// `skip`, `queue` or `allow`: what a due run does while an earlier one is active.
    async fn concurrency(&self) -> String {
        wire(&self.get().spec.concurrency())
    }
    /// The next `count` times the schedule is due (at most 100), from the first not yet dealt
    /// with; empty for a dependent job or an ended schedule. A disabled job lists them too.
    async fn next_due(&self, #[graphql(default = 5)] count: u32) -> Vec<String> {
        let job = self.get();
        let (Some(first), Some(schedule)) = (job.due, job.schedule()) else {
            return Vec::new();
        };
        std::iter::successors(Some(first), |at| schedule.first_after(*at).map(|(_, t)| t))
            .take(count.min(100) as usize)
            .map(time)
            .collect()
    }
    /// The job's runs still kept (active ones and the latest finished), newest first.
    async fn history(&self, #[graphql(default = 20)] last: u32) -> Vec<Run> {
        let mut runs: Vec<(&RunId, &cairn_projections::jobs::Run)> =
            self.0.jobs.runs_of(&self.1).collect();
        runs.sort_by(|a, b| (b.1.triggered_at, b.0).cmp(&(a.1.triggered_at, a.0)));
        runs.into_iter()
            .take(last.min(500) as usize)
            .map(|(id, _)| Run(self.0.clone(), id.clone()))
            .collect()
    }
    /// How long the job's finished runs still kept took, from their first start to their
    /// end.
    async fn durations(&self) -> Durations {
        let secs = self.0.jobs.durations(&self.1);
        let at = |q: f64| cairn_projections::jobs::quantile(&secs, q);
        Durations {
            count: secs.len() as u64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: secs.last().copied(),
        }
    }
    /// Jobs whose success this one waits for.
    async fn parents(&self) -> Vec<&str> {
        self.get().spec.parents.iter().map(|p| p.as_str()).collect()
    }
    /// Jobs that wait for this one.
    async fn children(&self) -> Vec<&str> {
        self.0
            .jobs
            .children(&self.1)
            .into_iter()
            .map(|c| c.as_str())
            .collect()
    }
    async fn created_at(&self) -> String {
        time(self.get().created_at)
    }
    async fn updated_at(&self) -> String {
        time(self.get().updated_at)
    }
    async fn success_count(&self) -> u64 {
        self.get().success_count
    }
    async fn error_count(&self) -> u64 {
        self.get().error_count
    }
    async fn last_success(&self) -> Option<String> {
        self.get().last_success.map(time)
    }
    async fn last_error(&self) -> Option<String> {
        self.get().last_error.map(time)
    }
    async fn last_run(&self) -> Option<Run> {
        let id = self.get().last_run.as_ref()?;
        run(&self.0, id)
    }
    async fn active_runs(&self) -> Vec<Run> {
        self.get()
            .active_runs
            .iter()
            .filter_map(|id| run(&self.0, id))
            .collect()
    }
    /// The latest runs that were due but could not start in time, oldest first.
    async fn missed(&self) -> Vec<MissedRun> {
        self.get()
            .missed
            .iter()
            .map(|m| MissedRun {
                scheduled_for: time(m.scheduled_for),
                at: time(m.at),
                reason: m.reason.clone(),
            })
            .collect()
    }
}

/// Run durations in seconds (null without finished runs).
#[derive(SimpleObject)]
pub struct Durations {
    count: u64,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

/// The jobs and the parent → child edges between them.
#[derive(SimpleObject)]
pub struct JobGraph {
    pub jobs: Vec<Job>,
    pub edges: Vec<Dependency>,
    /// The graph in Graphviz' dot language (what Chronos' `/scheduler/graph/dot` serves).
    pub dot: String,
}

#[derive(SimpleObject)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
}

impl JobGraph {
    pub fn of(view: &Arc<View>) -> Self {
        Self {
            jobs: view
                .jobs
                .jobs
                .keys()
                .map(|name| Job(view.clone(), name.clone()))
                .collect(),
            edges: view
                .jobs
                .edges()
                .map(|(parent, child)| Dependency {
                    parent: parent.to_string(),
                    child: child.to_string(),
                })
                .collect(),
            dot: view.jobs.dot(),
        }
    }
}

pub fn run(view: &Arc<View>, id: &RunId) -> Option<Run> {
    view.jobs
        .runs
        .contains_key(id)
        .then(|| Run(view.clone(), id.clone()))
}

#[derive(SimpleObject)]
pub struct Attempt {
    attempt: u32,
    task_id: Option<String>,
    started_at: Option<String>,
    /// Why the attempt before this one was retried.
    retry_reason: Option<String>,
}

pub struct Run(pub Arc<View>, pub RunId);

impl Run {
    fn get(&self) -> &cairn_projections::jobs::Run {
        &self.0.jobs.runs[&self.1]
    }
}

#[Object]
impl Run {
    async fn id(&self) -> &str {
        self.1.as_str()
    }
    async fn job(&self) -> &str {
        self.get().job.as_str()
    }
    async fn scheduled_for(&self) -> String {
        time(self.get().scheduled_for)
    }
    /// `schedule`, `manual`, or the parents' runs that triggered it.
    async fn cause(&self) -> Json<serde_json::Value> {
        json(&self.get().cause)
    }
    async fn triggered_at(&self) -> String {
        time(self.get().triggered_at)
    }
    async fn attempts(&self) -> Vec<Attempt> {
        self.get()
            .attempts
            .iter()
            .map(|a| Attempt {
                attempt: a.attempt,
                task_id: a.task_id.as_ref().map(|t| t.to_string()),
                started_at: a.started_at.map(time),
                retry_reason: a.retry_reason.clone(),
            })
            .collect()
    }
    /// `succeeded`, `failed`, `killed` or `missed`; null while it runs.
    async fn outcome(&self) -> Option<String> {
        self.get().outcome.as_ref().map(wire)
    }
    async fn finished_at(&self) -> Option<String> {
        self.get().finished_at.map(time)
    }
    async fn message(&self) -> Option<&str> {
        self.get().message.as_deref()
    }
    /// The task of the latest attempt that started (its agent, state and history).
    async fn task(&self) -> Option<Task> {
        let id = self.latest_task()?;
        self.0
            .tasks
            .tasks
            .contains_key(id)
            .then(|| Task(self.0.clone(), id.clone()))
    }
    /// Where the latest attempt's stdout is read: the agent's sandbox file API (Mesos'
    /// `/files/read`; add `&offset=…&length=…`). `stderrUrl` likewise.
    async fn stdout_url(&self) -> Option<String> {
        self.sandbox_url("stdout")
    }
    async fn stderr_url(&self) -> Option<String> {
        self.sandbox_url("stderr")
    }
}

impl Run {
    fn latest_task(&self) -> Option<&TaskId> {
        self.get()
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.task_id.as_ref())
    }

    fn sandbox_url(&self, file: &str) -> Option<String> {
        let task_id = self.latest_task()?;
        let task = self.0.tasks.tasks.get(task_id)?;
        let agent = self.0.cluster.agents.get(&task.agent_id)?;
        Some(format!(
            "http://{}/files/read?path={task_id}/{file}",
            agent.address
        ))
    }
}

/// Who caused a record, and through which API.
#[derive(SimpleObject)]
pub struct ActorInfo {
    /// `kind:name`, e.g. `user:alice`, `scheduler:apps`, `master:1`, `system`.
    principal: String,
    /// `graphql`, `marathon`, `chronos`, `mesos`, `cli`, `agent`.
    api: Option<String>,
    remote_addr: Option<String>,
    request_id: Option<String>,
}

impl From<&Actor> for ActorInfo {
    fn from(actor: &Actor) -> Self {
        let origin = actor.origin.as_ref();
        ActorInfo {
            principal: principal(&actor.principal),
            api: origin.map(|o| o.api.clone()),
            remote_addr: origin.and_then(|o| o.remote_addr.clone()),
            request_id: origin.and_then(|o| o.request_id.clone()),
        }
    }
}
