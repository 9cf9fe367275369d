//! The Mesos master's read endpoints against `cairn dev` with its agent and an app running:
//! the real avmesos-cli (1.0.0) lists agents, frameworks and tasks; the v0 JSON the Mesos UIs
//! and mesos.cli read is checked field by field (`/master/state.json`, `/master/tasks`,
//! `/master/slaves`, `/master/frameworks/`, `/metrics/snapshot`, `/version`, `/health`,
//! `/master/redirect`); pymesos' operator driver reads the v1 operator API, whose `SUBSCRIBE`
//! stream shows a task being added as it happens.

use cairn_tests::agent::cli;
use cairn_tests::dev::Dev;
use serde_json::Value;

fn get(dev: &Dev, path: &str) -> Value {
    let (status, body) = dev.http("GET", path, "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// `mesos-cli <args>` (avmesos-cli) with a config naming `master`: its output.
fn mesos_cli(config: &std::path::Path, args: &[&str]) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .args(["-m", "avmesos.cli.mesos-cli"])
        .args(args)
        .env("PYTHONPATH", format!("{root}/.python"))
        .env("MESOS_CLI_CONFIG", config)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mesos-cli {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn mesos_tools_read_the_cluster() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024", "--ports", "32500-32599"],
    );
    let masters = [dev.addr()];
    let app = dir.path().join("app.json");
    std::fs::write(
        &app,
        r#"{"id": "/mesos/sleeper", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 2}"#,
    )
    .unwrap();
    cli(
        &masters,
        &["app", "apply", "-f", app.to_str().unwrap(), "--wait"],
        0,
    );

    // Mesos' v0 JSON.
    let version = get(&dev, "/version");
    let numeric = version["version"]
        .as_str()
        .unwrap()
        .split('.')
        .all(|p| p.parse::<u32>().is_ok());
    assert!(numeric, "pymesos parses it with int(): {version}");
    let (status, body) = dev.http("GET", "/health", "");
    assert_eq!((status, body.as_str()), (200, ""));

    let state = get(&dev, "/master/state.json");
    let slave = &state["slaves"][0];
    assert!(
        slave["pid"]
            .as_str()
            .unwrap()
            .starts_with("slave(1)@127.0.0.1:"),
        "{slave}"
    );
    assert_eq!(slave["resources"]["cpus"], 2.0);
    assert_eq!(slave["used_resources"]["cpus"], 0.2, "{slave}");
    let apps = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "cairn-apps")
        .expect("the apps framework");
    let tasks = apps["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for task in tasks {
        assert_eq!(task["state"], "TASK_RUNNING");
        assert_eq!(task["resources"]["mem"], 32.0);
        let statuses: Vec<&Value> = task["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["state"])
            .collect();
        assert_eq!(
            statuses.last().unwrap().as_str(),
            Some("TASK_RUNNING"),
            "oldest first"
        );
        assert!(task["statuses"][0]["timestamp"].is_f64(), "{task}");
    }

    let listed = get(&dev, "/master/tasks?order=asc&limit=-1");
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2);
    let one = get(&dev, "/master/tasks?limit=1");
    assert_eq!(one["tasks"].as_array().unwrap().len(), 1);
    let (status, body) = dev.http("GET", "/master/tasks?limit=lots", "");
    assert_eq!(status, 400, "{body}");
    let slaves = get(&dev, "/slaves");
    assert_eq!(slaves["slaves"].as_array().unwrap().len(), 1);
    let frameworks = get(&dev, "/master/frameworks/?framework_id=cairn-apps");
    assert_eq!(frameworks["frameworks"].as_array().unwrap().len(), 1);
    let metrics = get(&dev, "/metrics/snapshot");
    assert_eq!(metrics["master/elected"], 1.0);
    assert_eq!(metrics["master/tasks_running"], 2.0);
    assert_eq!(metrics["master/slaves_active"], 1.0);
    let summary = get(&dev, "/master/state-summary");
    assert_eq!(summary["slaves"][0]["TASK_RUNNING"], 2, "{summary}");

    let (status, _) = dev.http("GET", "/master/redirect", "");
    assert_eq!(status, 307);

    // The real avmesos-cli.
    let config = dir.path().join("mesos.toml");
    std::fs::write(&config, format!("[master]\naddress = \"{}\"\n", dev.addr())).unwrap();
    let agents = mesos_cli(&config, &["agent", "list"]);
    let agent_id = slave["id"].as_str().unwrap();
    assert!(agents.contains(agent_id), "{agents}");
    let frameworks = mesos_cli(&config, &["framework", "list"]);
    assert!(frameworks.contains("cairn-apps"), "{frameworks}");
    let listed = mesos_cli(&config, &["task", "list"]);
    for task in tasks {
        assert!(listed.contains(task["id"].as_str().unwrap()), "{listed}");
    }
    // The v1 operator API, through pymesos' operator driver.
    let operator = |call: &str| {
        cairn_tests::compat::call("mesos-operator", &dev.addr(), call, &[])
            .unwrap_or_else(|e| panic!("{call}: {e}"))
    };
    assert_eq!(operator("getHealth")["get_health"]["healthy"], true);
    let agents = operator("getAgents");
    assert_eq!(
        agents["get_agents"]["agents"][0]["agent_info"]["id"]["value"],
        agent_id
    );
    let v1_tasks = operator("getTasks");
    assert_eq!(v1_tasks["get_tasks"]["tasks"].as_array().unwrap().len(), 2);
    let state = operator("getState");
    let frameworks = state["get_state"]["get_frameworks"]["frameworks"]
        .as_array()
        .unwrap();
    assert!(frameworks
        .iter()
        .any(|f| f["framework_info"]["id"]["value"] == "cairn-apps"));

    // Its SUBSCRIBE stream: the state, then a task added by scaling the app.
    let mut stream = Stream::subscribe(&dev.addr());
    stream.until("\"SUBSCRIBED\"");
    cli(
        &masters,
        &["app", "scale", "mesos/sleeper", "3", "--wait"],
        0,
    );
    stream.until("\"TASK_ADDED\"");
    dev.stop();
}

