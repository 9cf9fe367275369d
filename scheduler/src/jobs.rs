//! The jobs scheduler (Chronos semantics) as a pure decider: a built-in framework that takes
//! offers like any other, triggers runs when they are due, launches them, retries failed
//! attempts and records what it could not do.
//!
//! **Exactly once.** A scheduled run is identified by `(job, scheduled_for)`. Each job's
//! projection keeps a cursor: the latest occurrence already dealt with, by a
//! `JobRunTriggered` or a `JobRunMissed`, in the log. A cycle deals only with occurrences
//! after the cursor, and a decision is appended before the next is made, so no occurrence is
//! dealt with twice, by this leader or the next (which decides on the same log), whatever its
//! clock says: a clock that jumps back finds nothing new to do; one that jumps forward, or a
//! leader that was down, finds occurrences past their epsilon and records them as missed,
//! with the reason. No occurrence is skipped silently: the cursor only moves past one by a
//! record of what became of it.
//!
//! **A run's life.** Triggered (due, by a user, or by its parents' success), then each attempt
//! is launched on an offer (`JobRunStarted` with the task); a first attempt not started within
//! the job's epsilon of its time is missed. When an attempt's task ends, the run succeeds, or
//! is retried after a delay while retries remain, or fails. A finished finite schedule
//! disables its job.
//!
//! Nothing is remembered between cycles but the log.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    wire, CommandSpec, Concurrency, Event, FrameworkId, JobDeleted, JobName, JobRunFinished,
    JobRunMissed, JobRunRetried, JobRunStarted, JobRunTriggered, JobSpec, JobUpdated, Resources,
    RunCause, RunId, RunOutcome, TaskId, TaskKillRequested, TaskLaunched, TaskOwner, TaskSpec,
    TaskState, Timestamp,
};
use cairn_projections::jobs::{Job, Run};
use cairn_projections::State;

use crate::constraints::{self, Constraint, Counts};
use crate::deployments::{Put, Refusal};
use crate::framework::{self, Avail};
use crate::tasks::sanitize;

/// The built-in jobs framework's id.
pub const FRAMEWORK: &str = "cairn-jobs";
/// Most runs triggered, missed, launched or ended in one cycle: keeps each decision within
/// the log's batch limit (as [`framework::LAUNCH_BYTES`] keeps it within its bytes); the rest
/// follow in the next cycle, at once.
pub const PER_CYCLE: usize = 4_000;
/// The longest wait before a retry; the first waits 1 s and each doubles it.
pub const MAX_RETRY_DELAY_SECS: i64 = 60;

const SECOND: i64 = 1_000_000;

pub fn framework_id() -> FrameworkId {
    FrameworkId::new(FRAMEWORK).expect("a valid id")
}

/// Registers the built-in jobs framework once the first job exists.
pub fn ensure_framework(state: &State) -> Vec<Event> {
    framework::ensure(
        state,
        &framework_id(),
        "chronos",
        !state.jobs.jobs.is_empty(),
    )
}

/// What one cycle decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub events: Vec<Event>,
    /// Another cycle should follow at once: offers were revived, or the limit cut it short.
    pub again: bool,
    /// The earliest later time at which something becomes due (a scheduled run, a retry, an
    /// epsilon running out): the runner need not run a cycle before then unless prompted.
    pub wake: Option<Timestamp>,
}

/// A run attempt to launch this cycle.
struct Launch<'a> {
    job: &'a JobName,
    spec: &'a JobSpec,
    run_id: RunId,
    attempt: u32,
    /// What its task runs.
    task: TaskSpec,
}

/// What a cycle has decided so far.
struct Out<'a> {
    events: Vec<Event>,
    launches: Vec<Launch<'a>>,
    wake: Option<Timestamp>,
    mint: &'a str,
    minted: u64,
    /// The launches' estimated encoded size.
    bytes: usize,
}

impl<'a> Out<'a> {
    fn full(&self) -> bool {
        self.events.len() + self.launches.len() >= PER_CYCLE
            || self.bytes >= framework::LAUNCH_BYTES
    }

    fn launch(&mut self, job: &'a JobName, spec: &'a JobSpec, run_id: RunId, attempt: u32) {
        let task = task_spec(spec, &run_id);
        self.bytes += framework::launch_bytes(&task, job.as_str(), 0);
        self.launches.push(Launch {
            job,
            spec,
            run_id,
            attempt,
            task,
        });
    }

