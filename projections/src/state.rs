//! The whole read side as one fold: every record updates the models it concerns.
//!
//! One `match` over the event, rather than one fold per model, because some facts touch
//! several models at once (a task ending frees its agent's resources and leaves its app's
//! instances) and each must see the others' state *before* the record.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    Actor, Event, Principal, Resources, RunCause, RunId, RunOutcome, TaskOwner, TaskState,
    Timestamp,
};
use cairn_log::Record;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::apps::{
    App, AppVersion, Apps, Deployment, DeploymentStatus, LaunchBackoff, TaskFailure, VersionChange,
};
use crate::audit::{Audit, AuditEntry};
use crate::cluster::{
    Agent, AgentStatus, Cluster, Filters, Framework, FrameworkStatus, Leader, Master,
    OutstandingOffer,
};
use crate::jobs::{Attempt, Job, Jobs, MissedRun, Run};
use crate::tasks::{Status, Task, Tasks};

/// Every read model, as of `offset`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The last record folded (0: none).
    pub offset: u64,
    /// When that record was appended.
    pub at: Timestamp,
    pub cluster: Cluster,
    pub tasks: Tasks,
    pub apps: Apps,
    pub jobs: Jobs,
    pub audit: Audit,
    pub anomalies: Anomalies,
    /// How much ended history the models keep; part of the state, so that a checkpoint folds
    /// on exactly as the state it was taken from.
    pub retention: Retention,
}

/// How many ended things the read models keep, like Mesos' `max_completed_tasks_per_framework`.
/// Memory and checkpoints stay bounded by what is live, not by the length of the log; the log
/// keeps everything, and the state as of an earlier offset still shows what has since been
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Terminal tasks, with their status history.
    pub ended_tasks: usize,
    /// Finished job runs.
    pub ended_runs: usize,
    /// Finished, failed or canceled deployments.
    pub ended_deployments: usize,
    /// Missed runs, per job.
    pub missed_per_job: usize,
    /// Removed frameworks, like Mesos' `max_completed_frameworks`: a cluster where batch
    /// frameworks (Spark, say) come and go registers new ones all the time.
    pub removed_frameworks: usize,
    /// Audit entries (the log keeps every change; the state as of an earlier offset shows
    /// the entries of that time).
    pub audit_entries: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            ended_tasks: 10_000,
            ended_runs: 10_000,
            ended_deployments: 1_000,
            missed_per_job: 100,
            removed_frameworks: 50,
            audit_entries: 10_000,
        }
    }
}

/// Records that did not fit the state they were folded into (a status for an unknown task, a
/// second trigger of the same run, …). A fold never fails, so that replay never stops halfway;
/// it counts what it could not apply and remembers the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomalies {
    pub count: u64,
    pub latest: Option<Anomaly>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub offset: u64,
    pub what: String,
}

impl Anomalies {
    fn record(&mut self, offset: u64, what: String) {
        self.count += 1;
        self.latest = Some(Anomaly { offset, what });
    }
}

impl crate::Fold for State {
    fn apply(&mut self, record: Record) {
        let Record {
            offset,
            at,
            actor,
            event,
            ..
        } = record;
        let offset = offset.get();
        if offset != self.offset + 1 {
            self.anomaly(
                offset,
                format!("record {offset} folded after {}", self.offset),
            );
        }
        self.offset = offset;
        self.at = at;
        self.audit_record(offset, at, actor, &event);
        self.apply_event(offset, at, event);
    }
}

impl State {
    /// An empty state that keeps `retention` of ended history.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }

    fn anomaly(&mut self, offset: u64, what: String) {
        self.anomalies.record(offset, what);
    }

    /// Adds or removes `delta` to one of an agent's resource sums, recording an anomaly if the
    /// arithmetic does not hold (which would mean an over-committed agent). Gives the agent back
    /// for the caller's other changes to it: one lookup in the agents' map, not two.
    fn adjust(
        &mut self,
        offset: u64,
        agent_id: &cairn_log::event::AgentId,
        which: Sum,
        delta: &Resources,
        add: bool,
    ) -> Option<&mut Agent> {
        // Borrowed apart, so that the agent can be returned while an anomaly is recorded.
        let (agents, anomalies) = (&mut self.cluster.agents, &mut self.anomalies);
        let Some(agent) = agents.get_mut(agent_id) else {
            anomalies.record(offset, format!("resources of unknown agent {agent_id}"));
            return None;
        };
        let sum = match which {
            Sum::Used => &mut agent.used,
            Sum::Offered => &mut agent.offered,
        };
        let added = if add {
            sum.try_add(delta)
        } else {
            sum.try_sub(delta)
        };
        if !added {
            anomalies.record(
                offset,
                format!("{which:?} resources of agent {agent_id} do not add up"),
            );
        }
        Some(agent)
    }

