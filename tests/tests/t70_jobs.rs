//! Scheduled and dependent jobs on `cairn dev` with its real agent, driven through the CLI and
//! GraphQL: the example jobs run in dependency order, a short schedule runs each due time once,
//! failed attempts are retried, output is readable from the run, and bad definitions are
//! refused with every error at its path, changing nothing.

use std::time::Duration;

use cairn_log::event::Timestamp;
use cairn_tests::agent::cli as run;
use cairn_tests::cluster::wait_until;
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

fn history(dev: &Dev, job: &str) -> Vec<Value> {
    let data = dev.data(
        "query($n: String!) { job(name: $n) { history(last: 500) { id scheduledFor cause \
         outcome attempts { attempt taskId retryReason } } } }",
        json!({ "n": job }),
    );
    data["job"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn example(name: &str) -> String {
    format!("{}/fixtures/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn jobs_run_on_their_schedule_after_their_parents_and_retry_failures() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let masters = [dev.addr()];

    // The examples, as they are: the dependent job is accepted once its parent exists.
    run(
        &masters,
        &["job", "apply", "-f", &example("hourly-job.json")],
        0,
    );
    run(
        &masters,
        &["job", "apply", "-f", &example("dependent-job.json")],
        0,
    );
    let (out, _) = run(&masters, &["job", "graph"], 0);
    assert_eq!(out.trim(), "hourly-report -> publish-report");

    // A manual run of the parent; its success triggers the child.
    let (out, _) = run(
        &masters,
        &["job", "run", "hourly-report", "--wait", "--timeout", "60"],
        0,
    );
    assert!(out.contains("succeeded"), "{out}");
    wait_until("the dependent job to succeed", WITHIN, || {
        history(&dev, "publish-report")
            .iter()
            .any(|r| r["outcome"] == "succeeded")
    });
    let parent = history(&dev, "hourly-report");
    let child = history(&dev, "publish-report");
    assert_eq!(parent.len(), 1);
    assert_eq!(parent[0]["cause"], "manual");
    assert_eq!(child.len(), 1, "one success triggers the child once");
    assert_eq!(child[0]["cause"]["parents"]["runs"][0], parent[0]["id"]);
    // The run's output, through its task's sandbox.
    let (out, _) = run(&masters, &["job", "logs", "hourly-report"], 0);
    assert!(out.starts_with("report for "), "{out}");
    let urls = dev.data(
        "query($n: String!) { job(name: $n) { lastRun { stdoutUrl task { state } } } }",
        json!({ "n": "hourly-report" }),
    );
    assert_eq!(urls["job"]["lastRun"]["task"]["state"], "TASK_FINISHED");
    assert!(urls["job"]["lastRun"]["stdoutUrl"]
        .as_str()
        .unwrap()
        .contains("/files/read?path="));

    // A schedule every two seconds: each due time is run once, in order, none skipped.
    let tick = dir.path().join("tick.json");
    std::fs::write(
        &tick,
        json!({"name": "tick", "command": "echo tick", "schedule": "R/2026-01-01T00:00:00Z/PT2S",
               "epsilon": "PT30S", "retries": 0, "cpus": 0.05, "mem": 16})
        .to_string(),
    )
    .unwrap();
    run(&masters, &["job", "apply", "-f", tick.to_str().unwrap()], 0);
    wait_until("four scheduled runs to succeed", WITHIN, || {
        history(&dev, "tick")
            .iter()
            .filter(|r| r["outcome"] == "succeeded")
            .count()
            >= 4
    });
    run(&masters, &["job", "disable", "tick"], 0);
    let mut due: Vec<String> = history(&dev, "tick")
        .iter()
        .map(|r| r["scheduledFor"].as_str().unwrap().to_owned())
        .collect();
    due.reverse();
    let times: Vec<i64> = due
        .iter()
        .map(|t| Timestamp::parse_rfc3339(t).unwrap().as_micros() / 1_000_000)
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == 2),
        "due times two seconds apart, each once: {due:?}"
    );
    let status = dev.data(
        "{ job(name: \"tick\") { disabled missed { reason } } }",
        Value::Null,
    );
    assert_eq!(status["job"]["disabled"], true);
    assert_eq!(status["job"]["missed"], json!([]), "{status}");

    // A failing command with two retries: three attempts, then the run fails.
    let flaky = dir.path().join("flaky.json");
    std::fs::write(
        &flaky,
        json!({"name": "flaky", "command": "exit 3", "schedule": "R/2030-01-01T00:00:00Z/P1D",
               "retries": 2, "cpus": 0.05, "mem": 16})
        .to_string(),
    )
    .unwrap();
    run(
        &masters,
        &["job", "apply", "-f", flaky.to_str().unwrap()],
        0,
    );
    let (out, _) = run(
        &masters,
        &["job", "run", "flaky", "--wait", "--timeout", "60"],
        1,
    );
    assert!(out.contains("failed"), "{out}");
    let runs = history(&dev, "flaky");
    let attempts = runs[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{runs:?}");
    assert!(attempts[1]["retryReason"]
        .as_str()
        .unwrap()
        .starts_with("TASK_FAILED"));

    // Refused, with every error at its path, and nothing changes.
    let head = dev.head();
    let invalid = dev.graphql(
        "mutation($d: JSON!) { createJob(definition: $d) }",
        json!({"d": {"name": "bad", "schedule": "R/2030-01-01T00:00:00Z/PT1X", "epsilon": "P1D"}}),
    );
    assert_eq!(invalid["errors"][0]["extensions"]["code"], "VALIDATION");
    let paths: Vec<&str> = invalid["errors"][0]["extensions"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/command", "/epsilon", "/schedule"]);
    for (definition, error) in [
        (
            json!({"name": "orphan", "command": "true", "parents": ["nope"]}),
            "/parents/0: job nope does not exist",
        ),
        (
            json!({"name": "hourly-report", "command": "true", "parents": ["publish-report"]}),
            "/parents: the parents form a cycle: hourly-report → publish-report → hourly-report",
        ),
        (
            json!({"name": "over", "command": "true", "schedule": "R2/2020-01-01T00:00:00Z/PT1H"}),
            "it would never run",
        ),
    ] {
        let refused = dev.graphql(
            "mutation($d: JSON!) { applyJob(definition: $d) }",
            json!({ "d": definition }),
        );
        let message = refused["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(error), "{message}");
        assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION");
    }
    // A parent cannot be deleted from under its child (exit 2: rejected).
    run(&masters, &["job", "delete", "hourly-report"], 2);
    assert_eq!(dev.head(), head, "refusals append nothing");
    run(&masters, &["job", "delete", "publish-report"], 0);
    run(&masters, &["job", "delete", "hourly-report"], 0);
    let left = dev.data("{ jobGraph { jobs { name } } }", Value::Null);
    assert_eq!(
        left["jobGraph"]["jobs"],
        json!([{"name": "flaky"}, {"name": "tick"}])
    );
}