    fn wake_at(&mut self, at: Timestamp) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn trigger(&mut self, job: &'a JobName, spec: &'a JobSpec, at: Timestamp, cause: RunCause) {
        let run_id = RunId::new(format!(
            "{}.{}-{}",
            sanitize(job.as_str()),
            self.mint,
            self.minted
        ))
        .expect("a valid run id");
        self.minted += 1;
        self.events.push(Event::JobRunTriggered(JobRunTriggered {
            job: job.clone(),
            run_id: run_id.clone(),
            scheduled_for: at,
            cause,
        }));
        self.launch(job, spec, run_id, 1);
    }

    fn miss(&mut self, job: &JobName, at: Timestamp, run_id: Option<RunId>, reason: String) {
        self.events.push(Event::JobRunMissed(JobRunMissed {
            job: job.clone(),
            scheduled_for: at,
            reason,
            run_id,
        }));
    }
}

/// One cycle of the jobs scheduler at `now`. New runs are named `<job>.<mint>-<n>`, their
/// tasks `<run>.<attempt>`.
pub fn decide(state: &State, now: Timestamp, mint: &str) -> Cycle {
    let framework_id = framework_id();
    let Some(framework) = state.cluster.frameworks.get(&framework_id) else {
        return Cycle {
            events: Vec::new(),
            again: false,
            wake: None,
        };
    };
    let mut out = Out {
        events: Vec::new(),
        launches: Vec::new(),
        wake: None,
        mint,
        minted: 0,
        bytes: 0,
    };
    let mut cut_short = false;
    for (name, job) in &state.jobs.jobs {
        if out.full() {
            cut_short = true;
            break;
        }
        let active = advance_runs(state, name, job, now, &mut out);
        if job.spec.disabled {
            continue;
        }
        if job.spec.schedule.is_some() {
            cut_short |= scheduled(name, job, now, active, &mut out);
        } else {
            due_to_parents(state, name, job, now, active, &mut out);
        }
    }

    // A launch left for the next cycle by a full one (see `advance_runs`).
    cut_short |= out.full();
    let launches = std::mem::take(&mut out.launches);
    let mut offers = framework::offers(state, &framework_id);
    let mut cursor = 0usize;
    let mut unmet = false;
    let mut started = Vec::new();
    for mut launch in launches {
        let Some((i, task)) = place(state, &mut launch, &offers, &mut cursor) else {
            unmet = true;
            continue;
        };
        started.push(Event::JobRunStarted(JobRunStarted {
            job: launch.job.clone(),
            run_id: launch.run_id,
            attempt: launch.attempt,
            task_id: task.task_id.clone(),
        }));
        let offer = &mut offers[i];
        offer.free = offer
            .free
            .checked_sub(&task.resources)
            .expect("place checked the offer holds it");
        offer.launched.push(task);
    }
    framework::settle(offers, &framework_id, unmet, &mut out.events);
    out.events.extend(started);
    let revive = framework::pace(framework, &framework_id, unmet, &mut out.events);
    Cycle {
        events: out.events,
        again: revive || cut_short,
        wake: out.wake,
    }
}

/// Moves each active run of `job` on: ends or retries the ones whose task ended, misses the
/// ones that could not start in time, and queues the launches of the others. Returns how many
/// stay active.
fn advance_runs<'a>(
    state: &'a State,
    name: &'a JobName,
    job: &'a Job,
    now: Timestamp,
    out: &mut Out<'a>,
) -> usize {
    let mut active = 0;
    for run_id in &job.active_runs {
        let Some(run) = state.jobs.runs.get(run_id) else {
            continue;
        };
        let attempt = run.attempts.last();
        let task = attempt.and_then(|a| a.task_id.as_ref());
        match task {
            None => {
                let number = attempt.map_or(1, |a| a.attempt);
                let deadline = Timestamp::from_micros(
                    run.scheduled_for.as_micros() + job.spec.epsilon_secs as i64 * SECOND,
                );
                let not_before = attempt.and_then(|a| a.not_before);
                if number == 1 && now > deadline {
                    let reason = format!(
                        "not started within the epsilon ({} s) of its time: {}",
                        job.spec.epsilon_secs, "no offer could take it"
                    );
                    out.miss(name, run.scheduled_for, Some(run_id.clone()), reason);
                    continue;
                }
                active += 1;
                match not_before.filter(|t| *t > now) {
                    Some(t) => out.wake_at(t),
                    None => {
                        if number == 1 {
                            out.wake_at(Timestamp::from_micros(deadline.as_micros() + 1));
                        }
                        // A full cycle leaves it for the next one, at once.
                        if !out.full() {
                            out.launch(name, &job.spec, run_id.clone(), number);
                        }
                    }
                }
            }
            Some(task_id) => match ended(state, task_id, run_id, run, &job.spec, now) {
                None => active += 1,
                Some(event) => {
                    if matches!(event, Event::JobRunRetried(_)) {
                        active += 1;
                    }
                    out.events.push(event);
                }
            },
        }
    }
    active
}

