//! Health checks of running tasks, with Marathon's knobs: HTTP (a status from 200 to 399),
//! TCP (a connection) and COMMAND (exit 0; inside the container for a Docker task), each every
//! `intervalSeconds`, given `timeoutSeconds`. Failures within `gracePeriodSeconds` of the start
//! do not count until the check first passes.
//!
//! What travels to the master is the task's health, when it changes: healthy once every check
//! has passed, unhealthy once one has failed `maxConsecutiveFailures` times in a row (the apps
//! scheduler then kills and replaces the instance). Failures short of that change nothing, as
//! in Marathon, so a single slow answer does not flap an instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_log::event::{HealthCheck, HealthProtocol, TaskId, TaskSpec};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::agent::Shared;
use crate::executor::task_env;
use crate::store::Runtime;

/// Checks of one task, until the task is aborted (its monitor does that when it ends).
pub(crate) async fn watch(
    shared: Arc<Shared>,
    id: TaskId,
    spec: TaskSpec,
    runtime: Runtime,
    sandbox: PathBuf,
) {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(16);
    let mut checkers = Vec::new();
    for (i, check) in spec.health_checks.iter().enumerate() {
        let probe = Probe {
            shared: shared.clone(),
            id: id.clone(),
            spec: spec.clone(),
            check: check.clone(),
            runtime: runtime.clone(),
            sandbox: sandbox.clone(),
        };
        let tx = tx.clone();
        checkers.push(tokio::spawn(async move {
            let interval = Duration::from_secs(check_interval(&probe.check));
            let mut next = Instant::now();
            loop {
                tokio::time::sleep_until(next).await;
                let timeout = Duration::from_secs(probe.check.timeout_secs.max(1));
                let outcome = match tokio::time::timeout(timeout, probe.run()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
                };
                if tx.send((i, outcome)).await.is_err() {
                    return;
                }
                next += interval;
            }
        }));
    }
    drop(tx);
    // Aborting this task drops the checkers' handles; they end with it.
    let _guard = AbortOnDrop(checkers);
    let mut states = vec![State::default(); spec.health_checks.len()];
    let mut reported: Option<bool> = None;
    while let Some((i, outcome)) = rx.recv().await {
        let check = &spec.health_checks[i];
        let state = &mut states[i];
        match &outcome {
            Ok(()) => {
                state.passed = true;
                state.failures = 0;
            }
            Err(why) => {
                let in_grace = started.elapsed() < Duration::from_secs(check.grace_period_secs);
                if in_grace && !state.passed {
                    debug!(task_id = %id, %why, "health check failed within its grace period");
                    continue;
                }
                state.failures += 1;
                state.last_error = why.clone();
            }
        }
        let failing = spec
            .health_checks
            .iter()
            .zip(&states)
            .find(|(c, s)| s.failures >= c.max_consecutive_failures.max(1));
        let health = match failing {
            Some(_) => Some(false),
            None if states.iter().all(|s| s.passed && s.failures == 0) => Some(true),
            None => None,
        };
        let Some(healthy) = health.filter(|h| Some(*h) != reported) else {
            continue;
        };
        let message = match failing {
            Some((c, s)) => format!(
                "{:?} health check failed {} times in a row: {}",
                c.protocol, s.failures, s.last_error
            ),
            None => "health checks passed".to_owned(),
        };
        match shared.report_health(&id, healthy, message.clone()) {
            Ok(true) => {
                info!(task_id = %id, healthy, %message, "task health changed");
                reported = Some(healthy);
            }
            // Not running yet: said with the next result.
            Ok(false) => {}
            Err(e) => tracing::warn!(task_id = %id, error = %e, "cannot store a health update"),
        }
    }
}

fn check_interval(check: &HealthCheck) -> u64 {
    check.interval_secs.max(1)
}

#[derive(Debug, Clone, Default)]
struct State {
    /// Passed at least once.
    passed: bool,
    /// Failures in a row (that count).
    failures: u32,
    last_error: String,
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// One health check of one task.
struct Probe {
    shared: Arc<Shared>,
    id: TaskId,
    spec: TaskSpec,
    check: HealthCheck,
    runtime: Runtime,
    sandbox: PathBuf,
}

impl Probe {
    async fn run(&self) -> Result<(), String> {
        match self.check.protocol {
            HealthProtocol::Http => self.http().await,
            // Refused when the app is defined; an older definition still gets a clear answer.
            HealthProtocol::Https => Err("HTTPS health checks are not supported yet".into()),
            HealthProtocol::Tcp => {
                let port = self.port()?;
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("cannot connect to port {port}: {e}"))
            }
            HealthProtocol::Command => self.command().await,
        }
    }

    /// The host port the check targets (`portIndex` into the task's ports).
    fn port(&self) -> Result<u16, String> {
        let index = self.check.port_index.unwrap_or(0) as usize;
        self.spec.ports.get(index).copied().ok_or_else(|| {
            format!(
                "portIndex {index}: the task has {} port(s)",
                self.spec.ports.len()
            )
        })
    }

    async fn http(&self) -> Result<(), String> {
        let port = self.port()?;
        let path = self.check.path.as_deref().unwrap_or("/");
        let url = format!("http://127.0.0.1:{port}{path}");
        let response = self
            .shared
            .health_http()
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("GET {url} answered {status}"))
        }
    }

    async fn command(&self) -> Result<(), String> {
        let command = self.check.command.as_deref().unwrap_or("true");
        let code = match &self.runtime {
            Runtime::Docker { container_id } => {
                self.shared.docker().exec(container_id, command).await?
            }
            Runtime::Process { .. } => {
                let env = task_env(
                    &self.id,
                    &self.spec,
                    &self.shared.config.hostname,
                    &self.sandbox,
                );
                let status = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(command)
                    .envs(env)
                    .current_dir(&self.sandbox)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("cannot run {command:?}: {e}"))?;
                i64::from(status.code().unwrap_or(-1))
            }
        };
        if code == 0 {
            Ok(())
        } else {
            Err(format!("{command:?} exited {code}"))
        }
    }
}
