//! Long-running apps on `cairn dev` with its real agent, driven through the CLI and GraphQL:
//! deploy, replace killed instances, scale, roll to a new version, back off after failures,
//! explain why an app is not running, cancel with rollback, delete.

use std::time::Duration;

use cairn_tests::agent::cli as run;
use cairn_tests::cluster::wait_until;
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

fn write(dir: &std::path::Path, name: &str, app: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, app.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The app's live instances: (task id, state, version).
fn instances(dev: &Dev, id: &str) -> Vec<(String, String, String)> {
    let data = dev.data(
        "query($id: String!) { app(id: $id) { tasks { id state version } } }",
        json!({ "id": id }),
    );
    data["app"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
                t["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn running(dev: &Dev, id: &str) -> Vec<String> {
    instances(dev, id)
        .into_iter()
        .filter(|(_, state, _)| state == "TASK_RUNNING")
        .map(|(id, _, _)| id)
        .collect()
}

#[test]
fn apps_are_deployed_kept_running_scaled_and_rolled() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "4", "--mem", "4096"]);
    let masters = vec![dev.addr()];

    // Deploy two instances and wait for the deployment.
    let v1 = json!({"id": "/shop/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 2});
    let file = write(dir.path(), "web.json", &v1);
    let (out, _) = run(
        &masters,
        &["app", "apply", "-f", &file, "--wait", "--timeout", "60"],
        0,
    );
    assert!(out.contains("finished"), "{out}");
    let first = running(&dev, "/shop/web");
    assert_eq!(first.len(), 2);
    // Each instance got a host port (Marathon's default port definition) and its id.
    let data = dev.data(
        "query($id: String!) { task(id: $id) { ports spec } }",
        json!({ "id": first[0] }),
    );
    assert_eq!(data["task"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(
        data["task"]["spec"]["command"]["env"]["MARATHON_APP_ID"],
        "/shop/web"
    );
    // Applying the same definition again changes nothing.
    let (out, _) = run(&masters, &["app", "apply", "-f", &file], 0);
    assert_eq!(out.trim(), "no change");

    // A killed instance is replaced (a kill on request is no failure: no backoff).
    run(&masters, &["task", "kill", &first[0]], 0);
    wait_until("a replacement instance", WITHIN, || {
        let now = running(&dev, "/shop/web");
        now.len() == 2 && !now.contains(&first[0])
    });

    // Scale up and down: the others are not touched; the youngest go first.
    run(
        &masters,
        &["app", "scale", "shop/web", "4", "--wait", "--timeout", "60"],
        0,
    );
    let four = running(&dev, "/shop/web");
    assert_eq!(four.len(), 4);
    run(
        &masters,
        &["app", "scale", "shop/web", "2", "--wait", "--timeout", "60"],
        0,
    );
    let two = running(&dev, "/shop/web");
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|t| four.contains(t)));

    // A new definition rolls every instance to the new version.
    let v2 = json!({"id": "/shop/web", "cmd": "sleep 700", "cpus": 0.1, "mem": 16, "instances": 2,
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}});
    let file2 = write(dir.path(), "web2.json", &v2);
    let (out, _) = run(
        &masters,
        &[
            "app",
            "apply",
            "-f",
            &file2,
            "--wait",
            "--timeout",
            "60",
            "-o",
            "json",
        ],
        0,
    );
    let version = serde_json::from_str::<Value>(out.lines().next().unwrap()).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("the old instances to end", WITHIN, || {
        let all = instances(&dev, "/shop/web");
        all.len() == 2
            && all
                .iter()
                .all(|(_, s, v)| s == "TASK_RUNNING" && *v == version)
    });
    let (out, _) = run(&masters, &["app", "diff", "shop/web"], 0);
    assert!(
        out.contains("/spec/command/value: \"sleep 600\" -> \"sleep 700\""),
        "{out}"
    );
    let (out, _) = run(&masters, &["app", "history", "shop/web"], 0);
    let changes: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(changes, ["Created", "Scaled", "Scaled", "Updated"]);
    // Who did it is in the audit trail.
    let data = dev.data(
        "{ audit(subject: \"app:/shop/web\", first: 50) { edges { node { actor { principal } type } } } }",
        Value::Null,
    );
    let audit = data["audit"]["edges"].to_string();
    assert!(
        audit.contains("AppUpdated") && audit.contains("user:tester"),
        "{audit}"
    );

    // Roll back to the first version (a new version with the old definition).
    let (out, _) = run(&masters, &["app", "history", "shop/web", "-o", "json"], 0);
    let created = serde_json::from_str::<Value>(out.lines().next().unwrap()).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    run(
        &masters,
        &[
            "app",
            "rollback",
            "shop/web",
            &created,
            "--wait",
            "--timeout",
            "60",
        ],
        0,
    );
    let data = dev.data("{ app(id: \"/shop/web\") { spec instances } }", Value::Null);
    assert_eq!(data["app"]["spec"]["command"]["value"], "sleep 600");
    assert_eq!(data["app"]["instances"], 2);

    // Every version's definition stays queryable.
    let data = dev.data(
        "{ app(id: \"/shop/web\") { versions { change spec } } }",
        Value::Null,
    );
    let versions = data["app"]["versions"].as_array().unwrap();
    let specs: Vec<(&str, &Value, &Value)> = versions
        .iter()
        .map(|v| {
            (
                v["change"].as_str().unwrap(),
                &v["spec"]["command"]["value"],
                &v["spec"]["instances"],
            )
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("Created", &json!("sleep 600"), &json!(2)),
            ("Scaled", &json!("sleep 600"), &json!(4)),
            ("Scaled", &json!("sleep 600"), &json!(2)),
            ("Updated", &json!("sleep 700"), &json!(2)),
            ("Updated", &json!("sleep 600"), &json!(2)),
        ]
    );

    run(
        &masters,
        &["app", "delete", "shop/web", "--wait", "--timeout", "60"],
        0,
    );
    assert!(dev.data("{ app(id: \"/shop/web\") { id } }", Value::Null)["app"].is_null());
    wait_until("the deleted app's instances to end", WITHIN, || {
        let data = dev.data(
            "{ tasks(first: 50) { edges { node { appId terminal } } } }",
            Value::Null,
        );
        data["tasks"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["node"]["terminal"] == true)
    });
    dev.stop();
}

#[test]
fn why_an_app_is_not_running_is_answered_and_bad_changes_change_nothing() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "2", "--mem", "2048"]);
    let masters = vec![dev.addr()];

    // An app whose instances fail backs off, and says so.
    let crash = json!({"id": "/crash", "cmd": "echo bye; exit 3", "cpus": 0.1, "mem": 16,
        "backoffSeconds": 3600});
    let file = write(dir.path(), "crash.json", &crash);
    run(&masters, &["app", "apply", "-f", &file], 0);
    wait_until("the crashing app's backoff", WITHIN, || {
        let data = dev.data(
            "{ app(id: \"/crash\") { backoff { failures } waiting { backoffUntil } lastTaskFailure { state } } }",
            Value::Null,
        );
        data["app"]["backoff"]["failures"] == 1
            && data["app"]["waiting"]["backoffUntil"].is_string()
            && data["app"]["lastTaskFailure"]["state"] == "TASK_FAILED"
    });
    let (out, _) = run(&masters, &["app", "status", "crash"], 0);
    assert!(out.contains("backing off after failures until"), "{out}");
    assert!(
        out.contains("last failure:") && out.contains("TASK_FAILED"),
        "{out}"
    );

    // An app no agent can hold: the reason names what is short, the deployment waits.
    let big = json!({"id": "/big", "cmd": "sleep 600", "cpus": 64, "mem": 16,
        "constraints": [["hostname", "LIKE", "nowhere"]]});
    let file = write(dir.path(), "big.json", &big);
    let (out, _) = run(&masters, &["app", "apply", "-f", &file, "-o", "json"], 0);
    let deployment = serde_json::from_str::<Value>(&out).unwrap()["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (out, _) = run(&masters, &["app", "status", "big"], 0);
    assert!(
        out.contains("1 of 1 agents: fewer than 64 CPUs free"),
        "{out}"
    );
    // Another change to it while it deploys is refused (exit 2) unless forced.
    let bigger = json!({"id": "/big", "cmd": "sleep 600", "cpus": 65, "mem": 16});
    let file2 = write(dir.path(), "bigger.json", &bigger);
    let (_, err) = run(&masters, &["app", "apply", "-f", &file2], 2);
    assert!(
        err.contains("locked by one or more deployments") && err.contains(&deployment),
        "{err}"
    );
    let (out, _) = run(&masters, &["app", "deployments"], 0);
    assert!(out.contains(&deployment), "{out}");

    // Canceled with rollback: the app the deployment created goes away again.
    run(
        &masters,
        &["app", "cancel", &deployment, "--wait", "--timeout", "60"],
        0,
    );
    assert!(dev.data("{ app(id: \"/big\") { id } }", Value::Null)["app"].is_null());
    let data = dev.data("{ deployments { id status reason } }", Value::Null);
    let canceled = data["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == deployment.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (canceled["status"].as_str(), canceled["reason"].as_str()),
        (Some("CANCELED"), Some("rolled back"))
    );

    // An invalid definition: every error with its path, exit 2, nothing logged.
    let head = dev.head();
    let bad = json!({"id": "/bad", "cmd": "x", "cpus": -1, "instances": "many",
        "container": {"docker": {"image": "x", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80, "hostPort": 70000}]}}});
    let file = write(dir.path(), "bad.json", &bad);
    let (_, err) = run(&masters, &["app", "apply", "-f", &file], 2);
    for path in [
        "/cpus",
        "/instances",
        "/container/docker/portMappings/0/hostPort",
    ] {
        assert!(
            err.contains(&format!("  {path}: ")),
            "{path} missing from {err}"
        );
    }
    let code = dev.error_code(
        "mutation($d: JSON!) { createApp(definition: $d) { deploymentId } }",
        json!({ "d": bad }),
    );
    assert_eq!(code, "VALIDATION");
    // (The crashing app's backoff appends nothing either: it holds for an hour.)
    assert_eq!(dev.head(), head);
    dev.stop();

    // A cluster without the built-in apps scheduler refuses app changes, and says why.
    let other = cairn_tests::workdir();
    let config = other.path().join("cairn.toml");
    std::fs::write(&config, "[apps]\nenabled = false\n").unwrap();
    let bare = Dev::start_with(other.path(), Some(&config), cairn_tests::free_port());
    let response = bare.graphql(
        "mutation($d: JSON!) { createApp(definition: $d) { deploymentId } }",
        json!({ "d": crash }),
    );
    assert_eq!(response["errors"][0]["extensions"]["code"], "VALIDATION");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("[apps] enabled = false"),
        "{response}"
    );
    bare.stop();
}
