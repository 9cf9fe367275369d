//! The tools people bring from Mesos and Marathon, pointed at a follower of a 3-master cluster
//! with an agent (the leader is elsewhere, so every write is forwarded and every stream carried
//! through): marathon-deploy puts an app, restarts it rolling and in place, and marathon-check
//! waits until it is healthy; a pymesos framework launches, kills and reconciles a command task,
//! and another runs tasks in its own executor on the agent.

use std::time::Duration;

use cairn_tests::agent::Agent;
use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::compat::{acknowledged_states, call, marathon_tool, run_framework};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(90);

/// The ids of `app`'s running tasks, through marathon-python.
fn task_ids(server: &str, app: &str) -> Vec<String> {
    let ids = call(
        "marathon",
        server,
        &format!("[t.id for t in c.list_tasks({app:?}) if t.state == 'TASK_RUNNING']"),
        &[],
    )
    .unwrap();
    let mut ids: Vec<String> = serde_json::from_value(ids).unwrap();
    ids.sort();
    ids
}

#[test]
fn marathon_deploy_and_pymesos_work_through_a_follower() {
    let mut m = Masters::on_loopback(3);
    for i in 0..3 {
        m.start(i, 3);
    }
    let leader = m.wait_for_leader();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let masters: Vec<String> = (0..3).map(|i| m.addr(i)).collect();
    let dir = cairn_tests::workdir();
    let mut agent = Agent::start(
        &masters,
        &dir.path().join("agent"),
        &["--cpus", "4", "--mem", "2048"],
    );
    let server = format!("http://{}", m.addr(follower));

    // marathon-deploy: put, rolling restart (every instance replaced), in-place restart.
    let file = dir.path().join("echo.json");
    std::fs::write(
        &file,
        json!({
            "id": "/tools/echo", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 2,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 2,
                "maxConsecutiveFailures": 3}]
        })
        .to_string(),
    )
    .unwrap();
    let deploy = |args: &[&str]| {
        let (code, out) = marathon_tool("marathon-deploy", &server, args);
        assert_eq!(code, 0, "marathon-deploy {args:?}: {out}");
    };
    deploy(&["--put", file.to_str().unwrap()]);
    wait_until("two echoes run", WITHIN, || {
        task_ids(&server, "/tools/echo").len() == 2
    });
    let first = task_ids(&server, "/tools/echo");
    deploy(&["--appid", "/tools/echo", "--restart"]);
    wait_until("two new echoes run", WITHIN, || {
        let now = task_ids(&server, "/tools/echo");
        now.len() == 2 && now.iter().all(|t| !first.contains(t))
    });
    let second = task_ids(&server, "/tools/echo");
    deploy(&["--appid", "/tools/echo", "--inplacerestart"]);
    wait_until("two newer echoes run", WITHIN, || {
        let now = task_ids(&server, "/tools/echo");
        now.len() == 2 && now.iter().all(|t| !second.contains(t))
    });
    // marathon-check returns once the app runs and is healthy (after its own 20 s pause).
    let (code, out) = marathon_tool("marathon-check", &server, &["--appid", "/tools/echo"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("APP deploy on Marathon"), "{out}");

    // pymesos: a command task launched, killed and reconciled; tasks in its own executor.
    let (seen, _) = run_framework(&m.addr(follower), "mesos_framework.py", &[]);
    assert_eq!(
        acknowledged_states(&seen, "pymesos-sleeper"),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"],
        "{seen:#?}"
    );
    let (seen, _) = run_framework(&m.addr(follower), "mesos_executor_framework.py", &[]);
    let ended: Vec<(&str, &str)> = seen
        .iter()
        .filter(|s| s["state"] == "TASK_FINISHED" || s["state"] == "TASK_KILLED")
        .map(|s| (s["task"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ended,
        [
            ("exec-finish", "TASK_FINISHED"),
            ("exec-wait", "TASK_KILLED"),
            ("exec-late", "TASK_FINISHED")
        ],
        "{seen:#?}"
    );

    // The leader holds what was written through the follower: one log.
    let apps = call(
        "marathon",
        &format!("http://{}", m.addr(leader)),
        "[a.id for a in c.list_apps()]",
        &[],
    );
    assert_eq!(apps, Ok(json!(["/tools/echo"])));
    agent.kill();
}
