//! Mesos' v1 scheduler API driven by a real pymesos (0.3.15) framework against `cairn dev`
//! with its agent (`tests/python/mesos_framework.py`): it subscribes, receives DRF offers,
//! launches a task that the real agent runs, kills it, reconciles it and tears itself down.
//! The log must then hold the same story, each event with `mesos` as its API.

use std::io::BufRead;
use std::process::{Command, Stdio};

use cairn_tests::dev::Dev;
use serde_json::{json, Value};

#[test]
fn a_pymesos_framework_launches_kills_and_reconciles_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let child = Command::new("python3")
        .arg(format!("{root}/python/mesos_framework.py"))
        .arg(dev.addr())
        .env("PYTHONPATH", format!("{root}/.python"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // The script ends by itself: done, or stopped by its own 120 s timer.
    let out = child.wait_with_output().expect("the framework ends");
    let seen: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        seen.contains(&json!({"done": true})),
        "the framework did not finish: {seen:#?}\n{stderr}"
    );
    let framework = seen
        .iter()
        .find_map(|s| s["registered"].as_str())
        .expect("registered")
        .to_owned();
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