/// What ends (or retries) a run whose current attempt's task ended; `None` while it runs.
fn ended(
    state: &State,
    task_id: &TaskId,
    run_id: &RunId,
    run: &Run,
    spec: &JobSpec,
    now: Timestamp,
) -> Option<Event> {
    let attempt = run.attempts.last().map_or(1, |a| a.attempt);
    let task = state.tasks.tasks.get(task_id);
    if task.is_some_and(|t| !t.is_terminal()) {
        return None;
    }
    let finish = |outcome, message| {
        Some(Event::JobRunFinished(JobRunFinished {
            job: run.job.clone(),
            run_id: run_id.clone(),
            attempt,
            outcome,
            message,
        }))
    };
    let reason = match task {
        Some(t) if t.state == TaskState::Finished => return finish(RunOutcome::Succeeded, None),
        Some(t) if t.state == TaskState::Killed && t.kill_requested => {
            return finish(RunOutcome::Killed, Some("killed as asked".into()))
        }
        Some(t) => {
            let last = t.statuses.last();
            let detail = last
                .and_then(|s| s.message.as_deref().or(s.reason.as_deref()))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!("{}{detail}", wire(&t.state))
        }
        None => format!("task {task_id} is unknown"),
    };
    if attempt <= spec.retries {
        let delay = (1i64 << (attempt - 1).min(6)).min(MAX_RETRY_DELAY_SECS);
        return Some(Event::JobRunRetried(JobRunRetried {
            job: run.job.clone(),
            run_id: run_id.clone(),
            attempt: attempt + 1,
            reason,
            not_before: Some(Timestamp::from_micros(now.as_micros() + delay * SECOND)),
        }));
    }
    finish(RunOutcome::Failed, Some(reason))
}

/// Deals with the occurrences of `job`'s schedule that are due at `now`, in order: each is
/// triggered, or missed with the reason; with `Queue`, one waits while a run is active.
/// Returns whether the cycle's limit cut it short.
fn scheduled<'a>(
    name: &'a JobName,
    job: &'a Job,
    now: Timestamp,
    mut active: usize,
    out: &mut Out<'a>,
) -> bool {
    let Some(first) = job.due else {
        // The schedule has ended: the job is disabled once its last run is over.
        if active == 0 {
            out.events.push(Event::JobUpdated(Box::new(JobUpdated {
                job: name.clone(),
                spec: JobSpec {
                    disabled: true,
                    ..(*job.spec).clone()
                },
            })));
        }
        return false;
    };
    if first > now {
        out.wake_at(first);
        return false;
    }
    let Some(schedule) = job.schedule() else {
        return false;
    };
    let epsilon = job.spec.epsilon_secs as i64 * SECOND;
    let mut due = Some(first);
    while let Some(at) = due.filter(|d| *d <= now) {
        if out.full() {
            return true;
        }
        if now.as_micros() - at.as_micros() > epsilon {
            let reason = format!(
                "no run was triggered within the epsilon ({} s) of its time: the scheduler \
                 was not running then (first seen at {now})",
                job.spec.epsilon_secs
            );
            out.miss(name, at, None, reason);
        } else if active > 0 {
            match job.spec.concurrency() {
                Concurrency::Allow => {
                    out.trigger(name, &job.spec, at, RunCause::Schedule);
                    active += 1;
                }
                Concurrency::Queue => return false,
                Concurrency::Skip => {
                    let reason = "an earlier run was still active (concurrency: skip)".into();
                    out.miss(name, at, None, reason);
                }
            }
        } else {
            out.trigger(name, &job.spec, at, RunCause::Schedule);
            active += 1;
        }
        due = schedule.first_after(at).map(|(_, t)| t);
    }
    if let Some(next) = due {
        out.wake_at(next);
    }
    false
}

