//! Docker tasks, through the Docker Engine API (bollard): the image (used when present, pulled
//! when a registry answers), BRIDGE/HOST/NONE networks, port mappings onto the host ports the
//! task was given, Marathon's `parameters`, CPU and memory limits, the sandbox mounted at
//! `/mnt/mesos/sandbox`, and the container's output copied into the sandbox's `stdout` and
//! `stderr`. Containers carry labels naming the task and the agent, so a restarted agent finds
//! its own and kills those it no longer knows.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use cairn_log::event::{DockerNetwork, DockerSpec, TaskId, TaskSpec};
use futures_util::StreamExt;
use tracing::{info, warn};

use super::{ExitReport, StartError};
use crate::cgroups::Limits;

/// Label holding the task id on every container the agent starts.
pub const TASK_LABEL: &str = "cairn.task_id";
/// Label holding which agent (its data directory) started the container.
pub const AGENT_LABEL: &str = "cairn.agent";
/// Where the sandbox appears inside a container (Mesos' path).
pub const SANDBOX_IN_CONTAINER: &str = "/mnt/mesos/sandbox";
/// How long a pull may take before the launch fails.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// Parameters understood, as Marathon passes them (`docker run --key value`).
const PARAMETERS: &[&str] = &[
    "volume-driver",
    "volume",
    "v",
    "env",
    "e",
    "label",
    "l",
    "workdir",
    "w",
    "user",
    "u",
    "hostname",
    "h",
    "cap-add",
    "cap-drop",
    "dns",
    "add-host",
    "entrypoint",
];

#[derive(Debug, Clone)]
pub struct DockerExecutor {
    docker: Result<Docker, String>,
    /// This agent's value of [`AGENT_LABEL`].
    agent: String,
}

impl DockerExecutor {
    /// Connects to the local Docker Engine; without one, Docker tasks fail with the reason.
    pub async fn connect(agent: String) -> Self {
        let docker = async {
            let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
            let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
                .await
                .map_err(|_| "the Docker Engine did not answer within 5 s".to_owned())?
                .map_err(|e| e.to_string())?;
            docker.ping().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(docker)
        }
        .await;
        match &docker {
            Ok(_) => info!("Docker tasks run on the local Docker Engine"),
            Err(e) => warn!(error = %e, "no Docker Engine: Docker tasks will fail"),
        }
        Self { docker, agent }
    }

    fn docker(&self) -> Result<&Docker, String> {
        self.docker
            .as_ref()
            .map_err(|e| format!("this agent cannot reach a Docker Engine: {e}"))
    }

