//! `cairn dev` and `cairn master`: a master process.
//!
//! Opens the log, joins or creates its cluster, and serves on one port: the operational
//! endpoints (`/livez`, `/readyz`, `/metrics`), the log's client API (`/v1/log/*`), cluster
//! membership (`/v1/cluster/*`), the projections (`/v1/state`, `/graphql`) and the routes
//! other masters call (`/raft/*`). SIGINT or SIGTERM stop the server (open connections get
//! [`DRAIN_GRACE`] to finish), then close the log after every queued append is durable.
//! `cairn dev` is a master whose cluster is itself.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_agent::AgentConfig;
use cairn_log::engine::{Log, SystemClock};
use cairn_projections::live::Projector;
use cairn_scheduler::Runner;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{DevFlags, MasterConfig, MasterFlags};

/// How long a starting master keeps asking a peer that is up but not answering whether it
/// belongs to the same cluster.
const PEER_CHECK_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Ops {
    log: Log,
    registry: Arc<Registry>,
}

/// `cairn dev`: a master, and beside it an agent offering this machine (unless `--no-agent`).
pub fn dev(flags: DevFlags) -> anyhow::Result<ExitCode> {
    let config = MasterConfig::load(&flags.common)?;
    let agent = if flags.no_agent {
        None
    } else {
        let listen = flags
            .agent_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5051)));
        if !listen.ip().is_loopback() {
            bail!("agent-listen: cairn dev serves loopback only, got {listen}");
        }
        Some(flags.resources.agent_config(
            vec![config.listen.to_string()],
            config.data_dir.clone(),
            listen,
        )?)
    };
    run_process(config, agent, "cairn dev")
}

/// `cairn master`.
pub fn master(flags: MasterFlags) -> anyhow::Result<ExitCode> {
    let config = MasterConfig::load_master(&flags)?;
    run_process(config, None, "cairn master")
}

fn run_process(
    config: MasterConfig,
    agent: Option<AgentConfig>,
    name: &'static str,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(config.log_format, &config.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, agent, name))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(
    config: MasterConfig,
    agent: Option<AgentConfig>,
    name: &'static str,
) -> anyhow::Result<()> {
    // Installed before anything is announced, so that a signal never finds the default action.
    let signals = Signals::install().context("cannot install signal handlers")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data-dir: cannot create {}", config.data_dir.display()))?;
    let members = config.members()?;
    let mut registry = Registry::default();
    let log = Log::open(config.log_config(), Arc::new(SystemClock), &mut registry).await?;
    if let Some(cut) = log.tail_cut() {
        info!(
            from_offset = cut.from_offset,
            bytes = cut.bytes,
            "a torn tail was cut at open"
        );
    }
    let stored = log.members();
    if !stored.is_empty() && stored != members {
        log.close().await;
        bail!(
            "peers: {members:?} disagrees with the membership stored in {}: {stored:?}; change \
             membership with `cairn cluster add|remove`, then restart with the new peers",
            config.data_dir.display()
        );
    }
    if let Err(e) = same_cluster_as_peers(&log, &members, config.node_id).await {
        log.close().await;
        return Err(e.context(format!(
            "data-dir: {} belongs to another cluster",
            config.data_dir.display()
        )));
    }
    if stored.is_empty() && members.keys().next() == Some(&config.node_id) {
        log.initialize(members).await?;
    }

    let projector = Projector::start(log.clone(), config.projector_config()).await?;
    projector.register_metrics(&mut registry);
    let shutdown = CancellationToken::new();
    let runner = Runner::start(
        log.clone(),
        projector.clone(),
        Arc::new(SystemClock),
        config.runner_config(),
        shutdown.clone(),
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    let tokens = config.api_tokens()?;
    let ops = Ops {
        log: log.clone(),
        registry: Arc::new(registry),
    };
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
        .merge(crate::api::routes(log.clone()))
        .merge(crate::api::state_routes(projector.clone()))
        .merge(crate::agent_api::routes(runner.clone()))
        .merge(cairn_compat::router(
            projector.clone(),
            runner.clone(),
            log.clone(),
            shutdown.clone(),
        ))
        .merge(cairn_graphql::router(
            projector,
            log.clone(),
            runner,
            tokens.clone(),
        ))
        .merge(log.peer_routes())
        .merge(crate::ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            tokens.clone(),
            cairn_graphql::auth::require,
        ));
    tokio::spawn(stop_on_signal(signals, shutdown.clone()));
    // Marathon's tools assume port 8080: the same APIs there too, when asked.
    let marathon = match config.marathon_port {
        Some(port) => {
            let at = SocketAddr::new(config.listen.ip(), port);
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("marathon-port: cannot bind {at}"))?;
            Some(tokio::spawn(
                axum::serve(
                    listener,
                    app.clone()
                        .into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
            ))
        }
        None => None,
    };
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future(),
    );
    // Serving already: the other members must reach this one for a leader to be elected.
    tokio::select! {
        leader = log.wait_for_leader(Duration::from_secs(3600)) => { leader?; }
        () = shutdown.cancelled() => {}
    }
    // Leadership may already have moved on; the log's own watcher records later terms.
    if let Err(e) = log.record_leadership().await {
        tracing::warn!(error = %e, "could not record this master's leadership");
    }
    info!(
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        node_id = config.node_id,
        term = %log.term(),
        head = log.head(),
        tokens = config.tokens.len(),
        "{name} is serving on http://{}", config.listen
    );
    let agent = agent.map(|agent| tokio::spawn(cairn_agent::run(agent, shutdown.clone())));
    // Both drain at once, so neither waits out the other's grace.
    let marathon = async {
        match marathon {
            Some(marathon) => drained(marathon, &shutdown, "marathon-port server").await,
            None => Ok(()),
        }
    };
    tokio::try_join!(drained(server, &shutdown, "server"), marathon)?;
    if let Some(agent) = agent {
        agent.await.context("agent task")??;
    }
    log.close().await;
    info!(
        head = log.head(),
        "stopped; every acknowledged append is durable"
    );
    Ok(())
}