    fn audit_record(&mut self, offset: u64, at: Timestamp, actor: Actor, event: &Event) {
        if !matches!(
            actor.principal,
            Principal::User { .. } | Principal::Framework { .. }
        ) {
            return;
        }
        let Some(subject) = subject(event) else {
            return;
        };
        let previous = self.audit.latest.insert(subject.clone(), offset);
        if self.audit.entries.len() >= self.retention.audit_entries {
            if let Some(dropped) = self.audit.entries.pop_front() {
                if self.audit.latest.get(&dropped.subject) == Some(&dropped.offset) {
                    self.audit.latest.remove(&dropped.subject);
                }
            }
        }
        self.audit.entries.push_back(AuditEntry {
            offset,
            at,
            actor,
            kind: CompactString::const_new(event.kind().into()),
            subject,
            previous,
        });
    }

    fn apply_event(&mut self, offset: u64, at: Timestamp, event: Event) {
        match event {
            Event::LeaderElected(e) => {
                self.cluster.leader = Some(Leader {
                    node_id: e.node_id,
                    term: e.term,
                    address: e.address,
                    since: at,
                });
            }
            Event::MasterJoined(e) => {
                self.cluster.masters.insert(
                    e.node_id,
                    Master {
                        address: e.address,
                        joined_at: at,
                    },
                );
            }
            Event::MasterLeft(e) => {
                if self.cluster.masters.remove(&e.node_id).is_none() {
                    self.anomaly(offset, format!("unknown master {} left", e.node_id));
                }
            }
            Event::FormatBarrier(_) => {}

            Event::AgentRegistered(e) => {
                let agent = Agent {
                    hostname: e.hostname,
                    address: e.address,
                    attributes: e.attributes,
                    version: e.version,
                    status: AgentStatus::Active,
                    registered_at: at,
                    updated_at: at,
                    total: e.resources,
                    used: Resources::default(),
                    offered: Resources::default(),
                    tasks: BTreeSet::new(),
                };
                if self
                    .cluster
                    .agents
                    .insert(e.agent_id.clone(), agent)
                    .is_some()
                {
                    self.anomaly(offset, format!("agent {} registered twice", e.agent_id));
                }
            }
            Event::AgentReregistered(e) => match self.cluster.agents.get_mut(&e.agent_id) {
                Some(agent) => {
                    agent.hostname = e.hostname;
                    agent.address = e.address;
                    agent.attributes = e.attributes;
                    agent.version = e.version;
                    agent.total = e.resources;
                    agent.status = AgentStatus::Active;
                    agent.updated_at = at;
                }
                None => self.anomaly(
                    offset,
                    format!("unknown agent {} re-registered", e.agent_id),
                ),
            },
            Event::AgentDisconnected(e) => {
                self.agent_status(offset, at, &e.agent_id, AgentStatus::Disconnected)
            }
            Event::AgentLost(e) => self.agent_status(offset, at, &e.agent_id, AgentStatus::Lost),
            Event::AgentRemoved(e) => {
                self.agent_status(offset, at, &e.agent_id, AgentStatus::Removed)
            }

            Event::FrameworkRegistered(e) => {
                let framework = Framework {
                    name: e.name,
                    user: e.user,
                    roles: e.roles,
                    principal: e.principal,
                    failover_timeout_secs: e.failover_timeout_secs,
                    hostname: e.hostname,
                    webui_url: e.webui_url,
                    status: FrameworkStatus::Active,
                    registered_at: at,
                    updated_at: at,
                    suppressed: BTreeSet::new(),
                    filters: Filters::default(),
                };
                if self
                    .cluster
                    .frameworks
                    .insert(e.framework_id.clone(), framework)
                    .is_some()
                {
                    self.anomaly(
                        offset,
                        format!("framework {} registered twice", e.framework_id),
                    );
                }
            }
            Event::FrameworkReregistered(e) => {
                self.framework_status(offset, at, &e.framework_id, FrameworkStatus::Active)
            }
            Event::FrameworkDisconnected(e) => {
                self.framework_status(offset, at, &e.framework_id, FrameworkStatus::Disconnected)
            }
            Event::FrameworkRemoved(e) => {
                self.framework_status(offset, at, &e.framework_id, FrameworkStatus::Removed)
            }
            Event::OffersSuppressed(e) => match self.cluster.frameworks.get_mut(&e.framework_id) {
                Some(f) if e.roles.is_empty() => f.suppressed = BTreeSet::from(["*".to_owned()]),
                Some(f) => f.suppressed.extend(e.roles.iter().cloned()),
                None => self.anomaly(
                    offset,
                    format!("unknown framework {} suppressed offers", e.framework_id),
                ),
            },
            Event::OffersRevived(e) => match self.cluster.frameworks.get_mut(&e.framework_id) {
                Some(f) if e.roles.is_empty() => {
                    f.suppressed.clear();
                    f.filters.clear();
                }
                Some(f) => {
                    f.filters.clear();
                    f.suppressed.remove("*");
                    for role in &e.roles {
                        f.suppressed.remove(role);
                    }
                }
                None => self.anomaly(
                    offset,
                    format!("unknown framework {} revived offers", e.framework_id),
                ),
            },

            Event::OffersMade(e) => {
                for offer in e.offers {
                    self.adjust(
                        offset,
                        &offer.agent_id,
                        Sum::Offered,
                        &offer.resources,
                        true,
                    );
                    let outstanding = OutstandingOffer {
                        framework_id: offer.framework_id,
                        agent_id: offer.agent_id,
                        resources: offer.resources,
                        made_at: at,
                    };
                    if self
                        .cluster
                        .offers
                        .insert(offer.offer_id.clone(), outstanding)
                        .is_some()
                    {
                        self.anomaly(offset, format!("offer {} made twice", offer.offer_id));
                    }
                }
            }
            Event::OfferAccepted(e) => self.close_offer(offset, &e.offer_id),
            Event::OffersDeclined(e) => {
                let until = Timestamp::from_micros(
                    at.as_micros().saturating_add(
                        i64::try_from(e.refuse_millis)
                            .unwrap_or(i64::MAX / 1000)
                            .saturating_mul(1000),
                    ),
                );
                for offer_id in &e.offer_ids {
                    let agent = self
                        .cluster
                        .offers
                        .get(offer_id)
                        .map(|o| o.agent_id.clone());
                    self.close_offer(offset, offer_id);
                    if let (Some(agent), Some(f)) =
                        (agent, self.cluster.frameworks.get_mut(&e.framework_id))
                    {
                        if e.refuse_millis > 0 {
                            f.filters.insert(agent, until);
                        }
                    }
                }
                // Filters that have run out are dropped, so they do not pile up.
                if let Some(f) = self.cluster.frameworks.get_mut(&e.framework_id) {
                    f.filters.expire(at);
                }
            }
            Event::OfferRescinded(e) => self.close_offer(offset, &e.offer_id),

            Event::TaskLaunched(e) => {
                if self.tasks.tasks.contains_key(&e.task_id) {
                    return self.anomaly(offset, format!("task {} launched twice", e.task_id));
                }
                let staging = Status {
                    offset,
                    at,
                    state: cairn_log::event::TaskState::Staging,
                    source: cairn_log::event::StatusSource::Master,
                    reason: None,
                    message: None,
                    healthy: None,
                    uuid: None,
                };
                self.tasks.tasks.insert(
                    e.task_id.clone(),
                    Task {
                        name: e.name,
                        framework_id: e.framework_id,
                        agent_id: e.agent_id.clone(),
                        owner: e.owner.clone(),
                        resources: e.resources.clone(),
                        spec: e.spec,
                        state: staging.state,
                        healthy: None,
                        launched_at: at,
                        updated_at: at,
                        kill_requested: false,
                        statuses: first_statuses(staging),
                    },
                );
                // The first launch from an offer accepts it; the others find it closed.
                if let Some(offer_id) = &e.offer_id {
                    self.take_offer(offset, offer_id);
                }
                if let Some(agent) = self.adjust(offset, &e.agent_id, Sum::Used, &e.resources, true)
                {
                    agent.tasks.insert(e.task_id.clone());
                }
                if let TaskOwner::App { app_id, .. } = &e.owner {
                    match self.apps.apps.get_mut(app_id) {
                        Some(app) => {
                            app.instances.insert(e.task_id.clone());
                        }
                        None => self.anomaly(
                            offset,
                            format!("task {} of unknown app {app_id}", e.task_id),
                        ),
                    }
                }
                if let TaskOwner::JobRun {
                    run_id, attempt, ..
                } = &e.owner
                {
                    if let Some(run) = self.jobs.runs.get_mut(run_id) {
                        if let Some(a) = run.attempts.iter_mut().find(|a| a.attempt == *attempt) {
                            a.task_id.get_or_insert_with(|| e.task_id.clone());
                        }
                    }
                }
            }
            Event::TaskStatusUpdated(e) => {
                let Some(task) = self.tasks.tasks.get_mut(&e.task_id) else {
                    return self.anomaly(offset, format!("status for unknown task {}", e.task_id));
                };
                if task.is_terminal() {
                    return self.anomaly(
                        offset,
                        format!("status for task {} after it ended", e.task_id),
                    );
                }
                task.statuses.push(Status {
                    offset,
                    at,
                    state: e.state,
                    source: e.source,
                    reason: e.reason,
                    message: e.message,
                    healthy: e.healthy,
                    uuid: e.status_uuid,
                });
                task.state = e.state;
                if e.healthy.is_some() {
                    task.healthy = e.healthy;
                }
                task.updated_at = at;
                if e.state.is_terminal() {
                    let (agent_id, resources, owner, kill_requested) = (
                        task.agent_id.clone(),
                        task.resources.clone(),
                        task.owner.clone(),
                        task.kill_requested,
                    );
                    // Moved into the status above; a failure repeats it.
                    let message = task.statuses.last().and_then(|s| s.message.clone());
                    if let Some(agent) =
                        self.adjust(offset, &agent_id, Sum::Used, &resources, false)
                    {
                        agent.tasks.remove(&e.task_id);
                    }
                    if let TaskOwner::App { app_id, .. } = owner {
                        if let Some(app) = self.apps.apps.get_mut(&app_id) {
                            app.instances.remove(&e.task_id);
                            // Killed on request is not a failure; neither is the agent's
                            // loss (the app did nothing wrong, and is replaced at once).
                            let failed = !kill_requested
                                && matches!(
                                    e.state,
                                    TaskState::Finished
                                        | TaskState::Failed
                                        | TaskState::Killed
                                        | TaskState::Error
                                        | TaskState::Dropped
                                );
                            if failed {
                                app.backoff = Some(LaunchBackoff::after_failure(
                                    app.backoff.as_ref(),
                                    &app.spec.backoff,
                                    at,
                                ));
                                app.last_failure = Some(TaskFailure {
                                    task_id: e.task_id.clone(),
                                    state: e.state,
                                    message,
                                    at,
                                });
                            }
                        }
                    }
                    let kept = self.retention.ended_tasks;
                    if let Some(dropped) = retire(&mut self.tasks.ended, offset, &e.task_id, kept) {
                        self.tasks.tasks.remove(&dropped);
                    }
                }
            }
            Event::TaskKillRequested(e) => match self.tasks.tasks.get_mut(&e.task_id) {
                Some(task) => task.kill_requested = true,
                None => self.anomaly(offset, format!("kill of unknown task {}", e.task_id)),
            },

            Event::AppCreated(e) => {
                let app = App {
                    spec: Box::new(e.spec),
                    version: e.version,
                    versions: vec![AppVersion {
                        version: e.version,
                        offset,
                        change: VersionChange::Created,
                    }],
                    created_at: at,
                    instances: BTreeSet::new(),
                    backoff: None,
                    last_failure: None,
                };
                if self.apps.apps.insert(e.app_id.clone(), app).is_some() {
                    self.anomaly(offset, format!("app {} created twice", e.app_id));
                }
            }
            Event::AppUpdated(e) => match self.apps.apps.get_mut(&e.app_id) {
                Some(app) => {
                    *app.spec = e.spec;
                    app.version = e.version;
                    app.backoff = None;
                    app.versions.push(AppVersion {
                        version: e.version,
                        offset,
                        change: VersionChange::Updated,
                    });
                }
                None => self.anomaly(offset, format!("update of unknown app {}", e.app_id)),
            },
            Event::AppScaled(e) => match self.apps.apps.get_mut(&e.app_id) {
                Some(app) => {
                    app.spec.instances = e.instances;
                    app.version = e.version;
                    app.versions.push(AppVersion {
                        version: e.version,
                        offset,
                        change: VersionChange::Scaled,
                    });
                }
                None => self.anomaly(offset, format!("scale of unknown app {}", e.app_id)),
            },
            Event::AppDeleted(e) => {
                if self.apps.apps.remove(&e.app_id).is_none() {
                    self.anomaly(offset, format!("delete of unknown app {}", e.app_id));
                }
            }
            Event::AppBackoffReset(e) => match self.apps.apps.get_mut(&e.app_id) {
                Some(app) => app.backoff = None,
                None => self.anomaly(offset, format!("delay reset of unknown app {}", e.app_id)),
            },
            Event::DeploymentStarted(e) => {
                let deployment = Deployment {
                    version: e.version,
                    app_ids: e.app_ids,
                    steps: e.steps,
                    completed_steps: 0,
                    status: DeploymentStatus::Running,
                    started_at: at,
                    ended_at: None,
                };
                if self
                    .apps
                    .deployments
                    .insert(e.deployment_id.clone(), deployment)
                    .is_some()
                {
                    self.anomaly(
                        offset,
                        format!("deployment {} started twice", e.deployment_id),
                    );
                }
            }
            Event::DeploymentStepFinished(e) => {
                match self.apps.deployments.get_mut(&e.deployment_id) {
                    Some(d) if d.status == DeploymentStatus::Running => {
                        d.completed_steps = d.completed_steps.max(e.step)
                    }
                    _ => self.anomaly(
                        offset,
                        format!("step of deployment {} not running", e.deployment_id),
                    ),
                }
            }
            Event::DeploymentFinished(e) => {
                self.end_deployment(offset, at, &e.deployment_id, DeploymentStatus::Finished)
            }
            Event::DeploymentFailed(e) => self.end_deployment(
                offset,
                at,
                &e.deployment_id,
                DeploymentStatus::Failed { reason: e.reason },
            ),
            Event::DeploymentCanceled(e) => self.end_deployment(
                offset,
                at,
                &e.deployment_id,
                DeploymentStatus::Canceled {
                    rolled_back: e.rolled_back,
                },
            ),

            Event::JobCreated(e) => {
                let job = Job {
                    spec: Box::new(e.spec),
                    created_at: at,
                    updated_at: at,
                    success_count: 0,
                    error_count: 0,
                    last_success: None,
                    last_error: None,
                    last_run: None,
                    last_success_run: None,
                    schedule_from: at,
                    schedule_cursor: None,
                    parents_cursor: None,
                    due: None,
                    active_runs: BTreeSet::new(),
                    triggered: BTreeMap::new(),
                    missed: Vec::new(),
                };
                let job = Job {
                    due: job.next_due(),
                    ..job
                };
                if self.jobs.jobs.insert(e.job.clone(), job).is_some() {
                    self.anomaly(offset, format!("job {} created twice", e.job));
                }
            }
            Event::JobUpdated(e) => match self.jobs.jobs.get_mut(&e.job) {
                Some(job) => {
                    let rescheduled = job.spec.schedule != e.spec.schedule
                        || job.spec.schedule_time_zone != e.spec.schedule_time_zone
                        || (job.spec.disabled && !e.spec.disabled);
                    if rescheduled {
                        job.schedule_from = at;
                    }
                    *job.spec = e.spec;
                    job.updated_at = at;
                    job.due = job.next_due();
                }
                None => self.anomaly(offset, format!("update of unknown job {}", e.job)),
            },
            Event::JobDeleted(e) => {
                if self.jobs.jobs.remove(&e.job).is_none() {
                    self.anomaly(offset, format!("delete of unknown job {}", e.job));
                }
            }
            Event::JobRunTriggered(e) => {
                let Some(job) = self.jobs.jobs.get_mut(&e.job) else {
                    return self.anomaly(offset, format!("run of unknown job {}", e.job));
                };
                if let Some(earlier) = job.triggered.get(&e.scheduled_for) {
                    let what = format!(
                        "run of {} for {} triggered again (first: {earlier})",
                        e.job, e.scheduled_for
                    );
                    return self.anomaly(offset, what);
                }
                job.triggered.insert(e.scheduled_for, e.run_id.clone());
                // A manual run moves no cursor: the schedule and the parents go on as before.
                match e.cause {
                    RunCause::Schedule => {
                        job.schedule_cursor = job.schedule_cursor.max(Some(e.scheduled_for));
                        job.due = job.next_due();
                    }
                    RunCause::Parents { .. } => {
                        job.parents_cursor = job.parents_cursor.max(Some(e.scheduled_for));
                    }
                    RunCause::Manual => {}
                }
                job.last_run = Some(e.run_id.clone());
                job.active_runs.insert(e.run_id.clone());
                self.jobs.runs.insert(
                    e.run_id,
                    Run {
                        job: e.job,
                        scheduled_for: e.scheduled_for,
                        cause: e.cause,
                        triggered_at: at,
                        attempts: Vec::new(),
                        outcome: None,
                        finished_at: None,
                        message: None,
                    },
                );
            }
            Event::JobRunStarted(e) => match self.jobs.runs.get_mut(&e.run_id) {
                Some(run) if run.outcome.is_none() => {
                    match run.attempts.iter_mut().find(|a| a.attempt == e.attempt) {
                        Some(a) => {
                            a.task_id = Some(e.task_id);
                            a.started_at = Some(at);
                        }
                        None => run.attempts.push(Attempt {
                            attempt: e.attempt,
                            task_id: Some(e.task_id),
                            started_at: Some(at),
                            retry_reason: None,
                            not_before: None,
                        }),
                    }
                }
                _ => self.anomaly(
                    offset,
                    format!("start of run {} that is not active", e.run_id),
                ),
            },
            Event::JobRunRetried(e) => match self.jobs.runs.get_mut(&e.run_id) {
                Some(run) if run.outcome.is_none() => run.attempts.push(Attempt {
                    attempt: e.attempt,
                    task_id: None,
                    started_at: None,
                    retry_reason: Some(e.reason),
                    not_before: e.not_before,
                }),
                _ => self.anomaly(
                    offset,
                    format!("retry of run {} that is not active", e.run_id),
                ),
            },
            Event::JobRunFinished(e) => {
                self.finish_run(offset, at, &e.run_id, e.outcome, e.message)
            }
            Event::JobRunMissed(e) => {
                let Some(job) = self.jobs.jobs.get_mut(&e.job) else {
                    return self.anomaly(offset, format!("missed run of unknown job {}", e.job));
                };
                job.missed.push(MissedRun {
                    scheduled_for: e.scheduled_for,
                    at,
                    reason: e.reason.clone(),
                });
                let excess = job
                    .missed
                    .len()
                    .saturating_sub(self.retention.missed_per_job);
                job.missed.drain(..excess);
                match &e.run_id {
                    Some(run_id) => {
                        let missed = RunOutcome::Missed;
                        self.finish_run(offset, at, run_id, missed, Some(e.reason.clone()));
                    }
                    // A due time (of the schedule, or of the parents' success) that was
                    // never triggered.
                    None if job.spec.parents.is_empty() => {
                        job.schedule_cursor = job.schedule_cursor.max(Some(e.scheduled_for));
                        job.due = job.next_due();
                    }
                    None => job.parents_cursor = job.parents_cursor.max(Some(e.scheduled_for)),
                }
            }
        }
    }

