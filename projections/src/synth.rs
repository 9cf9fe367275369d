//! Synthetic but valid histories, for property tests and benchmarks (feature `synth`).
//!
//! [`history`] turns a list of arbitrary choices into events that fit the world built so far:
//! agents register and come and go, frameworks receive offers, tasks launch (for users, apps
//! and job runs) and change state, apps are created, updated, scaled and deployed, jobs are
//! created with parents, updated and deleted (their active runs killed first), and their runs
//! are triggered, started, retried, finished or missed.
//! Any list of choices gives a valid history, so a property test can shrink it freely.

use std::collections::BTreeMap;

use cairn_log::event::*;
use cairn_log::{Offset, Record};

/// The world a history has built so far.
#[derive(Debug, Default)]
struct World {
    n: u64,
    at: i64,
    agents: Vec<AgentId>,
    frameworks: Vec<FrameworkId>,
    offers: Vec<OfferId>,
    tasks: Vec<TaskId>,
    apps: Vec<AppId>,
    deployments: Vec<DeploymentId>,
    jobs: Vec<JobName>,
    /// Each dependent job's parent, and how many jobs name each parent: a parent is not
    /// deleted (the API refuses it).
    parent_of: BTreeMap<JobName, JobName>,
    children: BTreeMap<JobName, u32>,
    runs: Vec<(RunId, JobName, u32)>,
    /// Records made and not yet handed out.
    records: Vec<Record>,
    /// Records made so far, handed out or not.
    made: u64,
}

fn id<T>(make: impl Fn(String) -> Result<T, IdError>, prefix: &str, n: u64) -> T {
    make(format!("{prefix}-{n}")).unwrap()
}

fn pick<T: Clone>(items: &[T], pick: u16) -> Option<T> {
    pick_at(items, pick).map(|(_, item)| item)
}

/// An item and its index, so that it can be removed in O(1) (`swap_remove`): the generator
/// must stay linear over histories of millions of records.
fn pick_at<T: Clone>(items: &[T], pick: u16) -> Option<(usize, T)> {
    (!items.is_empty()).then(|| {
        let i = pick as usize % items.len();
        (i, items[i].clone())
    })
}

fn small() -> Resources {
    Resources {
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        ports: vec![],
    }
}

fn app_spec(app_id: &AppId, instances: u32) -> AppSpec {
    AppSpec {
        id: app_id.clone(),
        command: Some(CommandSpec {
            value: Some("sleep 1000".into()),
            ..CommandSpec::default()
        }),
        container: None,
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        instances,
        port_definitions: vec![],
        require_ports: false,
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        constraints: vec![],
        health_checks: vec![],
        upgrade_strategy: UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        },
        backoff: Backoff {
            backoff_secs: 1.0,
            factor: 1.15,
            max_launch_delay_secs: 300.0,
        },
        user: None,
        dependencies: vec![],
        kill_grace_period_secs: None,
    }
}

fn job_spec(name: &JobName, parents: Vec<JobName>) -> JobSpec {
    JobSpec {
        name: name.clone(),
        command: "true".into(),
        shell: true,
        arguments: vec![],
        schedule: parents
            .is_empty()
            .then(|| "R/2026-01-01T00:00:00Z/PT1H".to_owned()),
        schedule_time_zone: None,
        epsilon_secs: 60,
        parents,
        owner: None,
        owner_name: None,
        description: None,
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        retries: 2,
        disabled: false,
        concurrent: false,
        concurrency: None,
        container: None,
        env: BTreeMap::new(),
        constraints: vec![],
        run_as_user: None,
    }
}

