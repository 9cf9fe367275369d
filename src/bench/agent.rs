//! `cairn bench agent`: a master (`cairn dev --no-agent`) and one `cairn agent`, as separate
//! processes on loopback, driven through the GraphQL API like any client:
//! - launch latency: from the `TaskLaunched` record to the agent's `TASK_RUNNING`, both times
//!   as the log recorded them (so the client's polling does not count), one task at a time,
//!   for process tasks and Docker tasks;
//! - agent memory per running task: the agent's RSS growth plus each task's executor;
//! - sustained launches: short tasks launched by concurrent clients, launch to `TASK_FINISHED`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{machine, rss_kib};

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn gql(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let body = json!({ "query": query, "variables": variables });
    let response: Value = http.post(url).json(&body).send().await?.json().await?;
    if let Some(e) = response["errors"].get(0) {
        bail!("{}", e["message"]);
    }
    Ok(response["data"].clone())
}

/// Polls `check` every `every` until it holds, for at most `within`.
async fn until(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

const LAUNCH: &str = "mutation($input: LaunchTaskInput!) { launchTask(input: $input) { id } }";
const STATE: &str =
    "query($id: String!) { task(id: $id) { state terminal launchedAt statuses { state at } } }";

fn micros(time: &Value) -> anyhow::Result<i64> {
    let time = time.as_str().context("a time")?;
    Ok(chrono::DateTime::parse_from_rfc3339(time)?.timestamp_micros())
}

/// Launch → `TASK_RUNNING`, from the log's own times.
fn launch_latency(task: &Value) -> anyhow::Result<u64> {
    let running = task["statuses"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["state"] == "TASK_RUNNING"))
        .context("no TASK_RUNNING")?;
    Ok((micros(&running["at"])? - micros(&task["launchedAt"])?).max(0) as u64)
}

/// CPU time `pid` has used, user + system, in seconds (its waited-for children included).
fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(f.iter().sum::<u64>())
        })
        .unwrap_or(0);
    // The kernel counts in USER_HZ, 100 per second on Linux.
    ticks as f64 / 100.0
}

/// Memory only `pid` holds (private pages, not the binary's shared ones), in KiB.
fn uss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("Private_"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                })
                .flatten()
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .collect()
}

