//! A `cairn dev` process for the tests: start it on a free loopback port, talk to its HTTP and
//! GraphQL APIs, stop it with SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_log::event::Entry;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{cairn_bin, free_port, http_with, Lines, Proc};

#[derive(Debug)]
pub struct Dev {
    pub port: u16,
    /// The built-in agent's port, when it runs one.
    pub agent_port: Option<u16>,
    proc: Proc,
    /// Its log lines (JSON, on stderr).
    pub lines: Lines,
    /// The API token [`Dev::http`] presents, for a master that asks for one.
    pub token: Option<String>,
}

impl Dev {
    /// Starts `cairn dev` without its agent on `data_dir` and waits for it to serve: its log
    /// then holds only what the test appends (after the master's own first record).
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, None, free_port())
    }

    /// Starts `cairn dev` without its agent, with a config file, on `port`.
    pub fn start_with(data_dir: &Path, config: Option<&Path>, port: u16) -> Self {
        Self::spawn(data_dir, config, port, None, &[])
    }

    /// Starts `cairn dev` with its agent (on a free port, offering `agent_args` such as
    /// `--cpus 2`) and waits until the agent has registered.
    pub fn start_with_agent(data_dir: &Path, config: Option<&Path>, agent_args: &[&str]) -> Self {
        Self::start_with_agent_on(data_dir, config, (free_port(), free_port()), agent_args)
    }

    /// [`Dev::start_with_agent`] on given ports: the master's and the agent's (a restarted
    /// master must listen where its log says it does).
    pub fn start_with_agent_on(
        data_dir: &Path,
        config: Option<&Path>,
        (port, agent_port): (u16, u16),
        agent_args: &[&str],
    ) -> Self {
        let dev = Self::spawn(data_dir, config, port, Some(agent_port), agent_args);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = dev
                .lines
                .next_before(deadline)
                .expect("the dev agent did not register");
            if line.contains("\"registered\"") {
                return dev;
            }
        }
    }

    fn spawn(
        data_dir: &Path,
        config: Option<&Path>,
        port: u16,
        agent_port: Option<u16>,
        agent_args: &[&str],
    ) -> Self {
        let mut command = Command::new(cairn_bin());
        command
            .args(["dev", "--log-format", "json"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .stderr(Stdio::piped());
        match agent_port {
            Some(agent_port) => {
                command
                    .args(["--agent-listen", &format!("127.0.0.1:{agent_port}")])
                    .args(agent_args);
            }
            None => {
                command.arg("--no-agent");
            }
        }
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command.spawn().expect("spawn cairn dev");
        let lines = Lines::from_reader(child.stderr.take().expect("stderr"));
        let proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = lines
                .next_before(deadline)
                .expect("cairn dev did not start serving");
            if line.contains("cairn dev is serving") {
                break;
            }
        }
        Dev {
            port,
            agent_port,
            proc,
            lines,
            token: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// Kills it with SIGKILL (its tasks' executors live on), and reaps it.
    pub fn kill(mut self) {
        self.proc.0.kill().expect("kill");
        self.proc.0.wait().expect("reap");
    }

    pub fn agent_addr(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.agent_port.expect("a dev with an agent")
        )
    }

    /// Stops it with SIGTERM and checks it exits cleanly.
    pub fn stop(mut self) {
        kill(Pid::from_raw(self.proc.0.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let status = self
            .proc
            .wait_for_exit(Duration::from_secs(30))
            .expect("cairn dev did not stop on SIGTERM");
        assert!(status.success(), "cairn dev exited with {status}");
    }

    /// `(status, body)` of a request with a JSON body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        http_with(
            &self.addr(),
            method,
            path,
            &headers,
            body,
            Duration::from_secs(60),
        )
        .expect("HTTP request")
    }

    /// The whole GraphQL response to `query` with `variables`.
    pub fn graphql(&self, query: &str, variables: Value) -> Value {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        let (status, body) = self.http("POST", "/graphql", &body);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("a JSON response")
    }

    /// The `data` of a response that must have no errors.
    pub fn data(&self, query: &str, variables: Value) -> Value {
        let response = self.graphql(query, variables);
        assert!(response.get("errors").is_none(), "{query}\n→ {response:#}");
        response["data"].clone()
    }

    /// The `extensions.code` of a response's first error.
    pub fn error_code(&self, query: &str, variables: Value) -> String {
        let response = self.graphql(query, variables);
        assert!(response["data"].is_null(), "{response:#}");
        response["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {response:#}"))
            .to_owned()
    }

    /// Appends `entries` in batches; returns the offsets of the first and last.
    pub fn append(&self, entries: &[Entry]) -> (u64, u64) {
        let mut range = (0, 0);
        for chunk in entries.chunks(1000) {
            let body = serde_json::to_string(chunk).expect("entries encode");
            let (status, body) = self.http("POST", "/v1/log/append", &body);
            assert_eq!(status, 200, "{body}");
            let appended: Value = serde_json::from_str(&body).expect("Appended");
            if range.0 == 0 {
                range.0 = appended["first"].as_u64().expect("first");
            }
            range.1 = appended["last"].as_u64().expect("last");
        }
        range
    }

    /// The log's head: its last applied record.
    pub fn head(&self) -> u64 {
        let data = self.data("{ events(last: 1) { head } }", Value::Null);
        data["events"]["head"].as_u64().expect("head")
    }

    /// `GET /v1/state[?as_of=…]`: the projected state's canonical JSON.
    pub fn state(&self, as_of: Option<&str>) -> (u16, String) {
        let path = match as_of {
            Some(as_of) => format!("/v1/state?as_of={as_of}"),
            None => "/v1/state".to_owned(),
        };
        self.http("GET", &path, "")
    }
}

/// The golden log's entries (`log/tests/golden/v1.events.jsonl`): a small history that uses
/// every event type, for appending to a live master.
pub fn golden_entries() -> Vec<Entry> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../log/tests/golden/v1.events.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("golden log")
        .lines()
        .map(|line| {
            let record: cairn_log::Record = serde_json::from_str(line).expect("golden record");
            Entry {
                actor: record.actor,
                event: record.event,
            }
        })
        .collect()
}

/// A realistic synthetic history of `n` entries (always the same).
pub fn synthetic_entries(n: usize) -> Vec<Entry> {
    cairn_projections::synth::seeded(n)
        .into_iter()
        .map(|r| Entry {
            actor: r.actor,
            event: r.event,
        })
        .collect()
}

/// `cairn token new`: a new token's secret, and its `[[tokens]]` entry for a configuration.
pub fn new_token(name: &str, role: &str) -> (String, String) {
    let out = Command::new(cairn_bin())
        .args(["token", "new", "--name", name, "--role", role])
        .output()
        .expect("cairn token new");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let (secret, entry) = stdout.split_once('\n').expect("two parts");
    assert!(secret.starts_with("cairn-"), "{stdout}");
    assert!(
        !entry.contains(secret),
        "the configuration must hold only the hash"
    );
    (secret.to_owned(), entry.to_owned())
}