    /// Creates and starts the task's container; answers its id.
    pub async fn start(
        &self,
        task_id: &TaskId,
        sandbox: &Path,
        spec: &TaskSpec,
        limits: Limits,
        mut env: std::collections::BTreeMap<String, String>,
    ) -> Result<String, StartError> {
        let failed = |message| StartError::failed("REASON_CONTAINER_LAUNCH_FAILED", message);
        let docker_spec = spec
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .expect("a Docker task");
        env.insert("MESOS_SANDBOX".into(), SANDBOX_IN_CONTAINER.into());
        let mut body = container(docker_spec, spec, limits, env).map_err(StartError::invalid)?;
        let docker = self.docker().map_err(failed)?;
        super::prepare(sandbox).map_err(failed)?;
        self.ensure_image(docker, &docker_spec.image, docker_spec.force_pull_image)
            .await
            .map_err(failed)?;
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(TASK_LABEL.into(), task_id.to_string());
        labels.insert(AGENT_LABEL.into(), self.agent.clone());
        if let Some(host) = body.host_config.as_mut() {
            host.binds
                .get_or_insert_with(Vec::new)
                .push(format!("{}:{SANDBOX_IN_CONTAINER}", sandbox.display()));
        }
        let name = format!("cairn-{task_id}");
        // A container of this name is left from a launch the agent did not finish recording.
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| failed(format!("cannot create the container: {}", reason(&e))))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            let _ = docker
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
            return Err(failed(format!(
                "cannot start the container: {}",
                reason(&e)
            )));
        }
        Ok(created.id)
    }

    /// Uses the image when present; pulls it when absent or when asked to.
    async fn ensure_image(&self, docker: &Docker, image: &str, force: bool) -> Result<(), String> {
        if !force && docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let pull = async {
            let mut progress = docker.create_image(
                Some(CreateImageOptionsBuilder::new().from_image(image).build()),
                None,
                None,
            );
            while let Some(step) = progress.next().await {
                step.map_err(|e| reason(&e))?;
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "image {image:?} is not on this agent and cannot be pulled: {e}"
            )),
            Err(_) => Err(format!(
                "image {image:?} is not on this agent and pulling it took over {PULL_TIMEOUT:?}"
            )),
        }
    }

    /// Copies the container's output into the sandbox until it stops, then reports how it
    /// ended. The caller removes the container once that report is stored.
    pub async fn wait(&self, sandbox: &Path, container_id: &str) -> ExitReport {
        let docker = match self.docker() {
            Ok(docker) => docker,
            Err(e) => {
                return ExitReport {
                    error: Some(e),
                    ..ExitReport::default()
                }
            }
        };
        // After an agent restart, pick the output up from where the copy stopped (to the
        // second: a line may appear twice, none is lost).
        let since = std::fs::metadata(sandbox.join("stdout"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i32);
        let copy = copy_logs(
            docker.clone(),
            container_id.to_owned(),
            sandbox.to_owned(),
            since,
        );
        let mut waits = docker.wait_container(container_id, None);
        let waited = waits.next().await;
        let _ = copy.await;
        let inspect = docker.inspect_container(container_id, None).await.ok();
        let state = inspect.as_ref().and_then(|i| i.state.as_ref());
        let code = match (&waited, state.and_then(|s| s.exit_code)) {
            (Some(Ok(w)), _) => Some(w.status_code as i32),
            (_, Some(code)) => Some(code as i32),
            _ => None,
        };
        let report = ExitReport {
            code,
            signal: None,
            killed: false,
            oom: state.and_then(|s| s.oom_killed).unwrap_or(false),
            error: match (code, waited) {
                (None, Some(Err(e))) => {
                    Some(format!("cannot wait for the container: {}", reason(&e)))
                }
                (None, _) => Some("the container vanished".into()),
                _ => None,
            },
        };
        report
    }

    /// `docker stop`: SIGTERM, then SIGKILL after `grace`.
    /// Runs `command` with `sh -c` inside a container (a COMMAND health check); its exit code.
    pub async fn exec(&self, container_id: &str, command: &str) -> Result<i64, String> {
        let docker = self.docker()?;
        let created = docker
            .create_exec(
                container_id,
                CreateExecOptions {
                    cmd: Some(vec!["/bin/sh", "-c", command]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(|e| format!("docker exec: {}", reason(&e)))?;
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(|e| format!("docker exec: {}", reason(&e)))?
        {
            // Its output is not kept; reading it to the end is waiting for it to exit.
            while output.next().await.is_some() {}
        }
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| format!("docker exec: {}", reason(&e)))?;
        inspected
            .exit_code
            .ok_or_else(|| "docker exec: no exit code".to_owned())
    }

    pub async fn stop(&self, container_id: &str, grace: Duration) {
        let Ok(docker) = self.docker() else { return };
        let options = StopContainerOptionsBuilder::new()
            .t(grace.as_secs().min(i32::MAX as u64) as i32)
            .build();
        if let Err(e) = docker.stop_container(container_id, Some(options)).await {
            warn!(container_id, error = %reason(&e), "cannot stop a container");
        }
    }

    /// Kills and removes a container, if it exists.
    pub async fn remove(&self, container: &str) {
        if let Ok(docker) = self.docker() {
            let _ = docker
                .remove_container(
                    container,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
        }
    }

    /// Kills and removes this agent's containers whose tasks it does not know (asked at the
    /// moment each is looked at, so a task launched meanwhile is known).
    pub async fn remove_orphans(&self, known: impl Fn(&TaskId) -> bool) {
        let Ok(docker) = self.docker() else { return };
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{AGENT_LABEL}={}", self.agent)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(containers) = docker.list_containers(Some(options)).await else {
            return;
        };
        for c in containers {
            let task = c.labels.as_ref().and_then(|l| l.get(TASK_LABEL)).cloned();
            let known = task
                .as_ref()
                .and_then(|t| TaskId::new(t).ok())
                .is_some_and(|t| known(&t));
            if !known {
                if let Some(id) = c.id {
                    info!(container_id = %id, task = ?task, "removing a container of an unknown task");
                    let _ = docker
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                        )
                        .await;
                }
            }
        }
    }
}

/// Follows the container's output into the sandbox's files; ends when the container stops.
fn copy_logs(
    docker: Docker,
    container_id: String,
    sandbox: std::path::PathBuf,
    since: i32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(sandbox.join(name))
        };
        let (Ok(mut out), Ok(mut err)) = (open("stdout"), open("stderr")) else {
            return;
        };
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(since)
            .build();
        let mut logs = docker.logs(&container_id, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            let _ = match chunk {
                bollard::container::LogOutput::StdErr { message } => err.write_all(&message),
                other => out.write_all(&other.into_bytes()),
            };
        }
    })
}