    fn agent_status(
        &mut self,
        offset: u64,
        at: Timestamp,
        agent_id: &cairn_log::event::AgentId,
        status: AgentStatus,
    ) {
        match self.cluster.agents.get_mut(agent_id) {
            Some(agent) => {
                agent.status = status;
                agent.updated_at = at;
            }
            None => self.anomaly(
                offset,
                format!("status {status:?} of unknown agent {agent_id}"),
            ),
        }
    }

    fn framework_status(
        &mut self,
        offset: u64,
        at: Timestamp,
        framework_id: &cairn_log::event::FrameworkId,
        status: FrameworkStatus,
    ) {
        let Some(f) = self.cluster.frameworks.get_mut(framework_id) else {
            return self.anomaly(
                offset,
                format!("status {status:?} of unknown framework {framework_id}"),
            );
        };
        let was_removed = f.status == FrameworkStatus::Removed;
        f.status = status;
        f.updated_at = at;
        let removed = &mut self.cluster.removed_frameworks;
        if was_removed {
            // Back, or removed again: its time in the window counts from now.
            removed.retain(|_, id| id != framework_id);
        }
        if status == FrameworkStatus::Removed {
            let kept = self.retention.removed_frameworks;
            if let Some(dropped) = retire(removed, offset, framework_id, kept) {
                self.cluster.frameworks.remove(&dropped);
            }
        }
    }

