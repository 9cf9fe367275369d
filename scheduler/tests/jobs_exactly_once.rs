//! Exactly once, deterministically: hundreds of jobs run through days of simulated time on a
//! manual clock, with leaders that crash (losing the decision they were about to append), stay
//! away, and come back with a clock that is off; and agents that drop away and are lost. The
//! log alone must then say, for every job, that each due time was dealt with exactly once (one
//! run, or one recorded miss), that no attempt was launched twice, and that every run ended.
//!
//! The deciders, allocator and agent-loss rules are the real ones; only the agents are
//! simulated (their tasks finish or fail after a drawn duration), and the randomness is a
//! seeded generator, so a failure replays exactly.
//!
//! And bounded: a cycle with more due than one append may hold decides what fits and leaves
//! the rest, once each, to the cycles that follow at once.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    Actor, AgentId, AgentRegistered, Concurrency, Event, JobName, JobSpec, PortRange, Resources,
    RunCause, RunId, StatusSource, TaskId, TaskOwner, TaskState, TaskStatusUpdated, Term,
    Timestamp,
};
use cairn_log::{Offset, Record};
use cairn_projections::schedule::Schedule;
use cairn_projections::{Fold, State};
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use cairn_scheduler::deployments::Put;
use cairn_scheduler::{agents, jobs};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
/// How long a disconnected agent has before it and its tasks are lost.
const AGENT_TIMEOUT: i64 = 75 * SECOND;

/// xorshift64*: small, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A task the simulated agents run: when it ends and how.
struct Running {
    agent: AgentId,
    ends_at: i64,
    fails: bool,
    started: bool,
}

struct Sim {
    rng: Rng,
    log: Vec<Record>,
    state: State,
    /// True time.
    now: i64,
    /// The leader's clock is off by this much.
    skew: i64,
    /// No leader until then.
    down_until: i64,
    /// When the current leader took over (agents get their whole timeout from then).
    leader_since: i64,
    tasks: BTreeMap<TaskId, Running>,
    /// Agents that dropped away, and when a replacement registers.
    away: BTreeMap<AgentId, i64>,
    agents: u64,
    cycles: u64,
    crashes: u32,
}

impl Sim {
    fn new(seed: u64, start: i64) -> Self {
        let mut sim = Self {
            rng: Rng(seed),
            log: Vec::new(),
            state: State::default(),
            now: start,
            skew: 0,
            down_until: start,
            leader_since: start,
            tasks: BTreeMap::new(),
            away: BTreeMap::new(),
            agents: 0,
            cycles: 0,
            crashes: 0,
        };
        for _ in 0..3 {
            sim.add_agent();
        }
        sim
    }

    fn leader_now(&self) -> Timestamp {
        Timestamp::from_micros(self.now + self.skew)
    }

    fn append(&mut self, events: Vec<Event>) {
        let at = self.leader_now();
        for event in events {
            let record = Record {
                offset: Offset::new(self.log.len() as u64 + 1).unwrap(),
                term: Term(1),
                at,
                actor: Actor::system(),
                event,
            };
            self.state.apply(record.clone());
            if let Event::TaskLaunched(launched) = &record.event {
                // Most runs take a little while; some outlast their period.
                let long = self.rng.chance(5);
                let secs = if long {
                    1800 + self.rng.below(3600)
                } else {
                    1 + self.rng.below(240)
                };
                self.tasks.insert(
                    launched.task_id.clone(),
                    Running {
                        agent: launched.agent_id.clone(),
                        ends_at: self.now + secs as i64 * SECOND,
                        fails: self.rng.chance(15),
                        started: false,
                    },
                );
            }
            self.log.push(record);
        }
    }

    fn add_agent(&mut self) {
        self.agents += 1;
        let id = AgentId::new(format!("agent-{}", self.agents)).unwrap();
        self.append(vec![Event::AgentRegistered(Box::new(AgentRegistered {
            agent_id: id.clone(),
            hostname: id.to_string(),
            address: format!("{id}:5051"),
            resources: Resources {
                cpus_milli: 8000,
                mem_mib: 8192,
                disk_mib: 1 << 20,
                ports: vec![PortRange {
                    begin: 31000,
                    end: 31099,
                }],
            },
            attributes: BTreeMap::new(),
            version: "sim".into(),
        }))]);
    }