/// Triggers a dependent job once each parent has succeeded since the parents last triggered
/// it: the run is due at the latest of those successes.
fn due_to_parents<'a>(
    state: &State,
    name: &'a JobName,
    job: &'a Job,
    now: Timestamp,
    active: usize,
    out: &mut Out<'a>,
) {
    if job.spec.parents.is_empty() {
        return;
    }
    let mut at = None;
    let mut runs = Vec::new();
    for parent in &job.spec.parents {
        let Some(p) = state.jobs.jobs.get(parent) else {
            return;
        };
        match (p.last_success, &p.last_success_run) {
            (Some(success), Some(run)) if Some(success) > job.parents_cursor => {
                at = at.max(Some(success));
                runs.push(run.clone());
            }
            _ => return,
        }
    }
    let Some(at) = at else {
        return;
    };
    let epsilon = job.spec.epsilon_secs as i64 * SECOND;
    if now.as_micros() - at.as_micros() > epsilon {
        let reason = format!(
            "its parents succeeded but no run was triggered within the epsilon ({} s)",
            job.spec.epsilon_secs
        );
        out.miss(name, at, None, reason);
    } else if active > 0 && job.spec.concurrency() != Concurrency::Allow {
        if job.spec.concurrency() == Concurrency::Skip {
            let reason = "an earlier run was still active (concurrency: skip)".into();
            out.miss(name, at, None, reason);
        }
    } else {
        out.trigger(name, &job.spec, at, RunCause::Parents { runs });
    }
}

/// Finds an offer for `launch` (from `cursor` on, so runs spread over agents) that holds its
/// resources and meets its constraints; returns the offer's index and the task.
fn place(
    state: &State,
    launch: &mut Launch,
    offers: &[Avail],
    cursor: &mut usize,
) -> Option<(usize, TaskLaunched)> {
    let spec = launch.spec;
    let resources = Resources {
        cpus_milli: spec.cpus_milli,
        mem_mib: spec.mem_mib,
        disk_mib: spec.disk_mib,
        ports: Vec::new(),
    };
    let constraints = Constraint::parse_all(&spec.constraints);
    let counts = if constraints.is_empty() {
        Counts::new()
    } else {
        counts_of(state, launch.job, &constraints)
    };
    let n = offers.len();
    let i = (0..n).map(|k| (*cursor + k) % n).find(|&i| {
        let offer = &offers[i];
        offer.free.checked_sub(&resources).is_some()
            && constraints
                .iter()
                .all(|c| c.allows(offer.agent, counts.get(&c.field), &[]))
    })?;
    *cursor = i + 1;
    let task_id = TaskId::new(format!("{}.{}", launch.run_id, launch.attempt)).ok()?;
    Some((
        i,
        TaskLaunched {
            task_id,
            name: launch.job.to_string(),
            framework_id: framework_id(),
            agent_id: offers[i].agent_id.clone(),
            owner: TaskOwner::JobRun {
                job: launch.job.clone(),
                run_id: launch.run_id.clone(),
                attempt: launch.attempt,
            },
            resources,
            // Built when the launch was queued (its size counted then); placed, it moves.
            spec: Box::new(std::mem::take(&mut launch.task)),
            offer_id: None,
        },
    ))
}

/// The job's live tasks per value of each constrained field.
fn counts_of(state: &State, job: &JobName, constraints: &[Constraint]) -> Counts {
    let mut counts = Counts::new();
    let runs = state.jobs.jobs.get(job).map(|j| &j.active_runs);
    for run in runs.into_iter().flatten() {
        let task = state.jobs.runs.get(run).and_then(|r| r.attempts.last());
        let task = task.and_then(|a| a.task_id.as_ref());
        let Some(task) = task.and_then(|t| state.tasks.tasks.get(t)) else {
            continue;
        };
        if let Some(agent) = state.cluster.agents.get(&task.agent_id) {
            constraints::count(&mut counts, constraints, agent);
        }
    }
    counts
}