    fn close_offer(&mut self, offset: u64, offer_id: &cairn_log::event::OfferId) {
        if !self.take_offer(offset, offer_id) {
            self.anomaly(offset, format!("unknown offer {offer_id}"));
        }
    }

    /// Removes an outstanding offer and its resources from its agent's offered sum; whether
    /// it was outstanding. One search of the offers' map.
    fn take_offer(&mut self, offset: u64, offer_id: &cairn_log::event::OfferId) -> bool {
        let Some(offer) = self.cluster.offers.remove(offer_id) else {
            return false;
        };
        self.adjust(
            offset,
            &offer.agent_id,
            Sum::Offered,
            &offer.resources,
            false,
        );
        true
    }

    fn end_deployment(
        &mut self,
        offset: u64,
        at: Timestamp,
        deployment_id: &cairn_log::event::DeploymentId,
        status: DeploymentStatus,
    ) {
        match self.apps.deployments.get_mut(deployment_id) {
            Some(d) if d.status == DeploymentStatus::Running => {
                d.status = status;
                d.ended_at = Some(at);
                let kept = self.retention.ended_deployments;
                if let Some(dropped) = retire(&mut self.apps.ended, offset, deployment_id, kept) {
                    self.apps.deployments.remove(&dropped);
                }
            }
            _ => self.anomaly(
                offset,
                format!("end of deployment {deployment_id} that is not running"),
            ),
        }
    }

