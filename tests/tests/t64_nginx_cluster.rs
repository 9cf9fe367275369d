//! The example app (`shared/examples/nginx-app.json`, a Docker app with a bridge port mapping
//! and a `rexray` volume) on three masters and two agents sharing this machine's Docker
//! Engine: applied as it is through a follower, scaled, rolled by a restart right after which
//! the leader is killed, then scaled and deleted through the new leader. Every instance serves
//! HTTP on its host port; no instance is launched twice; the rolled ones' containers go.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_tests::agent::{cairn, Agent};
use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::docker::{containers_of, docker, volume_plugin};
use cairn_tests::http_to;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(90);

fn graphql(addr: &str, query: &str) -> Value {
    let body = json!({ "query": query }).to_string();
    let (status, body) = http_to(addr, "POST", "/graphql", &body, Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert!(response["errors"].is_null(), "{response}");
    response["data"].clone()
}

/// The app's running tasks (id, host port) and whether a deployment is under way.
fn running(addr: &str) -> (Vec<(String, u64)>, bool) {
    let app = &graphql(
        addr,
        r#"{ app(id: "/nginx") { tasks { id state ports } deployments { id } } }"#,
    )["app"];
    let tasks = app["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| {
            let id = t["id"].as_str().unwrap().to_owned();
            (id, t["ports"][0].as_u64().unwrap())
        })
        .collect();
    let deploying = app["deployments"].as_array().is_some_and(|d| !d.is_empty());
    (tasks, deploying)
}

/// Waits until `n` instances run and no deployment is under way; answers them.
fn settled(m: &Masters, n: usize) -> Vec<(String, u64)> {
    let mut tasks = Vec::new();
    wait_until(&format!("{n} instances, no deployment"), WITHIN, || {
        let (now, deploying) = running(&m.addr(m.wait_for_leader()));
        tasks = now;
        tasks.len() == n && !deploying
    });
    tasks
}

fn serves(port: u64) -> bool {
    let at = format!("127.0.0.1:{port}");
    matches!(http_to(&at, "GET", "/", "", Duration::from_secs(5)), Ok((200, body)) if body.contains("served by cairn"))
}

fn all_serve(tasks: &[(String, u64)]) {
    for (id, port) in tasks {
        wait_until(&format!("{id} to serve on {port}"), WITHIN, || {
            serves(*port)
        });
    }
}

fn cli(masters: &[String], args: &[&str]) {
    let out = cairn(masters, args);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_nginx_example_scales_rolls_and_survives_a_leader_kill_on_three_masters() {
    let volumes = cairn_tests::workdir();
    let _plugin = volume_plugin("rexray", volumes.path());
    let mut m = Masters::on_loopback(3).with_config("[agents]\ntimeout-secs = 3600\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    let leader = m.wait_for_leader();
    let masters: Vec<String> = (0..3).map(|i| m.addr(i)).collect();
    let dirs = [cairn_tests::workdir(), cairn_tests::workdir()];
    let _agents: Vec<Agent> = dirs
        .iter()
        .zip(["32700-32749", "32750-32799"])
        .map(|(d, ports)| Agent::start(&masters, d.path(), &["--ports", ports]))
        .collect();

    // Applied as it is, through a follower.
    let follower = m.addr((leader + 1) % 3);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/examples/nginx-app.json"
    );
    cli(
        std::slice::from_ref(&follower),
        &["app", "apply", "-f", example, "--wait", "--timeout", "90"],
    );
    all_serve(&settled(&m, 1));

    // Scaled: a second instance, the first untouched.
    let first = settled(&m, 1);
    cli(
        &masters,
        &["app", "scale", "nginx", "2", "--wait", "--timeout", "90"],
    );
    let two = settled(&m, 2);
    assert!(two.contains(&first[0]), "{two:?} keeps {first:?}");
    all_serve(&two);

    // A rolling restart, and the leader killed as soon as it has accepted it (Docker rolls
    // two instances in about a second, so the kill lands mid-roll or just after): the new
    // leader finishes it, or holds its result, from the log alone.
    cli(&masters, &["app", "restart", "nginx"]);
    let old = m.wait_for_leader();
    m.kill(old);
    let rolled = settled(&m, 2);
    let before: BTreeSet<_> = two.iter().map(|(id, _)| id.clone()).collect();
    assert!(
        rolled.iter().all(|(id, _)| !before.contains(id)),
        "every instance replaced: {two:?} → {rolled:?}"
    );
    all_serve(&rolled);
    for id in &before {
        wait_until(&format!("{id}'s container to go"), WITHIN, || {
            containers_of(id).is_empty()
        });
    }

    // The new leader scales it again, then deletes it.
    let living: Vec<String> = (0..3).filter(|i| *i != old).map(|i| m.addr(i)).collect();
    cli(
        &living,
        &["app", "scale", "nginx", "3", "--wait", "--timeout", "90"],
    );
    let three = settled(&m, 3);
    all_serve(&three);

    // From the log: every instance launched once.
    let addr = m.addr(m.wait_for_leader());
    let history = graphql(
        &addr,
        r#"{ events(filter: {types: ["TaskLaunched", "TaskStatusUpdated"], app: "/nginx"}, first: 500) { nodes { type payload } } }"#,
    );
    let nodes = history["events"]["nodes"].as_array().unwrap();
    let ids: Vec<String> = nodes
        .iter()
        .filter(|n| n["type"] == "TaskLaunched")
        .map(|n| n["payload"]["task_id"].as_str().unwrap().to_owned())
        .collect();
    // On failure, every status says why an instance ended.
    let statuses: Vec<String> = nodes
        .iter()
        .filter(|n| n["type"] == "TaskStatusUpdated")
        .map(|n| n["payload"].to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "launched twice: {ids:?}");
    assert_eq!(
        ids.len(),
        5,
        "1 + 1 + 2 rolled + 1: {ids:?}\n{}",
        statuses.join("\n")
    );

    cli(
        &living,
        &["app", "delete", "nginx", "--wait", "--timeout", "90"],
    );
    for (id, _) in &three {
        wait_until(&format!("{id}'s container to go"), WITHIN, || {
            containers_of(id).is_empty()
        });
    }
    let _ = docker(&["volume", "rm", "nginx-data"]);
}
