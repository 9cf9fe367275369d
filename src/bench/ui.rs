//! `cairn bench ui`: the web UI at scale, in headless Chromium. A single-node master (real
//! fsynced log, projector, runner) places `apps × instances` tasks on fake agents, then serves
//! GraphQL and the UI on loopback. Chromium, driven over the DevTools protocol, loads each main
//! view several times: the figure is the time from navigation to the view's first render (the
//! page marks `cairn:rendered`), i.e. when it shows data and takes input. Then the page sits
//! idle on the apps view: the CPU the page's main thread, the whole browser and the master
//! spend meanwhile.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_log::event::{Actor, Principal};
use cairn_scheduler::deployments::{Put, MAX_APPS_PER_CHANGE};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::apps::{spec, Master};
use super::machine;

/// The views measured, as URL fragments.
const VIEWS: [(&str, &str); 6] = [
    ("apps (a page of 100)", "#/apps"),
    ("an app", "#/app/%2Fbench%2Fapp-00001"),
    ("cluster", "#/cluster"),
    ("deployments", "#/deployments"),
    ("events (last 100, then live)", "#/events"),
    ("audit (a page of 50)", "#/audit"),
];

pub async fn bench(
    dir: &Path,
    apps: usize,
    instances: u32,
    agents: usize,
    loads: usize,
    idle: Duration,
) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let master = Master::start(dir).await?;
    let running = master.fake_agents(agents, None).await?;
    let started = Instant::now();
    // A person's changes, so that the audit view has them.
    let operator = Actor {
        principal: Principal::User {
            name: "bench".into(),
        },
        origin: None,
    };
    let ids: Vec<usize> = (0..apps).collect();
    for chunk in ids.chunks(MAX_APPS_PER_CHANGE) {
        let specs = chunk
            .iter()
            .map(|&i| spec(i, instances))
            .collect::<anyhow::Result<Vec<_>>>()?;
        master
            .runner
            .put_apps(operator.clone(), specs, Put::Create, false)
            .await?;
    }
    let tasks = apps as u64 * u64::from(instances);
    while running.load(Ordering::Relaxed) < tasks {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1_800),
            "not all running after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{apps} apps × {instances} instances = {tasks} tasks running on {agents} fake agents in {:.1} s; log head {}",
        started.elapsed().as_secs_f64(),
        master.log.head()
    );

    let router = cairn_graphql::router(
        master.projector.clone(),
        master.log.clone(),
        master.runner.clone(),
        Default::default(),
    )
    .merge(crate::ui::routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let profile = dir.join("chromium");
    let browser = Browser::launch(&profile).await?;
    let page = browser.page().await?;
    page.call("Performance.enable", json!({})).await?;

    println!();
    println!(
        "Chromium: navigation start → the view's first render with its data, {loads} loads each"
    );
    println!();
    println!("| view | p50 | max | rows shown |");
    println!("|---|---:|---:|---:|");
    for (name, fragment) in VIEWS {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..loads {
            page.call("Page.navigate", json!({ "url": "about:blank" }))
                .await?;
            page.call(
                "Page.navigate",
                json!({ "url": format!("{base}{fragment}") }),
            )
            .await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            let rendered = loop {
                let at = page
                    .eval("(performance.getEntriesByName('cairn:rendered')[0] || {}).startTime ?? null")
                    .await?;
                if let Some(ms) = at.as_f64() {
                    break ms;
                }
                anyhow::ensure!(Instant::now() < deadline, "{name} never rendered");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            rows = page
                .eval("document.querySelectorAll('main tbody tr').length")
                .await?
                .as_u64()
                .unwrap_or(0);
            let error = page
                .eval("document.querySelector('main .panel.error')?.innerText ?? null")
                .await?;
            if let Some(error) = error.as_str() {
                bail!("{name} shows an error: {error}");
            }
            times.push(rendered);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {rows} |",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }

    // Idle: the apps view, live, left alone; and, to compare, a blank page (what the browser
    // costs by itself).
    println!();
    println!("idle for {} s, CPU in % of one core:", idle.as_secs());
    println!();
    println!("| page | records appended meanwhile | page main thread | whole browser | master | JS heap |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, url) in [
        ("about:blank", "about:blank".to_owned()),
        ("apps view, live", format!("{base}#/apps")),
    ] {
        page.call("Page.navigate", json!({ "url": url })).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let head_before = master.log.head();
        let (main_before, _) = page.main_thread().await?;
        let browser_before = cpu_ticks(|cmd| cmd.contains(&*profile.to_string_lossy()));
        let master_before = cpu_ticks_of(std::process::id());
        tokio::time::sleep(idle).await;
        let (main_after, heap) = page.main_thread().await?;
        let browser_after = cpu_ticks(|cmd| cmd.contains(&*profile.to_string_lossy()));
        let master_after = cpu_ticks_of(std::process::id());
        let secs = idle.as_secs_f64();
        let pct = |ticks: u64| ticks as f64 / ticks_per_second() / secs * 100.0;
        println!(
            "| {name} | {} | {:.2} % | {:.2} % | {:.2} % | {:.1} MiB |",
            master.log.head() - head_before,
            (main_after - main_before) / secs * 100.0,
            pct(browser_after.saturating_sub(browser_before)),
            pct(master_after.saturating_sub(master_before)),
            heap / (1024.0 * 1024.0),
        );
    }
    drop(page);
    browser.close().await;
    master.stop().await;
    Ok(())
}

/// CPU time (user + system, in clock ticks) of every process whose command line matches.
fn cpu_ticks(matches: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| matches(&String::from_utf8_lossy(&c)))
        })
        .map(cpu_ticks_of)
        .sum()
}

