//! The agent process: recovers its tasks, registers with the leading master, follows its
//! command stream, and delivers status updates until they are acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_log::event::{AgentId, Resources, StatusSource, TaskId, TaskState, Timestamp};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cgroups::{Isolation, Limits};
use crate::executor::docker::DockerExecutor;
use crate::executor::process::{self, ProcessExecutor};
use crate::executor::{task_env, Sandboxes};
use crate::http::Metrics;
use crate::store::{Identity, Runtime, Store, TaskRecord};
use crate::{Error, Result};
use cairn_log::protocol::{
    Ack, Command, Envelope, ErrorBody, KnownTask, Launch, Register, Registered, StatusUpdate,
    MAX_UPDATES_PER_POST, PING_SECS,
};

/// Reconnection backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Timeout of a registration or a status post (not of the command stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Masters as `host:port`; any of them redirects to the leader.
    pub masters: Vec<String>,
    /// Holds `agent/` (the durable store) and `sandboxes/`.
    pub data_dir: PathBuf,
    /// Where the agent's own endpoints listen.
    pub listen: SocketAddr,
    /// The address masters and clients reach the agent at (default: `listen`).
    pub advertise: Option<String>,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
    /// The `cairn` binary, started as each process task's executor.
    pub executable: PathBuf,
    /// Time between SIGTERM and SIGKILL when a task does not set its own.
    pub kill_grace: Duration,
    /// Sandboxes of ended tasks kept (their logs stay readable); the oldest go first.
    pub sandboxes_kept: usize,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) isolation: Isolation,
    pub(crate) sandboxes: Sandboxes,
    store: Store,
    pub(crate) process: ProcessExecutor,
    docker: DockerExecutor,
    http: reqwest::Client,
    pub(crate) identity: Mutex<Identity>,
    /// Tasks the agent knows: running, or ended with their last update unacknowledged.
    pub(crate) tasks: Mutex<BTreeMap<TaskId, TaskRecord>>,
    /// Unacknowledged updates, in store order (mirrors the store's `updates/`).
    pub(crate) pending: Mutex<VecDeque<(u64, StatusUpdate)>>,
    updates: Notify,
    /// Sandboxes of ended tasks on disk (a count, corrected whenever they are collected).
    ended_sandboxes: Mutex<usize>,
    /// The leading master's base URL while connected to it.
    pub(crate) leader: watch::Sender<Option<String>>,
    pub(crate) metrics: Metrics,
    /// Frameworks' own executors (see [`crate::executors`]).
    pub(crate) executors: crate::executors::Executors,
}

/// Runs an agent until `shutdown`. Its tasks keep running after it stops.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    if config.masters.is_empty() {
        return Err(Error::Config(
            "master: at least one master address is needed".into(),
        ));
    }
    let store = Store::open(&config.data_dir.join("agent"))?;
    let identity = store.identity()?;
    let pending: VecDeque<_> = store.pending()?.into();
    let isolation = Isolation::detect();
    // Containers are labelled with the agent's data directory: agents sharing one Docker
    // Engine tell their containers apart.
    let docker = DockerExecutor::connect(config.data_dir.display().to_string()).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Config(format!("listen: cannot bind {}: {e}", config.listen)))?;
    let shared = Arc::new(Shared {
        sandboxes: Sandboxes::new(config.data_dir.join("sandboxes")),
        process: ProcessExecutor {
            executable: config.executable.clone(),
            isolation,
        },
        docker,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?,
        identity: Mutex::new(identity),
        tasks: Mutex::new(BTreeMap::new()),
        pending: Mutex::new(pending),
        updates: Notify::new(),
        ended_sandboxes: Mutex::new(usize::MAX),
        leader: watch::Sender::new(None),
        metrics: Metrics::default(),
        executors: Default::default(),
        isolation,
        store,
        config,
    });
    info!(
        isolation = ?isolation,
        listen = %shared.config.listen,
        agent_id = ?shared.identity.lock().expect("identity").agent_id,
        "agent starting; tasks are limited by {}",
        match isolation {
            Isolation::CgroupsV2 => "cgroups v2",
            Isolation::CgroupsV1 => "cgroups v1",
            Isolation::None => "nothing (no writable cgroup hierarchy)",
        }
    );
    shared.recover()?;
    shared.collect_sandboxes();
    let orphans = shared.clone();
    tokio::spawn(async move {
        let known = |id: &TaskId| orphans.tasks.lock().expect("tasks").contains_key(id);
        orphans.docker.remove_orphans(known).await;
    });
    let server = tokio::spawn(crate::http::serve(
        listener,
        shared.clone(),
        shutdown.clone(),
    ));
    let sender = tokio::spawn(shared.clone().send_updates(shutdown.clone()));
    shared.clone().connect(shutdown.clone()).await;
    let _ = sender.await;
    let _ = server.await;
    Ok(())
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

