//! `cairn bench jobs`: the jobs scheduler at scale, end to end. A single-node master (real
//! fsynced log, projector, runner) holds `jobs` jobs whose periods spread evenly on a log
//! scale from one minute to one day, each first due at a different moment after the start;
//! fake agents run every attempt for a while and report it finished. For a run of wall-clock
//! time the master schedules as it would in production, then the log is read back: how late
//! each scheduled run was launched (`JobRunStarted`) and running (the agent's `TASK_RUNNING`)
//! after its due time, and how many were missed. Then the tick: one jobs decision over the
//! final state, and the memory each job takes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_log::engine::{Clock, SystemClock};
use cairn_log::event::{
    Actor, Entry, Event, JobName, JobSpec, RunId, TaskId, TaskState, Timestamp,
};
use cairn_log::Offset;
use cairn_projections::State;
use cairn_scheduler::allocator::{allocate, AllocatorConfig};
use cairn_scheduler::deployments::Put;
use cairn_scheduler::jobs;
use hdrhistogram::Histogram;

use super::apps::Master;
use super::{machine, rss_kib};

const SECOND: i64 = 1_000_000;
const MIN_PERIOD_SECS: f64 = 60.0;
const MAX_PERIOD_SECS: f64 = 86_400.0;
/// Jobs created per append.
const CHUNK: usize = 1_000;

/// Job `i` of `n`: its period spread on a log scale over [1 min, 1 day], its first due time
/// spread over its first period after `start`.
fn spec(i: usize, n: usize, start: i64) -> anyhow::Result<JobSpec> {
    let scale = i as f64 / n.max(2).saturating_sub(1) as f64;
    let period = (MIN_PERIOD_SECS * (MAX_PERIOD_SECS / MIN_PERIOD_SECS).powf(scale)).round() as i64;
    // Golden-ratio steps: offsets spread evenly whatever the period.
    let offset = ((i as f64 * 0.618_033_988_75).fract() * period as f64) as i64;
    let first = Timestamp::from_micros(start + offset * SECOND);
    Ok(JobSpec {
        name: JobName::new(format!("bench-{i:06}"))?,
        command: "true".into(),
        shell: true,
        arguments: Vec::new(),
        schedule: Some(format!("R/{first}/PT{period}S")),
        schedule_time_zone: None,
        epsilon_secs: 60,
        parents: Vec::new(),
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
        constraints: Vec::new(),
        run_as_user: None,
    })
}

