//! Health checks run by the real agent: an app's deployment finishes only once its instances
//! pass their HTTP and COMMAND checks, and an instance that fails one too often is killed and
//! replaced by the scheduler.

use std::time::Duration;

use cairn_tests::agent::{cairn, task};
use cairn_tests::cluster::wait_until;
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

fn app(dev: &Dev) -> Value {
    dev.data(
        "{ app(id: \"/probe\") { tasksHealthy tasks { id state healthy } } }",
        Value::Null,
    )["app"]
        .clone()
}

#[test]
fn unhealthy_instances_are_killed_and_replaced() {
    let dir = cairn_tests::workdir();
    // Ports of its own: a server another test left behind cannot hold them.
    let dev = Dev::start_with_agent(
        dir.path(),
        None,
        &["--cpus", "2", "--mem", "2048", "--ports", "32600-32699"],
    );
    let masters = vec![dev.addr()];
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    let definition = json!({
        "id": "/probe",
        "cmd": "exec python3 -m http.server --bind 127.0.0.1 $PORT0",
        "cpus": 0.1, "mem": 64, "instances": 1,
        "healthChecks": [
            {"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
             "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 2},
            {"protocol": "COMMAND",
             "command": {"value": format!("test ! -f {}/sick.$MESOS_TASK_ID", flags.display())},
             "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 2,
             "maxConsecutiveFailures": 2}
        ]
    });
    let file = dir.path().join("probe.json");
    std::fs::write(&file, definition.to_string()).unwrap();
    // The deployment finishes only once the instance is healthy.
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
    let first = app(&dev);
    assert_eq!(first["tasksHealthy"], 1, "{first}");
    let sick = first["tasks"][0]["id"].as_str().unwrap().to_owned();

    // Its COMMAND check starts failing: after two failures in a row it is unhealthy, killed,
    // and replaced by a healthy instance.
    std::fs::write(flags.join(format!("sick.{sick}")), "").unwrap();
    wait_until("a healthy replacement", WITHIN, || {
        let now = app(&dev);
        now["tasksHealthy"] == 1 && now["tasks"][0]["id"] != sick.as_str()
    });
    let ended = task(&dev.addr(), &sick);
    assert_eq!(ended["state"], "TASK_KILLED", "{ended}");
    let unhealthy = ended["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("health check failed"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no unhealthy status in {ended}"));
    assert!(
        unhealthy["message"]
            .as_str()
            .unwrap()
            .starts_with("Command health check failed 2 times in a row"),
        "{unhealthy}"
    );
    // The kill is the scheduler's, with its reason, in the log.
    let data = dev.data(
        "query($t: String!) { events(filter: {task: $t, types: [\"TaskKillRequested\"]}, first: 5) { edges { node { actor { principal } payload } } } }",
        json!({ "t": sick }),
    );
    let kill = &data["events"]["edges"][0]["node"];
    assert_eq!(kill["actor"]["principal"], "scheduler:apps");
    assert_eq!(
        kill["payload"]["reason"],
        "it failed its health check 2 times in a row"
    );
    // Tasks outlive the agent: the app goes, with its server, before the cluster does.
    let out = cairn(
        &masters,
        &["app", "delete", "probe", "--wait", "--timeout", "60"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dev.stop();
}
