//! Mutations: writes that the leader's runner decides and logs. Each returns once its events
//! are committed and folded, so a read after it sees them.

use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Json, Object, SimpleObject};
use cairn_log::event::{
    Actor, AppId, AppSpec, CommandSpec, ContainerSpec, DeploymentId, DockerNetwork,
    DockerParameter, DockerSpec, JobName, PortMapping, Resources, TaskId, TaskSpec, Timestamp,
};
use cairn_scheduler::deployments::Put;
use cairn_scheduler::tasks::TaskRequest;
use cairn_scheduler::{chronos, marathon};
use cairn_scheduler::{Error, Runner};

use crate::model::Task;
use crate::views::{parse_time, Views};
use crate::{error, Code};

/// Most environment variables, labels, arguments or Docker parameters in one input.
pub const MAX_LIST: usize = 256;

#[derive(Debug)]
pub struct Mutation;

/// One `KEY=value` pair.
#[derive(Debug, Clone, InputObject)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// A container port published on the host; `hostPort: 0` takes a port from the agent's
/// offered ranges.
#[derive(Debug, Clone, InputObject)]
pub struct PortMappingInput {
    pub container_port: u16,
    #[graphql(default)]
    pub host_port: u16,
    #[graphql(default_with = "\"tcp\".to_owned()")]
    pub protocol: String,
    pub name: Option<String>,
}

/// A Docker container, as Marathon's `container.docker`.
#[derive(Debug, Clone, InputObject)]
pub struct DockerInput {
    pub image: String,
    /// `BRIDGE`, `HOST` or `NONE`.
    #[graphql(default_with = "\"HOST\".to_owned()")]
    pub network: String,
    #[graphql(default)]
    pub port_mappings: Vec<PortMappingInput>,
    /// Docker `--key=value` options: `volume`, `env`, `label`, `workdir`, `user`, …
    #[graphql(default)]
    pub parameters: Vec<KeyValue>,
    #[graphql(default)]
    pub privileged: bool,
    #[graphql(default)]
    pub force_pull_image: bool,
}

/// A one-off task to run somewhere in the cluster.
#[derive(Debug, Clone, InputObject)]
pub struct LaunchTaskInput {
    /// A name for people; the task id starts with it.
    pub name: String,
    /// A shell command (`sh -c`), or with `shell: false` the program to run.
    pub command: Option<String>,
    /// Arguments: with a `command` and `shell: false`, the whole argv; without a `command`,
    /// the program and its arguments.
    #[graphql(default)]
    pub args: Vec<String>,
    #[graphql(default = true)]
    pub shell: bool,
    #[graphql(default)]
    pub env: Vec<KeyValue>,
    /// CPUs (fractions allowed).
    #[graphql(default = 0.1)]
    pub cpus: f64,
    /// Memory, MiB.
    #[graphql(default = 32.0)]
    pub mem: f64,
    /// Disk, MiB.
    #[graphql(default)]
    pub disk: f64,
    /// Host ports to assign (`PORT0`, `PORT1`, … in its environment).
    #[graphql(default)]
    pub ports: u32,
    /// Run as this user on the agent.
    pub user: Option<String>,
    pub kill_grace_period_seconds: Option<u64>,
    #[graphql(default)]
    pub labels: Vec<KeyValue>,
    pub docker: Option<DockerInput>,
}

#[derive(Debug, SimpleObject)]
pub struct KillResult {
    pub task_id: String,
    /// Offset of the kill request in the log.
    pub offset: u64,
}

/// What a change to apps started.
#[derive(Debug, SimpleObject)]
pub struct ChangeResult {
    /// The deployment carrying it out; none when nothing changed.
    pub deployment_id: Option<String>,
    /// The new version (a timestamp, as in Marathon).
    pub version: Option<String>,
}

impl From<Option<(DeploymentId, Timestamp)>> for ChangeResult {
    fn from(d: Option<(DeploymentId, Timestamp)>) -> Self {
        Self {
            deployment_id: d.as_ref().map(|(id, _)| id.to_string()),
            version: d.map(|(_, v)| v.to_string()),
        }
    }
}