pub async fn bench(
    dir: &Path,
    jobs: usize,
    agents: usize,
    seconds: u64,
    run_for: Duration,
) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let master = Master::start(dir).await?;
    let (log, projector) = (&master.log, &master.projector);
    master.fake_agents(agents, Some(run_for)).await?;

    // Jobs are created as `createJob` creates them (the same events), many per append; the
    // first due times start well after they all exist.
    let setup = Instant::now();
    let start = SystemClock.now().as_micros() + 30 * SECOND;
    let rss_before = rss_kib(std::process::id());
    let empty = State::default();
    let mut entries = Vec::with_capacity(CHUNK);
    for i in 0..jobs {
        let events = jobs::put(
            &empty,
            spec(i, jobs, start)?,
            Put::Create,
            SystemClock.now(),
        )
        .map_err(|e| anyhow::anyhow!("job {i}: {e:?}"))?;
        entries.extend(events.into_iter().map(|event| Entry {
            actor: Actor::system(),
            event,
        }));
        if entries.len() >= CHUNK || i + 1 == jobs {
            log.append(std::mem::take(&mut entries)).await?;
        }
    }
    projector.wait_for(log.head()).await?;
    let rss_jobs = rss_kib(std::process::id());
    let created = log.head();
    println!(
        "{jobs} jobs created and folded in {:.1} s (periods 1 min … 1 day)",
        setup.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        SystemClock.now().as_micros() < start,
        "setting up took longer than the 30 s before the first due time"
    );

    let until = start + seconds as i64 * SECOND;
    while SystemClock.now().as_micros() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Runs due in the last `run_for` may not have been reported running yet.
    let counted_until = until - run_for.as_micros() as i64 - SECOND;
    // The log says what happened: when each scheduled run was due, launched and running.
    let mut due: BTreeMap<RunId, i64> = BTreeMap::new();
    let mut launched: BTreeMap<TaskId, i64> = BTreeMap::new();
    let (mut launch_late, mut running_late) =
        (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    let (mut missed, mut reasons) = (0u64, BTreeMap::<String, u64>::new());
    let mut from = created + 1;
    loop {
        let records = log.read(Offset::new(from).expect("from 1"), 10_000)?;
        let Some(last) = records.last() else { break };
        from = last.offset.get() + 1;
        for r in records {
            match r.event {
                Event::JobRunTriggered(t) if t.scheduled_for.as_micros() <= counted_until => {
                    due.insert(t.run_id, t.scheduled_for.as_micros());
                }
                Event::JobRunStarted(s) if s.attempt == 1 => {
                    if let Some(at) = due.get(&s.run_id) {
                        launch_late.record((r.at.as_micros() - at).max(0) as u64)?;
                        launched.insert(s.task_id, *at);
                    }
                }
                Event::TaskStatusUpdated(u) if u.state == TaskState::Running => {
                    if let Some(at) = launched.remove(&u.task_id) {
                        running_late.record((r.at.as_micros() - at).max(0) as u64)?;
                    }
                }
                Event::JobRunMissed(m) if m.scheduled_for.as_micros() <= counted_until => {
                    missed += 1;
                    *reasons
                        .entry(m.reason.chars().take(60).collect())
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{seconds} s of scheduling: {} scheduled runs due, {} launched, {} running, {missed} missed; \
         log head {}",
        due.len(),
        launch_late.len(),
        running_late.len(),
        log.head(),
    );
    for (reason, n) in &reasons {
        println!("  missed {n}: {reason}…");
    }
    println!("| lateness after the due time | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for (what, h) in [("launched", &launch_late), ("running", &running_late)] {
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {:.1} ms |",
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }

    // A copy, so that the projector goes on folding what the runner still decides.
    let state: State = (*projector.current().await).clone();

    // The tick: what one jobs decision costs over all the jobs (the allocator's apart), on
    // the final state, at times when nothing is due and when the next second's runs are.
    let config = AllocatorConfig::default();
    let mut ticks = Histogram::<u64>::new(3)?;
    let mut allocating = Histogram::<u64>::new(3)?;
    let mut decided = 0;
    for n in 0..50 {
        let now = Timestamp::from_micros(until + n * SECOND / 10);
        let started = Instant::now();
        let offers = allocate(&state, now, &config, &format!("t{n}"));
        allocating.record(started.elapsed().as_micros() as u64)?;
        let started = Instant::now();
        let cycle = jobs::decide(&state, now, &format!("t{n}"));
        ticks.record(started.elapsed().as_micros() as u64)?;
        decided += cycle.events.len() + offers.len();
    }
    println!(
        "tick over {} jobs, {} runs kept: jobs decision p50 {:.2} ms, p99 {:.2} ms; \
         allocator p50 {:.2} ms ({decided} events decided in 50 ticks)",
        state.jobs.jobs.len(),
        state.jobs.runs.len(),
        ms(&ticks, 0.5),
        ms(&ticks, 0.99),
        ms(&allocating, 0.5),
    );
    println!(
        "memory: {:.2} KiB per job in the master (log cache and projections; +{} MiB for \
         {jobs} jobs); state {:.1} MiB as JSON",
        rss_jobs.saturating_sub(rss_before) as f64 / jobs as f64,
        rss_jobs.saturating_sub(rss_before) / 1024,
        serde_json::to_vec(&state)?.len() as f64 / (1 << 20) as f64,
    );
    drop(state);
    master.stop().await;
    Ok(())
}