pub async fn bench(
    dir: &Path,
    running: usize,
    docker_running: usize,
    tasks: usize,
    clients: usize,
) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let exe = std::env::current_exe()?;
    let (master_port, agent_port) = (free_port()?, free_port()?);
    let master = format!("127.0.0.1:{master_port}");
    let master_proc = Reaped(
        Command::new(&exe)
            .args([
                "dev",
                "--no-agent",
                "--log-level",
                "warn",
                "--listen",
                &master,
            ])
            .arg("--data-dir")
            .arg(dir.join("master"))
            .stderr(Stdio::null())
            .spawn()?,
    );
    let http = reqwest::Client::new();
    let url = format!("http://{master}/graphql");
    until(
        "the master",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || {
            Ok(http
                .get(format!("http://{master}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()))
        },
    )
    .await?;
    // Generous resources: the figures are the agent's, not a placement limit's.
    let agent = Reaped(
        Command::new(&exe)
            .args(["agent", "--log-level", "warn", "--master", &master])
            .args(["--listen", &format!("127.0.0.1:{agent_port}")])
            .args([
                "--cpus",
                "1000",
                "--mem",
                "1000000",
                "--ports",
                "20000-29999",
            ])
            .arg("--data-dir")
            .arg(dir.join("agent"))
            .stderr(Stdio::null())
            .spawn()?,
    );
    let agent_pid = agent.0.id();
    until(
        "the agent",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || {
            let data = gql(&http, &url, "{ agents { status } }", Value::Null).await?;
            Ok(data["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["status"] == "ACTIVE")))
        },
    )
    .await?;
    let isolation: Value = http
        .get(format!("http://127.0.0.1:{agent_port}/state"))
        .send()
        .await?
        .json()
        .await?;
    println!("agent isolation: {}", isolation["isolation"]);

    for (kind, count) in [("process", running), ("docker", docker_running)] {
        if count == 0 {
            continue;
        }
        let rss_before = rss_kib(agent_pid);
        let mut latency = Histogram::<u64>::new(3)?;
        let mut ids = Vec::new();
        for i in 0..count {
            let mut input = json!({ "name": format!("{kind}{i}"), "cpus": 0.1, "mem": 16, "command": "exec sleep 3600" });
            if kind == "docker" {
                input["docker"] = json!({ "image": "cairn-test/busybox", "network": "NONE" });
                input["mem"] = json!(8);
            }
            let id = gql(&http, &url, LAUNCH, json!({ "input": input })).await?["launchTask"]["id"]
                .as_str()
                .context("task id")?
                .to_owned();
            let mut task = Value::Null;
            until(
                "TASK_RUNNING",
                Duration::from_secs(120),
                Duration::from_millis(2),
                async || {
                    task = gql(&http, &url, STATE, json!({ "id": id })).await?["task"].clone();
                    if task["terminal"] == true {
                        bail!("task {id} ended: {}", task["state"]);
                    }
                    Ok(task["state"] == "TASK_RUNNING")
                },
            )
            .await?;
            latency.record(launch_latency(&task)?)?;
            ids.push(id);
        }
        let agent_growth = rss_kib(agent_pid).saturating_sub(rss_before);
        let executors: Vec<u32> = children(agent_pid);
        let executor_rss: u64 = executors.iter().map(|p| rss_kib(*p)).sum();
        let executor_uss: u64 = executors.iter().map(|p| uss_kib(*p)).sum();
        println!(
            "{kind} launch → TASK_RUNNING over {count} tasks, one at a time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latency.value_at_quantile(0.5) as f64 / 1000.0,
            latency.value_at_quantile(0.99) as f64 / 1000.0,
            latency.max() as f64 / 1000.0
        );
        println!(
            "{kind} memory with {count} running: agent RSS +{} KiB ({:.1} KiB per task); {} executor processes, each {:.0} KiB RSS of which {:.0} KiB private",
            agent_growth,
            agent_growth as f64 / count as f64,
            executors.len(),
            executor_rss as f64 / executors.len().max(1) as f64,
            executor_uss as f64 / executors.len().max(1) as f64,
        );
        for id in &ids {
            gql(
                &http,
                &url,
                "mutation($id: String!) { killTask(id: $id, gracePeriodSeconds: 0) { offset } }",
                json!({ "id": id }),
            )
            .await?;
        }
        for id in &ids {
            until(
                "the kill",
                Duration::from_secs(120),
                Duration::from_millis(20),
                async || {
                    Ok(
                        gql(&http, &url, STATE, json!({ "id": id })).await?["task"]["terminal"]
                            == true,
                    )
                },
            )
            .await?;
        }
    }

    if tasks > 0 {
        let master_pid = master_proc.0.id();
        let cpu_before = (cpu_secs(master_pid), cpu_secs(agent_pid));
        let started = Instant::now();
        let mut handles = Vec::new();
        for c in 0..clients {
            let (http, url) = (http.clone(), url.clone());
            let share = tasks / clients + usize::from(c < tasks % clients);
            handles.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..share {
                    let input = json!({ "name": format!("short{c}-{i}"), "cpus": 0.1, "mem": 16, "command": "true" });
                    let data = gql(&http, &url, LAUNCH, json!({ "input": input })).await?;
                    ids.push(data["launchTask"]["id"].as_str().context("id")?.to_owned());
                }
                anyhow::Ok(ids)
            }));
        }
        let mut ids = Vec::new();
        for h in handles {
            ids.extend(h.await??);
        }
        let launched = started.elapsed();
        for id in &ids {
            until(
                "TASK_FINISHED",
                Duration::from_secs(600),
                Duration::from_millis(20),
                async || {
                    let task = gql(&http, &url, STATE, json!({ "id": id })).await?["task"].clone();
                    if task["terminal"] == true && task["state"] != "TASK_FINISHED" {
                        bail!("task {id} ended {}", task["state"]);
                    }
                    Ok(task["state"] == "TASK_FINISHED")
                },
            )
            .await?;
        }
        let finished = started.elapsed();
        println!(
            "CPU used meanwhile: master {:.2} s, agent {:.2} s (executors and tasks included), of {:.2} s × 2 cores",
            cpu_secs(master_pid) - cpu_before.0,
            cpu_secs(agent_pid) - cpu_before.1,
            finished.as_secs_f64()
        );
        println!(
            "sustained: {tasks} short process tasks from {clients} clients: launched (logged) in {:.2} s ({:.0}/s); all TASK_FINISHED after {:.2} s ({:.0} tasks/s launch → finish)",
            launched.as_secs_f64(),
            tasks as f64 / launched.as_secs_f64(),
            finished.as_secs_f64(),
            tasks as f64 / finished.as_secs_f64()
        );
    }
    Ok(())
}