#[Object]
impl Mutation {
    /// Creates an app from a Marathon app definition (the body of `POST /v2/apps`) and
    /// deploys it. An invalid definition is refused with `VALIDATION` and every error with
    /// its path in `extensions.details`; an existing id with `CONFLICT`.
    async fn create_app(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let specs = app_specs(&definition.0)?;
        put_apps(ctx, specs, Put::Create, force).await
    }

    /// Changes an existing app to a new definition: a rolling upgrade, or only a scaling when
    /// nothing but `instances` changed. `CONFLICT` while a deployment of the app runs, unless
    /// `force` (which cancels it).
    async fn update_app(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let specs = app_specs(&definition.0)?;
        put_apps(ctx, specs, Put::Update, force).await
    }

    /// Creates or updates one app, or a list of apps (or a Marathon group's `apps`) in one
    /// deployment, ordered by their `dependencies`.
    async fn apply_apps(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let specs = app_specs(&definition.0)?;
        put_apps(ctx, specs, Put::CreateOrUpdate, force).await
    }

    /// Sets how many instances an app runs.
    async fn scale_app(
        &self,
        ctx: &Context<'_>,
        id: String,
        instances: u32,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .scale_app(actor(ctx), app_id(&id)?, instances, force)
            .await
            .map(ChangeResult::from)
            .map_err(runner_error)
    }

    /// Replaces every instance of an app, honouring its `upgradeStrategy`.
    async fn restart_app(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .restart_app(actor(ctx), app_id(&id)?, force)
            .await
            .map(ChangeResult::from)
            .map_err(runner_error)
    }

    /// Clears an app's launch delay after failures (Marathon's `DELETE
    /// /v2/queue/{id}/delay`): its waiting instances launch at the next offers. `NOT_FOUND`
    /// when the app has no delay.
    async fn reset_app_delay(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .reset_backoff(actor(ctx), app_id(&id)?)
            .await
            .map_err(runner_error)?;
        Ok(true)
    }

    /// Deletes an app; its instances are killed. Its history stays in the log.
    async fn delete_app(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .delete_app(actor(ctx), app_id(&id)?, force)
            .await
            .map(ChangeResult::from)
            .map_err(runner_error)
    }

    /// Puts an app back to the definition of one of its earlier versions (as a new version).
    async fn rollback_app(
        &self,
        ctx: &Context<'_>,
        id: String,
        version: String,
        #[graphql(default)] force: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let version = parse_time("version", &version)?;
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .rollback_app(actor(ctx), app_id(&id)?, version, force)
            .await
            .map(ChangeResult::from)
            .map_err(runner_error)
    }

