//! Clusters of real `cairn master` processes for the tests: start, stop (SIGTERM), kill
//! (SIGKILL), ask their status, append through them, and read their logs back offline.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::{cairn_bin, http_to, Proc};

/// Masters on the given loopback addresses (one each), with their data under one temp dir.
#[derive(Debug)]
pub struct Masters {
    dir: crate::WorkDir,
    hosts: Vec<String>,
    pub ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
    config: Option<PathBuf>,
}

impl Masters {
    /// `n` masters on 127.0.0.1, none started yet.
    pub fn on_loopback(n: usize) -> Self {
        Self::on(&vec!["127.0.0.1"; n])
    }

    /// One master per address (all in 127.0.0.0/8), none started yet.
    pub fn on(hosts: &[&str]) -> Self {
        let ports = hosts
            .iter()
            .map(|h| {
                std::net::TcpListener::bind((*h, 0))
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port()
            })
            .collect();
        Masters {
            dir: crate::workdir(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ports,
            procs: hosts.iter().map(|_| None).collect(),
            config: None,
        }
    }

    /// Masters on the same addresses as `other`, with data dirs of their own: another cluster
    /// that looks the same from outside.
    pub fn sharing_addresses(other: &Masters) -> Self {
        Masters {
            dir: crate::workdir(),
            hosts: other.hosts.clone(),
            ports: other.ports.clone(),
            procs: other.hosts.iter().map(|_| None).collect(),
            config: None,
        }
    }

    /// Every master reads this TOML configuration.
    pub fn with_config(mut self, toml: &str) -> Self {
        let path = self.dir.path().join("cairn.toml");
        std::fs::write(&path, toml).expect("write config");
        self.config = Some(path);
        self
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{}:{}", self.hosts[i], self.ports[i])
    }

    /// `--peers` naming the first `members` masters.
    pub fn peers(&self, members: usize) -> String {
        (0..members)
            .map(|i| format!("{}={}", i + 1, self.addr(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{}", i + 1))
    }

    /// The command that runs master `i` in a cluster of the first `members`.
    pub fn command(&self, i: usize, members: usize) -> Command {
        let mut c = Command::new(cairn_bin());
        c.args([
            "master",
            "--log-level",
            "warn",
            "--node-id",
            &(i + 1).to_string(),
        ])
        .args(["--listen", &self.addr(i), "--peers", &self.peers(members)])
        .arg("--data-dir")
        .arg(self.data_dir(i));
        if let Some(config) = &self.config {
            c.arg("--config").arg(config);
        }
        c
    }

    /// Where master `i` writes its warnings and errors, across restarts.
    fn stderr_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{}.stderr", i + 1))
    }

    pub fn start(&mut self, i: usize, members: usize) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path(i))
            .expect("open the master's stderr file");
        let child = self
            .command(i, members)
            .stderr(stderr)
            .spawn()
            .expect("spawn cairn master");
        self.procs[i] = Some(Proc(child));
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.0.kill().expect("kill");
            p.0.wait().expect("reap");
        }
    }

    /// SIGTERM; the master must exit cleanly.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let pid = nix::unistd::Pid::from_raw(p.0.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            let Some(status) = p.wait_for_exit(Duration::from_secs(30)) else {
                let stderr = std::fs::read_to_string(self.stderr_path(i)).unwrap_or_default();
                let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "master {} did not stop within 30 s of SIGTERM; its stderr ends:\n{}",
                    i + 1,
                    tail.join("\n")
                );
            };
            assert!(status.success(), "master {} exited with {status}", i + 1);
        }
    }

    /// `GET /v1/cluster/status` of master `i`, if it answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (code, body) = http_to(
            &self.addr(i),
            "GET",
            "/v1/cluster/status",
            "",
            Duration::from_secs(2),
        )
        .ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Appends the JSON array `entries` through master `i`: the `first` offset once
    /// acknowledged, `None` on any error or after `timeout`.
    pub fn append(&self, i: usize, entries: &str, timeout: Duration) -> Option<u64> {
        let (code, body) =
            http_to(&self.addr(i), "POST", "/v1/log/append", entries, timeout).ok()?;
        (code == 200)
            .then(|| serde_json::from_str::<serde_json::Value>(&body).ok()?["first"].as_u64())
            .flatten()
    }

    /// Waits (up to a minute) until a running member says it leads; its index.
    pub fn wait_for_leader(&self) -> usize {
        let mut leader = None;
        wait_until("a leader", Duration::from_secs(60), || {
            let live: Vec<usize> = (0..self.ports.len())
                .filter(|i| self.is_running(*i))
                .collect();
            leader = self.leader_among(&live);
            leader.is_some()
        });
        leader.expect("waited for it")
    }

    /// The live member that says it leads, among `among`.
    pub fn leader_among(&self, among: &[usize]) -> Option<usize> {
        among
            .iter()
            .copied()
            .find(|&i| self.status(i).is_some_and(|s| s["role"] == "Leader"))
    }

    /// Whether the members in `among` all answer with the same applied head.
    pub fn converged(&self, among: &[usize]) -> bool {
        let heads: Vec<_> = among
            .iter()
            .map(|&i| self.status(i).and_then(|s| s["head"].as_u64()))
            .collect();
        heads.iter().all(|h| h.is_some() && *h == heads[0])
    }

    /// Runs `cairn <args…> --data-dir <master i's>` (the master must be stopped).
    pub fn offline(&self, i: usize, args: &[&str]) -> Output {
        Command::new(cairn_bin())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .output()
            .expect("run cairn")
    }

    /// Master `i`'s whole log as NDJSON.
    pub fn dump(&self, i: usize) -> String {
        String::from_utf8(self.offline(i, &["log", "dump"]).stdout).expect("utf-8")
    }
}

/// Waits until `done` holds, checking every 20 ms, for at most `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One user entry that names `job` (recognizable in a dump), as a JSON array.
pub fn job_entry(job: &str) -> String {
    format!(
        r#"[{{"actor":{{"principal":{{"user":{{"name":"test"}}}}}},"event":{{"JobDeleted":{{"job":"{job}"}}}}}}]"#
    )
}