    /// Ends an active run with `outcome`, and counts it on its job.
    fn finish_run(
        &mut self,
        offset: u64,
        at: Timestamp,
        run_id: &RunId,
        outcome: RunOutcome,
        message: Option<String>,
    ) {
        let Some(run) = self
            .jobs
            .runs
            .get_mut(run_id)
            .filter(|r| r.outcome.is_none())
        else {
            return self.anomaly(offset, format!("end of run {run_id} that is not active"));
        };
        run.outcome = Some(outcome);
        run.finished_at = Some(at);
        run.message = message;
        let job_name = run.job.clone();
        let kept = self.retention.ended_runs;
        if let Some(dropped) = retire(&mut self.jobs.ended, offset, run_id, kept) {
            self.drop_run(&dropped);
        }
        if let Some(job) = self.jobs.jobs.get_mut(&job_name) {
            job.active_runs.remove(run_id);
            match outcome {
                RunOutcome::Succeeded => {
                    job.success_count += 1;
                    job.last_success = Some(at);
                    job.last_success_run = Some(run_id.clone());
                }
                RunOutcome::Failed | RunOutcome::Killed => {
                    job.error_count += 1;
                    job.last_error = Some(at);
                }
                RunOutcome::Missed => {}
            }
        }
    }

    /// Forgets a finished run that fell out of retention, with its trigger.
    fn drop_run(&mut self, run_id: &cairn_log::event::RunId) {
        let Some(run) = self.jobs.runs.remove(run_id) else {
            return;
        };
        if let Some(job) = self.jobs.jobs.get_mut(&run.job) {
            if job.triggered.get(&run.scheduled_for) == Some(run_id) {
                job.triggered.remove(&run.scheduled_for);
            }
        }
    }
}