/// An operator `SUBSCRIBE` stream, read as it comes.
struct Stream {
    socket: std::net::TcpStream,
    seen: String,
}

impl Stream {
    fn subscribe(addr: &str) -> Self {
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let body = r#"{"type":"SUBSCRIBE"}"#;
        write!(
            socket,
            "POST /api/v1 HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        Self {
            socket,
            seen: String::new(),
        }
    }

    /// Reads until `text` has come (each read waits at most a minute).
    fn until(&mut self, text: &str) {
        use std::io::Read;
        let mut buf = [0u8; 65536];
        while !self.seen.contains(text) {
            let n = self
                .socket
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {text}: {e}; seen {}", self.seen));
            assert!(n > 0, "the stream ended before {text}: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        self.seen.clear();
    }
}

/// `python2.7 mesos_cli.py <args>` (Apache's mesos.cli 0.1.5, Python 2) with a config naming
/// `master`: its output.
fn apache_mesos_cli(config: &std::path::Path, args: &[&str]) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/.python2/python"))
        .arg(format!("{root}/python/mesos_cli.py"))
        .args(args)
        .env("MESOS_CLI_CONFIG", config)
        .output()
        .expect("Python 2.7 runs (test.sh links it into tests/.python2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.is_empty(),
        "mesos {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Apache's own Mesos CLI (mesos.cli, Python 2) reads the master's state, then each agent's
/// (`/slave(1)/state.json`, `/monitor/statistics.json`) and the task's sandbox through the
/// agent's files API, with the absolute sandbox paths the agent's state gives.
#[test]
fn apache_mesos_cli_lists_tasks_and_reads_their_sandboxes() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let masters = [dev.addr()];
    let id = cairn_tests::agent::run_task(
        &masters,
        &[
            "--name",
            "greeter",
            "--",
            "echo hello-from-cairn; exec sleep 1000",
        ],
    );
    cairn_tests::agent::wait_for_state(
        &dev.addr(),
        &id,
        "TASK_RUNNING",
        std::time::Duration::from_secs(60),
    );
    let config = dir.path().join("mesos.json");
    std::fs::write(
        &config,
        serde_json::json!({ "default": { "master": dev.addr() } }).to_string(),
    )
    .unwrap();

    // `ps`: the task, its command as Mesos names it, and what it uses (from the agent's
    // statistics: a running shell has a resident size).
    let ps = apache_mesos_cli(&config, &["ps"]);
    let row = ps
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(
        row.contains("sh -c 'echo hello-from-cairn; exec sleep 1000'"),
        "{ps}"
    );
    assert!(!row.contains(" 0.00 B "), "no resident size: {ps}");
    let frameworks = apache_mesos_cli(&config, &["frameworks"]);
    assert!(
        frameworks
            .lines()
            .any(|l| l.contains("cairn") && l.contains("True")),
        "{frameworks}"
    );
    // The agent's own state, by agent id.
    let agent_id = get(&dev, "/master/slaves")["slaves"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent: Value =
        serde_json::from_str(&apache_mesos_cli(&config, &["state", &agent_id])).unwrap();
    let executor = &agent[0]["frameworks"][0]["executors"][0];
    assert_eq!(executor["id"], id.as_str(), "{agent}");
    assert_eq!(executor["tasks"][0]["state"], "TASK_RUNNING", "{agent}");

    // The sandbox, through the files API.
    let ls = apache_mesos_cli(&config, &["ls", &id]);
    assert!(ls.lines().any(|l| l.ends_with(" stdout")), "{ls}");
    let find = apache_mesos_cli(&config, &["find", &id]);
    assert!(find.lines().any(|l| l == "stderr"), "{find}");
    assert_eq!(
        apache_mesos_cli(&config, &["cat", &id, "stdout"]),
        "hello-from-cairn\n"
    );
    let tail = apache_mesos_cli(&config, &["tail", &id, "stdout"]);
    assert!(tail.contains("hello-from-cairn"), "{tail}");
    dev.stop();
}