    /// Stops a running deployment. With `rollback` (the default) its apps go back to their
    /// earlier definitions in a new deployment, which is returned.
    async fn cancel_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default = true)] rollback: bool,
    ) -> async_graphql::Result<ChangeResult> {
        let id = DeploymentId::new(&id).map_err(|e| error(Code::Validation, format!("id: {e}")))?;
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .cancel_deployment(actor(ctx), id, rollback)
            .await
            .map(ChangeResult::from)
            .map_err(runner_error)
    }

    /// Launches a one-off task on the agent with the most room for it. Answers the task as
    /// just logged (`TASK_STAGING`); follow it with `task(id:)` or the `events` subscription.
    /// Creates a job from a Chronos job definition (the body of `POST /scheduler/iso8601`
    /// or `/scheduler/dependency`). Invalid: `VALIDATION` with every error at its path; an
    /// unknown parent, a cycle of parents or a schedule that has ended: `VALIDATION`; an
    /// existing name: `CONFLICT`. Returns the job's name.
    async fn create_job(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
    ) -> async_graphql::Result<String> {
        Ok(put_job(ctx, &definition.0, Put::Create)
            .await?
            .0
            .to_string())
    }

    /// Replaces an existing job's definition; returns whether anything changed.
    async fn update_job(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
    ) -> async_graphql::Result<bool> {
        Ok(put_job(ctx, &definition.0, Put::Update).await?.1)
    }

    /// Creates or replaces a job (what Chronos' API does); returns whether anything changed.
    async fn apply_job(
        &self,
        ctx: &Context<'_>,
        definition: Json<serde_json::Value>,
    ) -> async_graphql::Result<bool> {
        Ok(put_job(ctx, &definition.0, Put::CreateOrUpdate).await?.1)
    }

    /// Runs a job now, whatever its schedule; returns the run's id.
    async fn run_job(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<String> {
        let runner = ctx.data_unchecked::<Runner>();
        let run = runner
            .run_job(actor(ctx), job_name(&name)?)
            .await
            .map_err(runner_error)?;
        Ok(run.to_string())
    }

    /// Deletes a job and kills its active runs. `CONFLICT` while other jobs name it as a
    /// parent.
    async fn delete_job(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .delete_job(actor(ctx), job_name(&name)?)
            .await
            .map_err(runner_error)?;
        Ok(true)
    }

    /// Kills a job's active runs: they end as killed, their tasks are killed.
    async fn kill_job_runs(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .kill_job_runs(actor(ctx), job_name(&name)?)
            .await
            .map_err(runner_error)?;
        Ok(true)
    }

    /// Stops a job's scheduled and dependent runs (manual runs still work).
    async fn disable_job(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .set_job_disabled(actor(ctx), job_name(&name)?, true)
            .await
            .map_err(runner_error)?;
        Ok(true)
    }

    /// Starts a disabled job's schedule again, from now.
    async fn enable_job(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let runner = ctx.data_unchecked::<Runner>();
        runner
            .set_job_disabled(actor(ctx), job_name(&name)?, false)
            .await
            .map_err(runner_error)?;
        Ok(true)
    }

    async fn launch_task(
        &self,
        ctx: &Context<'_>,
        input: LaunchTaskInput,
    ) -> async_graphql::Result<Task> {
        let request = task_request(input).map_err(|m| error(Code::Validation, m))?;
        let runner = ctx.data_unchecked::<Runner>();
        let (task_id, _) = runner
            .launch_task(actor(ctx), request)
            .await
            .map_err(runner_error)?;
        let view = Views::get(ctx, None).await?;
        Ok(Task(view, task_id))
    }

    /// Asks for a task to be killed: SIGTERM (or `docker stop`), then SIGKILL after the grace
    /// period. The agent's `TASK_KILLED` follows.
    async fn kill_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        grace_period_seconds: Option<u64>,
    ) -> async_graphql::Result<KillResult> {
        let task_id = TaskId::new(&id).map_err(|e| error(Code::Validation, format!("id: {e}")))?;
        let runner = ctx.data_unchecked::<Runner>();
        let offset = runner
            .kill_task(actor(ctx), task_id, grace_period_seconds)
            .await
            .map_err(runner_error)?;
        Ok(KillResult {
            task_id: id,
            offset,
        })
    }
}

async fn put_apps(
    ctx: &Context<'_>,
    specs: Vec<AppSpec>,
    mode: Put,
    force: bool,
) -> async_graphql::Result<ChangeResult> {
    let runner = ctx.data_unchecked::<Runner>();
    runner
        .put_apps(actor(ctx), specs, mode, force)
        .await
        .map(ChangeResult::from)
        .map_err(runner_error)
}

fn app_id(id: &str) -> async_graphql::Result<AppId> {
    marathon::app_id(id).map_err(|e| error(Code::Validation, format!("id: {e}")))
}