/// What an attempt runs: the job's command (through a shell unless `shell` is false, then
/// with its arguments), in its container if it has one, with Chronos' environment.
fn task_spec(spec: &JobSpec, run_id: &RunId) -> TaskSpec {
    let mut env = spec.env.clone();
    env.insert("CHRONOS_JOB_NAME".into(), spec.name.to_string());
    env.insert(
        "CHRONOS_JOB_OWNER".into(),
        spec.owner.clone().unwrap_or_default(),
    );
    env.insert("CAIRN_RUN_ID".into(), run_id.to_string());
    let shell = spec.shell && !spec.command.is_empty();
    let command = CommandSpec {
        value: shell.then(|| spec.command.clone()),
        // Without a shell: the command and its arguments; with neither (a container's own
        // entry point), nothing.
        args: if shell {
            Vec::new()
        } else {
            std::iter::once(spec.command.clone())
                .filter(|c| !c.is_empty())
                .chain(spec.arguments.iter().cloned())
                .collect()
        },
        shell,
        env,
        user: spec.run_as_user.clone(),
    };
    TaskSpec {
        command: Some(command),
        container: spec.container.clone().map(Box::new),
        ..TaskSpec::default()
    }
}

// Changes users make (GraphQL, CLI, Chronos' API): each checks against the state and returns
// the events that carry it out, or why it is refused; nothing is appended on a refusal.

/// Creates or updates one job. Refused: an unknown parent, a cycle of parents, a finite
/// schedule that has already ended (it would never run), creating one that exists or
/// updating one that does not. An unchanged job changes nothing.
pub fn put(state: &State, spec: JobSpec, mode: Put, now: Timestamp) -> Result<Vec<Event>, Refusal> {
    let name = spec.name.clone();
    let existing = state.jobs.jobs.get(&name);
    match (mode, existing) {
        (Put::Create, Some(_)) => {
            return Err(Refusal::Conflict {
                message: format!("job {name} already exists"),
                deployments: Vec::new(),
            })
        }
        (Put::Update, None) => return Err(Refusal::NotFound(format!("job {name} does not exist"))),
        _ => {}
    }
    for (i, parent) in spec.parents.iter().enumerate() {
        if !state.jobs.jobs.contains_key(parent) && *parent != name {
            return Err(Refusal::Invalid(format!(
                "/parents/{i}: job {parent} does not exist"
            )));
        }
    }
    if let Some(cycle) = cycle_through(state, &spec) {
        return Err(Refusal::Invalid(format!(
            "/parents: the parents form a cycle: {}",
            cycle
                .iter()
                .map(JobName::as_str)
                .collect::<Vec<_>>()
                .join(" → ")
        )));
    }
    if let Some(text) = &spec.schedule {
        let schedule =
            cairn_projections::schedule::Schedule::parse(text, spec.schedule_time_zone.as_deref())
                .map_err(|e| Refusal::Invalid(format!("/schedule: {e}")))?;
        let ended = schedule
            .last()
            .filter(|last| last.as_micros() + spec.epsilon_secs as i64 * SECOND < now.as_micros());
        if let Some(last) = ended {
            return Err(Refusal::Invalid(format!(
                "/schedule: its last run was due at {last}, past its epsilon: it would never run"
            )));
        }
    }
    Ok(match existing {
        None => vec![Event::JobCreated(Box::new(cairn_log::event::JobCreated {
            job: name,
            spec,
        }))],
        Some(job) if *job.spec == spec => Vec::new(),
        Some(_) => vec![Event::JobUpdated(Box::new(JobUpdated { job: name, spec }))],
    })
}

/// The path of a cycle `spec` would close through its parents, if any (starting and ending
/// at the job itself).
fn cycle_through(state: &State, spec: &JobSpec) -> Option<Vec<JobName>> {
    let parents_of = |job: &JobName| -> Vec<JobName> {
        if *job == spec.name {
            spec.parents.clone()
        } else {
            state
                .jobs
                .jobs
                .get(job)
                .map(|j| j.spec.parents.clone())
                .unwrap_or_default()
        }
    };
    // Depth first from the job, remembering how each job was reached.
    let mut came_from: BTreeMap<JobName, JobName> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![spec.name.clone()];
    while let Some(job) = stack.pop() {
        for parent in parents_of(&job) {
            if parent == spec.name {
                // Back from `job` to the start, then round to the start again.
                let mut path = vec![job.clone()];
                while let Some(prev) = came_from.get(path.last().expect("not empty")) {
                    path.push(prev.clone());
                }
                path.reverse();
                path.push(spec.name.clone());
                return Some(path);
            }
            if seen.insert(parent.clone()) {
                came_from.insert(parent.clone(), job.clone());
                stack.push(parent);
            }
        }
    }
    None
}

