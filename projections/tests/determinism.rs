//! Determinism, property-tested: random valid histories fold to byte-identical state every
//! time, from scratch or from any checkpoint, and the state's own sums add up.

use cairn_log::event::{Resources, TaskOwner};
use cairn_log::Record;
use cairn_projections::cluster::FrameworkStatus;
use cairn_projections::synth::history;
use cairn_projections::{Fold, Retention, State};
use proptest::prelude::*;

fn fold(records: &[Record]) -> State {
    fold_into(State::default(), records)
}

fn fold_into(mut state: State, records: &[Record]) -> State {
    for r in records {
        state.apply(r.clone());
    }
    state
}

fn bytes(state: &State) -> Vec<u8> {
    serde_json::to_vec(state).unwrap()
}

fn ops() -> impl Strategy<Value = Vec<(u8, u16)>> {
    prop::collection::vec((any::<u8>(), any::<u16>()), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn folding_the_same_log_twice_gives_byte_identical_state(ops in ops()) {
        let records = history(&ops);
        prop_assert_eq!(bytes(&fold(&records)), bytes(&fold(&records)));
    }

    #[test]
    fn folding_from_any_checkpoint_gives_the_same_state(ops in ops(), cut in any::<prop::sample::Index>()) {
        let records = history(&ops);
        let whole = fold(&records);
        let at = if records.is_empty() { 0 } else { cut.index(records.len() + 1) };
        // A checkpoint is the serialized state: restore it and fold the rest.
        let checkpoint = bytes(&fold(&records[..at]));
        let mut resumed: State = serde_json::from_slice(&checkpoint).unwrap();
        prop_assert_eq!(resumed.offset, at as u64);
        resumed.advance(records.iter().cloned(), u64::MAX);
        prop_assert_eq!(bytes(&resumed), bytes(&whole));
    }

    #[test]
    fn valid_histories_fold_without_anomalies_and_sums_add_up(ops in ops()) {
        let records = history(&ops);
        let state = fold(&records);
        prop_assert_eq!(state.anomalies.count, 0, "{:?}", state.anomalies.latest);
        for (agent_id, agent) in &state.cluster.agents {
            let live: Vec<_> = state.tasks.tasks.iter()
                .filter(|(_, t)| &t.agent_id == agent_id && !t.is_terminal())
                .collect();
            let used = live.iter().try_fold(Resources::default(), |sum, (_, t)| sum.checked_add(&t.resources)).unwrap();
            prop_assert_eq!(&agent.used, &used);
            prop_assert_eq!(agent.tasks.len(), live.len());
            let offered = state.cluster.offers.values()
                .filter(|o| &o.agent_id == agent_id)
                .try_fold(Resources::default(), |sum, o| sum.checked_add(&o.resources)).unwrap();
            prop_assert_eq!(&agent.offered, &offered);
        }
        for (app_id, app) in &state.apps.apps {
            let instances = state.tasks.tasks.iter().filter(|(_, t)| {
                !t.is_terminal() && matches!(&t.owner, TaskOwner::App { app_id: a, .. } if a == app_id)
            }).count();
            prop_assert_eq!(app.instances.len(), instances);
        }
    }

    #[test]
    fn retention_drops_only_ended_history_and_stays_deterministic(
        ops in ops(),
        kept in (0usize..4, 0usize..4, 0usize..4, 0usize..3, 1usize..5, 0usize..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let retention = Retention {
            ended_tasks: kept.0,
            ended_runs: kept.1,
            ended_deployments: kept.2,
            missed_per_job: kept.3,
            audit_entries: kept.4,
            removed_frameworks: kept.5,
        };
        let records = history(&ops);
        let everything = fold(&records);
        let bounded = fold_into(State::with_retention(retention), &records);
        prop_assert_eq!(bounded.anomalies.count, 0, "{:?}", bounded.anomalies.latest);

        let ended = bounded.tasks.tasks.values().filter(|t| t.is_terminal()).count();
        prop_assert!(ended <= kept.0);
        prop_assert_eq!(ended, bounded.tasks.ended.len());
        let finished = bounded.jobs.runs.values().filter(|r| r.outcome.is_some()).count();
        prop_assert!(finished <= kept.1);
        prop_assert!(bounded.apps.ended.len() <= kept.2);
        prop_assert!(bounded.jobs.jobs.values().all(|j| j.missed.len() <= kept.3));
        prop_assert!(bounded.audit.entries.len() <= kept.4);
        let removed = bounded.cluster.frameworks.values().filter(|f| f.status == FrameworkStatus::Removed).count();
        prop_assert!(removed <= kept.5);
        prop_assert_eq!(removed, bounded.cluster.removed_frameworks.len());
        prop_assert!(bounded.audit.latest.values().all(|o| bounded.audit.entries.iter().any(|e| e.offset == *o)));
        let latest = |s: &State| s.audit.entries.back().map(|e| (e.offset, e.subject.clone(), e.actor.clone()));
        prop_assert_eq!(latest(&bounded), latest(&everything));
        // What is live is never dropped: it matches the fold that keeps everything.
        let live = |s: &State| -> Vec<u8> {
            let tasks: Vec<_> = s.tasks.tasks.iter().filter(|(_, t)| !t.is_terminal()).collect();
            let runs: Vec<_> = s.jobs.runs.iter().filter(|(_, r)| r.outcome.is_none()).collect();
            let c = &s.cluster;
            let frameworks: Vec<_> = c.frameworks.iter().filter(|(_, f)| f.status != FrameworkStatus::Removed).collect();
            let cluster = (&c.leader, &c.masters, &c.agents, frameworks, &c.offers);
            serde_json::to_vec(&(tasks, runs, cluster, &s.apps.apps)).unwrap()
        };
        prop_assert_eq!(live(&bounded), live(&everything));

        let at = if records.is_empty() { 0 } else { cut.index(records.len() + 1) };
        let checkpoint = bytes(&fold_into(State::with_retention(retention), &records[..at]));
        let mut resumed: State = serde_json::from_slice(&checkpoint).unwrap();
        resumed.advance(records.iter().cloned(), u64::MAX);
        prop_assert_eq!(bytes(&resumed), bytes(&bounded));
    }
}

/// The histories the properties are checked on hold every kind of event but those listed, so
/// that a fold no history exercises is a choice, not an oversight.
#[test]
fn the_histories_cover_the_vocabulary() {
    use cairn_log::event::EventKind;
    use strum::IntoEnumIterator;

    let seen: std::collections::BTreeSet<EventKind> = cairn_projections::synth::Seeded::default()
        .next_chunk(100_000)
        .iter()
        .map(|r| r.event.kind())
        .collect();
    let missing: Vec<EventKind> = EventKind::iter().filter(|k| !seen.contains(k)).collect();
    // Masters and formats are the log's own facts, folded in the golden log and the cluster
    // tests.
    use EventKind::*;
    assert_eq!(
        missing,
        [LeaderElected, MasterJoined, MasterLeft, FormatBarrier]
    );
}