impl World {
    fn push(&mut self, actor: Actor, event: Event, dt: u16) {
        self.at += i64::from(dt % 4) * 1_000_000; // several records may share a moment
        self.made += 1;
        let offset = Offset::new(self.made).unwrap();
        self.records.push(Record {
            offset,
            term: Term(1),
            at: Timestamp::from_micros(self.at),
            actor,
            event,
        });
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn user() -> Actor {
        Actor {
            principal: Principal::User {
                name: "alice".into(),
            },
            origin: None,
        }
    }

    fn scheduler() -> Actor {
        Self::built_in("apps")
    }

    fn jobs_scheduler() -> Actor {
        Self::built_in("jobs")
    }

    fn built_in(name: &str) -> Actor {
        Actor {
            principal: Principal::Scheduler { name: name.into() },
            origin: None,
        }
    }

    fn register_agent(&mut self, p: u16) {
        let agent_id = id(AgentId::new, "agent", self.next());
        self.agents.push(agent_id.clone());
        let resources = Resources {
            cpus_milli: 64_000,
            mem_mib: 262_144,
            disk_mib: 1 << 20,
            ports: vec![],
        };
        let event = AgentRegistered {
            agent_id: agent_id.clone(),
            hostname: format!("host-{agent_id}"),
            address: "127.0.0.1:5051".into(),
            resources,
            attributes: BTreeMap::from([("rack".into(), format!("r{}", p % 3))]),
            version: "0.1.0".into(),
        };
        self.push(
            Actor {
                principal: Principal::Agent { agent_id },
                origin: None,
            },
            Event::AgentRegistered(Box::new(event)),
            p,
        );
    }

    fn delete_job(&mut self, p: u16) {
        let Some((i, job)) = pick_at(&self.jobs, p) else {
            return;
        };
        if self.children.contains_key(&job) {
            return;
        }
        if let Some(r) = self.runs.iter().position(|(_, j, _)| *j == job) {
            let (run_id, job, attempt) = self.runs.swap_remove(r);
            let event = Event::JobRunFinished(JobRunFinished {
                job,
                run_id,
                attempt,
                outcome: RunOutcome::Killed,
                message: Some("the job was deleted".into()),
            });
            return self.push(Self::jobs_scheduler(), event, p);
        }
        self.jobs.swap_remove(i);
        if let Some(parent) = self.parent_of.remove(&job) {
            self.orphan(&parent);
        }
        self.push(Self::user(), Event::JobDeleted(JobDeleted { job }), p);
    }

    /// One job fewer names `parent`.
    fn orphan(&mut self, parent: &JobName) {
        if let Some(n) = self.children.get_mut(parent) {
            *n -= 1;
            if *n == 0 {
                self.children.remove(parent);
            }
        }
    }

    fn step(&mut self, op: u8, p: u16) {
        // Weighted like a busy cluster: status updates, launches and offers dominate; agents,
        // apps and jobs are created rarely.
        match op % 64 {
            0 if p % 16 == 0 => self.register_agent(p),
            // Now and then an agent is decommissioned for good.
            0 | 1 if p % 64 == 5 => {
                let Some((i, agent_id)) = pick_at(&self.agents, p / 64) else {
                    return self.register_agent(p);
                };
                self.agents.swap_remove(i);
                let event = Event::AgentRemoved(AgentRemoved {
                    agent_id,
                    reason: "decommissioned".into(),
                });
                self.push(Self::scheduler(), event, p);
            }
            0 | 1 => {
                let Some(agent_id) = pick(&self.agents, p) else {
                    return self.register_agent(p);
                };
                let event = match p % 3 {
                    0 => Event::AgentDisconnected(AgentDisconnected {
                        agent_id,
                        reason: "closed".into(),
                    }),
                    1 => Event::AgentReregistered(Box::new(AgentReregistered {
                        agent_id: agent_id.clone(),
                        hostname: format!("host-{agent_id}"),
                        address: "127.0.0.1:5051".into(),
                        resources: Resources {
                            cpus_milli: 64_000,
                            mem_mib: 262_144,
                            disk_mib: 1 << 20,
                            ports: vec![],
                        },
                        attributes: BTreeMap::new(),
                        version: "0.1.1".into(),
                        running_tasks: vec![],
                    })),
                    _ => Event::AgentLost(AgentLost {
                        agent_id,
                        reason: "timeout".into(),
                    }),
                };
                self.push(Self::scheduler(), event, p);
            }
            // Batch frameworks (Spark, say) come and go; the first one stays.
            2 if self.frameworks.len() > 16 => {
                let Some((i, framework_id)) = pick_at(&self.frameworks[1..], p) else {
                    return;
                };
                let event = match p % 8 {
                    0 => Event::FrameworkDisconnected(FrameworkDisconnected {
                        framework_id: framework_id.clone(),
                        reason: "closed".into(),
                    }),
                    1 => Event::FrameworkReregistered(FrameworkReregistered {
                        framework_id: framework_id.clone(),
                    }),
                    2 => Event::OffersSuppressed(OffersSuppressed {
                        framework_id: framework_id.clone(),
                        roles: vec![],
                    }),
                    3 => Event::OffersRevived(OffersRevived {
                        framework_id: framework_id.clone(),
                        roles: vec![],
                    }),
                    _ => {
                        self.frameworks.swap_remove(i + 1);
                        Event::FrameworkRemoved(FrameworkRemoved {
                            framework_id: framework_id.clone(),
                            reason: "done".into(),
                        })
                    }
                };
                let actor = Actor {
                    principal: Principal::Framework { framework_id },
                    origin: None,
                };
                self.push(actor, event, p);
            }
            2 => {
                let framework_id = id(FrameworkId::new, "fw", self.next());
                self.frameworks.push(framework_id.clone());
                let event = FrameworkRegistered {
                    framework_id: framework_id.clone(),
                    name: "marathon".into(),
                    user: "root".into(),
                    roles: vec!["*".into()],
                    principal: None,
                    failover_timeout_secs: 3600,
                    hostname: None,
                    webui_url: None,
                };
                let actor = Actor {
                    principal: Principal::Framework { framework_id },
                    origin: None,
                };
                self.push(actor, Event::FrameworkRegistered(Box::new(event)), p);
            }
            3..=9 => {
                let (Some(agent_id), Some(framework_id)) =
                    (pick(&self.agents, p), pick(&self.frameworks, p / 3))
                else {
                    return self.register_agent(p);
                };
                let offer_id = id(OfferId::new, "offer", self.next());
                self.offers.push(offer_id.clone());
                let offer = Offer {
                    offer_id,
                    framework_id,
                    agent_id,
                    resources: small(),
                };
                self.push(
                    Self::scheduler(),
                    Event::OffersMade(OffersMade {
                        offers: vec![offer],
                    }),
                    p,
                );
            }
            10..=16 => {
                let Some((i, offer_id)) = pick_at(&self.offers, p) else {
                    return;
                };
                self.offers.swap_remove(i);
                let framework_id = self.frameworks[0].clone();
                let event = match p % 3 {
                    0 => Event::OfferAccepted(OfferAccepted {
                        offer_id,
                        framework_id,
                        task_ids: vec![],
                    }),
                    1 => Event::OffersDeclined(OffersDeclined {
                        offer_ids: vec![offer_id],
                        framework_id,
                        refuse_millis: 5000,
                    }),
                    _ => Event::OfferRescinded(OfferRescinded {
                        offer_id,
                        reason: "timeout".into(),
                    }),
                };
                self.push(Self::scheduler(), event, p);
            }
            17..=26 => {
                let Some(agent_id) = pick(&self.agents, p) else {
                    return self.register_agent(p);
                };
                let task_id = id(TaskId::new, "task", self.next());
                let (owner, actor) = match (pick(&self.apps, p / 2), pick(&self.runs, p / 5)) {
                    (Some(app_id), _) if p % 2 == 0 => (
                        TaskOwner::App {
                            app_id,
                            version: Timestamp::from_micros(0),
                        },
                        Self::scheduler(),
                    ),
                    (_, Some((run_id, job, attempt))) if p % 3 == 0 => (
                        TaskOwner::JobRun {
                            job,
                            run_id,
                            attempt,
                        },
                        Self::scheduler(),
                    ),
                    _ => (TaskOwner::User, Self::user()),
                };
                self.tasks.push(task_id.clone());
                let event = TaskLaunched {
                    task_id,
                    name: "t".into(),
                    framework_id: id(FrameworkId::new, "fw", 0),
                    agent_id,
                    owner,
                    resources: small(),
                    spec: Box::default(),
                    offer_id: None,
                };
                self.push(actor, Event::TaskLaunched(Box::new(event)), p);
            }
            27..=46 => {
                let Some((i, task_id)) = pick_at(&self.tasks, p) else {
                    return;
                };
                let states = [
                    TaskState::Starting,
                    TaskState::Running,
                    TaskState::Running,
                    TaskState::Finished,
                    TaskState::Failed,
                    TaskState::Killed,
                    TaskState::Lost,
                ];
                let state = states[p as usize % states.len()];
                if state.is_terminal() {
                    self.tasks.swap_remove(i);
                }
                let agent_id = id(AgentId::new, "agent", 0);
                let event = TaskStatusUpdated {
                    task_id,
                    agent_id: agent_id.clone(),
                    state,
                    source: StatusSource::Executor,
                    reason: None,
                    message: (p % 5 == 0).then(|| "exit status 1".into()),
                    healthy: (p % 2 == 0).then_some(p % 4 == 0),
                    status_uuid: None,
                };
                self.push(
                    Actor {
                        principal: Principal::Agent { agent_id },
                        origin: None,
                    },
                    Event::TaskStatusUpdated(event),
                    p,
                );
            }
            47 => {
                let Some(task_id) = pick(&self.tasks, p) else {
                    return;
                };
                let event = TaskKillRequested {
                    task_id,
                    grace_period_secs: Some(3),
                    reason: "user".into(),
                };
                self.push(Self::user(), Event::TaskKillRequested(event), p);
            }
            48 if p % 8 == 0 => {
                let app_id = id(AppId::new, "/app", self.next());
                self.apps.push(app_id.clone());
                let version = Timestamp::from_micros(self.at);
                let event = AppCreated {
                    app_id: app_id.clone(),
                    version,
                    spec: app_spec(&app_id, u32::from(p % 5)),
                };
                self.push(Self::user(), Event::AppCreated(Box::new(event)), p);
            }
            // Apps are deleted too, half as often as they are created.
            48..=50 if p % 48 == 14 => {
                let Some((i, app_id)) = pick_at(&self.apps, p / 48) else {
                    return;
                };
                self.apps.swap_remove(i);
                self.push(Self::user(), Event::AppDeleted(AppDeleted { app_id }), p);
            }
            48..=50 => {
                let Some(app_id) = pick(&self.apps, p) else {
                    return;
                };
                let version = Timestamp::from_micros(self.at + 1);
                let event = match p % 4 {
                    3 => Event::AppBackoffReset(AppBackoffReset { app_id }),
                    0 => Event::AppUpdated(Box::new(AppUpdated {
                        app_id: app_id.clone(),
                        version,
                        spec: app_spec(&app_id, 3),
                    })),
                    1 => Event::AppScaled(AppScaled {
                        app_id,
                        version,
                        instances: u32::from(p % 7),
                    }),
                    _ => {
                        let deployment_id = id(DeploymentId::new, "dep", self.next());
                        self.deployments.push(deployment_id.clone());
                        let action = DeploymentAction {
                            action: DeploymentActionKind::RestartApplication,
                            app_id: app_id.clone(),
                        };
                        Event::DeploymentStarted(DeploymentStarted {
                            deployment_id,
                            version,
                            app_ids: vec![app_id],
                            steps: vec![DeploymentStep {
                                actions: vec![action],
                            }],
                        })
                    }
                };
                self.push(Self::user(), event, p);
            }
            51 | 52 => {
                let Some((i, deployment_id)) = pick_at(&self.deployments, p) else {
                    return;
                };
                let event = match p % 4 {
                    0 => Event::DeploymentStepFinished(DeploymentStepFinished {
                        deployment_id,
                        step: 1,
                    }),
                    1 => {
                        self.deployments.swap_remove(i);
                        Event::DeploymentFinished(DeploymentFinished { deployment_id })
                    }
                    2 => {
                        self.deployments.swap_remove(i);
                        Event::DeploymentFailed(DeploymentFailed {
                            deployment_id,
                            reason: "unhealthy".into(),
                        })
                    }
                    _ => {
                        self.deployments.swap_remove(i);
                        Event::DeploymentCanceled(DeploymentCanceled {
                            deployment_id,
                            rolled_back: p % 2 == 0,
                        })
                    }
                };
                self.push(Self::scheduler(), event, p);
            }
            53 if p % 8 == 0 => {
                let job = id(JobName::new, "job", self.next());
                let parent = pick(&self.jobs, p).filter(|_| p % 2 == 0);
                if let Some(parent) = &parent {
                    self.parent_of.insert(job.clone(), parent.clone());
                    *self.children.entry(parent.clone()).or_default() += 1;
                }
                let parents = parent.into_iter().collect();
                self.jobs.push(job.clone());
                let event = JobCreated {
                    job: job.clone(),
                    spec: job_spec(&job, parents),
                };
                self.push(Self::user(), Event::JobCreated(Box::new(event)), p);
            }
            // As the API deletes a job: its active runs end as killed first, one a step.
            53..=56 if p % 64 == 63 => self.delete_job(p / 64),
            53..=56 if p % 64 == 31 => {
                let Some(job) = pick(&self.jobs, p / 64) else {
                    return;
                };
                // The new definition names no parent.
                if let Some(parent) = self.parent_of.remove(&job) {
                    self.orphan(&parent);
                }
                let spec = job_spec(&job, vec![]);
                self.push(
                    Self::user(),
                    Event::JobUpdated(Box::new(JobUpdated { job, spec })),
                    p,
                );
            }
            53..=56 => {
                let Some(job) = pick(&self.jobs, p) else {
                    return;
                };
                let run_id = id(RunId::new, "run", self.next());
                self.runs.push((run_id.clone(), job.clone(), 1));
                let cause = if p % 3 == 0 {
                    RunCause::Manual
                } else {
                    RunCause::Schedule
                };
                let scheduled_for = Timestamp::from_micros(self.n as i64 * 3_600_000_000);
                let event = JobRunTriggered {
                    job,
                    run_id,
                    scheduled_for,
                    cause,
                };
                self.push(Self::jobs_scheduler(), Event::JobRunTriggered(event), p);
            }
            _ => {
                let Some((i, (run_id, job, attempt))) = pick_at(&self.runs, p) else {
                    return;
                };
                // Most runs finish soon after they start, as real ones do.
                let event = match p % 8 {
                    0 | 1 => Event::JobRunStarted(JobRunStarted {
                        job,
                        run_id,
                        attempt,
                        task_id: id(TaskId::new, "jobtask", self.n),
                    }),
                    2 => {
                        let next = attempt + 1;
                        self.runs[i].2 = next;
                        Event::JobRunRetried(JobRunRetried {
                            job,
                            run_id,
                            attempt: next,
                            reason: "TASK_FAILED".into(),
                            not_before: Some(Timestamp::from_micros(self.at + 1_000_000)),
                        })
                    }
                    3..=6 => {
                        self.runs.swap_remove(i);
                        let outcome = if p % 3 == 0 {
                            RunOutcome::Failed
                        } else {
                            RunOutcome::Succeeded
                        };
                        Event::JobRunFinished(JobRunFinished {
                            job,
                            run_id,
                            attempt,
                            outcome,
                            message: None,
                        })
                    }
                    // Half the misses end a run that never started, half are occurrences
                    // that were never triggered.
                    _ => {
                        let ends = (p / 8) % 2 == 0;
                        if ends {
                            self.runs.swap_remove(i);
                        }
                        Event::JobRunMissed(JobRunMissed {
                            job,
                            scheduled_for: Timestamp::from_micros(self.at),
                            reason: "not started within epsilon".into(),
                            run_id: ends.then_some(run_id),
                        })
                    }
                };
                self.push(Self::jobs_scheduler(), event, p);
            }
        }
    }
}

/// A valid history: each `(op, pick)` becomes one event (or none) that fits the world so far,
/// `op` choosing its kind and `pick` among existing agents, tasks, runs, ….
pub fn history(ops: &[(u8, u16)]) -> Vec<Record> {
    let mut world = World::default();
    for &(op, p) in ops {
        world.step(op, p);
    }
    world.records
}

/// A long history, generated chunk by chunk from a fixed pseudo-random sequence of choices
/// (splitmix64): the same every time, and never all in memory at once.
#[derive(Debug)]
pub struct Seeded {
    world: World,
    seed: u64,
}

impl Default for Seeded {
    fn default() -> Self {
        Self {
            world: World::default(),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl Seeded {
    /// The next `n` records of the history.
    pub fn next_chunk(&mut self, n: usize) -> Vec<Record> {
        while self.world.records.len() < n {
            self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            self.world.step(z as u8, (z >> 8) as u16);
        }
        let rest = self.world.records.split_off(n);
        std::mem::replace(&mut self.world.records, rest)
    }
}

/// The first `events` records of the [`Seeded`] history.
pub fn seeded(events: usize) -> Vec<Record> {
    Seeded::default().next_chunk(events)
}
