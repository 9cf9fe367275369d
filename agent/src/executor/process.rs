//! The agent's side of process tasks: prepares the sandbox and the task's cgroup, starts
//! `cairn executor` for it, waits for it (or, after an agent restart, watches its pid), and
//! turns its exit report into the task's last status.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_log::event::{TaskSpec, TaskState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::wrapper::{KillRequest, ProcessLaunch};
use super::{ExitReport, StartError, CONTROL_DIR};
use crate::cgroups::{Isolation, Limits, TaskCgroup};
use crate::store::Runtime;

/// How often a recovered executor (not the agent's child) is checked for having exited.
const RECOVERED_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct ProcessExecutor {
    /// The `cairn` binary, started as `cairn executor <sandbox>`.
    pub executable: PathBuf,
    pub isolation: Isolation,
}

/// A started executor: the child handle when this agent started it.
#[derive(Debug)]
pub struct Started {
    pub runtime: Runtime,
    pub child: Option<tokio::process::Child>,
}

impl ProcessExecutor {
    /// Prepares `sandbox` and starts the executor for `spec`.
    pub fn start(
        &self,
        name: &str,
        sandbox: &Path,
        spec: &TaskSpec,
        limits: Limits,
        env: BTreeMap<String, String>,
        default_grace: Duration,
    ) -> Result<Started, StartError> {
        let invalid = StartError::invalid;
        let failed = |message| StartError::failed("REASON_EXECUTOR_TERMINATED", message);
        let command = spec
            .command
            .as_ref()
            .ok_or_else(|| invalid("command: a process task needs a command".into()))?;
        let (program, args) = match (&command.value, command.shell) {
            (Some(value), true) => ("/bin/sh".to_owned(), vec!["-c".to_owned(), value.clone()]),
            // Mesos: without a shell, `value` is the executable and `args` the whole argv.
            (Some(value), false) => (
                value.clone(),
                command.args.iter().skip(1).cloned().collect(),
            ),
            (None, _) => match command.args.split_first() {
                Some((program, rest)) => (program.clone(), rest.to_vec()),
                None => return Err(invalid("command: neither value nor args is set".into())),
            },
        };
        let (uid, gid) = match &command.user {
            None => (None, None),
            Some(user) => match nix::unistd::User::from_name(user) {
                Ok(Some(u)) => (Some(u.uid.as_raw()), Some(u.gid.as_raw())),
                Ok(None) => {
                    return Err(invalid(format!(
                        "command.user: no user {user:?} on this agent"
                    )))
                }
                Err(e) => {
                    return Err(failed(format!(
                        "command.user: cannot look up {user:?}: {e}"
                    )))
                }
            },
        };
        let control = sandbox.join(CONTROL_DIR);
        super::prepare(sandbox).map_err(failed)?;
        let cgroup = match self.isolation {
            Isolation::None => None,
            isolation => Some(
                TaskCgroup::create(isolation, &format!("cairn-{name}"), limits)
                    .map_err(|e| failed(format!("cannot create the task's cgroup: {e}")))?,
            ),
        };
        let cleanup = |e: StartError| {
            if let Some(cgroup) = &cgroup {
                cgroup.remove(None);
            }
            e
        };
        let launch = ProcessLaunch {
            program,
            args,
            env,
            uid,
            gid,
            cgroup: cgroup.clone(),
            kill_grace_secs: spec
                .kill_grace_period_secs
                .unwrap_or(default_grace.as_secs()),
        };
        let bytes = serde_json::to_vec(&launch).map_err(|e| cleanup(failed(e.to_string())))?;
        fs::write(control.join("launch.json"), bytes)
            .map_err(|e| cleanup(failed(format!("cannot write launch.json: {e}"))))?;
        let log = fs::File::create(control.join("executor.log"))
            .map_err(|e| cleanup(failed(format!("cannot create executor.log: {e}"))))?;
        let child = tokio::process::Command::new(&self.executable)
            .arg("executor")
            .arg(sandbox)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                cleanup(failed(format!(
                    "cannot start the executor {}: {e}",
                    self.executable.display()
                )))
            })?;
        let pid = child.id().unwrap_or_default() as i32;
        let start_ticks = start_ticks(pid).unwrap_or_default();
        Ok(Started {
            runtime: Runtime::Process { pid, start_ticks },
            child: Some(child),
        })
    }
}

