//! `cairn agent` processes and one-off tasks for the tests: start an agent against some
//! masters, run `cairn task …`, ask a master about a task, and look at processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::wait_until;
use crate::docker::try_docker;
use crate::{cairn_bin, free_port, http_to, Lines, Proc};

/// A `cairn agent` process.
#[derive(Debug)]
pub struct Agent {
    pub port: u16,
    pub data_dir: PathBuf,
    proc: Option<Proc>,
    pub lines: Option<Lines>,
}

impl Agent {
    /// Starts an agent for `masters` on a free port and waits until it has registered.
    pub fn start(masters: &[String], data_dir: &Path, args: &[&str]) -> Self {
        let mut agent = Agent {
            port: free_port(),
            data_dir: data_dir.to_owned(),
            proc: None,
            lines: None,
        };
        agent.restart(masters, args);
        agent
    }

    /// Starts it again (same data dir and port) and waits until it has registered.
    pub fn restart(&mut self, masters: &[String], args: &[&str]) {
        let mut child = Command::new(cairn_bin())
            .args(["agent", "--log-format", "json", "--kill-grace-secs", "1"])
            .args(["--master", &masters.join(",")])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn agent");
        let lines = Lines::from_reader(child.stderr.take().expect("stderr"));
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = lines
                .next_before(deadline)
                .expect("the agent did not register");
            if line.contains("\"registered\"") {
                break;
            }
        }
        self.lines = Some(lines);
    }

    /// SIGKILL (its tasks' executors live on), and reap.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.0.kill().expect("kill");
            p.0.wait().expect("reap");
        }
        self.lines = None;
    }

    /// Sends `signal` to the agent process (SIGSTOP to hang it, SIGCONT to resume it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.proc.as_ref().expect("a running agent").0.id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET /state` of the agent.
    pub fn state(&self) -> Value {
        let (status, body) = http_to(&self.addr(), "GET", "/state", "", Duration::from_secs(10))
            .expect("agent /state");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

/// Docker containers outlive their agent by design (a restarted agent adopts them); a test's
/// go when its agent handle does, so that a failed test leaves none running on the host.
impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        let label = format!("label=cairn.agent={}", self.data_dir.display());
        let Some(ids) = try_docker(&["ps", "-aq", "--filter", &label]) else {
            return;
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = try_docker(&[&["rm", "-f"], &ids[..]].concat());
        }
    }
}

/// `cairn <args>` against `masters`.
pub fn cairn(masters: &[String], args: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_MASTERS", masters.join(","))
        .env("USER", "tester")
        .output()
        .expect("run cairn")
}

/// `cairn <args>` against `masters`, asserting its exit code; answers stdout and stderr.
pub fn cli(masters: &[String], args: &[&str], code: i32) -> (String, String) {
    let out = cairn(masters, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "cairn {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// `cairn task run <args>`: the new task's id.
pub fn run_task(masters: &[String], args: &[&str]) -> String {
    let mut all = vec!["task", "run"];
    all.extend_from_slice(args);
    let out = cairn(masters, &all);
    assert!(
        out.status.success(),
        "cairn task run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The task as a master sees it (state, statuses, agent), `Null` if unknown.
pub fn task(master: &str, id: &str) -> Value {
    let query = "query($id: String!) { task(id: $id) { id state terminal agentId spec \
                 agent { address } statuses { state source reason message } } }";
    let body = json!({ "query": query, "variables": { "id": id } }).to_string();
    let Ok((200, body)) = http_to(master, "POST", "/graphql", &body, Duration::from_secs(30))
    else {
        return Value::Null;
    };
    let response: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    response["data"]["task"].clone()
}

/// Waits until the task is in `state` on `master`; returns it.
pub fn wait_for_state(master: &str, id: &str, state: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("task {id} to be {state}"), within, || {
        last = task(master, id);
        last["state"] == state
    });
    last
}

/// The states a task passed through, oldest first.
pub fn states(task: &Value) -> Vec<String> {
    task["statuses"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["state"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A file in the task's sandbox, read through the agent's file API, once it has content.
pub fn sandbox_file(agent: &str, id: &str, name: &str, within: Duration) -> String {
    let mut text = String::new();
    wait_until(&format!("{id}/{name} to be written"), within, || {
        let path = format!("/files/read?path={id}/{name}");
        text = match http_to(agent, "GET", &path, "", Duration::from_secs(10)) {
            Ok((200, body)) => serde_json::from_str::<Value>(&body).expect("JSON")["data"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            _ => String::new(),
        };
        !text.is_empty()
    });
    text
}
