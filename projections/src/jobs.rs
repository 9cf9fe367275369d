//! The jobs read model: definitions, runs with their attempts and outcome, missed runs, and the
//! dependency graph.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{JobName, JobSpec, RunCause, RunId, RunOutcome, TaskId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::IdMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    pub jobs: IdMap<JobName, Job>,
    /// Active runs, and the latest finished ones (see [`crate::Retention`]).
    pub runs: IdMap<RunId, Run>,
    /// Finished runs still kept, by the offset that finished them: the oldest go first.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub ended: BTreeMap<u64, RunId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub spec: Box<JobSpec>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub success_count: u64,
    pub error_count: u64,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<Timestamp>,
    pub last_run: Option<RunId>,
    /// The latest successful run (dependent jobs name it as their cause).
    pub last_success_run: Option<RunId>,
    /// When the current schedule took effect: creation, a change of schedule or time zone,
    /// or re-enabling. Occurrences before it were never due.
    pub schedule_from: Timestamp,
    /// The latest scheduled occurrence already dealt with (triggered or missed): the next
    /// due one comes after it. Never moves back, so no occurrence is dealt with twice.
    pub schedule_cursor: Option<Timestamp>,
    /// The parents' time of the latest run this job's parents triggered.
    pub parents_cursor: Option<Timestamp>,
    /// The next scheduled occurrence not yet dealt with ([`Job::next_due`], kept so that a
    /// cycle need not work it out for every job); `None` for a dependent job or an ended
    /// schedule.
    pub due: Option<Timestamp>,
    /// Runs triggered and not finished.
    #[serde(deserialize_with = "crate::bulk::set")]
    pub active_runs: BTreeSet<RunId>,
    /// Which run was triggered for each time it was due, among the runs kept: a run is
    /// triggered at most once. Kept with its job, not in a map of all jobs beside it, so
    /// that the fold finds it with the job it has already found.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub triggered: BTreeMap<Timestamp, RunId>,
    /// The latest runs that were due but could not start within epsilon, oldest first.
    pub missed: Vec<MissedRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedRun {
    pub scheduled_for: Timestamp,
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub job: JobName,
    pub scheduled_for: Timestamp,
    pub cause: RunCause,
    pub triggered_at: Timestamp,
    pub attempts: Vec<Attempt>,
    pub outcome: Option<RunOutcome>,
    pub finished_at: Option<Timestamp>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub task_id: Option<TaskId>,
    pub started_at: Option<Timestamp>,
    /// Why the attempt before this one was retried.
    pub retry_reason: Option<String>,
    /// Not launched before this time (the retry delay).
    pub not_before: Option<Timestamp>,
}

impl Job {
    /// The job's schedule, parsed; `None` for a dependent job (or one whose stored schedule no
    /// longer parses, which validation prevents).
    pub fn schedule(&self) -> Option<crate::schedule::Schedule> {
        let text = self.spec.schedule.as_deref()?;
        crate::schedule::Schedule::parse(text, self.spec.schedule_time_zone.as_deref()).ok()
    }

    /// The next scheduled occurrence not yet dealt with: after the cursor, and not before the
    /// schedule took effect. `None` for a dependent job or a finished schedule.
    pub fn next_due(&self) -> Option<Timestamp> {
        let schedule = self.schedule()?;
        let after = match self.schedule_cursor {
            Some(c) if c >= self.schedule_from => schedule.first_after(c),
            _ => schedule.first_at_or_after(self.schedule_from),
        };
        after.map(|(_, at)| at)
    }
}

impl Jobs {
    /// Jobs that name `job` as a parent, in name order: the edges of the dependency graph.
    pub fn children(&self, job: &JobName) -> Vec<&JobName> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.spec.parents.contains(job))
            .map(|(name, _)| name)
            .collect()
    }

    /// Every parent → child edge, by child name.
    pub fn edges(&self) -> impl Iterator<Item = (&JobName, &JobName)> {
        self.jobs
            .iter()
            .flat_map(|(name, job)| job.spec.parents.iter().map(move |p| (p, name)))
    }

    /// The dependency graph in Graphviz' dot language (what Chronos' `graph/dot` serves).
    pub fn dot(&self) -> String {
        let mut dot = String::from("digraph G {\n");
        for name in self.jobs.keys() {
            dot.push_str(&format!("  {:?};\n", name.as_str()));
        }
        for (parent, child) in self.edges() {
            dot.push_str(&format!(
                "  {:?} -> {:?};\n",
                parent.as_str(),
                child.as_str()
            ));
        }
        dot.push_str("}\n");
        dot
    }

    /// How long each finished run of `job` still kept took, from its first start to its end,
    /// in seconds, shortest first.
    pub fn durations(&self, job: &JobName) -> Vec<f64> {
        let mut secs: Vec<f64> = self
            .runs_of(job)
            .filter_map(|(_, r)| {
                let start = r.attempts.iter().find_map(|a| a.started_at)?;
                let end = r.finished_at?;
                Some((end.as_micros() - start.as_micros()) as f64 / 1e6)
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        secs
    }

    /// The runs of `job` still kept, by the time they were due.
    pub fn runs_of<'a>(&'a self, job: &JobName) -> impl Iterator<Item = (&'a RunId, &'a Run)> {
        self.jobs
            .get(job)
            .into_iter()
            .flat_map(|job| job.triggered.values())
            .filter_map(|id| Some((id, self.runs.get(id)?)))
    }
}

/// The `q` quantile of sorted `values` (nearest rank), `None` if there are none.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    (!values.is_empty()).then(|| values[((values.len() - 1) as f64 * q).round() as usize])
}
