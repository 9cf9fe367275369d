//! The leader's runner: the one place in this crate that performs I/O. It reads the live
//! projections, asks a decider, appends what it decides (one decision at a time, so two never
//! act on the same state), serves agents their command streams, and watches for agents that
//! go quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_log::engine::{Clock, Log};
use cairn_log::event::{
    Actor, AgentId, AppBackoffReset, AppId, AppSpec, DeploymentId, Entry, Event, FrameworkId,
    JobName, JobSpec, Principal, RunId, TaskId, TaskKillRequested, Term, Timestamp,
};
use cairn_log::protocol::{
    Ack, Command, Envelope, KnownTask, Register, Registered, StatusUpdate, MAX_UPDATES_PER_POST,
    PING_SECS,
};
use cairn_log::Offset;
use cairn_projections::live::Projector;
use cairn_projections::State;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agents::{self, Router, StatusOutcome};
use crate::allocator::{self, AllocatorConfig};
use crate::apps;
use crate::deployments::{self, Change, Put, Refusal};
use crate::external;
use crate::jobs;
use crate::tasks::{self, sanitize, PlaceError, TaskRequest};

/// Commands queued for one agent's stream before the agent counts as too slow (its stream is
/// then closed; it reconnects and is sent what it missed).
const ROUTE_BUFFER: usize = 4096;
/// Most tasks an agent may list when it registers.
pub const MAX_KNOWN_TASKS: usize = 100_000;
/// How often the runner looks for agents that went quiet.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a leader waits for a quorum to confirm it before it lets its agents go.
const QUORUM_WITHIN: Duration = Duration::from_secs(3);
/// Status posts waiting to be logged; agents posting beyond this wait (backpressure).
const STATUS_POSTS: usize = 4096;
/// Most status updates logged in one decision (one append).
const STATUS_BATCH: usize = 5_000;
/// How often the built-in schedulers run when nothing prompts them (backoffs running out,
/// offers timing out); a change prompts a cycle at once.
const SCHEDULE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How long an agent may stay disconnected before it and its tasks are lost (Mesos: 75 s,
    /// five missed 15 s pings).
    pub agent_timeout: Duration,
    /// How long a new leader waits for agents to reconnect before it marks the silent ones
    /// disconnected.
    pub reconnect_grace: Duration,
    pub allocator: AllocatorConfig,
    /// Runs the built-in apps scheduler; without it, app changes are refused and offers go
    /// to external frameworks only.
    pub apps: bool,
    /// Runs the built-in jobs scheduler; without it, job changes are refused.
    pub jobs: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            agent_timeout: Duration::from_secs(75),
            reconnect_grace: Duration::from_secs(15),
            allocator: AllocatorConfig::default(),
            apps: true,
            jobs: true,
        }
    }
}

/// The runner's one error type; each variant maps to one API status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this master does not lead{}", .leader.as_ref().map(|l| format!(" (the leader is {l})")).unwrap_or_else(|| " and no leader is known".into()))]
    NotLeader { leader: Option<String> },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unplaceable(#[from] PlaceError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Log(cairn_log::Error),
    #[error(transparent)]
    Projection(#[from] cairn_projections::live::Error),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(m) => Self::Invalid(m),
            Refusal::NotFound(m) => Self::NotFound(m),
            Refusal::Conflict { message, .. } => Self::Conflict(message),
        }
    }
}

/// `Ok` when this master leads (`leader_elsewhere` is `None`), else "not the leader".
fn leads(leader_elsewhere: Option<Option<String>>) -> Result<()> {
    match leader_elsewhere {
        None => Ok(()),
        Some(leader) => Err(Error::NotLeader { leader }),
    }
}

