//! Mesos' v1 scheduler API driven by a real pymesos (0.3.15) framework against `cairn dev`
//! with its agent (`tests/python/mesos_framework.py`): it subscribes, receives DRF offers,
//! launches two command tasks that the real agent runs (one finishes), kills the other,
//! reconciles it and tears itself down.
//! The log must then hold the same story, each event with `mesos` as its API.

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::agent::{alive, wait_for_state, Agent};
use cairn_tests::compat::{acknowledged_states, run_framework};
use cairn_tests::dev::Dev;
use cairn_tests::Lines;
use serde_json::{json, Value};

#[test]
fn a_pymesos_framework_launches_kills_and_reconciles_a_task() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let (seen, framework) = run_framework(&dev.addr(), "mesos_framework.py", &[]);
    let states: Vec<(&str, bool, Option<&str>)> = seen
        .iter()
        .filter(|s| s["task"] == "pymesos-sleeper")
        .map(|s| {
            (
                s["state"].as_str().unwrap(),
                s["acknowledged"].as_bool().unwrap(),
                s["reason"].as_str(),
            )
        })
        .collect();
    // Acknowledged updates as the agent reports them (running, then killed), then the
    // reconciliation's answer, which carries no uuid.
    let acknowledged: Vec<&str> = states.iter().filter(|s| s.1).map(|s| s.0).collect();
    let running = acknowledged.iter().position(|s| *s == "TASK_RUNNING");
    let killed = acknowledged.iter().position(|s| *s == "TASK_KILLED");
    assert!(
        matches!((running, killed), (Some(r), Some(k)) if r < k),
        "{seen:#?}"
    );
    assert_eq!(
        states.last(),
        Some(&("TASK_KILLED", false, Some("REASON_RECONCILIATION"))),
        "{seen:#?}"
    );
    // The other command task ran to its end.
    assert_eq!(
        acknowledged_states(&seen, "pymesos-echo"),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{seen:#?}"
    );

    // A call from a framework that is not subscribed here is refused, Mesos' way (403).
    let (status, body) = dev.http(
        "POST",
        "/api/v1/scheduler",
        &json!({"type": "REVIVE", "framework_id": {"value": framework}}).to_string(),
    );
    assert_eq!(status, 403, "{body}");

    // The log tells the same story, through the Mesos API.
    let data = dev.data(
        "query($s: String!) { audit(subject: $s, first: 50) { edges { node { type actor { api } } } } }",
        json!({ "s": format!("framework:{framework}") }),
    );
    let kinds: Vec<(&str, &str)> = data["audit"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["type"].as_str().unwrap(),
                e["node"]["actor"]["api"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for kind in ["FrameworkRegistered", "FrameworkRemoved"] {
        assert!(kinds.contains(&(kind, "mesos")), "{kind}: {kinds:?}");
    }
    let task = dev.data(
        "{ task(id: \"pymesos-sleeper\") { state frameworkId } }",
        json!({}),
    );
    assert_eq!(task["task"]["state"], "TASK_KILLED", "{task}");
    assert_eq!(task["task"]["frameworkId"], framework.as_str());
    dev.stop();
}

/// A pymesos framework with its own executor (`tests/python/mesos_executor_framework.py`,
/// whose executor is `mesos_executor.py`): the agent starts the executor once for two tasks,
/// hands each its `data`, relays the executor's updates (acknowledged back to it), asks it to
/// kill one, shuts it down when it is idle, and starts a new one for a later task.
#[test]
fn a_pymesos_framework_runs_tasks_in_its_own_executor() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let (seen, framework) = run_framework(&dev.addr(), "mesos_executor_framework.py", &[]);
    let story = |task: &str| -> Vec<(String, String, String)> {
        seen.iter()
            .filter(|s| s["task"] == task)
            .map(|s| {
                assert_eq!(s["acknowledged"], true, "{s}");
                (
                    s["state"].as_str().unwrap().to_owned(),
                    s["source"].as_str().unwrap_or("").to_owned(),
                    s["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let from_executor = |state: &str, message: &str| {
        (
            state.to_owned(),
            "SOURCE_EXECUTOR".to_owned(),
            message.to_owned(),
        )
    };
    // Each task's data reached the executor, and its updates reached the framework in order.
    assert_eq!(
        story("exec-finish"),
        [
            from_executor("TASK_RUNNING", "running: finish"),
            from_executor("TASK_FINISHED", "done: finish"),
        ]
    );
    assert_eq!(
        story("exec-wait"),
        [
            from_executor("TASK_RUNNING", "running: wait"),
            from_executor("TASK_KILLED", "killed by its executor"),
        ]
    );
    assert_eq!(
        story("exec-late"),
        [
            from_executor("TASK_RUNNING", "running: finish"),
            from_executor("TASK_FINISHED", "done: finish"),
        ]
    );

    // One executor ran the first two tasks; it was shut down once idle, and a second one ran
    // the late task. Both wrote to the executor's sandbox, read through the agent's files API.
    let agent = dev.agent_port.expect("an agent");
    let sandbox = format!("executor.{framework}.pool");
    let stdout = || {
        let (status, body) = cairn_tests::http_get(
            agent,
            &format!("/files/read?path={sandbox}/stdout&offset=0"),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let read: Value = serde_json::from_str(&body).unwrap();
        read["data"].as_str().unwrap().to_owned()
    };
    cairn_tests::cluster::wait_until("no executor left", Duration::from_secs(30), || {
        let (_, body) = cairn_tests::http_get(agent, "/state").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["executors"] == json!([])
    });
    let lines = stdout();
    assert_eq!(lines.matches("registered pool").count(), 2, "{lines}");
    for said in [
        "launch exec-finish finish",
        "launch exec-wait wait",
        "kill exec-wait",
        "shutdown",
        "launch exec-late finish",
    ] {
        assert!(lines.contains(said), "{said:?} not in\n{lines}");
    }
    // Every update was acknowledged back to the executor that sent it.
    for task in ["exec-finish", "exec-wait", "exec-late"] {
        let acks = lines.matches(&format!("acknowledged {task}\n")).count();
        assert_eq!(acks, 2, "{task}: {lines}");
    }
    // The first executor was told to shut down before the late task reached the second.
    assert!(
        lines.find("shutdown") < lines.find("launch exec-late"),
        "{lines}"
    );

    // Bad executor calls are refused with what is wrong, Mesos' way (400, text).
    let call = |body: &str| {
        cairn_tests::http_to(
            &dev.agent_addr(),
            "POST",
            "/api/v1/executor",
            body,
            Duration::from_secs(10),
        )
        .unwrap()
    };
    for (body, says) in [
        ("{not json", "body:"),
        (
            r#"{"type":"SUBSCRIBE","framework_id":{"value":"nope"},"executor_id":{"value":"pool"}}"#,
            "does not run on this agent",
        ),
        (r#"{"type":"LAUNCH"}"#, "type:"),
        (
            r#"{"type":"UPDATE","executor_id":{"value":"pool"}}"#,
            "framework_id: is required",
        ),
    ] {
        let (status, text) = call(body);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }

    // The log charged the executor's resources with the task that started it, and the Mesos
    // views name the executor.
    let task = |id: &str| {
        dev.data(
            "query($id: String!) { task(id: $id) { state resources { cpus mem } } }",
            json!({ "id": id }),
        )["task"]
            .clone()
    };
    assert_eq!(
        task("exec-finish"),
        json!({"state": "TASK_FINISHED", "resources": {"cpus": 0.15, "mem": 48.0}})
    );
    assert_eq!(
        task("exec-wait"),
        json!({"state": "TASK_KILLED", "resources": {"cpus": 0.1, "mem": 16.0}})
    );
    let (status, tasks) = dev.http("GET", "/master/tasks", "");
    assert_eq!(status, 200, "{tasks}");
    let tasks: Value = serde_json::from_str(&tasks).unwrap();
    let executor_of = |id: &str| {
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["executor_id"].clone())
    };
    assert_eq!(executor_of("exec-late"), Some(json!("pool")));
    dev.stop();
}

/// A framework's executor does not outlive its agent (no checkpointing): when the agent is
/// killed and comes back, the executor is gone and its task has failed, saying why.
#[test]
fn an_executors_task_fails_when_its_agent_restarts() {
    let within = Duration::from_secs(60);
    let dir = cairn_tests::workdir();
    let dev = Dev::start(&dir.path().join("master"));
    let masters = vec![dev.addr()];
    let args = ["--cpus", "2", "--mem", "1024"];
    let mut agent = Agent::start(&masters, &dir.path().join("agent"), &args);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("python3")
        .arg(format!("{root}/python/mesos_executor_framework.py"))
        .arg(dev.addr())
        .arg("once")
        .env("PYTHONPATH", format!("{root}/.python"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let lines = Lines::new(child.stdout.take().unwrap());
    let deadline = std::time::Instant::now() + within;
    let mut framework = String::new();
    loop {
        let line = lines.next_before(deadline).expect("exec-wait to run");
        let seen: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = seen["registered"].as_str() {
            framework = id.to_owned();
        }
        if seen["task"] == "exec-wait" && seen["state"] == "TASK_RUNNING" {
            break;
        }
    }
    let stdout = dir
        .path()
        .join(format!("agent/sandboxes/executor.{framework}.pool/stdout"));
    let said = std::fs::read_to_string(&stdout).unwrap();
    let pid: i64 = said
        .lines()
        .find_map(|l| l.strip_prefix("registered pool "))
        .expect("the executor registered")
        .parse()
        .unwrap();

    agent.kill();
    agent.restart(&masters, &args);
    let ended = wait_for_state(&dev.addr(), "exec-wait", "TASK_FAILED", within);
    let last = ended["statuses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reason"], "REASON_EXECUTOR_TERMINATED", "{ended}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("agent restarted"),
        "{ended}"
    );
    cairn_tests::cluster::wait_until("the old executor to be gone", within, || !alive(pid));
    // The framework heard it too, and was done.
    let rest = lines.drain(within);
    assert!(
        rest.iter().any(|l| l.contains("\"done\": true")),
        "{rest:?}"
    );
    assert!(child.wait().unwrap().success());
    agent.kill();
    dev.stop();
}