impl Shared {
    /// Picks up the tasks a previous run of the agent left: running ones are watched again,
    /// ended ones are reported.
    fn recover(self: &Arc<Self>) -> Result<()> {
        // The last state stored for each task with updates still to send: an update is
        // stored before its record, so it is the newer of the two.
        let pending_states: BTreeMap<TaskId, TaskState> = self
            .pending
            .lock()
            .expect("pending")
            .iter()
            .map(|(_, u)| (u.task_id.clone(), u.state))
            .collect();
        for mut record in self.store.tasks()? {
            let id = record.task_id.clone();
            if let Some(state) = pending_states.get(&id) {
                record.state = *state;
            }
            if record.spec.executor.is_some() && !record.state.is_terminal() {
                self.tasks.lock().expect("tasks").insert(id, record.clone());
                self.recover_executor_task(&record)?;
                continue;
            }
            if record.state.is_terminal() {
                if pending_states.contains_key(&id) {
                    self.tasks.lock().expect("tasks").insert(id, record);
                } else {
                    // Its last update was acknowledged: nothing is left to do for it.
                    self.store.remove_task(&id)?;
                }
                continue;
            }
            let Some(sandbox) = self.sandboxes.dir(&id) else {
                continue;
            };
            // A process task whose runtime was not recorded before a crash is found through
            // the pid its executor wrote.
            let runtime = record
                .runtime
                .clone()
                .or_else(|| process::started(&sandbox));
            let docker = record
                .spec
                .container
                .as_ref()
                .is_some_and(|c| c.docker.is_some());
            self.tasks.lock().expect("tasks").insert(id.clone(), record);
            match runtime {
                Some(runtime) => {
                    info!(task_id = %id, "recovered a task; watching it again");
                    tokio::spawn(self.clone().monitor(id, sandbox, runtime, None));
                }
                None => {
                    if docker {
                        // Its container may have started: it goes, by the name it would have.
                        let this = self.clone();
                        let name = format!("cairn-{id}");
                        tokio::spawn(async move { this.docker.remove(&name).await });
                    }
                    self.report(
                        &id,
                        TaskState::Failed,
                        Some("REASON_AGENT_RESTARTED"),
                        "the agent stopped before the task started".into(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Records a new state of `task_id` and queues the update for the master.
    pub(crate) fn report(
        &self,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<&str>,
        message: String,
    ) -> Result<()> {
        self.store_update(StatusUpdate {
            uuid: format!("{:032x}", rand::random::<u128>()),
            task_id: task_id.clone(),
            state,
            reason: reason.map(str::to_owned),
            message: Some(message),
            healthy: None,
            at: now(),
            source: StatusSource::Agent,
        })
    }

    /// Reports a running task's health (see [`crate::health`]); whether it did: nothing is
    /// said of a task not yet running (its health follows its `TASK_RUNNING`), or ending.
    pub(crate) fn report_health(
        &self,
        task_id: &TaskId,
        healthy: bool,
        message: String,
    ) -> Result<bool> {
        let state = match self.tasks.lock().expect("tasks").get(task_id) {
            Some(r) if r.state == TaskState::Running && !r.kill_requested => r.state,
            _ => return Ok(false),
        };
        self.store_update(StatusUpdate {
            uuid: format!("{:032x}", rand::random::<u128>()),
            task_id: task_id.clone(),
            state,
            reason: Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED".into()),
            message: Some(message),
            healthy: Some(healthy),
            at: now(),
            source: StatusSource::Agent,
        })?;
        Ok(true)
    }

    /// A copy of every task record the agent holds (for its state views).
    pub(crate) fn task_records(&self) -> Vec<TaskRecord> {
        self.tasks
            .lock()
            .expect("tasks")
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn health_http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn docker(&self) -> &DockerExecutor {
        &self.docker
    }

    pub(crate) fn store_update(&self, update: StatusUpdate) -> Result<()> {
        let (task_id, state) = (update.task_id.clone(), update.state);
        let task_id = &task_id;
        {
            // The update is stored first: a crash before the record follows leaves the update
            // to tell the truth (recovery reads both).
            let mut tasks = self.tasks.lock().expect("tasks");
            let mut pending = self.pending.lock().expect("pending");
            let seq = self.store.push_update(&update)?;
            pending.push_back((seq, update));
            if let Some(record) = tasks.get_mut(task_id) {
                record.state = state;
                self.store.save_task(record)?;
            }
        }
        debug!(task_id = %task_id, ?state, "status update stored");
        self.updates.notify_one();
        Ok(())
    }

    fn handle(self: &Arc<Self>, command: Command) -> Result<()> {
        match command {
            Command::Launch(launch) => self.launch(*launch),
            Command::Kill(kill) => self.kill(&kill.task_id, kill.grace_period_secs),
            Command::Ping => Ok(()),
        }
    }

    fn launch(self: &Arc<Self>, launch: Launch) -> Result<()> {
        let id = launch.task_id.clone();
        let invalid = |message: String| (TaskState::Error, "REASON_TASK_INVALID", message);
        // The id names files: it is checked before anything is written under it.
        if self.sandboxes.dir(&id).is_none() {
            if self.tasks.lock().expect("tasks").contains_key(&id) {
                return Ok(());
            }
            let (state, reason, message) = invalid(format!(
                "task_id: {id:?} may hold only letters, digits, '.', '_' and '-'"
            ));
            return self.report(&id, state, Some(reason), message);
        }
        {
            let mut tasks = self.tasks.lock().expect("tasks");
            if tasks.contains_key(&id) {
                debug!(task_id = %id, "launch of a task already known; ignored");
                return Ok(());
            }
            let record = TaskRecord {
                task_id: id.clone(),
                name: launch.name.clone(),
                resources: launch.resources.clone(),
                spec: launch.spec.clone(),
                state: TaskState::Staging,
                runtime: None,
                kill_requested: false,
                framework_id: launch.framework_id.clone(),
            };
            self.store.save_task(&record)?;
            tasks.insert(id.clone(), record);
        }
        self.metrics.launches.inc();
        let refused = if self
            .config
            .resources
            .checked_sub(&launch.resources)
            .is_none()
        {
            Some(invalid(format!(
                "resources: the task asks for more than this agent has ({:?})",
                self.config.resources
            )))
        } else {
            None
        };
        if let Some((state, reason, message)) = refused {
            return self.report(&id, state, Some(reason), message);
        }
        if launch.spec.executor.is_some() {
            return self.launch_on_executor(&launch);
        }
        let sandbox = self.sandboxes.dir(&id).expect("checked above");
        self.report(&id, TaskState::Starting, None, "starting".into())?;
        let env = task_env(&id, &launch.spec, &self.config.hostname, &sandbox);
        let limits = Limits {
            cpus_milli: launch.resources.cpus_milli,
            mem_mib: launch.resources.mem_mib,
        };
        if launch
            .spec
            .container
            .as_ref()
            .is_some_and(|c| c.docker.is_some())
        {
            // Pulling an image may take minutes: the command stream goes on meanwhile.
            tokio::spawn(
                self.clone()
                    .start_container(id, sandbox, launch.spec, limits, env),
            );
            return Ok(());
        }
        match self.process.start(
            id.as_str(),
            &sandbox,
            &launch.spec,
            limits,
            env,
            self.config.kill_grace,
        ) {
            Err(e) => self.report(&id, e.state, Some(e.reason), e.message),
            Ok(started) => {
                // Watched whatever happens next: a task that runs is never left unsupervised.
                let runtime = started.runtime.clone();
                tokio::spawn(self.clone().monitor(
                    id.clone(),
                    sandbox,
                    started.runtime,
                    started.child,
                ));
                {
                    let mut tasks = self.tasks.lock().expect("tasks");
                    if let Some(record) = tasks.get_mut(&id) {
                        record.runtime = Some(runtime);
                        self.store.save_task(record)?;
                    }
                }
                self.report(
                    &id,
                    TaskState::Running,
                    None,
                    "the command is running".into(),
                )
            }
        }
    }

    /// Starts a Docker task's container, then watches it.
    async fn start_container(
        self: Arc<Self>,
        id: TaskId,
        sandbox: PathBuf,
        spec: cairn_log::event::TaskSpec,
        limits: Limits,
        env: BTreeMap<String, String>,
    ) {
        let result = match self.docker.start(&id, &sandbox, &spec, limits, env).await {
            Err(e) => self.report(&id, e.state, Some(e.reason), e.message),
            Ok(container_id) => self.started_container(&id, sandbox, container_id),
        };
        if let Err(e) = result {
            warn!(task_id = %id, error = %e, "cannot record the container's start");
        }
    }

    fn started_container(
        self: &Arc<Self>,
        id: &TaskId,
        sandbox: PathBuf,
        container_id: String,
    ) -> Result<()> {
        let runtime = Runtime::Docker { container_id };
        let (kill_requested, grace) = {
            let mut tasks = self.tasks.lock().expect("tasks");
            match tasks.get_mut(id) {
                Some(record) => {
                    record.runtime = Some(runtime.clone());
                    self.store.save_task(record)?;
                    (record.kill_requested, record.spec.kill_grace_period_secs)
                }
                None => (false, None),
            }
        };
        tokio::spawn(
            self.clone()
                .monitor(id.clone(), sandbox, runtime.clone(), None),
        );
        if kill_requested {
            // A kill arrived while the container was being created.
            let grace = grace.map_or(self.config.kill_grace, Duration::from_secs);
            self.stop(id, &runtime, grace);
        }
        self.report(
            id,
            TaskState::Running,
            None,
            "the container is running".into(),
        )
    }

    /// Stops a task's process or container: SIGTERM now, SIGKILL after `grace`.
    fn stop(self: &Arc<Self>, id: &TaskId, runtime: &Runtime, grace: Duration) {
        match runtime {
            Runtime::Process { .. } => {
                if let Some(sandbox) = self.sandboxes.dir(id) {
                    process::kill_task(&sandbox, runtime, grace);
                }
            }
            Runtime::Docker { container_id } => {
                let (this, container_id) = (self.clone(), container_id.clone());
                tokio::spawn(async move { this.docker.stop(&container_id, grace).await });
            }
        }
    }

    fn kill(self: &Arc<Self>, id: &TaskId, grace_secs: Option<u64>) -> Result<()> {
        let (runtime, spec_grace) = {
            let mut tasks = self.tasks.lock().expect("tasks");
            match tasks.get_mut(id) {
                None => {
                    drop(tasks);
                    // A kill that overtook its launch (or of a task this agent never got).
                    return self.report(
                        id,
                        TaskState::Killed,
                        None,
                        "killed before it started on this agent".into(),
                    );
                }
                Some(record) if record.state.is_terminal() || record.kill_requested => {
                    return Ok(())
                }
                Some(record) => {
                    record.kill_requested = true;
                    self.store.save_task(record)?;
                    if record.spec.executor.is_some() {
                        let record = record.clone();
                        drop(tasks);
                        return self.kill_on_executor(&record);
                    }
                    (record.runtime.clone(), record.spec.kill_grace_period_secs)
                }
            }
        };
        let grace = grace_secs
            .or(spec_grace)
            .map_or(self.config.kill_grace, Duration::from_secs);
        info!(task_id = %id, ?grace, "killing task");
        match runtime {
            Some(runtime) => self.stop(id, &runtime, grace),
            // Not started yet: a process task's executor reads the request when it starts; a
            // container is stopped once created (see `started_container`).
            None => {
                if let Some(sandbox) = self.sandboxes.dir(id) {
                    process::request_kill(&sandbox, grace);
                }
            }
        }
        Ok(())
    }

    /// Waits for a task's executor to end and reports the task's last state.
    async fn monitor(
        self: Arc<Self>,
        id: TaskId,
        sandbox: PathBuf,
        runtime: Runtime,
        child: Option<tokio::process::Child>,
    ) {
        let spec = self
            .tasks
            .lock()
            .expect("tasks")
            .get(&id)
            .map(|t| t.spec.clone())
            .filter(|s| !s.health_checks.is_empty());
        let health = spec.map(|spec| {
            tokio::spawn(crate::health::watch(
                self.clone(),
                id.clone(),
                spec,
                runtime.clone(),
                sandbox.clone(),
            ))
        });
        let report = match &runtime {
            Runtime::Process { .. } => process::wait(&sandbox, &runtime, child).await,
            Runtime::Docker { container_id } => self.docker.wait(&sandbox, container_id).await,
        };
        // Checks stop before the last state is reported: no health update follows it.
        if let Some(health) = health {
            health.abort();
            let _ = health.await;
        }
        let kill_requested = self
            .tasks
            .lock()
            .expect("tasks")
            .get(&id)
            .is_some_and(|t| t.kill_requested);
        let (mut state, mut reason, message) = process::final_status(&report);
        if kill_requested && report.error.is_none() && !report.oom {
            (state, reason) = (TaskState::Killed, None);
        }
        info!(task_id = %id, ?state, %message, "task ended");
        if let Err(e) = self.report(&id, state, reason, message) {
            warn!(task_id = %id, error = %e, "cannot store the task's last status");
            return;
        }
        if let Runtime::Docker { container_id } = &runtime {
            self.docker.remove(container_id).await;
        }
    }

    /// Removes the oldest sandboxes of ended tasks beyond `sandboxes_kept`.
    fn collect_sandboxes(&self) {
        let root = self.sandboxes.root();
        let mut known: std::collections::BTreeSet<String> = self
            .tasks
            .lock()
            .expect("tasks")
            .keys()
            .map(|t| t.to_string())
            .collect();
        known.extend(self.executor_sandboxes());
        let Ok(entries) = std::fs::read_dir(root) else {
            *self.ended_sandboxes.lock().expect("sandboxes") = 0;
            return;
        };
        let mut ended: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| !known.contains(&e.file_name().to_string_lossy().into_owned()))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        ended.sort();
        let excess = ended.len().saturating_sub(self.config.sandboxes_kept);
        for (_, dir) in ended.drain(..excess) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "cannot remove an old sandbox");
            }
        }
        *self.ended_sandboxes.lock().expect("sandboxes") = ended.len();
    }

    /// Tasks to list in a registration.
    fn known_tasks(&self) -> Vec<KnownTask> {
        self.tasks
            .lock()
            .expect("tasks")
            .values()
            .map(|t| KnownTask {
                task_id: t.task_id.clone(),
                state: t.state,
            })
            .collect()
    }

    pub(crate) fn agent_id(&self) -> Option<AgentId> {
        self.identity.lock().expect("identity").agent_id.clone()
    }

    /// Registers and follows the leader's commands, reconnecting with backoff, until
    /// `shutdown`.
    async fn connect(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = BACKOFF.0;
        while !shutdown.is_cancelled() {
            match self.register().await {
                Ok((base, registered)) => {
                    backoff = BACKOFF.0;
                    info!(leader = %base, agent_id = %registered.agent_id, term = %registered.term, "registered");
                    self.leader.send_replace(Some(base.clone()));
                    tokio::select! {
                        result = self.follow(&base, &registered) => match result {
                            Ok(()) => info!(leader = %base, "the command stream ended"),
                            Err(e) => warn!(leader = %base, error = %e, "the command stream broke"),
                        },
                        () = shutdown.cancelled() => {}
                    }
                    self.leader.send_replace(None);
                }
                Err(e) => warn!(error = %e, "cannot register with a master; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Registers with the first master that answers (redirects lead to the leader); returns
    /// the leader's base URL and its answer.
    async fn register(&self) -> std::result::Result<(String, Registered), String> {
        let request = {
            let identity = self.identity.lock().expect("identity");
            Register {
                agent_id: identity.agent_id.clone(),
                hostname: self.config.hostname.clone(),
                address: self
                    .config
                    .advertise
                    .clone()
                    .unwrap_or_else(|| self.config.listen.to_string()),
                resources: self.config.resources.clone(),
                attributes: self.config.attributes.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                tasks: self.known_tasks(),
                term: identity.term,
            }
        };
        let mut errors = Vec::new();
        for master in &self.config.masters {
            let url = format!("http://{master}/v1/agents/register");
            let response = match self
                .http
                .post(&url)
                .timeout(REQUEST_TIMEOUT)
                .json(&request)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{master}: {e}"));
                    continue;
                }
            };
            let leader = response.url().clone();
            if !response.status().is_success() {
                let status = response.status();
                let body: Option<ErrorBody> = response.json().await.ok();
                errors.push(format!(
                    "{master}: {status} {}",
                    body.map(|b| b.error).unwrap_or_default()
                ));
                continue;
            }
            let registered: Registered = response
                .json()
                .await
                .map_err(|e| format!("{master}: bad registration answer: {e}"))?;
            let base = format!(
                "http://{}:{}",
                leader.host_str().unwrap_or_default(),
                leader.port_or_known_default().unwrap_or(80)
            );
            let mut identity = self.identity.lock().expect("identity");
            if registered.term < identity.term {
                errors.push(format!(
                    "{base} leads term {}, but this agent already obeyed term {}",
                    registered.term, identity.term
                ));
                continue;
            }
            let fresh = Identity {
                agent_id: Some(registered.agent_id.clone()),
                term: registered.term,
            };
            if *identity != fresh {
                self.store
                    .save_identity(&fresh)
                    .map_err(|e| e.to_string())?;
                *identity = fresh;
            }
            return Ok((base, registered));
        }
        Err(errors.join("; "))
    }

    /// Follows the leader's command stream until it ends, breaks, or goes quiet.
    async fn follow(
        self: &Arc<Self>,
        base: &str,
        registered: &Registered,
    ) -> std::result::Result<(), String> {
        let url = format!("{base}/v1/agents/{}/commands", registered.agent_id);
        let mut response = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        let quiet = Duration::from_secs(3 * PING_SECS);
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(quiet, response.chunk()).await {
                Err(_) => return Err(format!("no word from the leader for {quiet:?}")),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let envelope: Envelope = serde_json::from_slice(&line)
                    .map_err(|e| format!("bad command from the leader: {e}"))?;
                {
                    let mut identity = self.identity.lock().expect("identity");
                    if envelope.term < identity.term {
                        self.metrics.refused.inc();
                        return Err(format!(
                            "refused a command from term {}: this agent obeys term {}",
                            envelope.term, identity.term
                        ));
                    }
                    if envelope.term > identity.term {
                        identity.term = envelope.term;
                        self.store
                            .save_identity(&identity)
                            .map_err(|e| e.to_string())?;
                    }
                }
                self.handle(envelope.command).map_err(|e| e.to_string())?;
            }
        }
    }

    /// Sends stored updates to the leader, oldest first, forgetting each once acknowledged.
    /// With nothing to send it still posts (an empty batch) every ping interval: the
    /// leader's proof that this agent is alive.
    async fn send_updates(self: Arc<Self>, shutdown: CancellationToken) {
        let mut leader = self.leader.subscribe();
        let heartbeat = Duration::from_secs(PING_SECS);
        while !shutdown.is_cancelled() {
            let batch: Vec<(u64, StatusUpdate)> = self
                .pending
                .lock()
                .expect("pending")
                .iter()
                .take(MAX_UPDATES_PER_POST)
                .cloned()
                .collect();
            let base = leader.borrow_and_update().clone();
            let (Some(base), Some(agent_id)) = (base, self.agent_id()) else {
                tokio::select! {
                    () = self.updates.notified() => {}
                    _ = leader.changed() => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            };
            if batch.is_empty() {
                tokio::select! {
                    () = self.updates.notified() => continue,
                    _ = leader.changed() => continue,
                    () = shutdown.cancelled() => continue,
                    () = tokio::time::sleep(heartbeat) => {}
                }
            }
            let updates: Vec<&StatusUpdate> = batch.iter().map(|(_, u)| u).collect();
            let sent = self
                .http
                .post(format!("{base}/v1/agents/{agent_id}/status"))
                .timeout(REQUEST_TIMEOUT)
                .json(&updates)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            let acks = match sent {
                Ok(response) => response.json::<Vec<Ack>>().await,
                Err(e) => Err(e),
            };
            let acks = match acks {
                Ok(acks) => acks,
                Err(e) => {
                    warn!(error = %e, "cannot deliver status updates; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = leader.changed() => {}
                        () = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            if let Err(e) = self.acknowledged(&batch, &acks) {
                warn!(error = %e, "cannot forget acknowledged updates");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    fn acknowledged(self: &Arc<Self>, batch: &[(u64, StatusUpdate)], acks: &[Ack]) -> Result<()> {
        for (seq, update) in batch {
            let Some(ack) = acks.iter().find(|a| a.uuid == update.uuid) else {
                continue;
            };
            debug!(task_id = %update.task_id, offset = ack.offset, "update acknowledged");
            if update.source == StatusSource::Executor {
                let record = self
                    .tasks
                    .lock()
                    .expect("tasks")
                    .get(&update.task_id)
                    .cloned();
                if let Some(record) = record {
                    self.acknowledge_to_executor(&record, update);
                }
            }
            self.store.acknowledge(*seq)?;
            {
                let mut pending = self.pending.lock().expect("pending");
                pending.retain(|(s, _)| s != seq);
            }
            if update.state.is_terminal() {
                let mut tasks = self.tasks.lock().expect("tasks");
                let done = tasks
                    .get(&update.task_id)
                    .is_some_and(|t| t.state.is_terminal());
                if done {
                    tasks.remove(&update.task_id);
                    self.store.remove_task(&update.task_id)?;
                    drop(tasks);
                    let mut ended = self.ended_sandboxes.lock().expect("sandboxes");
                    *ended = ended.saturating_add(1);
                    // Collect in steps, not on every task's end: a tenth over the limit.
                    let due = *ended > self.config.sandboxes_kept + self.config.sandboxes_kept / 10;
                    drop(ended);
                    if due {
                        self.collect_sandboxes();
                    }
                }
            }
        }
        Ok(())
    }
}