impl From<cairn_log::Error> for Error {
    fn from(e: cairn_log::Error) -> Self {
        match e {
            cairn_log::Error::NotLeader { leader } => Self::NotLeader { leader },
            e => Self::Log(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Log,
    projector: Projector,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    /// Serializes decisions: each sees the state every earlier one produced. Holds the term
    /// whose committed records this member is known to have applied (see `write`).
    writes: tokio::sync::Mutex<Term>,
    /// Agents registered with this leader. Also guards `routed` (see `commands`).
    sessions: Mutex<Sessions>,
    generations: AtomicU64,
    /// Prompts a scheduling cycle (after a change that may need one).
    nudge: tokio::sync::Notify,
    /// When the jobs scheduler next has something due (its latest cycle says).
    wake: Mutex<Option<Timestamp>>,
    /// Agents' status posts, logged together (see `log_statuses`).
    status_posts: mpsc::Sender<StatusPost>,
    /// Bumped whenever this master stops leading with framework streams open (see
    /// `leadership_lapses`).
    lapses: tokio::sync::watch::Sender<u64>,
}

/// One agent's status post, waiting to be logged.
#[derive(Debug)]
struct StatusPost {
    agent_id: AgentId,
    updates: Vec<StatusUpdate>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Ack>>>,
}

#[derive(Debug, Default)]
struct Sessions {
    agents: BTreeMap<AgentId, Session>,
    /// External frameworks whose subscription stream this master serves, with the stream's
    /// generation (a newer subscription replaces an older one).
    frameworks: BTreeMap<FrameworkId, u64>,
    /// The last offset the router has routed.
    routed: u64,
}

#[derive(Debug)]
struct Session {
    generation: u64,
    /// What the agent listed at registration.
    known: Vec<KnownTask>,
    /// Where the router sends the agent's commands (with their records' offsets) while its
    /// stream is open.
    route: Option<mpsc::Sender<(u64, Command)>>,
    /// The agent's last registration, stream opening or heartbeat.
    seen: tokio::time::Instant,
}

impl Session {
    fn new(generation: u64, known: Vec<KnownTask>) -> Self {
        Self {
            generation,
            known,
            route: None,
            seen: tokio::time::Instant::now(),
        }
    }
}

/// What a decision appends (each event with who caused it) and what it answers.
struct Decision<T> {
    entries: Vec<Entry>,
    out: T,
}

impl<T> Decision<T> {
    /// `events`, all caused by `actor`, answering `out`.
    fn new(actor: Actor, events: Vec<Event>, out: T) -> Self {
        Self {
            entries: events
                .into_iter()
                .map(|event| Entry {
                    actor: actor.clone(),
                    event,
                })
                .collect(),
            out,
        }
    }
}

impl Decision<()> {
    /// A decision that only appends.
    fn to_log(actor: Actor, events: Vec<Event>) -> Self {
        Self::new(actor, events, ())
    }
}

impl Runner {
    /// Starts the runner's background work (routing commands, watching agents) until `stop`.
    pub fn start(
        log: Log,
        projector: Projector,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
        stop: CancellationToken,
    ) -> Self {
        let (status_posts, posted) = mpsc::channel(STATUS_POSTS);
        let runner = Self {
            inner: Arc::new(Inner {
                log,
                projector,
                clock,
                config,
                writes: tokio::sync::Mutex::new(Term(0)),
                sessions: Mutex::new(Sessions::default()),
                generations: AtomicU64::new(1),
                nudge: tokio::sync::Notify::new(),
                wake: Mutex::new(None),
                status_posts,
                lapses: tokio::sync::watch::Sender::new(0),
            }),
        };
        tokio::spawn(runner.clone().log_statuses(posted, stop.clone()));
        tokio::spawn(runner.clone().schedule(stop.clone()));
        tokio::spawn(runner.clone().route(stop.clone()));
        tokio::spawn(runner.clone().watch_agents(stop));
        runner
    }

    /// The time by this master's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn ensure_leader(&self) -> Result<()> {
        leads(self.inner.log.leader_elsewhere())
    }

    /// [`Runner::ensure_leader`], but waiting out an election first
    /// ([`cairn_log::engine::LEADER_HOLD`]): a write forwarded here by a follower just as
    /// leadership moves is decided once a leader is known, rather than refused.
    async fn ensure_leader_held(&self) -> Result<()> {
        leads(self.inner.log.leader_elsewhere_held().await)
    }

    fn master(&self) -> Actor {
        Actor::master(cairn_log::event::NodeId(self.inner.log.status().node_id))
    }

    /// Decides on the current state and appends the decision, one decision at a time;
    /// returns once the projections include it. The first decision of a term waits until
    /// this member has applied everything committed before it (a read index), so a new
    /// leader never decides on a state older than its predecessor's; and a decision is
    /// appended only while this member still leads.
    async fn write<T>(
        &self,
        decide: impl FnOnce(&State) -> Result<Decision<T>>,
    ) -> Result<(Option<cairn_log::engine::Appended>, T)> {
        self.ensure_leader_held().await?;
        let mut synced = self.inner.writes.lock().await;
        let term = self.inner.log.term();
        if *synced != term {
            self.inner.log.sync_with_leader().await?;
            *synced = term;
        }
        self.inner.projector.wait_for(self.inner.log.head()).await?;
        let decision = {
            let view = self.inner.projector.current().await;
            decide(&view)?
        };
        if decision.entries.is_empty() {
            return Ok((None, decision.out));
        }
        let appended = self.inner.log.append_as_leader(decision.entries).await?;
        self.inner.projector.wait_for(appended.last.get()).await?;
        Ok((Some(appended), decision.out))
    }

    /// An agent registers (or re-registers): logs it, reconciles its tasks, and opens a
    /// session for its command stream.
    pub async fn register(&self, request: Register) -> Result<Registered> {
        if request.hostname.trim().is_empty() {
            return Err(Error::Invalid("hostname: must not be empty".into()));
        }
        if request.address.trim().is_empty() {
            return Err(Error::Invalid("address: must not be empty".into()));
        }
        if request.tasks.len() > MAX_KNOWN_TASKS {
            return Err(Error::Invalid(format!(
                "tasks: {} listed, at most {MAX_KNOWN_TASKS}",
                request.tasks.len()
            )));
        }
        let term = self.inner.log.term();
        if request.term > term {
            return Err(Error::NotLeader { leader: None });
        }
        let minted = AgentId::new(format!("{:016x}-S0", mint())).expect("a valid id");
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        let (appended, agent_id) = self
            .write(|state| {
                let registration = agents::register(state, &request, minted);
                // The session exists before the registration is logged, under the write
                // lock: no decision can see the agent active but not connected.
                self.inner.sessions.lock().expect("sessions").agents.insert(
                    registration.agent_id.clone(),
                    Session::new(generation, request.tasks.clone()),
                );
                Ok(Decision::new(
                    agent_actor(&registration.agent_id),
                    registration.events,
                    registration.agent_id,
                ))
            })
            .await?;
        let appended = appended.expect("a registration is always logged");
        self.inner.nudge.notify_one();
        info!(%agent_id, hostname = %request.hostname, offset = appended.last.get(), "agent registered");
        Ok(Registered {
            agent_id,
            term: appended.term,
            offset: appended.last.get(),
        })
    }

    /// Opens `agent_id`'s command stream: first what it must catch up on, then every command
    /// the log produces for it, with pings between; it ends when this master stops leading.
    pub async fn commands(&self, agent_id: AgentId) -> Result<mpsc::Receiver<Envelope>> {
        self.ensure_leader()?;
        let term = self.inner.log.term();
        let (route_tx, route_rx) = mpsc::channel(ROUTE_BUFFER);
        // Route first, then take the state at or after the router's position: nothing falls
        // between the two (a command in both is harmless; launches and kills are idempotent).
        let (generation, known, routed) = {
            let mut sessions = self.inner.sessions.lock().expect("sessions");
            let routed = sessions.routed;
            let Some(session) = sessions.agents.get_mut(&agent_id) else {
                return Err(Error::NotFound(format!(
                    "agent {agent_id} has not registered with this leader"
                )));
            };
            session.generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
            session.route = Some(route_tx);
            session.seen = tokio::time::Instant::now();
            (session.generation, session.known.clone(), routed)
        };
        self.inner.projector.wait_for(routed).await?;
        let (initial, snapshot) = {
            let view = self.inner.projector.current().await;
            (agents::on_connect(&view, &agent_id, &known), view.offset)
        };
        let (out, rx) = mpsc::channel(64);
        tokio::spawn(
            self.clone()
                .session(agent_id, generation, term, initial, snapshot, route_rx, out),
        );
        Ok(rx)
    }

    /// Feeds one agent's stream: the catch-up commands (as of offset `snapshot`), then the
    /// routed ones after it, with pings. Ends when the agent goes, stops calling in (no
    /// heartbeat for three pings), cannot keep up, or this master stops leading.
    #[allow(clippy::too_many_arguments)]
    async fn session(
        self,
        agent_id: AgentId,
        generation: u64,
        term: Term,
        initial: Vec<Command>,
        snapshot: u64,
        mut routed: mpsc::Receiver<(u64, Command)>,
        out: mpsc::Sender<Envelope>,
    ) {
        let silence = Duration::from_secs(3 * PING_SECS);
        // A send that cannot complete within the silence means a stuck peer.
        let send = |command| {
            let out = out.clone();
            async move {
                let envelope = Envelope { term, command };
                matches!(
                    tokio::time::timeout(silence, out.send(envelope)).await,
                    Ok(Ok(()))
                )
            }
        };
        let mut open = true;
        for command in initial {
            if !send(command).await {
                open = false;
                break;
            }
        }
        let mut ping = tokio::time::interval(Duration::from_secs(PING_SECS));
        while open {
            open = tokio::select! {
                command = routed.recv() => match command {
                    // Already in the catch-up, which was taken at `snapshot`.
                    Some((offset, _)) if offset <= snapshot => true,
                    Some((_, command)) => send(command).await,
                    None => false,
                },
                _ = ping.tick() => {
                    let leading = self.inner.log.leader_elsewhere().is_none()
                        && self.inner.log.term() == term;
                    let heard = self
                        .inner
                        .sessions
                        .lock()
                        .expect("sessions")
                        .agents
                        .get(&agent_id)
                        .is_some_and(|s| s.seen.elapsed() < silence);
                    leading && heard && send(Command::Ping).await
                }
                () = out.closed() => false,
            };
        }
        info!(%agent_id, "the agent's command stream closed");
        let actor = self.master();
        let result = self
            .write(|state| {
                // Only if no later registration or stream replaced this one, decided under
                // the write lock so that a re-registration cannot slip in between.
                let mut sessions = self.inner.sessions.lock().expect("sessions");
                let mine = sessions
                    .agents
                    .get(&agent_id)
                    .is_some_and(|s| s.generation == generation);
                let events = if mine {
                    sessions.agents.remove(&agent_id);
                    agents::disconnected(state, &agent_id, "its command stream closed")
                } else {
                    Vec::new()
                };
                Ok(Decision::to_log(actor, events))
            })
            .await;
        if let Err(e) = result {
            warn!(%agent_id, error = %e, "cannot record the agent's disconnection");
        }
    }

    /// An agent's heartbeat: it is alive even when it has nothing to report.
    pub fn heartbeat(&self, agent_id: &AgentId) -> Result<()> {
        self.ensure_leader()?;
        match self
            .inner
            .sessions
            .lock()
            .expect("sessions")
            .agents
            .get_mut(agent_id)
        {
            Some(session) => {
                session.seen = tokio::time::Instant::now();
                Ok(())
            }
            None => Err(Error::NotFound(format!(
                "agent {agent_id} has not registered with this leader"
            ))),
        }
    }

    /// Logs a batch of an agent's status updates; answers each with the offset where it is
    /// logged (0 for one that cannot be: an unknown task, or one that already ended).
    pub async fn statuses(
        &self,
        agent_id: AgentId,
        updates: Vec<StatusUpdate>,
    ) -> Result<Vec<Ack>> {
        if updates.len() > MAX_UPDATES_PER_POST {
            return Err(Error::Invalid(format!(
                "updates: {} in one request, at most {MAX_UPDATES_PER_POST}",
                updates.len()
            )));
        }
        self.heartbeat(&agent_id)?;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let post = StatusPost {
            agent_id,
            updates,
            reply,
        };
        // Closed only when the runner stops with the process.
        let stopping = || Error::NotLeader { leader: None };
        self.inner
            .status_posts
            .send(post)
            .await
            .map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }

    /// Logs agents' status posts: every post waiting when a decision starts goes into it, so
    /// that many agents' updates cost one append (one fsync, one Raft round) rather than one
    /// each. Each post is answered with the offsets of its own updates.
    async fn log_statuses(self, mut posts: mpsc::Receiver<StatusPost>, stop: CancellationToken) {
        // A post from an agent already in the batch waits for the next one: its updates are
        // judged on a state that holds the earlier post's.
        let mut next: Option<StatusPost> = None;
        loop {
            let first = match next.take() {
                Some(post) => post,
                None => tokio::select! {
                    post = posts.recv() => match post {
                        Some(post) => post,
                        None => return,
                    },
                    () = stop.cancelled() => return,
                },
            };
            let mut updates = first.updates.len();
            // A set, not a scan of the batch: hundreds of agents post at once.
            let mut posting = BTreeSet::from([first.agent_id.clone()]);
            let mut batch = vec![first];
            while updates < STATUS_BATCH {
                let Ok(post) = posts.try_recv() else { break };
                if !posting.insert(post.agent_id.clone()) {
                    next = Some(post);
                    break;
                }
                updates += post.updates.len();
                batch.push(post);
            }
            let result = self
                .write(|state| {
                    let mut entries = Vec::new();
                    let judged: Vec<Option<Vec<StatusOutcome>>> = batch
                        .iter()
                        .map(|post| {
                            state.cluster.agents.contains_key(&post.agent_id).then(|| {
                                let outcomes =
                                    agents::statuses(state, &post.agent_id, &post.updates);
                                let actor = agent_actor(&post.agent_id);
                                entries.extend(outcomes.iter().filter_map(|o| match o {
                                    StatusOutcome::Log(event) => Some(Entry {
                                        actor: actor.clone(),
                                        event: (**event).clone(),
                                    }),
                                    _ => None,
                                }));
                                outcomes
                            })
                        })
                        .collect();
                    Ok(Decision {
                        entries,
                        out: judged,
                    })
                })
                .await;
            let (appended, judged) = match result {
                Ok(done) => done,
                Err(e) => {
                    let leader = match &e {
                        Error::NotLeader { leader } => leader.clone(),
                        _ => None,
                    };
                    warn!(error = %e, posts = batch.len(), "cannot log status updates; agents will retry");
                    for post in batch {
                        let _ = post.reply.send(Err(Error::NotLeader {
                            leader: leader.clone(),
                        }));
                    }
                    continue;
                }
            };
            if appended.is_some() {
                self.inner.nudge.notify_one();
            }
            let mut offset = appended.map_or(0, |a| a.first.get());
            for (post, outcomes) in batch.into_iter().zip(judged) {
                let Some(outcomes) = outcomes else {
                    let unknown = format!("agent {} is unknown", post.agent_id);
                    let _ = post.reply.send(Err(Error::NotFound(unknown)));
                    continue;
                };
                let acks = post
                    .updates
                    .iter()
                    .zip(outcomes)
                    .map(|(update, outcome)| Ack {
                        uuid: update.uuid.clone(),
                        offset: match outcome {
                            StatusOutcome::Log(_) => {
                                offset += 1;
                                offset - 1
                            }
                            StatusOutcome::Logged(at) => at,
                            StatusOutcome::Dropped(why) => {
                                warn!(agent_id = %post.agent_id, task_id = %update.task_id, %why, "status update dropped");
                                0
                            }
                        },
                    })
                    .collect();
                let _ = post.reply.send(Ok(acks));
            }
        }
    }

    /// Places and launches a one-off task; returns its id and the offset of its launch.
    pub async fn launch_task(&self, actor: Actor, request: TaskRequest) -> Result<(TaskId, u64)> {
        if request.ports > tasks::MAX_PORTS {
            return Err(Error::Invalid(format!(
                "ports: {} asked for, at most {}",
                request.ports,
                tasks::MAX_PORTS
            )));
        }
        let task_id = TaskId::new(format!("{}.{:016x}", sanitize(&request.name), mint()))
            .map_err(|e| Error::Invalid(format!("name: {e}")))?;
        let (appended, ()) = self
            .write(|state| {
                let launch = tasks::place(state, &request, task_id.clone())?;
                let mut events = tasks::user_framework(state);
                events.push(launch);
                Ok(Decision::to_log(actor, events))
            })
            .await?;
        let offset = appended.map_or(0, |a| a.last.get());
        Ok((task_id, offset))
    }

    /// Asks for a task to be killed; returns the offset of the request.
    pub async fn kill_task(
        &self,
        actor: Actor,
        task_id: TaskId,
        grace_period_secs: Option<u64>,
    ) -> Result<u64> {
        let (appended, ()) = self
            .write(|state| {
                let Some(task) = state.tasks.tasks.get(&task_id) else {
                    return Err(Error::NotFound(format!("task {task_id} is unknown")));
                };
                if task.is_terminal() {
                    return Err(Error::Conflict(format!(
                        "task {task_id} has already ended ({:?})",
                        task.state
                    )));
                }
                Ok(Decision::to_log(
                    actor,
                    vec![Event::TaskKillRequested(TaskKillRequested {
                        task_id: task_id.clone(),
                        grace_period_secs,
                        reason: "asked for by a user".into(),
                    })],
                ))
            })
            .await?;
        Ok(appended.map_or(0, |a| a.last.get()))
    }

    /// Clears an app's launch delay after failures (Marathon's `DELETE /v2/queue/{id}/delay`):
    /// its waiting instances launch at the next offers. An app without a delay is refused
    /// (`NotFound`), changing nothing.
    pub async fn reset_backoff(&self, actor: Actor, app_id: AppId) -> Result<()> {
        self.write(|state| {
            let Some(app) = state.apps.apps.get(&app_id) else {
                return Err(Error::NotFound(format!("app {app_id} does not exist")));
            };
            if app.backoff.is_none() {
                return Err(Error::NotFound(format!(
                    "app {app_id} has no launch delay to reset"
                )));
            }
            let reset = AppBackoffReset {
                app_id: app_id.clone(),
            };
            Ok(Decision::to_log(actor, vec![Event::AppBackoffReset(reset)]))
        })
        .await?;
        self.inner.nudge.notify_one();
        Ok(())
    }

    /// Creates or updates apps in one deployment; returns it (none when nothing changed).
    pub async fn put_apps(
        &self,
        actor: Actor,
        specs: Vec<AppSpec>,
        mode: Put,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        self.change(actor, |state, now, id| {
            deployments::put(state, specs, mode, now, id, force)
        })
        .await
    }

    /// Creates or updates `specs` and deletes the apps `remove`, in one deployment (a
    /// Marathon group replaced or deleted).
    pub async fn replace_apps(
        &self,
        actor: Actor,
        specs: Vec<AppSpec>,
        remove: Vec<AppId>,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        self.change(actor, |state, now, id| {
            deployments::replace(state, specs, &remove, now, id, force)
        })
        .await
    }

    /// Sets an app's instance count.
    pub async fn scale_app(
        &self,
        actor: Actor,
        app_id: AppId,
        instances: u32,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        self.change(actor, |state, now, id| {
            deployments::scale(state, &app_id, instances, now, id, force)
        })
        .await
    }

    /// Replaces an app's instances by a rolling restart.
    pub async fn restart_app(
        &self,
        actor: Actor,
        app_id: AppId,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        self.change(actor, |state, now, id| {
            deployments::restart(state, &app_id, now, id, force)
        })
        .await
    }

    /// Deletes an app and kills its instances.
    pub async fn delete_app(
        &self,
        actor: Actor,
        app_id: AppId,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        self.change(actor, |state, now, id| {
            deployments::delete(state, &app_id, now, id, force)
        })
        .await
    }

    /// Puts an app back to the definition it had at `version` (a new version).
    pub async fn rollback_app(
        &self,
        actor: Actor,
        app_id: AppId,
        version: Timestamp,
        force: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        let spec = {
            let state = self.inner.projector.current().await;
            let app = state
                .apps
                .apps
                .get(&app_id)
                .ok_or_else(|| Error::NotFound(format!("app {app_id} does not exist")))?;
            self.spec_at(app, version)?
        };
        self.put_apps(actor, vec![spec], Put::Update, force).await
    }

    /// Cancels a running deployment; with `rollback`, its apps go back to their earlier
    /// definitions in a new deployment (returned).
    pub async fn cancel_deployment(
        &self,
        actor: Actor,
        deployment: DeploymentId,
        rollback: bool,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        let previous = if rollback {
            let state = self.inner.projector.current().await;
            let d = state.apps.deployments.get(&deployment).ok_or_else(|| {
                Error::NotFound(format!("deployment {deployment} does not exist"))
            })?;
            let mut previous = std::collections::BTreeMap::new();
            for app_id in &d.app_ids {
                let before = match state.apps.apps.get(app_id) {
                    Some(app) => match app.versions.iter().rev().find(|v| v.version < d.version) {
                        Some(v) => Some(self.spec_at(app, v.version)?),
                        None => None,
                    },
                    // Deleted (by this deployment: `cancel` refuses to restore it).
                    None => None,
                };
                previous.insert(app_id.clone(), before);
            }
            Some(previous)
        } else {
            None
        };
        self.change(actor, |state, now, id| {
            deployments::cancel(state, &deployment, previous.map(|p| (p, id)), now)
        })
        .await
    }

    /// Appends a change to apps, decided at this master's time with a new deployment id,
    /// and prompts the scheduler to carry it out.
    async fn change(
        &self,
        actor: Actor,
        decide: impl FnOnce(&State, Timestamp, DeploymentId) -> std::result::Result<Change, Refusal>,
    ) -> Result<Option<(DeploymentId, Timestamp)>> {
        let now = self.inner.clock.now();
        if !self.inner.config.apps {
            return Err(Error::Invalid(
                "the built-in apps scheduler is disabled on this cluster ([apps] enabled = false)"
                    .into(),
            ));
        }
        let (_, deployment) = self
            .write(|state| {
                let change = decide(state, now, deployment_id())?;
                Ok(Decision::new(actor, change.events, change.deployment))
            })
            .await?;
        self.inner.nudge.notify_one();
        Ok(deployment)
    }

    /// Creates or updates a job; returns whether anything changed.
    pub async fn put_job(&self, actor: Actor, spec: JobSpec, mode: Put) -> Result<bool> {
        self.change_jobs(actor, |state, now| {
            let events = jobs::put(state, spec, mode, now)?;
            let changed = !events.is_empty();
            Ok((events, changed))
        })
        .await
    }

    /// Deletes a job, ending its active runs.
    pub async fn delete_job(&self, actor: Actor, name: JobName) -> Result<()> {
        self.change_jobs(actor, |state, _| Ok((jobs::delete(state, &name)?, ())))
            .await
    }

    /// Kills a job's active runs.
    pub async fn kill_job_runs(&self, actor: Actor, name: JobName) -> Result<()> {
        self.change_jobs(actor, |state, _| Ok((jobs::kill_runs(state, &name)?, ())))
            .await
    }

    /// Triggers a run of a job now; returns the run's id.
    pub async fn run_job(&self, actor: Actor, name: JobName) -> Result<RunId> {
        let run_id = RunId::new(format!("{}.{:016x}", sanitize(name.as_str()), mint()))
            .map_err(|e| Error::Invalid(format!("name: {e}")))?;
        self.change_jobs(actor, |state, now| {
            let events = jobs::run_now(state, &name, now, run_id.clone())?;
            Ok((events, run_id))
        })
        .await
    }

    /// Disables a job (no more scheduled or dependent runs) or enables it again.
    pub async fn set_job_disabled(
        &self,
        actor: Actor,
        name: JobName,
        disabled: bool,
    ) -> Result<()> {
        self.change_jobs(actor, |state, _| {
            Ok((jobs::set_disabled(state, &name, disabled)?, ()))
        })
        .await
    }

    /// An external framework subscribes (Mesos' `SUBSCRIBE`); returns its id, minted when it
    /// is new.
    ///
    /// Returns its id and its stream's generation: the caller serves the stream and says
    /// when it ends ([`Runner::framework_stream_ended`]). While no stream of an external
    /// framework is open on the leader, the leader marks it disconnected (after the reconnect
    /// grace of a new term), so that its failover timeout runs even when the stream was on
    /// a master that no longer leads.
    pub async fn subscribe_framework(
        &self,
        actor: Actor,
        info: external::FrameworkInfo,
        id: Option<FrameworkId>,
    ) -> Result<(FrameworkId, u64)> {
        let minted = FrameworkId::new(deployment_id().as_str())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let generation = mint();
        let subscribed = self
            .write(|state| {
                let (id, events) = external::subscribe(state, info, id, minted)?;
                // Under the write lock, as the leader's check of subscriptions reads it.
                let mut sessions = self.inner.sessions.lock().expect("sessions");
                sessions.frameworks.insert(id.clone(), generation);
                Ok(Decision::new(actor, events, id))
            })
            .await;
        let id = match subscribed {
            Ok((_, id)) => id,
            Err(e) => {
                // Inserted for a decision that was not appended: no stream follows.
                let mut sessions = self.inner.sessions.lock().expect("sessions");
                sessions.frameworks.retain(|_, g| *g != generation);
                return Err(e);
            }
        };
        self.inner.nudge.notify_one();
        Ok((id, generation))
    }

    /// Changes whenever this master stops leading while frameworks' streams are open on it:
    /// another master leads, or no quorum confirms this one (a leader cut off from the others
    /// still believes it leads). The scheduler API ends its streams on it, so that frameworks
    /// subscribe again and find the leader the others follow.
    pub fn leadership_lapses(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.lapses.subscribe()
    }

    /// This master does not lead (or cannot tell that it does): its framework streams go.
    fn lapse(&self) {
        let streams = !self
            .inner
            .sessions
            .lock()
            .expect("sessions")
            .frameworks
            .is_empty();
        if streams {
            self.inner.lapses.send_modify(|n| *n += 1);
        }
    }

    /// The stream of subscription `generation` of framework `id` ended: unless a newer one
    /// replaced it, the framework is disconnected (its failover timeout starts).
    pub async fn framework_stream_ended(
        &self,
        actor: Actor,
        id: FrameworkId,
        generation: u64,
    ) -> Result<()> {
        let ours = {
            let mut sessions = self.inner.sessions.lock().expect("sessions");
            let ours = sessions.frameworks.get(&id) == Some(&generation);
            if ours {
                sessions.frameworks.remove(&id);
            }
            ours
        };
        if !ours {
            return Ok(());
        }
        self.framework_call(actor, id, external::Call::Disconnected)
            .await
    }

    /// A call of a subscribed external framework (accept, decline, revive, …).
    pub async fn framework_call(
        &self,
        actor: Actor,
        id: FrameworkId,
        call: external::Call,
    ) -> Result<()> {
        self.write(|state| Ok(Decision::to_log(actor, external::decide(state, &id, call)?)))
            .await?;
        self.inner.nudge.notify_one();
        Ok(())
    }

    /// Appends a change to jobs, decided at this master's time, and prompts the scheduler.
    async fn change_jobs<T>(
        &self,
        actor: Actor,
        decide: impl FnOnce(&State, Timestamp) -> std::result::Result<(Vec<Event>, T), Refusal>,
    ) -> Result<T> {
        if !self.inner.config.jobs {
            return Err(Error::Invalid(
                "the built-in jobs scheduler is disabled on this cluster ([jobs] enabled = false)"
                    .into(),
            ));
        }
        let now = self.inner.clock.now();
        let (_, out) = self
            .write(|state| {
                let (events, out) = decide(state, now)?;
                Ok(Decision::new(actor, events, out))
            })
            .await?;
        self.inner.nudge.notify_one();
        Ok(out)
    }

    /// An app's definition as of one of its versions, read back from the log.
    pub fn spec_at(
        &self,
        app: &cairn_projections::apps::App,
        version: Timestamp,
    ) -> Result<AppSpec> {
        let at = app
            .versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| {
                Error::NotFound(format!("app {} has no version {version}", app.spec.id))
            })?;
        let read = |offset: u64| -> Result<Event> {
            let offset = Offset::new(offset).ok_or_else(|| Error::NotFound("offset 0".into()))?;
            let record = self.inner.log.read(offset, 1)?.into_iter().next();
            record
                .map(|r| r.event)
                .ok_or_else(|| Error::NotFound(format!("record {offset} is not in the log")))
        };
        // The definition of the latest full version at or before it, with the instance
        // count of the version itself.
        let mut instances = None;
        for v in app.versions[..=at].iter().rev() {
            match read(v.offset)? {
                Event::AppScaled(e) => {
                    instances.get_or_insert(e.instances);
                }
                Event::AppCreated(e) => return Ok(with_instances(e.spec, instances)),
                Event::AppUpdated(e) => return Ok(with_instances(e.spec, instances)),
                other => {
                    return Err(Error::Invalid(format!(
                        "version {} of app {} is recorded as {:?}",
                        v.version,
                        app.spec.id,
                        other.kind()
                    )))
                }
            }
        }
        Err(Error::NotFound(format!(
            "no definition of app {} at {version}",
            app.spec.id
        )))
    }

    /// The built-in schedulers, on the leader: each cycle registers the apps framework if
    /// the log lacks it, runs the allocator, and lets the apps scheduler use its offers.
    async fn schedule(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SCHEDULE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A job due before the next tick wakes the loop at its time.
            let wake = *self.inner.wake.lock().expect("not poisoned");
            let until_due = wake.map_or(SCHEDULE_EVERY, |at| {
                let micros = at.as_micros() - self.inner.clock.now().as_micros();
                Duration::from_micros(micros.clamp(0, SCHEDULE_EVERY.as_micros() as i64) as u64)
            });
            tokio::select! {
                _ = tick.tick() => {}
                () = tokio::time::sleep(until_due) => {}
                () = self.inner.nudge.notified() => {}
                () = stop.cancelled() => return,
            }
            if self.inner.log.leader_elsewhere().is_some() {
                continue;
            }
            if let Err(e) = self.cycle().await {
                if !matches!(e, Error::NotLeader { .. }) {
                    warn!(error = %e, "a scheduling cycle failed");
                }
            }
        }
    }

