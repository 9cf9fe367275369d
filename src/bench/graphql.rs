//! `cairn bench graphql`: latency of a page of apps with their tasks, over HTTP, with the
//! whole master read path (axum, limits, the live state's read guard, resolvers, JSON).

use std::path::Path;
use std::time::Instant;

use cairn_log::event::{
    Actor, AgentId, AgentRegistered, AppCreated, AppId, Entry, Event, FrameworkId, Principal,
    Resources, StatusSource, TaskId, TaskLaunched, TaskOwner, TaskState, TaskStatusUpdated,
    Timestamp,
};
use cairn_projections::live::{Projector, ProjectorConfig};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{machine, ms, open};

const AGENTS: usize = 100;

const PAGE_QUERY: &str = "query($after: String) {
  apps(first: 100, after: $after) {
    edges { cursor node { id instances version tasksRunning queued
      tasks { id state agentId healthy launchedAt } } }
    pageInfo { hasNextPage } } }";

pub async fn bench(
    dir: &Path,
    apps: usize,
    instances: usize,
    requests: usize,
) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let log = open(&dir.join("log")).await?;
    for chunk in cluster(apps, instances).chunks(5_000) {
        log.append(chunk.to_vec()).await?;
    }
    let projector =
        Projector::start(log.clone(), ProjectorConfig::new(dir.join("checkpoints"))).await?;
    projector.wait_for(log.head()).await?;
    // The synthetic agents never connect: keep the runner from marking them disconnected
    // while the benchmark runs.
    let quiet = cairn_scheduler::RunnerConfig {
        agent_timeout: std::time::Duration::from_secs(86_400),
        reconnect_grace: std::time::Duration::from_secs(86_400),
        // Nor schedule the synthetic apps on them: the state must stay as loaded.
        apps: false,
        ..cairn_scheduler::RunnerConfig::default()
    };
    let runner = cairn_scheduler::Runner::start(
        log.clone(),
        projector.clone(),
        std::sync::Arc::new(cairn_log::engine::SystemClock),
        quiet,
        tokio_util::sync::CancellationToken::new(),
    );
    let router = cairn_graphql::router(projector, log.clone(), runner, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let ask = |after: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let body = json!({ "query": PAGE_QUERY, "variables": { "after": after } });
            let response: Value = http.post(&url).json(&body).send().await?.json().await?;
            anyhow::ensure!(response.get("errors").is_none(), "{response}");
            Ok::<Value, anyhow::Error>(response)
        }
    };
    // One walk through every page gives the cursors; it also warms up.
    let mut cursors = vec![Value::Null];
    let mut items = 0;
    loop {
        let page = ask(cursors.last().cloned().unwrap_or(Value::Null)).await?;
        let apps = &page["data"]["apps"];
        let edges = apps["edges"].as_array().cloned().unwrap_or_default();
        items += edges.len();
        if apps["pageInfo"]["hasNextPage"] != true {
            break;
        }
        cursors.push(
            edges
                .last()
                .map(|e| e["cursor"].clone())
                .unwrap_or(Value::Null),
        );
    }
    anyhow::ensure!(items == apps, "walked {items} of {apps} apps");

    let mut latency = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for k in 0..requests {
        let t = Instant::now();
        ask(cursors[k % cursors.len()].clone()).await?;
        latency.record(t.elapsed().as_micros() as u64)?;
    }
    let elapsed = started.elapsed();
    println!("{apps} apps × {instances} running tasks on {AGENTS} agents; {requests} requests one after another over HTTP/1.1 keep-alive");
    println!();
    println!("| query | requests/s | p50 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| 100 apps with their tasks (a page) | {:.0} | {} | {} | {} | {} |",
        requests as f64 / elapsed.as_secs_f64(),
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.value_at_quantile(0.999)),
        ms(latency.max()),
    );
    log.close().await;
    Ok(())
}

/// Agents, apps, and each app's tasks launched and running.
fn cluster(apps: usize, instances: usize) -> Vec<Entry> {
    let by = |principal| Actor {
        principal,
        origin: None,
    };
    let scheduler = || {
        by(Principal::Scheduler {
            name: "apps".into(),
        })
    };
    let agent_id = |n: usize| AgentId::new(format!("agent-{n:03}")).expect("id");
    let mut entries: Vec<Entry> = (0..AGENTS)
        .map(|n| Entry {
            actor: by(Principal::Agent {
                agent_id: agent_id(n),
            }),
            event: Event::AgentRegistered(Box::new(AgentRegistered {
                agent_id: agent_id(n),
                hostname: format!("host-{n:03}"),
                address: format!("10.0.{}.{}:5051", n / 250, n % 250),
                resources: Resources {
                    cpus_milli: 1_000_000,
                    mem_mib: 10_000_000,
                    disk_mib: 0,
                    ports: vec![],
                },
                attributes: Default::default(),
                version: "0.1.0".into(),
            })),
        })
        .collect();
    let template = cairn_projections::synth::seeded(2000)
        .into_iter()
        .find_map(|r| match r.event {
            Event::AppCreated(e) => Some(e.spec),
            _ => None,
        })
        .expect("the synthetic history creates apps");
    for a in 0..apps {
        let app_id = AppId::new(format!("/bench/app-{a:05}")).expect("id");
        let mut spec = template.clone();
        spec.id = app_id.clone();
        spec.instances = instances as u32;
        let version = Timestamp::from_micros(1_700_000_000_000_000 + a as i64);
        entries.push(Entry {
            actor: by(Principal::User {
                name: "bench".into(),
            }),
            event: Event::AppCreated(Box::new(AppCreated {
                app_id: app_id.clone(),
                version,
                spec,
            })),
        });
        for i in 0..instances {
            let task_id = TaskId::new(format!("bench_app-{a:05}.{i}")).expect("id");
            let agent_id = agent_id((a * instances + i) % AGENTS);
            entries.push(Entry {
                actor: scheduler(),
                event: Event::TaskLaunched(Box::new(TaskLaunched {
                    task_id: task_id.clone(),
                    name: format!("app-{a:05}"),
                    framework_id: FrameworkId::new("marathon").expect("id"),
                    agent_id: agent_id.clone(),
                    owner: TaskOwner::App {
                        app_id: app_id.clone(),
                        version,
                    },
                    resources: Resources {
                        cpus_milli: 100,
                        mem_mib: 32,
                        disk_mib: 0,
                        ports: vec![],
                    },
                    spec: Box::default(),
                    offer_id: None,
                })),
            });
            entries.push(Entry {
                actor: by(Principal::Agent {
                    agent_id: agent_id.clone(),
                }),
                event: Event::TaskStatusUpdated(TaskStatusUpdated {
                    task_id,
                    agent_id,
                    state: TaskState::Running,
                    source: StatusSource::Executor,
                    reason: None,
                    message: None,
                    healthy: Some(true),
                    status_uuid: None,
                }),
            });
        }
    }
    entries
}