/// One app definition, a list of them, or a group's `apps`; every error of every one at
/// once, each path prefixed with where its app is (`/apps/1/cpus`).
fn app_specs(definition: &serde_json::Value) -> async_graphql::Result<Vec<AppSpec>> {
    let (list, prefix): (Vec<&serde_json::Value>, &str) = match definition {
        serde_json::Value::Array(apps) => (apps.iter().collect(), ""),
        serde_json::Value::Object(group) if group.contains_key("apps") => match &group["apps"] {
            serde_json::Value::Array(apps) => (apps.iter().collect(), "/apps"),
            _ => {
                return Err(error(
                    Code::Validation,
                    "apps: must be a list of app definitions",
                ))
            }
        },
        single => (vec![single], ""),
    };
    let many = list.len() > 1 || !prefix.is_empty() || definition.is_array();
    let mut specs = Vec::new();
    let mut details = Vec::new();
    for (i, app) in list.into_iter().enumerate() {
        match marathon::parse_app(app) {
            Ok(spec) => specs.push(spec),
            Err(invalid) => details.extend(invalid.details.into_iter().map(|mut d| {
                if many {
                    d.path = format!("{prefix}/{i}{}", d.path);
                }
                d
            })),
        }
    }
    if details.is_empty() {
        return Ok(specs);
    }
    Err(invalid(&details))
}

/// `VALIDATION`, with every error and its path in `extensions.details`.
fn invalid(details: &[marathon::Detail]) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    let details = serde_json::to_value(details).unwrap_or_default();
    let details = async_graphql::Value::from_json(details).unwrap_or_default();
    error(Code::Validation, "Object is not valid")
        .extend_with(move |_, e| e.set("details", details.clone()))
}

/// A Chronos job definition, validated.
fn job_name(name: &str) -> async_graphql::Result<JobName> {
    chronos::job_name(name).map_err(|e| error(Code::Validation, format!("name: {e}")))
}

async fn put_job(
    ctx: &Context<'_>,
    definition: &serde_json::Value,
    mode: Put,
) -> async_graphql::Result<(JobName, bool)> {
    let spec = chronos::parse_job(definition).map_err(|e| invalid(&e.details))?;
    let name = spec.name.clone();
    let runner = ctx.data_unchecked::<Runner>();
    let changed = runner
        .put_job(actor(ctx), spec, mode)
        .await
        .map_err(runner_error)?;
    Ok((name, changed))
}

/// Who is asking: the request's actor, which the HTTP layer sets.
fn actor(ctx: &Context<'_>) -> Actor {
    ctx.data_opt::<Actor>()
        .cloned()
        .unwrap_or_else(Actor::system)
}

fn runner_error(e: Error) -> async_graphql::Error {
    let code = match &e {
        Error::NotLeader { .. } => Code::NotLeader,
        Error::Invalid(_) | Error::Unplaceable(_) => Code::Validation,
        Error::NotFound(_) => Code::NotFound,
        Error::Conflict(_) => Code::Conflict,
        Error::Log(_) | Error::Projection(_) => Code::Internal,
    };
    let mut err = error(code, e.to_string());
    if let Error::NotLeader {
        leader: Some(leader),
    } = &e
    {
        use async_graphql::ErrorExtensions;
        let leader = leader.clone();
        err = err.extend_with(move |_, x| x.set("leader", leader.as_str()));
    }
    err
}

fn pairs(field: &str, list: Vec<KeyValue>) -> Result<BTreeMap<String, String>, String> {
    if list.len() > MAX_LIST {
        return Err(format!(
            "{field}: {} entries, at most {MAX_LIST}",
            list.len()
        ));
    }
    let mut map = BTreeMap::new();
    for kv in list {
        if kv.key.is_empty() {
            return Err(format!("{field}: a key is empty"));
        }
        map.insert(kv.key, kv.value);
    }
    Ok(map)
}

