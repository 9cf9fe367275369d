//! The projections of the golden format-1 log (`log/tests/golden/v1.events.jsonl`): a committed
//! dump of the state it folds to, and the facts a reader would check by hand. Regenerate the
//! dump deliberately with `CAIRN_UPDATE_GOLDEN=1` when the read models change.

use std::path::PathBuf;

use cairn_log::event::{AppId, JobName, RunId, RunOutcome, TaskId, TaskState};
use cairn_log::Record;
use cairn_projections::apps::{DeploymentStatus, VersionChange};
use cairn_projections::cluster::AgentStatus;
use cairn_projections::{Fold, State};

fn golden_records() -> Vec<Record> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../log/tests/golden/v1.events.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fold_until(records: &[Record], until: u64) -> State {
    let mut state = State::default();
    state.advance(records.iter().cloned(), until);
    state
}

#[test]
fn the_golden_log_folds_to_its_committed_state() {
    let records = golden_records();
    let mut state = State::default();
    for r in records {
        state.apply(r);
    }
    let dump = serde_json::to_string_pretty(&state).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.state.json");
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &dump).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("set CAIRN_UPDATE_GOLDEN=1 to create it");
    assert!(
        dump == expected,
        "the state of the golden log changed; diff {} against a fresh dump",
        path.display()
    );
}

#[test]
fn the_golden_log_reads_as_a_person_would_expect() {
    let records = golden_records();
    let end = fold_until(&records, u64::MAX);
    let task = &end.tasks.tasks[&TaskId::new("nginx.1").unwrap()];
    let states: Vec<TaskState> = task.statuses.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [TaskState::Staging, TaskState::Running, TaskState::Killed]
    );
    assert!(task.kill_requested);
    assert!(
        !end.apps.apps.contains_key(&AppId::new("/nginx").unwrap()),
        "deleted"
    );

    // As of offset 19, /nginx existed at its third version with one instance running.
    let mid = fold_until(&records, 19);
    let app = &mid.apps.apps[&AppId::new("/nginx").unwrap()];
    let changes: Vec<VersionChange> = app.versions.iter().map(|v| v.change).collect();
    assert_eq!(
        changes,
        [
            VersionChange::Created,
            VersionChange::Scaled,
            VersionChange::Updated
        ]
    );
    assert_eq!(app.spec.instances, 2);
    assert_eq!(app.instances.len(), 1);
    let agent = &mid.cluster.agents[&cairn_log::event::AgentId::new("agent-1").unwrap()];
    assert_eq!(
        agent.used.cpus_milli, 200,
        "the running nginx task holds 0.2 CPUs"
    );
    assert_eq!(
        end.cluster.agents.values().next().unwrap().status,
        AgentStatus::Removed
    );
    assert_eq!(
        end.cluster.agents.values().next().unwrap().used.cpus_milli,
        0
    );

    let deployments: Vec<&DeploymentStatus> =
        end.apps.deployments.values().map(|d| &d.status).collect();
    assert_eq!(deployments[0], &DeploymentStatus::Finished);
    assert_eq!(
        deployments[1],
        &DeploymentStatus::Canceled { rolled_back: true }
    );

    let run = &end.jobs.runs[&RunId::new("run-1").unwrap()];
    assert_eq!(run.outcome, Some(RunOutcome::Succeeded));
    assert_eq!(run.attempts.len(), 2, "one retry");
    let hourly = &end.jobs.jobs[&JobName::new("hourly-report").unwrap()];
    assert_eq!((hourly.success_count, hourly.missed.len()), (1, 1));
    assert!(
        !end.jobs
            .jobs
            .contains_key(&JobName::new("publish-report").unwrap()),
        "deleted"
    );
    let at_27 = fold_until(&records, 27);
    let children = at_27.jobs.children(&JobName::new("hourly-report").unwrap());
    assert_eq!(children, [&JobName::new("publish-report").unwrap()]);

    // Audit: alice's update of /nginx points back at her scale of it.
    let update = end
        .audit
        .entries
        .iter()
        .find(|e| e.kind == "AppUpdated")
        .unwrap();
    let scale = end
        .audit
        .entries
        .iter()
        .find(|e| e.kind == "AppScaled")
        .unwrap();
    assert_eq!(update.subject, "app:/nginx");
    assert_eq!(update.previous, Some(scale.offset));
    assert_eq!(end.offset, records.len() as u64);
}
