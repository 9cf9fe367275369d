//! The agent's durable state under `<data-dir>/agent/`: its identity, a record per task it
//! runs, and the status updates the master has not yet acknowledged.
//!
//! Every write is a whole file written beside its target, fsynced, renamed over it, and the
//! directory fsynced: after a crash a file is either the old version or the new one. Files are
//! small and written once per state change, so plain files beat a database here: they are easy
//! to inspect and need no compaction.
//!
//! Layout: `identity.json`, `tasks/<task-id>.json`, `updates/<seq:020>.json` (sent and deleted
//! in `seq` order).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cairn_log::event::{AgentId, FrameworkId, Resources, TaskId, TaskSpec, TaskState, Term};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use cairn_log::protocol::StatusUpdate;

/// Who this agent is, and the highest leader term it has obeyed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: Option<AgentId>,
    pub term: Term,
}

/// How a running task can be found again after the agent restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// The task's executor process (`cairn executor`): its pid and its start time in clock
    /// ticks since boot, so that a recycled pid is not mistaken for it.
    Process {
        pid: i32,
        start_ticks: u64,
    },
    Docker {
        container_id: String,
    },
}

/// What the agent remembers of one task until its terminal update is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub name: String,
    pub resources: Resources,
    pub spec: TaskSpec,
    /// The last state the agent reported.
    pub state: TaskState,
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// A kill was asked for: an exit from now on is `TASK_KILLED`.
    #[serde(default)]
    pub kill_requested: bool,
    /// The task's framework (its executor, if it names one, is the framework's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    next_seq: Mutex<u64>,
}

impl Store {
    /// Opens (creating) the store in `dir`, removing temporary files a crash left behind.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["tasks", "updates"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            for entry in fs::read_dir(&path).map_err(|e| Error::io(&path, e))? {
                let entry = entry.map_err(|e| Error::io(&path, e))?;
                if entry.path().extension().is_some_and(|x| x == "tmp") {
                    fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
                }
            }
        }
        let store = Self {
            dir: dir.to_owned(),
            next_seq: Mutex::new(0),
        };
        let next = store.pending()?.last().map_or(0, |(seq, _)| seq + 1);
        *store.next_seq.lock().expect("seq lock") = next;
        Ok(store)
    }

    pub fn identity(&self) -> Result<Identity> {
        let path = self.dir.join("identity.json");
        if !path.exists() {
            return Ok(Identity::default());
        }
        read_json(&path)
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<()> {
        write_atomic(&self.dir, "identity.json", identity)
    }

    /// Every task record, ordered by task id.
    pub fn tasks(&self) -> Result<Vec<TaskRecord>> {
        let mut tasks: Vec<TaskRecord> = read_dir_json(&self.dir.join("tasks"))?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        Ok(tasks)
    }

    pub fn save_task(&self, task: &TaskRecord) -> Result<()> {
        write_atomic(&self.dir.join("tasks"), &file_name(&task.task_id)?, task)
    }

    pub fn remove_task(&self, task_id: &TaskId) -> Result<()> {
        remove(&self.dir.join("tasks"), &file_name(task_id)?)
    }

    /// Stores `update` durably, after every update stored before it.
    pub fn push_update(&self, update: &StatusUpdate) -> Result<u64> {
        let mut next = self.next_seq.lock().expect("seq lock");
        let seq = *next;
        write_atomic(
            &self.dir.join("updates"),
            &format!("{seq:020}.json"),
            update,
        )?;
        *next += 1;
        Ok(seq)
    }

    /// Unacknowledged updates, oldest first.
    pub fn pending(&self) -> Result<Vec<(u64, StatusUpdate)>> {
        let mut updates: Vec<(u64, StatusUpdate)> = read_dir_json(&self.dir.join("updates"))?
            .into_iter()
            .filter_map(|(name, u)| Some((name.parse::<u64>().ok()?, u)))
            .collect();
        updates.sort_by_key(|(seq, _)| *seq);
        Ok(updates)
    }

    /// Forgets an acknowledged update.
    pub fn acknowledge(&self, seq: u64) -> Result<()> {
        remove(&self.dir.join("updates"), &format!("{seq:020}.json"))
    }
}

/// `<task-id>.json`, refusing an id that is not a plain file name.
fn file_name(task_id: &TaskId) -> Result<String> {
    let id = task_id.as_str();
    if id.starts_with('.') || id.contains('/') {
        return Err(Error::Config(format!("task_id: {id:?} cannot name a file")));
    }
    Ok(format!("{id}.json"))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// `(file stem, value)` of every `*.json` in `dir`.
fn read_dir_json<T: DeserializeOwned>(dir: &Path) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((stem, read_json(&path)?));
    }
    Ok(out)
}

fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let target = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        path: target.clone(),
        message: e.to_string(),
    })?;
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_data().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
    sync_dir(dir)
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_log::event::Timestamp;

    fn update(n: u32) -> StatusUpdate {
        StatusUpdate {
            uuid: format!("u{n}"),
            task_id: TaskId::new("t1").unwrap(),
            state: TaskState::Running,
            reason: None,
            message: None,
            healthy: None,
            at: Timestamp::default(),
            source: Default::default(),
        }
    }

    #[test]
    fn updates_survive_reopen_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..3 {
            store.push_update(&update(n)).unwrap();
        }
        store.acknowledge(0).unwrap();
        drop(store);
        // A crash mid-write leaves a temporary file; it is not an update.
        fs::write(
            dir.path().join("updates/00000000000000000009.json.tmp"),
            b"{",
        )
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        let uuids: Vec<_> = store
            .pending()
            .unwrap()
            .into_iter()
            .map(|(_, u)| u.uuid)
            .collect();
        assert_eq!(uuids, ["u1", "u2"]);
        // New updates go after the surviving ones.
        assert_eq!(store.push_update(&update(3)).unwrap(), 3);
    }

    #[test]
    fn identity_and_tasks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.identity().unwrap(), Identity::default());
        let identity = Identity {
            agent_id: Some(AgentId::new("a1").unwrap()),
            term: Term(4),
        };
        store.save_identity(&identity).unwrap();
        let task = TaskRecord {
            task_id: TaskId::new("t1").unwrap(),
            name: "t".into(),
            resources: Resources::default(),
            spec: TaskSpec::default(),
            state: TaskState::Running,
            runtime: Some(Runtime::Process {
                pid: 42,
                start_ticks: 7,
            }),
            kill_requested: false,
            framework_id: None,
        };
        store.save_task(&task).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.identity().unwrap(), identity);
        assert_eq!(store.tasks().unwrap(), vec![task.clone()]);
        store.remove_task(&task.task_id).unwrap();
        assert!(store.tasks().unwrap().is_empty());
    }
}