/// Waits until the executor has exited, then reads how the task ended.
pub async fn wait(
    sandbox: &Path,
    runtime: &Runtime,
    child: Option<tokio::process::Child>,
) -> ExitReport {
    match child {
        Some(mut child) => {
            let _ = child.wait().await;
        }
        None => {
            if let Runtime::Process { pid, start_ticks } = runtime {
                while is_alive(*pid, *start_ticks) {
                    tokio::time::sleep(RECOVERED_POLL).await;
                }
            }
        }
    }
    let report = read_report(sandbox);
    if report.error.is_some() {
        // The executor died without cleaning up (killed from outside): do it for it.
        let launch: Option<ProcessLaunch> = fs::read(sandbox.join(CONTROL_DIR).join("launch.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(cgroup) = launch.and_then(|l| l.cgroup) {
            cgroup.drain(None).await;
            cgroup.remove(None);
        }
    }
    report
}

/// The exit report in `sandbox`, or one saying the executor left none.
pub fn read_report(sandbox: &Path) -> ExitReport {
    fs::read(sandbox.join(CONTROL_DIR).join("exit.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| ExitReport {
            error: Some("the executor ended without reporting how the task ended".into()),
            ..ExitReport::default()
        })
}

/// Leaves the kill request where the executor looks for it (`.cairn/kill.json`).
pub fn request_kill(sandbox: &Path, grace: Duration) {
    let request = KillRequest {
        grace_secs: grace.as_secs(),
    };
    if let Ok(bytes) = serde_json::to_vec(&request) {
        let _ = fs::write(sandbox.join(CONTROL_DIR).join("kill.json"), bytes);
    }
}

/// Asks the executor to stop the task: SIGTERM now, SIGKILL after `grace`. Until the
/// executor is ready (its handler installed, `.cairn/ready` written) it is not signalled: it
/// reads the request itself once ready, so no kill is lost and none kills it unprepared.
pub fn kill_task(sandbox: &Path, runtime: &Runtime, grace: Duration) {
    let Runtime::Process { pid, start_ticks } = runtime else {
        return;
    };
    request_kill(sandbox, grace);
    if started(sandbox).is_some() && is_alive(*pid, *start_ticks) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
}

/// The executor of the task in `sandbox`, as it announced itself once ready.
pub fn started(sandbox: &Path) -> Option<Runtime> {
    let bytes = fs::read(sandbox.join(CONTROL_DIR).join("ready")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `pid` is still the process that started at `start_ticks` (not a recycled pid, not a
/// zombie).
pub fn is_alive(pid: i32, start_ticks: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state_and_rest = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            let fields: Vec<&str> = state_and_rest.unwrap_or("").split_whitespace().collect();
            let zombie = fields.first() == Some(&"Z");
            // Field 22 of stat is the start time; it is the 20th after the command name.
            let started = fields.get(19).and_then(|s| s.parse::<u64>().ok());
            !zombie && started == Some(start_ticks)
        }
        Err(_) => false,
    }
}

/// The start time of `pid`, in clock ticks since boot (field 22 of its `stat`).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The task's last status, from how its process ended (Mesos' command executor's wording).
pub fn final_status(report: &ExitReport) -> (TaskState, Option<&'static str>, String) {
    if let Some(error) = &report.error {
        return (
            TaskState::Failed,
            Some("REASON_EXECUTOR_TERMINATED"),
            error.clone(),
        );
    }
    if report.oom {
        return (
            TaskState::Failed,
            Some("REASON_CONTAINER_LIMITATION_MEMORY"),
            "Memory limit exceeded".into(),
        );
    }
    match (report.code, report.signal) {
        (_, Some(signal)) if report.killed => (
            TaskState::Killed,
            None,
            format!("Command terminated with signal {}", signal_name(signal)),
        ),
        (Some(code), _) if report.killed => (
            TaskState::Killed,
            None,
            format!("Command exited with status {code} after a kill"),
        ),
        (None, None) if report.killed => (
            TaskState::Killed,
            None,
            "killed before the command started".into(),
        ),
        (Some(0), _) => (
            TaskState::Finished,
            None,
            "Command exited with status 0".into(),
        ),
        (Some(code), _) => (
            TaskState::Failed,
            Some("REASON_COMMAND_EXECUTOR_FAILED"),
            format!("Command exited with status {code}"),
        ),
        (None, Some(signal)) => (
            TaskState::Failed,
            Some("REASON_COMMAND_EXECUTOR_FAILED"),
            format!("Command terminated with signal {}", signal_name(signal)),
        ),
        (None, None) => (
            TaskState::Failed,
            Some("REASON_EXECUTOR_TERMINATED"),
            "the task ended without an exit status".into(),
        ),
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned())
}
