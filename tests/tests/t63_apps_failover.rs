//! Three masters, two agents, two apps: the leader is killed (SIGKILL) in the middle of one
//! app's rolling upgrade, and the new leader continues it from the log alone: no instance
//! launched twice, never fewer healthy instances than the upgrade strategy allows, the other
//! app untouched, and the upgrade finishes.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_tests::agent::{cairn, Agent};
use cairn_tests::cluster::{wait_until, Masters};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn graphql(addr: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, body) =
        cairn_tests::http_to(addr, "POST", "/graphql", &body, Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert!(response["errors"].is_null(), "{response}");
    response["data"].clone()
}

fn app(addr: &str) -> Value {
    graphql(
        addr,
        "{ app(id: \"/svc\") { version tasksHealthy tasks { id agentId state healthy version } deployments { id } } }",
        Value::Null,
    )["app"]
        .clone()
}

fn steady(addr: &str) -> Value {
    graphql(
        addr,
        "{ app(id: \"/steady\") { tasks { id state } } }",
        Value::Null,
    )["app"]["tasks"]
        .clone()
}

#[test]
fn a_rolling_upgrade_continues_on_a_new_leader() {
    let mut m = Masters::on_loopback(3).with_config("[agents]\ntimeout-secs = 3600\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    m.wait_for_leader();
    let masters: Vec<String> = (0..3).map(|i| m.addr(i)).collect();
    let dirs = [cairn_tests::workdir(), cairn_tests::workdir()];
    let _agents: Vec<Agent> = dirs
        .iter()
        .map(|d| Agent::start(&masters, d.path(), &["--cpus", "2", "--mem", "1024"]))
        .collect();
    let flags = cairn_tests::workdir();
    let go = flags.path().join("go");
    let definition = |check: String| {
        json!({
            "id": "/svc", "cmd": "exec sleep 600", "cpus": 0.1, "mem": 16, "instances": 4,
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
            // Failures within the grace period do not count: a new instance stays not yet
            // healthy (holding the upgrade) until the test lets it pass.
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": check},
                "gracePeriodSeconds": 600, "intervalSeconds": 1, "timeoutSeconds": 5,
                "maxConsecutiveFailures": 3}]
        })
    };
    let apply = |name: &str, check: String, wait: bool| {
        let file = flags.path().join(name);
        std::fs::write(&file, definition(check).to_string()).unwrap();
        let mut args = vec![
            "app",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "-o",
            "json",
            "--timeout",
            "60",
        ];
        if wait {
            args.push("--wait");
        }
        let out = cairn(&masters, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str::<Value>(first.lines().next().unwrap()).unwrap()
    };
    // A second app that nothing changes.
    let file = flags.path().join("steady.json");
    let other =
        json!({"id": "/steady", "cmd": "exec sleep 600", "cpus": 0.1, "mem": 16, "instances": 2});
    std::fs::write(&file, other.to_string()).unwrap();
    let out = cairn(
        &masters,
        &[
            "app",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steady_before = steady(&masters[m.wait_for_leader()]);
    apply("v1.json", "true".into(), true);
    let v1 = app(&masters[m.wait_for_leader()]);
    assert_eq!(v1["tasksHealthy"], 4, "{v1}");
    // Spread over both agents.
    let agents_used: BTreeSet<String> = v1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agentId"].to_string())
        .collect();
    assert_eq!(agents_used.len(), 2, "{v1}");

    // The upgrade: two old instances may go at once (⌈4·0.5⌉ = 2 stay), two new ones start
    // and cannot become healthy yet.
    let started = apply("v2.json", format!("test -f {}", go.display()), false);
    let version = started["version"].as_str().unwrap().to_owned();
    let deployment = started["deploymentId"].as_str().unwrap().to_owned();
    // Two new instances running and the two old ones it stopped gone: the kills' last
    // statuses are in the log, so the new leader must hold exactly this.
    wait_until(
        "two new instances running, two old ones left",
        MINUTE,
        || {
            let now = app(&masters[m.wait_for_leader()]);
            let tasks = now["tasks"].as_array().unwrap();
            let new = tasks
                .iter()
                .filter(|t| t["version"] == version.as_str() && t["state"] == "TASK_RUNNING")
                .count();
            new == 2 && tasks.len() == 4
        },
    );

    // The leader dies mid-upgrade; another takes over and the agents follow it.
    let old = m.wait_for_leader();
    m.kill(old);
    let new = m.wait_for_leader();
    let addr = m.addr(new);
    let held = app(&addr);
    assert_eq!(held["deployments"][0]["id"], deployment.as_str(), "{held}");
    assert_eq!(held["tasksHealthy"], 2, "{held}");

    // The new instances pass their checks: the new leader finishes the upgrade.
    std::fs::write(&go, "").unwrap();
    wait_until("the upgrade to finish on the new leader", MINUTE, || {
        let now = app(&m.addr(m.wait_for_leader()));
        now["deployments"].as_array().is_some_and(|d| d.is_empty())
    });
    let addr = m.addr(m.wait_for_leader());
    let done = app(&addr);
    let tasks = done["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{done}");
    assert!(
        tasks
            .iter()
            .all(|t| t["version"] == version.as_str() && t["healthy"] == true),
        "{done}"
    );

    // From the log: 4 + 4 launches (none twice), and never fewer than 2 healthy instances
    // once the first version was up.
    let data = graphql(
        &addr,
        "{ events(filter: {types: [\"TaskLaunched\", \"TaskStatusUpdated\", \"TaskKillRequested\"]}, first: 500) { edges { node { type payload } } } }",
        Value::Null,
    );
    let mut launched = 0;
    let mut healthy = BTreeSet::new();
    let mut least = usize::MAX;
    let mut up = false;
    for edge in data["events"]["edges"].as_array().unwrap() {
        let (kind, p) = (&edge["node"]["type"], &edge["node"]["payload"]);
        let task = p["task_id"].as_str().unwrap().to_owned();
        match kind.as_str().unwrap() {
            "TaskLaunched" => launched += 1,
            "TaskKillRequested" => {
                healthy.remove(&task);
            }
            _ if p["state"] != "TASK_RUNNING" => {
                healthy.remove(&task);
            }
            _ if p["healthy"] == true => {
                healthy.insert(task);
            }
            _ => {}
        }
        up |= healthy.len() == 4;
        if up {
            least = least.min(healthy.len());
        }
    }
    assert_eq!(launched, 2 + 4 + 4, "every instance launched once");
    assert_eq!(steady(&addr), steady_before, "the other app untouched");
    assert_eq!(least, 2, "minimumHealthCapacity held through the failover");

    // The old leader comes back and holds the same state.
    m.start(old, 3);
    wait_until("the old leader to catch up", MINUTE, || {
        m.converged(&[0, 1, 2])
    });
    assert_eq!(app(&m.addr(old))["tasks"], done["tasks"]);

    // Tasks outlive their agents: the app goes before the cluster does.
    for id in ["steady", "svc"] {
        let out = cairn(
            &masters,
            &["app", "delete", id, "--wait", "--timeout", "60"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