    async fn cycle(&self) -> Result<()> {
        let scheduler = |name: &str| Actor {
            principal: Principal::Scheduler { name: name.into() },
            origin: None,
        };
        let (run_apps, run_jobs) = (self.inner.config.apps, self.inner.config.jobs);
        // A revive or a cut-short cycle goes round again at once (bounded, so that a
        // busy cluster still yields to other decisions).
        for _ in 0..8 {
            let now = self.inner.clock.now();
            for (name, on, ensure) in [
                (
                    "apps",
                    run_apps,
                    apps::ensure_framework as fn(&State) -> Vec<Event>,
                ),
                ("jobs", run_jobs, jobs::ensure_framework),
            ] {
                if on {
                    self.write(|state| Ok(Decision::to_log(scheduler(name), ensure(state))))
                        .await?;
                }
            }
            let prefix = format!("{:016x}", mint());
            let config = &self.inner.config.allocator;
            self.write(|state| {
                Ok(Decision::to_log(
                    scheduler("allocator"),
                    allocator::allocate(state, now, config, &prefix),
                ))
            })
            .await?;
            let mut again = false;
            if run_apps {
                let tasks = format!("{:08x}", mint() as u32);
                let (_, more) = self
                    .write(|state| {
                        let cycle = apps::decide(state, now, &tasks);
                        Ok(Decision::new(scheduler("apps"), cycle.events, cycle.again))
                    })
                    .await?;
                again |= more;
            }
            if run_jobs {
                let runs = format!("{:08x}", mint() as u32);
                let (_, (more, wake)) = self
                    .write(|state| {
                        let cycle = jobs::decide(state, now, &runs);
                        let out = (cycle.again, cycle.wake);
                        Ok(Decision::new(scheduler("jobs"), cycle.events, out))
                    })
                    .await?;
                *self.inner.wake.lock().expect("not poisoned") = wake;
                again |= more;
            }
            if !again {
                break;
            }
        }
        Ok(())
    }

