//! `cairn dev`: a single-node master on loopback.
//!
//! Opens the log (a new term), records that this node leads it, and serves the operational
//! endpoints: `/livez` (the process answers), `/readyz` (the log accepts writes) and
//! `/metrics` (Prometheus text). SIGINT or SIGTERM stop the server, then close the log after
//! every queued append is durable.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cairn_log::engine::{Log, SystemClock};
use cairn_log::event::{Actor, Entry, Event, LeaderElected, NodeId};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{DevConfig, DevFlags};

#[derive(Debug, Clone)]
struct Ops {
    log: Log,
    registry: Arc<Registry>,
}

pub fn main(flags: DevFlags) -> anyhow::Result<ExitCode> {
    let config = DevConfig::load(&flags)?;
    crate::telemetry::init(config.log_format, &config.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(config: DevConfig) -> anyhow::Result<()> {
    // Installed before anything is announced, so that a signal never finds the default action.
    let signals = Signals::install().context("cannot install signal handlers")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data-dir: cannot create {}", config.data_dir.display()))?;
    let mut registry = Registry::default();
    let log =
        Log::open_single_node(config.log_config(), Arc::new(SystemClock), &mut registry).await?;
    if let Some(cut) = log.tail_cut() {
        info!(
            from_offset = cut.from_offset,
            bytes = cut.bytes,
            "a torn tail was cut at open"
        );
    }
    let node_id = NodeId(config.node_id);
    let elected = LeaderElected {
        node_id,
        term: log.term(),
        address: config.listen.to_string(),
    };
    log.append(vec![Entry {
        actor: Actor::master(node_id),
        event: Event::LeaderElected(elected),
    }])
    .await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    let ops = Ops {
        log: log.clone(),
        registry: Arc::new(registry),
    };
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
        .merge(log.peer_routes());
    info!(
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        term = %log.term(),
        head = log.head(),
        "cairn dev is serving on http://{}", config.listen
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(signals, shutdown.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    log.close().await;
    info!(
        head = log.head(),
        "stopped; every acknowledged append is durable"
    );
    Ok(())
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.log.is_accepting() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the log is not accepting writes\n",
        )
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &ops.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

/// SIGTERM and SIGINT, caught.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn stop_on_signal(mut signals: Signals, token: CancellationToken) {
    tokio::select! {
        _ = signals.term.recv() => info!("SIGTERM: shutting down"),
        _ = signals.int.recv() => info!("SIGINT: shutting down"),
    }
    token.cancel();
}