    /// The agents' status updates that are due, as the leader would log them.
    fn statuses(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (task_id, t) in &mut self.tasks {
            if self.away.contains_key(&t.agent) {
                continue;
            }
            let status = |state| {
                Event::TaskStatusUpdated(TaskStatusUpdated {
                    task_id: task_id.clone(),
                    agent_id: t.agent.clone(),
                    state,
                    source: StatusSource::Executor,
                    reason: None,
                    message: None,
                    healthy: None,
                    status_uuid: None,
                })
            };
            if !t.started {
                t.started = true;
                out.push(status(TaskState::Running));
            }
            if t.ends_at <= self.now {
                let end = if t.fails {
                    TaskState::Failed
                } else {
                    TaskState::Finished
                };
                out.push(status(end));
                done.push(task_id.clone());
            }
        }
        for task_id in done {
            self.tasks.remove(&task_id);
        }
        out
    }

    /// One step of `step` seconds of true time.
    fn step(&mut self, step: i64, crashes: bool) {
        self.now += step;
        // Agents drop away now and then; a replacement comes some minutes later.
        if self.rng.chance(1) && self.away.len() < 2 {
            let active: Vec<AgentId> = self
                .state
                .cluster
                .agents
                .iter()
                .filter(|(id, a)| {
                    a.status == cairn_projections::cluster::AgentStatus::Active
                        && !self.away.contains_key(*id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !active.is_empty() {
                let gone = active[self.rng.below(active.len() as u64) as usize].clone();
                let back = self.now + (2 + self.rng.below(10) as i64) * MINUTE;
                self.away.insert(gone, back);
            }
        }
        let returning: Vec<AgentId> = self
            .away
            .iter()
            .filter(|(_, back)| **back <= self.now)
            .map(|(id, _)| id.clone())
            .collect();
        if self.now < self.down_until {
            return;
        }
        for id in returning {
            self.away.remove(&id);
            // Its tasks died with it: the replacement is a new machine.
            self.tasks.retain(|_, t| t.agent != id);
            self.add_agent();
        }
        let away: Vec<AgentId> = self.away.keys().cloned().collect();
        for id in away {
            let events = agents::disconnected(&self.state, &id, "simulated failure");
            self.append(events);
        }
        let now = self.leader_now();
        let since = Timestamp::from_micros(self.leader_since + self.skew);
        let lost = agents::lose(&self.state, now, AGENT_TIMEOUT, since);
        self.append(lost);
        let statuses = self.statuses();
        self.append(statuses);

        // The leader's scheduling cycle; it may crash before appending a decision.
        let registered = jobs::ensure_framework(&self.state);
        self.append(registered);
        self.cycles += 1;
        let offers = allocate(
            &self.state,
            now,
            &AllocatorConfig::default(),
            &format!("o{}", self.cycles),
        );
        self.append(offers);
        for round in 0..8 {
            let cycle = jobs::decide(&self.state, now, &format!("{}x{round}", self.cycles));
            if crashes && self.rng.chance(1) && self.rng.chance(20) {
                // Crashed before the decision was committed: it is lost. The next leader
                // comes after a while, its clock off by up to a minute either way, and
                // starts from the log alone.
                self.crashes += 1;
                self.down_until = self.now + self.rng.below(30 * 60) as i64 * SECOND;
                self.leader_since = self.down_until;
                self.skew = (self.rng.below(120) as i64 - 60) * SECOND;
                // Now and then, the new leader's state is folded afresh from the log (it is
                // the same state: folds are deterministic, tested at length elsewhere).
                if self.crashes % 8 == 1 {
                    let mut refolded = State::default();
                    for record in &self.log {
                        refolded.apply(record.clone());
                    }
                    assert_eq!(
                        serde_json::to_vec(&refolded).unwrap(),
                        serde_json::to_vec(&self.state).unwrap(),
                        "the log folds to the same state again"
                    );
                    self.state = refolded;
                }
                return;
            }
            self.append(cycle.events);
            if !cycle.again {
                break;
            }
        }
    }
}

fn job(i: usize, start: i64) -> JobSpec {
    let periods = [
        "PT5M", "PT7M", "PT15M", "PT30M", "PT1H", "PT2H", "PT6H", "P1D",
    ];
    let epsilons = [30, 60, 300, 900];
    let start = Timestamp::from_micros(start + i as i64 * 37 * SECOND);
    let name = JobName::new(format!("job-{i:03}")).unwrap();
    let dependent = i % 10 == 9;
    JobSpec {
        name,
        command: "true".into(),
        shell: true,
        arguments: Vec::new(),
        schedule: (!dependent).then(|| {
            let repeats = if i % 10 == 4 { "R20" } else { "R" };
            format!("{repeats}/{start}/{}", periods[i % periods.len()])
        }),
        schedule_time_zone: None,
        epsilon_secs: epsilons[i % epsilons.len()],
        parents: if dependent {
            vec![
                JobName::new(format!("job-{:03}", i - 1)).unwrap(),
                JobName::new(format!("job-{:03}", i - 2)).unwrap(),
            ]
        } else {
            Vec::new()
        },
        owner: None,
        owner_name: None,
        description: None,
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        retries: (i % 4) as u32,
        disabled: false,
        concurrent: i % 3 == 2,
        concurrency: (i % 3 == 1).then_some(Concurrency::Queue),
        container: None,
        env: BTreeMap::new(),
        constraints: Vec::new(),
        run_as_user: None,
    }
}

/// What the log says about each job's due times and runs.
#[derive(Default)]
struct Ledger {
    /// Scheduled due times dealt with: by a trigger or by a miss, with how many times.
    dealt: BTreeMap<(JobName, Timestamp), u32>,
    /// Every run's terminal records.
    ends: BTreeMap<RunId, u32>,
    triggered: BTreeMap<RunId, (JobName, Timestamp, i64)>,
    launches: BTreeMap<(RunId, u32), u32>,
    parents_due: BTreeMap<JobName, Vec<Timestamp>>,
    outcomes: BTreeMap<String, u32>,
}

fn ledger(log: &[Record]) -> Ledger {
    let mut l = Ledger::default();
    for r in log {
        match &r.event {
            Event::JobRunTriggered(e) => {
                l.triggered.insert(
                    e.run_id.clone(),
                    (e.job.clone(), e.scheduled_for, r.at.as_micros()),
                );
                match &e.cause {
                    RunCause::Schedule => {
                        *l.dealt.entry((e.job.clone(), e.scheduled_for)).or_default() += 1
                    }
                    RunCause::Parents { .. } => l
                        .parents_due
                        .entry(e.job.clone())
                        .or_default()
                        .push(e.scheduled_for),
                    RunCause::Manual => {}
                }
            }
            Event::JobRunMissed(e) => match &e.run_id {
                Some(run) => {
                    *l.ends.entry(run.clone()).or_default() += 1;
                    *l.outcomes.entry("missed (not started)".into()).or_default() += 1;
                }
                None => {
                    *l.dealt.entry((e.job.clone(), e.scheduled_for)).or_default() += 1;
                    *l.outcomes
                        .entry("missed (not triggered)".into())
                        .or_default() += 1;
                }
            },
            Event::JobRunFinished(e) => {
                *l.ends.entry(e.run_id.clone()).or_default() += 1;
                *l.outcomes.entry(format!("{:?}", e.outcome)).or_default() += 1;
            }
            Event::TaskLaunched(e) => {
                if let TaskOwner::JobRun {
                    run_id, attempt, ..
                } = &e.owner
                {
                    *l.launches.entry((run_id.clone(), *attempt)).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    l
}

fn run(seed: u64) {
    let start = Timestamp::parse_rfc3339("2026-03-28T00:00:00Z")
        .unwrap()
        .as_micros();
    let mut sim = Sim::new(seed, start);
    let specs: Vec<JobSpec> = (0..150).map(|i| job(i, start + MINUTE)).collect();
    for spec in &specs {
        let events = jobs::put(&sim.state, spec.clone(), Put::Create, sim.leader_now()).unwrap();
        sim.append(events);
    }
    // A day and a half with failures, then two quiet hours so that everything settles.
    let end = start + 36 * HOUR;
    while sim.now < end {
        sim.step(10 * SECOND, true);
    }
    sim.down_until = sim.down_until.min(end);
    while sim.now < end + 2 * HOUR {
        sim.step(10 * SECOND, false);
    }
    assert!(sim.crashes >= 5, "the leader crashed {} times", sim.crashes);
    assert_eq!(sim.state.anomalies.count, 0, "{:?}", sim.state.anomalies);

    let l = ledger(&sim.log);
    let last_seen = sim.now - 10 * MINUTE;
    let mut occurrences = 0;
    for spec in specs.iter().filter(|s| s.schedule.is_some()) {
        let schedule = Schedule::parse(spec.schedule.as_deref().unwrap(), None).unwrap();
        // Every due time from the job's creation to near the end: dealt with exactly once.
        let created = sim.state.jobs.jobs[&spec.name].created_at;
        let mut next = schedule.first_at_or_after(created);
        while let Some((_, at)) = next.filter(|(_, at)| at.as_micros() < last_seen) {
            let n = l.dealt.get(&(spec.name.clone(), at)).copied().unwrap_or(0);
            assert_eq!(n, 1, "{} due at {at} was dealt with {n} times", spec.name);
            occurrences += 1;
            next = schedule.first_after(at);
        }
    }
    // Nothing else was dealt with: no due time that does not exist, none twice.
    assert!(l.dealt.values().all(|n| *n == 1));
    for (job, due) in &l.parents_due {
        assert!(
            due.windows(2).all(|w| w[0] < w[1]),
            "{job}'s parents triggered it twice for one success"
        );
    }
    for ((run, attempt), n) in &l.launches {
        assert_eq!(*n, 1, "attempt {attempt} of {run} was launched {n} times");
    }
    for (run, (job, _, triggered_at)) in &l.triggered {
        let ends = l.ends.get(run).copied().unwrap_or(0);
        assert!(ends <= 1, "run {run} of {job} ended {ends} times");
        // At most four attempts of at most 1.5 h each, with short waits between them.
        if *triggered_at < sim.now - 8 * HOUR {
            assert_eq!(ends, 1, "run {run} of {job} never ended");
        }
    }
    eprintln!(
        "seed {seed}: {occurrences} due times, {} runs, {} crashes, {} agents, {} records; {:?}",
        l.triggered.len(),
        sim.crashes,
        sim.agents,
        sim.log.len(),
        l.outcomes
    );
    assert!(l.outcomes.get("Succeeded").copied().unwrap_or(0) > 1000);
    assert!(
        l.outcomes
            .get("missed (not triggered)")
            .copied()
            .unwrap_or(0)
            > 0
    );
    let dependents: usize = l.parents_due.values().map(Vec::len).sum();
    assert!(dependents > 100, "{dependents} runs triggered by parents");
}

#[test]
fn every_due_time_is_run_once_or_recorded_missed_across_crashes_and_lost_agents() {
    for seed in [0x5eed_0001, 0xdead_beef_cafe, 0x0123_4567_89ab_cdef] {
        run(seed);
    }
}

/// A thousand jobs with big definitions (about 17 KiB of environment each), all due at once:
/// 1,000 launches would not fit the log's 8 MiB per append.
#[test]
fn a_cycle_launches_no_more_than_one_append_can_hold() {
    let start = Timestamp::parse_rfc3339("2026-03-28T00:00:00Z")
        .unwrap()
        .as_micros();
    let mut sim = Sim::new(1, start);
    // Room for 1,200 runs of 0.1 CPU.
    for _ in 0..12 {
        sim.add_agent();
    }
    for i in 0..1000 {
        let mut spec = job(i, start);
        spec.schedule = Some(format!("R/{}/PT1H", Timestamp::from_micros(start)));
        spec.parents = Vec::new();
        spec.env = (0..256)
            .map(|k| (format!("VAR_{k:03}"), "x".repeat(60)))
            .collect();
        let events = jobs::put(&sim.state, spec, Put::Create, sim.leader_now()).unwrap();
        sim.append(events);
    }
    sim.now += SECOND;
    let registered = jobs::ensure_framework(&sim.state);
    sim.append(registered);
    let mut launched = BTreeSet::new();
    let mut cycles = 0;
    loop {
        assert!(cycles < 10, "still deciding after {cycles} cycles");
        let now = sim.leader_now();
        let offers = allocate(
            &sim.state,
            now,
            &AllocatorConfig::default(),
            &format!("o{cycles}"),
        );
        sim.append(offers);
        let cycle = jobs::decide(&sim.state, now, &format!("m{cycles}"));
        let bytes: usize = cycle
            .events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .sum();
        assert!(bytes < 8 << 20, "cycle {cycles}: {bytes} bytes");
        for event in &cycle.events {
            if let Event::TaskLaunched(l) = event {
                assert!(launched.insert(l.task_id.clone()), "{} twice", l.task_id);
            }
        }
        sim.append(cycle.events);
        cycles += 1;
        if !cycle.again {
            break;
        }
    }
    assert_eq!(launched.len(), 1000, "after {cycles} cycles");
    assert!(
        cycles >= 3,
        "{cycles} cycles: the limit never cut one short"
    );
}