fn reason(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// The container for a task; errors name the field.
fn container(
    docker: &DockerSpec,
    spec: &TaskSpec,
    limits: Limits,
    env: std::collections::BTreeMap<String, String>,
) -> Result<ContainerCreateBody, String> {
    let mut body = ContainerCreateBody {
        image: Some(docker.image.clone()),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        ..ContainerCreateBody::default()
    };
    let mut env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(command) = &spec.command {
        body.cmd = match (&command.value, command.shell) {
            (Some(value), true) => Some(vec!["/bin/sh".into(), "-c".into(), value.clone()]),
            (Some(value), false) => Some(
                std::iter::once(value.clone())
                    .chain(command.args.iter().skip(1).cloned())
                    .collect(),
            ),
            (None, _) if !command.args.is_empty() => Some(command.args.clone()),
            (None, _) => None,
        };
        if command.user.is_some() {
            body.user = command.user.clone();
        }
    }
    let mut host = HostConfig {
        nano_cpus: Some((limits.cpus_milli * 1_000_000) as i64),
        memory: Some((limits.mem_mib << 20) as i64),
        privileged: Some(docker.privileged),
        network_mode: Some(
            match docker.network {
                DockerNetwork::Bridge => "bridge",
                DockerNetwork::Host => "host",
                DockerNetwork::None => "none",
                DockerNetwork::User => {
                    return Err("container.docker.network: USER networks are not supported".into())
                }
            }
            .into(),
        ),
        ..HostConfig::default()
    };
    if !docker.port_mappings.is_empty() {
        if docker.network != DockerNetwork::Bridge {
            return Err("container.docker.portMappings: only a BRIDGE network maps ports".into());
        }
        let mut bindings = HashMap::new();
        let mut exposed = Vec::new();
        for (i, m) in docker.port_mappings.iter().enumerate() {
            if m.host_port == 0 || !spec.ports.contains(&m.host_port) {
                return Err(format!(
                    "container.docker.portMappings[{i}].hostPort: {} is not a port the task was given",
                    m.host_port
                ));
            }
            if !matches!(m.protocol.as_str(), "tcp" | "udp") {
                return Err(format!(
                    "container.docker.portMappings[{i}].protocol: {:?} is not tcp or udp",
                    m.protocol
                ));
            }
            let key = format!("{}/{}", m.container_port, m.protocol);
            exposed.push(key.clone());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(m.host_port.to_string()),
                }]),
            );
        }
        body.exposed_ports = Some(exposed);
        host.port_bindings = Some(bindings);
    }
    for (i, p) in docker.parameters.iter().enumerate() {
        let field = || format!("container.docker.parameters[{i}]");
        let pair = || {
            p.value
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{}: {} {:?} is not KEY=VALUE", field(), p.key, p.value))
        };
        match p.key.as_str() {
            "volume-driver" => host.volume_driver = Some(p.value.clone()),
            "volume" | "v" => {
                if !p.value.contains(':') {
                    return Err(format!(
                        "{}: volume {:?} is not SOURCE:PATH[:MODE]",
                        field(),
                        p.value
                    ));
                }
                host.binds
                    .get_or_insert_with(Vec::new)
                    .push(p.value.clone());
            }
            "env" | "e" => {
                pair()?;
                env.push(p.value.clone());
            }
            "label" | "l" => {
                let (k, v) = pair()?;
                body.labels.get_or_insert_with(HashMap::new).insert(k, v);
            }
            "workdir" | "w" => {
                if !p.value.starts_with('/') {
                    return Err(format!(
                        "{}: workdir {:?} is not an absolute path",
                        field(),
                        p.value
                    ));
                }
                body.working_dir = Some(p.value.clone());
            }
            "user" | "u" => body.user = Some(p.value.clone()),
            "hostname" | "h" => body.hostname = Some(p.value.clone()),
            "cap-add" => host
                .cap_add
                .get_or_insert_with(Vec::new)
                .push(p.value.clone()),
            "cap-drop" => host
                .cap_drop
                .get_or_insert_with(Vec::new)
                .push(p.value.clone()),
            "dns" => host.dns.get_or_insert_with(Vec::new).push(p.value.clone()),
            "add-host" => host
                .extra_hosts
                .get_or_insert_with(Vec::new)
                .push(p.value.clone()),
            "entrypoint" => body.entrypoint = Some(vec![p.value.clone()]),
            other => {
                return Err(format!(
                    "{}: unknown parameter {other:?} (this agent understands {})",
                    field(),
                    PARAMETERS.join(", ")
                ))
            }
        }
    }
    for (i, v) in spec
        .container
        .iter()
        .flat_map(|c| c.volumes.iter())
        .enumerate()
    {
        let Some(host_path) = &v.host_path else {
            return Err(format!("container.volumes[{i}].hostPath: is required"));
        };
        let mode = match v.mode.as_str() {
            "RO" => "ro",
            "RW" => "rw",
            other => {
                return Err(format!(
                    "container.volumes[{i}].mode: {other:?} is not RO or RW"
                ))
            }
        };
        host.binds
            .get_or_insert_with(Vec::new)
            .push(format!("{host_path}:{}:{mode}", v.container_path));
    }
    body.env = Some(env);
    body.host_config = Some(host);
    Ok(body)
}