/// Checks an input and turns it into what the runner places; errors name the field.
fn task_request(input: LaunchTaskInput) -> Result<TaskRequest, String> {
    if input.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    let amount = |field: &str, v: f64, scale: f64| {
        if v.is_finite() && v >= 0.0 && v * scale <= u64::MAX as f64 / 2.0 {
            Ok((v * scale).round() as u64)
        } else {
            Err(format!("{field}: {v} is not a non-negative amount"))
        }
    };
    let cpus_milli = amount("cpus", input.cpus, 1000.0)?;
    if cpus_milli == 0 {
        return Err("cpus: must be more than 0".into());
    }
    let mem_mib = amount("mem", input.mem, 1.0)?;
    if mem_mib == 0 {
        return Err("mem: must be at least 1 MiB".into());
    }
    let disk_mib = amount("disk", input.disk, 1.0)?;
    if input.args.len() > MAX_LIST {
        return Err(format!(
            "args: {} entries, at most {MAX_LIST}",
            input.args.len()
        ));
    }
    let command = match (&input.command, input.args.is_empty(), &input.docker) {
        (None, true, None) => return Err("command: give a command, args or a docker image".into()),
        (None, true, Some(_)) => None,
        _ => Some(CommandSpec {
            value: input.command.clone(),
            args: input.args.clone(),
            shell: input.shell && input.command.is_some(),
            env: pairs("env", input.env)?,
            user: input.user.clone(),
        }),
    };
    let mut ports = input.ports as usize;
    let container = match input.docker {
        None => None,
        Some(docker) => {
            if docker.image.trim().is_empty() {
                return Err("docker.image: must not be empty".into());
            }
            let network = match docker.network.as_str() {
                "BRIDGE" => DockerNetwork::Bridge,
                "HOST" => DockerNetwork::Host,
                "NONE" => DockerNetwork::None,
                other => {
                    return Err(format!(
                        "docker.network: {other:?} is not BRIDGE, HOST or NONE"
                    ))
                }
            };
            if network != DockerNetwork::Bridge && !docker.port_mappings.is_empty() {
                return Err("docker.portMappings: only a BRIDGE network maps ports".into());
            }
            if docker.port_mappings.len() > MAX_LIST {
                return Err(format!("docker.portMappings: at most {MAX_LIST}"));
            }
            let mut port_mappings = Vec::new();
            for (i, m) in docker.port_mappings.into_iter().enumerate() {
                if m.container_port == 0 {
                    return Err(format!(
                        "docker.portMappings[{i}].containerPort: must be 1 to 65535"
                    ));
                }
                if m.host_port != 0 {
                    return Err(format!(
                        "docker.portMappings[{i}].hostPort: only 0 (a port from the agent's ranges) is supported"
                    ));
                }
                if !matches!(m.protocol.as_str(), "tcp" | "udp") {
                    return Err(format!(
                        "docker.portMappings[{i}].protocol: {:?} is not tcp or udp",
                        m.protocol
                    ));
                }
                port_mappings.push(PortMapping {
                    container_port: m.container_port,
                    host_port: 0,
                    protocol: m.protocol,
                    name: m.name,
                });
            }
            ports = ports.max(port_mappings.len());
            if docker.parameters.len() > MAX_LIST {
                return Err(format!("docker.parameters: at most {MAX_LIST}"));
            }
            Some(ContainerSpec {
                docker: Some(DockerSpec {
                    image: docker.image,
                    network,
                    port_mappings,
                    parameters: docker
                        .parameters
                        .into_iter()
                        .map(|kv| DockerParameter {
                            key: kv.key,
                            value: kv.value,
                        })
                        .collect(),
                    privileged: docker.privileged,
                    force_pull_image: docker.force_pull_image,
                }),
                volumes: Vec::new(),
            })
        }
    };
    Ok(TaskRequest {
        name: input.name,
        resources: Resources {
            cpus_milli,
            mem_mib,
            disk_mib,
            ports: Vec::new(),
        },
        ports,
        spec: TaskSpec {
            command,
            container: container.map(Box::new),
            ports: Vec::new(),
            health_checks: Vec::new(),
            labels: pairs("labels", input.labels)?,
            kill_grace_period_secs: input.kill_grace_period_seconds,
            ..TaskSpec::default()
        },
    })
}