/// Records `id` as ended at `offset` in a retention window of `kept`; returns the oldest id if
/// it fell out.
fn retire<K: Clone>(ended: &mut BTreeMap<u64, K>, offset: u64, id: &K, kept: usize) -> Option<K> {
    ended.insert(offset, id.clone());
    if ended.len() > kept {
        ended.pop_first().map(|(_, dropped)| dropped)
    } else {
        None
    }
}

/// A task's status history at launch: room for the states most tasks pass through (staging,
/// starting, running, an end), so that it is allocated once, not allocated and then grown.
fn first_statuses(staging: Status) -> Vec<Status> {
    let mut statuses = Vec::with_capacity(4);
    statuses.push(staging);
    statuses
}

/// Which per-agent resource sum to adjust.
#[derive(Debug, Clone, Copy)]
enum Sum {
    Used,
    Offered,
}

/// What an event changes, for the audit trail.
fn subject(event: &Event) -> Option<CompactString> {
    let (tag, id) = match event {
        Event::AppCreated(e) => ("app", e.app_id.as_str()),
        Event::AppUpdated(e) => ("app", e.app_id.as_str()),
        Event::AppScaled(e) => ("app", e.app_id.as_str()),
        Event::AppDeleted(e) => ("app", e.app_id.as_str()),
        Event::AppBackoffReset(e) => ("app", e.app_id.as_str()),
        Event::DeploymentCanceled(e) => ("deployment", e.deployment_id.as_str()),
        Event::JobCreated(e) => ("job", e.job.as_str()),
        Event::JobUpdated(e) => ("job", e.job.as_str()),
        Event::JobDeleted(e) => ("job", e.job.as_str()),
        Event::JobRunTriggered(e) => ("job", e.job.as_str()),
        Event::TaskLaunched(e) => ("task", e.task_id.as_str()),
        Event::TaskKillRequested(e) => ("task", e.task_id.as_str()),
        Event::AgentRemoved(e) => ("agent", e.agent_id.as_str()),
        Event::FrameworkRegistered(e) => ("framework", e.framework_id.as_str()),
        Event::FrameworkRemoved(e) => ("framework", e.framework_id.as_str()),
        Event::OffersSuppressed(e) => ("framework", e.framework_id.as_str()),
        Event::OffersRevived(e) => ("framework", e.framework_id.as_str()),
        Event::OfferAccepted(e) => ("offer", e.offer_id.as_str()),
        Event::OffersDeclined(e) => ("framework", e.framework_id.as_str()),
        _ => return None,
    };
    // Joined by hand: through `format_compact!`, `core::fmt` was a quarter of the audit's time.
    let mut subject = CompactString::with_capacity(tag.len() + 1 + id.len());
    subject.push_str(tag);
    subject.push(':');
    subject.push_str(id);
    Some(subject)
}