    /// Sends each committed command to the session of the agent it is for. Retries (with
    /// backoff) when it cannot follow the log, resuming where it stopped.
    async fn route(self, stop: CancellationToken) {
        let log = &self.inner.log;
        let start = log.head();
        if self.inner.projector.wait_for(start).await.is_err() {
            return;
        }
        let mut router = Router::new(&*self.inner.projector.current().await);
        self.inner.sessions.lock().expect("sessions").routed = start;
        let mut from = Offset::new(start + 1).unwrap_or(Offset::FIRST);
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut subscription = match log.subscribe(from) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "the command router cannot follow the log; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    next = subscription.next() => next,
                    () = stop.cancelled() => return,
                };
                match next {
                    // The log closed: the process is stopping.
                    None => return,
                    Some(Ok(record)) => {
                        backoff = Duration::from_millis(100);
                        let offset = record.offset.get();
                        let routed = router.route(offset, &record.event);
                        let mut sessions = self.inner.sessions.lock().expect("sessions");
                        if let Some((agent_id, command)) = routed {
                            if let Some(session) = sessions.agents.get_mut(&agent_id) {
                                let sent = session
                                    .route
                                    .as_ref()
                                    .map(|r| r.try_send((offset, command)));
                                if let Some(Err(e)) = sent {
                                    warn!(%agent_id, error = %e, "the agent's commands back up; closing its stream");
                                    session.route = None;
                                }
                            }
                        }
                        sessions.routed = offset;
                        from = record.offset.next();
                    }
                    Some(Err(e)) => {
                        if let cairn_log::Error::Lagged { resume_from, .. } = e {
                            from = Offset::new(resume_from).unwrap_or(from);
                        } else {
                            warn!(error = %e, "the command router lost the log; resubscribing");
                        }
                        break;
                    }
                }
            }
        }
    }

    /// On the leader: agents that never reconnected after a leader change are disconnected,
    /// and agents disconnected for too long are lost, with their tasks.
    async fn watch_agents(self, stop: CancellationToken) {
        let mut leading: Option<(Term, tokio::time::Instant, cairn_log::event::Timestamp)> = None;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if self.inner.log.leader_elsewhere().is_some() {
                // Sessions belong to a leadership: a later term here starts from none.
                if leading.take().is_some() {
                    self.inner.sessions.lock().expect("sessions").agents.clear();
                }
                self.lapse();
                continue;
            }
            // A leader cut off from the other masters still believes it leads, but can commit
            // nothing: it lets its agents go, so that they find the leader the others elect.
            let confirmed =
                tokio::time::timeout(QUORUM_WITHIN, self.inner.log.sync_with_leader()).await;
            if !matches!(confirmed, Ok(Ok(()))) {
                let dropped = {
                    let mut sessions = self.inner.sessions.lock().expect("sessions");
                    std::mem::take(&mut sessions.agents).len()
                };
                if dropped > 0 {
                    warn!(
                        dropped,
                        "no quorum confirms this leader: agent sessions closed"
                    );
                }
                self.lapse();
                leading = None;
                continue;
            }
            let term = self.inner.log.term();
            if leading.is_none_or(|(t, _, _)| t != term) {
                leading = Some((term, tokio::time::Instant::now(), self.inner.clock.now()));
            }
            let Some((_, since, since_at)) = leading else {
                continue;
            };
            let settled = since.elapsed() >= self.inner.config.reconnect_grace;
            let now = self.inner.clock.now();
            let timeout = self.inner.config.agent_timeout.as_micros() as i64;
            let grace = self.inner.config.reconnect_grace;
            let actor = self.master();
            let result = self
                .write(|state| {
                    // Under the write lock: registrations insert their sessions under it too.
                    let (connected, subscribed): (Vec<AgentId>, BTreeSet<FrameworkId>) = {
                        let mut sessions = self.inner.sessions.lock().expect("sessions");
                        // A registration whose stream never opened is not a connection.
                        sessions
                            .agents
                            .retain(|_, s| s.route.is_some() || s.seen.elapsed() < grace);
                        let connected = sessions.agents.keys().cloned().collect();
                        (connected, sessions.frameworks.keys().cloned().collect())
                    };
                    let mut events = Vec::new();
                    if settled {
                        for agent_id in state
                            .cluster
                            .agents
                            .keys()
                            .filter(|id| !connected.contains(id))
                        {
                            events.extend(agents::disconnected(
                                state,
                                agent_id,
                                "it is not connected to the leader",
                            ));
                        }
                        events.extend(external::unsubscribed(state, &subscribed));
                    }
                    events.extend(agents::lose(state, now, timeout, since_at));
                    events.extend(external::expired(state, now, since_at));
                    Ok(Decision::to_log(actor, events))
                })
                .await;
            if let Err(e) = result {
                warn!(error = %e, "cannot check on agents");
            }
        }
    }
}

/// A version's definition, with the instance count of a later scaling if there was one.
fn with_instances(spec: AppSpec, instances: Option<u32>) -> AppSpec {
    AppSpec {
        instances: instances.unwrap_or(spec.instances),
        ..spec
    }
}

/// 64 random bits for a new id: the runner mints ids, deciders never do.
#[allow(clippy::disallowed_methods)]
fn mint() -> u64 {
    rand::random()
}

fn agent_actor(agent_id: &AgentId) -> Actor {
    Actor {
        principal: Principal::Agent {
            agent_id: agent_id.clone(),
        },
        origin: None,
    }
}

/// A new deployment's id, shaped like Marathon's (a UUID).
fn deployment_id() -> DeploymentId {
    let (a, b) = (mint(), mint());
    DeploymentId::new(format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    ))
    .expect("a valid id")
}
