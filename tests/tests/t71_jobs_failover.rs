//! Exactly once across failover, with real processes: three masters on their own loopback
//! addresses and one agent run jobs with periods of a few seconds (and a job that depends on
//! two of them). The leader is killed (SIGKILL); later the next leader is cut off from the
//! other masters by nftables rules, and the network heals. The log must then say, for each
//! job, that every due time from its first to its last was dealt with exactly once (one run or
//! one recorded miss), that no attempt was launched twice, and every run succeeded or is
//! still going. Needs root (nftables); CI runs as root.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_log::event::Timestamp;
use cairn_tests::agent::{cairn, Agent};
use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::partition::Partition;
use serde_json::{json, Value};

const HOSTS: [&str; 3] = ["127.0.78.1", "127.0.78.2", "127.0.78.3"];
const MINUTE: Duration = Duration::from_secs(60);
/// Each scheduled job: name and period in seconds.
const JOBS: [(&str, i64); 3] = [("every-2s", 2), ("every-3s", 3), ("every-5s", 5)];

fn graphql(addr: &str, query: &str, variables: Value) -> Option<Value> {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, body) =
        cairn_tests::http_to(addr, "POST", "/graphql", &body, Duration::from_secs(10)).ok()?;
    let response: Value = serde_json::from_str(&body).ok()?;
    (status == 200 && response["errors"].is_null()).then(|| response["data"].clone())
}

/// Successful runs of `job` seen by the master at `addr`.
fn succeeded(addr: &str, job: &str) -> usize {
    graphql(
        addr,
        "query($n: String!) { job(name: $n) { successCount } }",
        json!({ "n": job }),
    )
    .and_then(|d| d["job"]["successCount"].as_u64())
    .unwrap_or(0) as usize
}