/// Deletes a job: its active runs end as killed and their tasks are killed. Refused while
/// other jobs name it as a parent.
pub fn delete(state: &State, name: &JobName) -> Result<Vec<Event>, Refusal> {
    let job = state
        .jobs
        .jobs
        .get(name)
        .ok_or_else(|| Refusal::NotFound(format!("job {name} does not exist")))?;
    let children = state.jobs.children(name);
    if !children.is_empty() {
        return Err(Refusal::Conflict {
            message: format!(
                "job {name} is a parent of {}: delete or change those first",
                children
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            deployments: Vec::new(),
        });
    }
    let mut events = end_active(state, name, job, "the job was deleted");
    events.push(Event::JobDeleted(JobDeleted { job: name.clone() }));
    Ok(events)
}

/// Kills a job's active runs (Chronos' `DELETE task/kill/{job}`): they end as killed, and
/// their live tasks are killed. Nothing to kill changes nothing.
pub fn kill_runs(state: &State, name: &JobName) -> Result<Vec<Event>, Refusal> {
    let job = state
        .jobs
        .jobs
        .get(name)
        .ok_or_else(|| Refusal::NotFound(format!("job {name} does not exist")))?;
    Ok(end_active(state, name, job, "killed as asked"))
}

/// Ends each active run of `job` as killed, `why`, asking for its live task to be killed.
fn end_active(state: &State, name: &JobName, job: &Job, why: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for run_id in &job.active_runs {
        let Some(run) = state.jobs.runs.get(run_id) else {
            continue;
        };
        let attempt = run.attempts.last();
        let live = attempt
            .and_then(|a| a.task_id.as_ref())
            .filter(|t| state.tasks.tasks.get(*t).is_some_and(|t| !t.is_terminal()));
        if let Some(task_id) = live {
            events.push(Event::TaskKillRequested(TaskKillRequested {
                task_id: task_id.clone(),
                grace_period_secs: None,
                reason: format!("run {run_id} of job {name}: {why}"),
            }));
        }
        events.push(Event::JobRunFinished(JobRunFinished {
            job: name.clone(),
            run_id: run_id.clone(),
            attempt: attempt.map_or(1, |a| a.attempt),
            outcome: RunOutcome::Killed,
            message: Some(why.into()),
        }));
    }
    events
}

/// Runs a job now, whatever its schedule (Chronos' manual start); also a disabled one. The
/// run is due at `now` (a microsecond later per run already due then, so each is its own).
pub fn run_now(
    state: &State,
    name: &JobName,
    now: Timestamp,
    run_id: RunId,
) -> Result<Vec<Event>, Refusal> {
    let Some(job) = state.jobs.jobs.get(name) else {
        return Err(Refusal::NotFound(format!("job {name} does not exist")));
    };
    let mut at = now;
    while job.triggered.contains_key(&at) {
        at = Timestamp::from_micros(at.as_micros() + 1);
    }
    Ok(vec![Event::JobRunTriggered(JobRunTriggered {
        job: name.clone(),
        run_id,
        scheduled_for: at,
        cause: RunCause::Manual,
    })])
}

/// Disables or enables a job; re-enabling starts its schedule afresh (what fell due while it
/// was disabled was never due).
pub fn set_disabled(state: &State, name: &JobName, disabled: bool) -> Result<Vec<Event>, Refusal> {
    let job = state
        .jobs
        .jobs
        .get(name)
        .ok_or_else(|| Refusal::NotFound(format!("job {name} does not exist")))?;
    if job.spec.disabled == disabled {
        return Ok(Vec::new());
    }
    Ok(vec![Event::JobUpdated(Box::new(JobUpdated {
        job: name.clone(),
        spec: JobSpec {
            disabled,
            ..(*job.spec).clone()
        },
    }))])
}