#[cfg(test)]
mod tests {
    use cairn_log::event::{
        Actor, FrameworkId, FrameworkRegistered, FrameworkRemoved, FrameworkReregistered, Term,
    };
    use cairn_log::{Offset, Record};

    use super::*;
    use crate::Fold;

    fn fold(retention: Retention, events: Vec<Event>) -> State {
        let mut state = State::with_retention(retention);
        for (i, event) in events.into_iter().enumerate() {
            state.apply(Record {
                offset: Offset::new(i as u64 + 1).expect("offsets start at 1"),
                term: Term(1),
                at: Timestamp::from_micros(i as i64),
                actor: Actor::system(),
                event,
            });
        }
        state
    }

    fn fw(name: &str) -> FrameworkId {
        FrameworkId::new(name).expect("valid id")
    }

    fn registered(name: &str) -> Event {
        Event::FrameworkRegistered(Box::new(FrameworkRegistered {
            framework_id: fw(name),
            name: name.into(),
            user: "root".into(),
            roles: vec![],
            principal: None,
            failover_timeout_secs: 0,
            hostname: None,
            webui_url: None,
        }))
    }

    fn removed(name: &str) -> Event {
        Event::FrameworkRemoved(FrameworkRemoved {
            framework_id: fw(name),
            reason: "done".into(),
        })
    }

    #[test]
    fn only_the_latest_removed_frameworks_are_kept_and_a_returning_one_leaves_the_window() {
        let retention = Retention {
            removed_frameworks: 1,
            ..Retention::default()
        };
        let state = fold(
            retention,
            vec![
                registered("a"),
                registered("b"),
                registered("c"),
                removed("a"),
                removed("b"),
                Event::FrameworkReregistered(FrameworkReregistered {
                    framework_id: fw("b"),
                }),
                removed("c"),
            ],
        );
        assert_eq!(state.anomalies.count, 0, "{:?}", state.anomalies.latest);
        let frameworks: Vec<_> = state
            .cluster
            .frameworks
            .iter()
            .map(|(id, f)| (id.as_str(), f.status))
            .collect();
        // `a` fell out when `b` was removed; `b` came back, so `c`'s removal keeps it.
        assert_eq!(
            frameworks,
            [
                ("b", FrameworkStatus::Active),
                ("c", FrameworkStatus::Removed)
            ]
        );
        assert_eq!(
            state.cluster.removed_frameworks,
            BTreeMap::from([(7, fw("c"))])
        );
    }
}