#[test]
fn every_due_time_runs_once_or_is_missed_across_a_leader_kill_and_a_partition() {
    let mut m = Masters::on(&HOSTS).with_config("[agents]\ntimeout-secs = 3600\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    m.wait_for_leader();
    let masters: Vec<String> = (0..3).map(|i| m.addr(i)).collect();
    let agent_dir = cairn_tests::workdir();
    let _agent = Agent::start(
        &masters,
        agent_dir.path(),
        &["--cpus", "4", "--mem", "2048"],
    );
    let dir = cairn_tests::workdir();
    let apply = |job: Value| {
        let file = dir.path().join("job.json");
        std::fs::write(&file, job.to_string()).unwrap();
        let out = cairn(&masters, &["job", "apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (name, period) in JOBS {
        apply(json!({
            "name": name, "command": "echo $CAIRN_RUN_ID", "cpus": 0.05, "mem": 16,
            "schedule": format!("R/2026-01-01T00:00:00Z/PT{period}S"), "epsilon": "PT5S",
            "retries": 1, "concurrencyPolicy": "ALLOW"
        }));
    }
    apply(json!({
        "name": "after-both", "command": "true", "cpus": 0.05, "mem": 16,
        "parents": ["every-2s", "every-3s"], "epsilon": "PT5S", "concurrencyPolicy": "ALLOW"
    }));
    // Waits until `runs` more runs succeeded, as a leader among `among` sees them.
    // Waits for `runs` more successes of every-2s than the last settle saw. Counting from
    // what the previous settle saw, not from a fresh read, so that a leader whose projections
    // still lag just after an election (or a query that fails, read as 0) cannot cut the run
    // short.
    let mut seen = 0usize;
    let mut settle = |m: &Masters, among: &[usize], runs: usize| {
        let leader = |m: &Masters| loop {
            if let Some(i) = m.leader_among(among) {
                return m.addr(i);
            }
        };
        let target = seen + runs;
        wait_until("runs on the current leader", MINUTE, || {
            let now = succeeded(&leader(m), "every-2s");
            seen = seen.max(now);
            now >= target
        });
    };
    let all = [0, 1, 2];
    settle(&m, &all, 3);

    // The leader dies; another takes over.
    let first = m.wait_for_leader();
    m.kill(first);
    m.wait_for_leader();
    settle(&m, &all, 3);

    // The new leader is cut off from the other masters; the majority elects another.
    let second = m.wait_for_leader();
    let others: Vec<usize> = (0..3).filter(|i| *i != second && *i != first).collect();
    {
        let _cut = Partition::isolate("t71", HOSTS[second], &[HOSTS[first], HOSTS[others[0]]]);
        m.start(first, 3);
        wait_until("a leader on the majority side", MINUTE, || {
            m.leader_among(&[first, others[0]]).is_some()
        });
        settle(&m, &[first, others[0]], 3);
    }
    // Healed: everyone converges on one leader and the jobs go on.
    wait_until("one leader again", MINUTE, || m.converged(&all));
    settle(&m, &all, 3);
    for (name, _) in JOBS {
        let out = cairn(&masters, &["job", "disable", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let addr = m.addr(m.wait_for_leader());
    wait_until("every run to end", MINUTE, || {
        graphql(
            &addr,
            "{ jobs { edges { node { activeRuns { id } } } } }",
            Value::Null,
        )
        .is_some_and(|d| {
            d["jobs"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["node"]["activeRuns"] == json!([]))
        })
    });

    // The log's account, page by page.
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = graphql(
            &addr,
            "query($a: String) { events(after: $a, first: 500, filter: {types: [\"JobRunTriggered\", \
             \"JobRunMissed\", \"JobRunFinished\", \"TaskLaunched\"]}) { edges { cursor node { type payload } } \
             pageInfo { hasNextPage } } }",
            json!({ "a": after }),
        )
        .expect("the events");
        let edges = page["events"]["edges"].as_array().unwrap().clone();
        after = edges
            .last()
            .map(|e| e["cursor"].as_str().unwrap().to_owned());
        records.extend(edges.into_iter().map(|e| e["node"].clone()));
        if page["events"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
    }
    let mut dealt: BTreeMap<String, BTreeMap<i64, u32>> = BTreeMap::new();
    let mut launched = BTreeSet::new();
    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let mut dependent = 0;
    for r in &records {
        let p = &r["payload"];
        let job = p["job"].as_str().unwrap_or("").to_owned();
        let at = |v: &Value| {
            Timestamp::parse_rfc3339(v.as_str().unwrap())
                .unwrap()
                .as_micros()
        };
        match r["type"].as_str().unwrap() {
            "JobRunTriggered" if p["cause"] == "schedule" => {
                *dealt
                    .entry(job)
                    .or_default()
                    .entry(at(&p["scheduled_for"]))
                    .or_default() += 1
            }
            "JobRunTriggered" => dependent += 1,
            "JobRunMissed" if p["run_id"].is_null() => {
                *dealt
                    .entry(job)
                    .or_default()
                    .entry(at(&p["scheduled_for"]))
                    .or_default() += 1
            }
            "JobRunMissed" | "JobRunFinished" => {
                let run = p["run_id"].as_str().unwrap().to_owned();
                let outcome = p["outcome"].as_str().unwrap_or("missed").to_owned();
                assert!(
                    outcomes.insert(run.clone(), outcome).is_none(),
                    "{run} ended twice"
                );
            }
            "TaskLaunched" => {
                let task = p["task_id"].as_str().unwrap().to_owned();
                assert!(launched.insert(task.clone()), "{task} launched twice");
            }
            _ => {}
        }
    }
    for (name, period) in JOBS {
        let due = &dealt[name];
        // The whole run lasts 25 s or more.
        assert!(
            due.len() as i64 >= 20 / period,
            "{name}: {} due times",
            due.len()
        );
        assert!(
            due.values().all(|n| *n == 1),
            "{name}: a due time dealt with twice: {due:?}"
        );
        let times: Vec<i64> = due.keys().copied().collect();
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == period * 1_000_000),
            "{name}: a due time skipped: {times:?}"
        );
    }
    assert!(dependent >= 3, "{dependent} runs triggered by parents");
    assert!(
        outcomes.values().all(|o| o == "succeeded" || o == "missed"),
        "{outcomes:?}"
    );
    eprintln!(
        "{} due times, {} runs ended ({} missed before starting)",
        dealt.values().map(BTreeMap::len).sum::<usize>(),
        outcomes.len(),
        outcomes.values().filter(|o| *o == "missed").count()
    );
}