/// How long open connections may hold up a stopping master: a stream that outlives the
/// drain (one forwarded from another master, a client that never hangs up) is cut then.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Waits for a server to finish its graceful shutdown, at most [`DRAIN_GRACE`] once
/// `shutdown` is cancelled.
async fn drained(
    mut server: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: &CancellationToken,
    what: &str,
) -> anyhow::Result<()> {
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        served = &mut server => Ok(served.with_context(|| format!("{what} task"))??),
        () = grace => {
            tracing::warn!("{what}: connections still open {DRAIN_GRACE:?} after shutdown; closing them");
            server.abort();
            Ok(())
        }
    }
}

/// Refuses a data dir whose cluster differs from any reachable peer's: it belongs to another
/// cluster, even if its membership looks the same. One that knows no cluster yet holds no
/// entry, and learns its cluster from its leader.
async fn same_cluster_as_peers(
    log: &Log,
    members: &std::collections::BTreeMap<u64, String>,
    node_id: u64,
) -> anyhow::Result<()> {
    let Some(ours) = log.status().cluster else {
        return Ok(());
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()?;
    for (id, addr) in members.iter().filter(|(id, _)| **id != node_id) {
        let Some(status) = peer_status(&http, addr).await else {
            // A warning: a member that cannot be asked cannot refuse a stranger either, and
            // an operator (or a test's stderr at `warn`) should see that it was not checked.
            warn!(member = id, %addr, "no answer from this member: its cluster is not checked");
            continue;
        };
        if let Some(theirs) = status.cluster.filter(|c| *c != ours) {
            bail!("its cluster is {ours}, member {id}'s is {theirs}");
        }
    }
    Ok(())
}

/// A peer's status, or `None` if it is down. A peer that cannot be connected to (refused, or
/// no answer within the connect timeout) is down; one that is connected but does not answer
/// well (busy replaying, starting, a loaded machine) is asked again for up to
/// [`PEER_CHECK_WITHIN`], or the check would pass a stranger by.
async fn peer_status(
    http: &reqwest::Client,
    addr: &str,
) -> Option<cairn_log::engine::MemberStatus> {
    let url = format!("http://{addr}/v1/cluster/status");
    let deadline = tokio::time::Instant::now() + PEER_CHECK_WITHIN;
    loop {
        let answer = match http.get(&url).send().await {
            Err(e) if e.is_connect() => return None,
            Err(e) => Err(e),
            Ok(response) => response.error_for_status().map(|r| r.json()),
        };
        if let Ok(decoding) = answer {
            if let Ok(status) = decoding.await {
                return Some(status);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.log.is_accepting() && ops.log.status().leader.is_some() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader, or the log is closed\n",
        )
    }
}

/// Prometheus' OpenMetrics text; or, to a client that asks for JSON only (Marathon's tools),
/// the same figures in Marathon's JSON shape, as the two products share the path.
async fn metrics(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &ops.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json")
        && !accept.contains("text/")
        && !accept.contains("openmetrics")
    {
        return axum::Json(cairn_compat::marathon::metrics_json(&text)).into_response();
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// SIGTERM and SIGINT, caught.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub(crate) async fn stop_on_signal(mut signals: Signals, token: CancellationToken) {
    tokio::select! {
        _ = signals.term.recv() => info!("SIGTERM: shutting down"),
        _ = signals.int.recv() => info!("SIGINT: shutting down"),
    }
    token.cancel();
}