fn cpu_ticks_of(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may hold spaces) in parentheses: utime is the 12th.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// Headless Chromium and one DevTools protocol connection to it.
struct Browser {
    child: tokio::process::Child,
    sink: Arc<Mutex<Sink>>,
    pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next: Arc<AtomicU64>,
}

/// A tab, by its flattened session.
struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

impl Browser {
    async fn launch(profile: &Path) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(
            std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into()),
        )
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("chromium: cannot start it (apt-get install chromium)")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Ok(url.to_owned());
                }
            }
            bail!("chromium ended before it listened")
        })
        .await
        .context("chromium did not start its DevTools endpoint in 30 s")??;
        // Keep draining its stderr, or it blocks once the pipe is full.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let (sink, mut stream) = socket.split();
        let pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let waiting = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // Answers carry the command's id; events (without one) are not needed.
                if let Some(id) = value["id"].as_u64() {
                    if let Some(tx) = waiting.lock().expect("pending").remove(&id) {
                        let _ = tx.send(value);
                    }
                }
            }
        });
        Ok(Browser {
            child,
            sink: Arc::new(Mutex::new(sink)),
            pending,
            next: Arc::new(AtomicU64::new(1)),
        })
    }

    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, tx);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.sink
            .lock()
            .await
            .send(Message::Text(message.to_string().into()))
            .await?;
        let answer = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .with_context(|| format!("{method}: no answer in 60 s"))??;
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    async fn page(&self) -> anyhow::Result<Page<'_>> {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .context("no session")?
            .to_owned();
        Ok(Page {
            browser: self,
            session,
        })
    }

    async fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Page<'_> {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        Ok(result["result"]["value"].clone())
    }

    /// Seconds the page's main thread has spent in tasks, and its JS heap in bytes.
    async fn main_thread(&self) -> anyhow::Result<(f64, f64)> {
        let metrics = self.call("Performance.getMetrics", json!({})).await?;
        let get = |name: &str| {
            metrics["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["name"] == name)
                .and_then(|m| m["value"].as_f64())
                .unwrap_or(0.0)
        };
        Ok((get("TaskDuration"), get("JSHeapUsedSize")))
    }
}
