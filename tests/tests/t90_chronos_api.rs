//! Chronos' REST API driven by the real chronos-python client (1.2.1) against `cairn dev`
//! with its agent: jobs added, listed, searched, run, killed, updated through Chronos 2's
//! paths, their statistics and graph read back, bad jobs and refused deletes changing
//! nothing; every write is in the audit trail with `chronos` as its API.

use std::time::Duration;

use cairn_tests::cluster::wait_until;
use cairn_tests::compat::call;
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

fn example(name: &str) -> Value {
    let path = format!("{}/fixtures/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut job: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // chronos-python checks this field is present before it sends a job.
    job["disabled"] = json!(false);
    job
}

fn listed(server: &str, name: &str) -> Option<Value> {
    let jobs = call("chronos", server, "list", &[]).expect("list");
    jobs.as_array()
        .expect("a list")
        .iter()
        .find(|j| j["name"] == name)
        .cloned()
}

/// The outcomes of a job's runs, oldest due first.
fn outcomes(dev: &Dev, job: &str) -> Vec<Value> {
    let data = dev.data(
        "query($n: String!) { job(name: $n) { history(last: 500) { outcome } } }",
        json!({ "n": job }),
    );
    let mut runs: Vec<Value> = data["job"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r["outcome"].clone())
        .collect();
    runs.reverse();
    runs
}

#[test]
fn chronos_python_manages_jobs_on_cairn() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let server = dev.addr();
    let server = server.as_str();

    // Added as they are (the client posts to iso8601 or, with parents, to dependency).
    assert_eq!(
        call("chronos", server, "add", &[example("hourly-job.json")]),
        Ok(Value::Null)
    );
    assert_eq!(
        call("chronos", server, "add", &[example("dependent-job.json")]),
        Ok(Value::Null)
    );
    let hourly = listed(server, "hourly-report").expect("listed");
    assert_eq!(hourly["schedule"], "R/2015-10-01T00:00:00Z/PT1H");
    assert_eq!(hourly["owner"], "ops@example.com");
    assert_eq!(hourly["retries"], 2);
    assert_eq!(hourly["successCount"], 0);
    assert_eq!(
        hourly["lastSuccess"], "",
        "never: an empty string, not null"
    );
    assert_eq!(hourly["lastError"], "");
    let publish = listed(server, "publish-report").expect("listed");
    assert_eq!(publish["parents"], json!(["hourly-report"]));

    let found = call("chronos", server, "search", &[json!("HOURLY"), Value::Null]).expect("search");
    let names: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["name"])
        .collect();
    assert_eq!(names, [&json!("hourly-report")]);

    // Run now: the parent succeeds, then its child runs because of it.
    assert_eq!(
        call("chronos", server, "run", &[json!("hourly-report")]),
        Ok(Value::Null)
    );
    wait_until("the child ran after its parent", WITHIN, || {
        listed(server, "publish-report").is_some_and(|j| j["successCount"] == 1)
    });
    let hourly = listed(server, "hourly-report").unwrap();
    assert_eq!(hourly["successCount"], 1);
    assert_ne!(hourly["lastSuccess"], "");
    let stat = call("chronos", server, "job_stat", &[json!("hourly-report")]).expect("stat");
    assert_eq!(stat["histogram"]["count"], 1, "{stat}");
    let history = stat["taskStatHistory"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{stat}");
    assert_eq!(history[0]["status"], "TASK_FINISHED");
    assert_eq!(history[0]["jobName"], "hourly-report");
    let graph = call("chronos", server, "scheduler_graph", &[]).expect("graph");
    let graph = graph.as_str().expect("CSV text");
    assert!(
        graph.contains("node,hourly-report,success,idle\n")
            && graph.contains("link,hourly-report,publish-report\n"),
        "{graph}"
    );

    // Chronos 2's paths, where an update is a PUT.
    let mut changed = example("hourly-job.json");
    changed["description"] = json!("the hourly report");
    // Chronos 2 jobs carry `async`, and the client checks for it.
    changed["async"] = json!(false);
    assert_eq!(
        call("chronos2", server, "update", &[changed]),
        Ok(Value::Null)
    );
    assert_eq!(
        listed(server, "hourly-report").unwrap()["description"],
        "the hourly report"
    );

    // A running job's tasks are killed; its run ends as killed.
    let sleeper = json!({
        "name": "sleeper", "command": "sleep 300", "owner": "ops@example.com",
        "disabled": false, "schedule": "R/2035-01-01T00:00:00Z/P1D", "cpus": 0.1, "mem": 32,
    });
    assert_eq!(call("chronos", server, "add", &[sleeper]), Ok(Value::Null));
    call("chronos", server, "run", &[json!("sleeper")]).expect("run");
    wait_until("the sleeper runs", WITHIN, || {
        let graph = call("chronos", server, "scheduler_graph", &[]).unwrap();
        graph
            .as_str()
            .unwrap()
            .contains("node,sleeper,fresh,running\n")
    });
    assert_eq!(
        call("chronos", server, "delete_tasks", &[json!("sleeper")]),
        Ok(Value::Null)
    );
    wait_until("the sleeper's run ends as killed", WITHIN, || {
        outcomes(&dev, "sleeper") == [json!("killed")]
    });

    // Refused, changing nothing: a schedule that does not parse, a parent deleted from under
    // its child, an unknown job.
    let mut bad = example("hourly-job.json");
    bad["name"] = json!("broken");
    bad["schedule"] = json!("R/2015-10-01T00:00:00Z/PT1X");
    let refused = call("chronos", server, "add", &[bad.clone()]).unwrap_err();
    assert!(refused.contains("ChronosAPIError"), "{refused}");
    let (status, body) = dev.http("POST", "/v1/scheduler/iso8601", &bad.to_string());
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("/schedule"),
        "the error names the field: {body}"
    );
    let (status, body) = dev.http("DELETE", "/scheduler/job/hourly-report", "");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("publish-report"), "{body}");
    let (status, _) = dev.http("DELETE", "/v1/scheduler/job/nonesuch", "");
    assert_eq!(status, 404);
    assert!(listed(server, "broken").is_none());
    assert!(listed(server, "hourly-report").is_some());

    // Deleted child first, then its parent.
    for name in ["publish-report", "hourly-report"] {
        assert_eq!(
            call("chronos", server, "delete", &[json!(name)]),
            Ok(Value::Null)
        );
    }
    assert!(listed(server, "hourly-report").is_none());

    // Who did it, through which API.
    let audit = dev.data(
        "{ audit(subject: \"job:hourly-report\", first: 50) { edges { node { type actor { api } } } } }",
        json!({}),
    );
    let entries = audit["audit"]["edges"].as_array().unwrap();
    let by_chronos: Vec<&Value> = entries
        .iter()
        .filter(|e| e["node"]["actor"]["api"] == "chronos")
        .map(|e| &e["node"]["type"])
        .collect();
    for kind in ["JobCreated", "JobUpdated", "JobDeleted"] {
        assert!(by_chronos.contains(&&json!(kind)), "{kind}: {audit:#}");
    }
    dev.stop();
}
