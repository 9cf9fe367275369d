//! The compatible APIs' response shapes, pinned: the golden format-1 log
//! (`log/tests/golden/v1.events.jsonl`) is folded record by record, and after each record
//! about jobs every Chronos read is rendered (`jobs`, `job/stat`, `stats`, `graph/csv`,
//! `graph/dot`); after each about apps, tasks or deployments every Marathon read (apps with
//! everything embedded, tasks, deployments, the queue, the root group) and the record's
//! Marathon events; after each about agents, frameworks, offers or tasks the Mesos master's
//! (`state`, `state-summary`, `metrics/snapshot`). Regenerate deliberately with
//! `CAIRN_UPDATE_GOLDEN=1`.

use std::path::PathBuf;

use cairn_compat::chronos::{graph_csv, job_json, stat_json, stats_json};
use cairn_compat::marathon::{app_json, deployment_json, group_json, queue_json, task_json, Embed};
use cairn_compat::marathon_events::marathon_events;
use cairn_compat::mesos::{metrics_json, state_json, summary_json};
use cairn_compat::mesos_operator::operator_events;
use cairn_compat::mesos_scheduler::{reconcile, scheduler_events};
use cairn_log::event::Event;
use cairn_log::event::FrameworkId;
use cairn_log::Record;
use cairn_projections::{Fold, State};
use serde_json::{json, Value};

fn golden_records() -> Vec<Record> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../log/tests/golden/v1.events.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn chronos_reads(state: &State) -> Value {
    json!({
        "jobs": state.jobs.jobs.values().map(job_json).collect::<Vec<_>>(),
        "stat": state.jobs.jobs.keys()
            .map(|name| (name.to_string(), stat_json(state, name)))
            .collect::<serde_json::Map<_, _>>(),
        "stats/median": stats_json(state, "median").unwrap(),
        "stats/mean": stats_json(state, "mean").unwrap(),
        "graph/csv": graph_csv(state),
        "graph/dot": state.jobs.dot(),
    })
}

fn marathon_reads(state: &State, record: &Record) -> Value {
    let all = Embed {
        tasks: true,
        last_task_failure: true,
    };
    json!({
        "apps": state.apps.apps.values().map(|a| app_json(state, a, all)).collect::<Vec<_>>(),
        "tasks": state.tasks.tasks.keys().filter_map(|t| task_json(state, t)).collect::<Vec<_>>(),
        "deployments": state.apps.deployments.iter()
            .map(|(id, d)| deployment_json(id, d)).collect::<Vec<_>>(),
        "queue": queue_json(state, record.at),
        "groups": group_json(state, "/"),
        "events": marathon_events(state, record)
            .into_iter()
            .map(|(kind, data)| json!({ "event": kind, "data": data }))
            .collect::<Vec<_>>(),
    })
}

fn check(name: &str, snapshots: &[Value]) {
    let dump = serde_json::to_string_pretty(snapshots).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &dump).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("set CAIRN_UPDATE_GOLDEN=1 to create it");
    assert!(
        dump == expected,
        "a response shape changed; diff {} against a fresh dump",
        path.display()
    );
}

#[test]
fn marathon_reads_of_the_golden_log_keep_their_shape() {
    let mut state = State::default();
    let mut snapshots = Vec::new();
    for record in golden_records() {
        state.apply(record.clone());
        let about_apps = matches!(
            record.event,
            Event::AppCreated(_)
                | Event::AppUpdated(_)
                | Event::AppScaled(_)
                | Event::AppDeleted(_)
                | Event::DeploymentStarted(_)
                | Event::DeploymentStepFinished(_)
                | Event::DeploymentFinished(_)
                | Event::DeploymentFailed(_)
                | Event::TaskLaunched(_)
                | Event::TaskStatusUpdated(_)
        );
        if about_apps {
            snapshots.push(
                json!({ "after": record.offset.get(), "reads": marathon_reads(&state, &record) }),
            );
        }
    }
    check("marathon", &snapshots);
}

#[test]
fn mesos_reads_of_the_golden_log_keep_their_shape() {
    let mut state = State::default();
    let mut snapshots = Vec::new();
    for record in golden_records() {
        state.apply(record.clone());
        let about_the_cluster = matches!(
            record.event,
            Event::AgentRegistered(_)
                | Event::AgentReregistered(_)
                | Event::AgentDisconnected(_)
                | Event::AgentLost(_)
                | Event::AgentRemoved(_)
                | Event::FrameworkRegistered(_)
                | Event::FrameworkRemoved(_)
                | Event::OffersMade(_)
                | Event::OfferAccepted(_)
                | Event::TaskLaunched(_)
                | Event::TaskStatusUpdated(_)
        );
        if about_the_cluster {
            let leader = Some("127.0.0.1:5050");
            snapshots.push(json!({
                "after": record.offset.get(),
                "state": state_json(&state, leader),
                "state-summary": summary_json(&state, leader),
                "metrics/snapshot": metrics_json(&state, true),
            }));
        }
    }
    check("mesos", &snapshots);
}

#[test]
fn the_scheduler_api_events_of_the_golden_log_keep_their_shape() {
    let framework = FrameworkId::new("fw-ext").unwrap();
    let mut state = State::default();
    let mut offered = std::collections::BTreeSet::new();
    let mut events = Vec::new();
    for record in golden_records() {
        state.apply(record.clone());
        for event in scheduler_events(&state, &framework, &record, &mut offered) {
            events.push(json!({ "after": record.offset.get(), "event": event }));
        }
    }
    let tasks: Vec<_> = state.tasks.tasks.keys().cloned().collect();
    events.push(json!({ "reconcile": reconcile(&state, &framework, &tasks) }));
    check("mesos_scheduler", &events);
}

#[test]
fn the_operator_api_of_the_golden_log_keeps_its_shape() {
    let mut state = State::default();
    let mut events = Vec::new();
    for record in golden_records() {
        state.apply(record.clone());
        for event in operator_events(&state, &record) {
            events.push(json!({ "after": record.offset.get(), "event": event }));
        }
    }
    events.push(json!({ "get_state": cairn_compat::mesos_operator::state_json(&state) }));
    check("mesos_operator", &events);
}

#[test]
fn chronos_reads_of_the_golden_log_keep_their_shape() {
    let mut state = State::default();
    let mut snapshots = Vec::new();
    for record in golden_records() {
        state.apply(record.clone());
        let about_jobs = matches!(
            record.event,
            Event::JobCreated(_)
                | Event::JobUpdated(_)
                | Event::JobDeleted(_)
                | Event::JobRunTriggered(_)
                | Event::JobRunStarted(_)
                | Event::JobRunRetried(_)
                | Event::JobRunFinished(_)
                | Event::JobRunMissed(_)
        );
        if about_jobs {
            snapshots.push(json!({ "after": record.offset.get(), "reads": chronos_reads(&state) }));
        }
    }
    check("chronos", &snapshots);
}

#[test]
fn an_unknown_statistic_is_refused_by_name() {
    let e = stats_json(&State::default(), "p42").unwrap_err();
    assert!(e.contains("\"p42\" is not a statistic"), "{e}");
}
