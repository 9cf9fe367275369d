//! `cairn executor <sandbox>`: the small process the agent starts for each process task, as
//! Mesos starts its command executor. It outlives an agent restart, so the task keeps running
//! and its exit status is not lost: the executor waits for the task and writes how it ended to
//! `<sandbox>/.cairn/exit.json`, which the restarted agent reads.
//!
//! It leads its own process group (so the agent's terminal signals do not reach it), starts the
//! task in a process group of its own, in the task's cgroup, and on SIGTERM from the agent
//! passes SIGTERM to the task's group, then SIGKILL after the grace period. When the task ends
//! it kills whatever the task left behind (its group, and anything else in its cgroup), so no
//! orphan survives.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{ExitReport, CONTROL_DIR};
use crate::cgroups::TaskCgroup;
use crate::store::Runtime;

/// What the agent tells the executor to run (`.cairn/launch.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLaunch {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub cgroup: Option<TaskCgroup>,
    pub kill_grace_secs: u64,
}

/// The longest grace period honoured (a day): a larger one is taken as this.
pub const MAX_GRACE_SECS: u64 = 86_400;

/// How long to kill a task the agent asked to stop (`.cairn/kill.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    pub grace_secs: u64,
}

/// The executor's `main`.
pub fn main(sandbox: &Path) -> ExitCode {
    let control = sandbox.join(CONTROL_DIR);
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(supervise(sandbox, &control)),
        Err(e) => ExitReport {
            error: Some(format!("executor: cannot start its runtime: {e}")),
            ..ExitReport::default()
        },
    };
    match write_report(&control, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "executor: cannot write {}: {e}",
                control.join("exit.json").display()
            );
            ExitCode::FAILURE
        }
    }
}

fn write_report(control: &Path, report: &ExitReport) -> std::io::Result<()> {
    let tmp = control.join("exit.json.tmp");
    fs::write(&tmp, serde_json::to_vec(report)?)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, control.join("exit.json"))?;
    fs::File::open(control)?.sync_all()
}

async fn supervise(sandbox: &Path, control: &Path) -> ExitReport {
    let failed = |error: String| ExitReport {
        error: Some(error),
        ..ExitReport::default()
    };
    // The handler first, then `ready`: the agent signals only a ready executor, and one that
    // became ready after a kill was asked for finds the request below.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => return failed(format!("executor: cannot handle SIGTERM: {e}")),
    };
    let me = std::process::id();
    let ready = Runtime::Process {
        pid: me as i32,
        start_ticks: super::process::start_ticks(me as i32).unwrap_or_default(),
    };
    if let Err(e) = serde_json::to_vec(&ready)
        .map_err(std::io::Error::other)
        .and_then(|b| fs::write(control.join("ready"), b))
    {
        return failed(format!("executor: cannot write ready: {e}"));
    }
    let launch: ProcessLaunch = match fs::read(control.join("launch.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(launch) => launch,
        Err(e) => return failed(format!("executor: cannot read launch.json: {e}")),
    };
    let kill_request = || {
        fs::read(control.join("kill.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<KillRequest>(&b).ok())
    };
    if kill_request().is_some() {
        cleanup(None, launch.cgroup.as_ref(), None).await;
        return ExitReport {
            killed: true,
            ..ExitReport::default()
        };
    }
    if let Some(cgroup) = &launch.cgroup {
        if let Err(e) = cgroup.join(me) {
            cleanup(None, Some(cgroup), Some(me)).await;
            return failed(format!("cannot enter the task's cgroup: {e}"));
        }
    }
    let open = |name: &str| {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.join(name))
    };
    let (stdout, stderr) = match (open("stdout"), open("stderr")) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            cleanup(None, launch.cgroup.as_ref(), Some(me)).await;
            return failed(format!("cannot open the task's logs: {e}"));
        }
    };
    let mut command = tokio::process::Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(&launch.env)
        .current_dir(sandbox)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(gid) = launch.gid {
        command.gid(gid);
    }
    if let Some(uid) = launch.uid {
        command.uid(uid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            cleanup(None, launch.cgroup.as_ref(), Some(me)).await;
            return failed(format!("cannot start {:?}: {e}", launch.program));
        }
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let mut killed = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = term.recv(), if !killed => {
                killed = true;
                let grace = kill_request().map_or(launch.kill_grace_secs, |k| k.grace_secs);
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGTERM);
                }
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(grace.min(MAX_GRACE_SECS)));
            }
            () = sleep_until(deadline) => {
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                deadline = None;
            }
        }
    };
    cleanup(group, launch.cgroup.as_ref(), Some(me)).await;
    let oom = launch.cgroup.as_ref().is_some_and(TaskCgroup::oom_killed);
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            ExitReport {
                code: status.code(),
                signal: status.signal(),
                killed,
                oom,
                error: None,
            }
        }
        Err(e) => failed(format!("cannot wait for the task: {e}")),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Kills what the task left behind: its process group, then anything else in its cgroup;
/// then removes the cgroup.
async fn cleanup(group: Option<Pid>, cgroup: Option<&TaskCgroup>, me: Option<u32>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    if let Some(cgroup) = cgroup {
        cgroup.drain(me).await;
        cgroup.remove(me);
    }
}
