//! The read side against a running `cairn dev`, through HTTP as a user reaches it: GraphQL
//! queries of every read model (live and as of any moment), diffs, the audit trail, the event
//! log as pages and as a subscription, the limits, the console, the CLI, and checkpoints that
//! are only a cache.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_projections::State;
use cairn_tests::dev::{golden_entries, synthetic_entries, Dev};
use cairn_tests::{cairn_bin, cluster::wait_until, Lines, Proc};
use serde_json::{json, Value};

/// Waits until the live state has folded the log's head (or more: with synthetic frameworks
/// and agents in the log, the offer cycle may append after it).
fn wait_folded(dev: &Dev) -> u64 {
    let head = dev.head();
    wait_until(
        "the projections fold the head",
        Duration::from_secs(60),
        || {
            dev.data("{ state { offset } }", Value::Null)["state"]["offset"]
                .as_u64()
                .is_some_and(|offset| offset >= head)
        },
    );
    head
}

/// The built-in schedulers off: they would react to the synthetic history's apps and jobs
/// (register, offer, decline) and append while a test compares what it appended.
const QUIET: &str = "[apps]\nenabled = false\n[jobs]\nenabled = false\n";

/// `cairn dev` without its agent and without the built-in schedulers: its log holds only what
/// the test appends.
fn quiet(dir: &std::path::Path) -> Dev {
    let config = dir.join("cairn.toml");
    std::fs::write(&config, QUIET).unwrap();
    Dev::start_with(&dir.join("data"), Some(&config), cairn_tests::free_port())
}

fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(cairn_bin()).args(args).output().unwrap()
}

/// The golden history (every event type) appended to a fresh master: each read model, live
/// and as of the moments that matter, as a person replaying the incident would ask.
#[test]
fn queries_answer_from_the_projections_now_and_as_of_any_moment() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start(dir.path());
    // Offset 1 is this master's own LeaderElected: golden offset N lands at N + 1. Three
    // appends, so that three moments in time separate the app's creation, scaling and end.
    let golden = golden_entries();
    assert_eq!(dev.append(&golden[..11]), (2, 12));
    assert_eq!(dev.append(&golden[11..18]), (13, 19));
    assert_eq!(dev.append(&golden[18..]), (20, 45));
    wait_folded(&dev);

    // Golden 15: nginx.1 runs, its deployment is under way.
    let app = "query($at: Int!) { app(id: \"/nginx\", asOf: {offset: $at}) {
        id instances queued tasksRunning tasksStaged
        tasks { id state agentId statuses { state source } agent { hostname } }
        deployments { id status completedSteps totalSteps }
        versions { change offset } } }";
    let at = |offset: u64| dev.data(app, json!({ "at": offset }))["app"].clone();
    let running = at(16);
    assert_eq!(running["instances"], 1);
    assert_eq!(running["queued"], 0);
    assert_eq!(running["tasksRunning"], 1);
    assert_eq!(running["tasks"][0]["id"], "nginx.1");
    assert_eq!(running["tasks"][0]["state"], "TASK_RUNNING");
    assert_eq!(running["tasks"][0]["agent"]["hostname"], "host-a");
    assert_eq!(
        running["tasks"][0]["statuses"],
        json!([{"state": "TASK_STAGING", "source": "master"}, {"state": "TASK_RUNNING", "source": "executor"}])
    );
    assert_eq!(running["deployments"][0]["id"], "dep-1");
    assert_eq!(running["deployments"][0]["status"], "RUNNING");
    // Golden 18: scaled to 2, one instance queued.
    let scaled = at(19);
    assert_eq!(scaled["instances"], 2);
    assert_eq!(scaled["queued"], 1);
    assert_eq!(
        scaled["versions"][1],
        json!({"change": "Scaled", "offset": 19})
    );
    // Now: the app is deleted; its killed task is kept as recent history.
    let now = dev.data(
        "{ app(id: \"/nginx\") { id }
           tasks(state: \"TASK_KILLED\") { totalCount edges { node { id appId terminal killRequested } } }
           deployments { id status reason }
           agents { id status total { cpus mem ports { begin end } } used { cpus } }
           frameworks { id name status }
           cluster { leader { nodeId } masters { nodeId } offers { id } } }",
        Value::Null,
    );
    assert!(now["app"].is_null());
    assert_eq!(now["tasks"]["totalCount"], 1);
    assert_eq!(
        now["tasks"]["edges"][0]["node"],
        json!({"id": "nginx.1", "appId": "/nginx", "terminal": true, "killRequested": true})
    );
    assert_eq!(
        now["deployments"],
        json!([
            {"id": "dep-1", "status": "FINISHED", "reason": null},
            {"id": "dep-2", "status": "CANCELED", "reason": "rolled back"}
        ])
    );
    assert_eq!(
        now["agents"],
        json!([{"id": "agent-1", "status": "REMOVED",
                "total": {"cpus": 4.0, "mem": 15360.0, "ports": [{"begin": 31000, "end": 32000}]},
                "used": {"cpus": 0.0}}])
    );
    assert_eq!(
        now["frameworks"],
        json!([{"id": "fw-ext", "name": "pymesos-test", "status": "REMOVED"}])
    );
    assert_eq!(now["cluster"]["masters"], json!([]));

    // Jobs: the dependency graph while both existed, and the run with its retry.
    let jobs = dev.data(
        "{ then: job(name: \"hourly-report\", asOf: {offset: 29}) { children }
           child: job(name: \"publish-report\", asOf: {offset: 29}) { parents schedule }
           now: job(name: \"hourly-report\") {
             schedule successCount errorCount children
             lastRun { id outcome cause attempts { attempt taskId retryReason } }
             missed { reason } }
           gone: job(name: \"publish-report\") { name }
           runs(job: \"hourly-report\") { totalCount edges { node { id outcome } } } }",
        Value::Null,
    );
    assert_eq!(jobs["then"]["children"], json!(["publish-report"]));
    assert_eq!(
        jobs["child"],
        json!({"parents": ["hourly-report"], "schedule": null})
    );
    let now = &jobs["now"];
    assert_eq!(now["schedule"], "R/2015-10-01T00:00:00Z/PT1H");
    assert_eq!(
        (now["successCount"].clone(), now["errorCount"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(now["children"], json!([]), "its child was deleted");
    assert_eq!(now["lastRun"]["id"], "run-1");
    assert_eq!(now["lastRun"]["outcome"], "succeeded");
    assert_eq!(
        now["lastRun"]["attempts"][0]["taskId"],
        "hourly-report.run-1.1"
    );
    assert_eq!(
        now["lastRun"]["attempts"][1]["retryReason"],
        "TASK_FAILED: exit status 1"
    );
    assert_eq!(now["missed"].as_array().unwrap().len(), 1);
    assert!(jobs["gone"].is_null());
    assert_eq!(jobs["runs"]["totalCount"], 1);

    // As of a time: the moment of a record, read back from the log.
    let created_at = dev.data(
        "{ events(filter: {types: [\"AppCreated\"]}) { edges { node { offset at } } } }",
        Value::Null,
    )["events"]["edges"][0]["node"]
        .clone();
    let by_time = dev.data(
        "query($t: String!) { state(asOf: {time: $t}) { offset } app(id: \"/nginx\", asOf: {time: $t}) { id } }",
        json!({ "t": created_at["at"] }),
    );
    assert_eq!(
        by_time["state"]["offset"], 12,
        "the last record of that moment"
    );
    assert_eq!(by_time["app"]["id"], "/nginx");
    let before_anything = dev.data(
        "{ state(asOf: {time: \"2000-01-01T00:00:00Z\"}) { offset } }",
        Value::Null,
    );
    assert_eq!(before_anything["state"]["offset"], 0);

    // A diff between two moments names what changed.
    let diff = dev.data(
        "{ diff(app: \"/nginx\", from: {offset: 18}, to: {offset: 19}) {
             from to changes { path before after } } }",
        Value::Null,
    )["diff"]
        .clone();
    assert_eq!(
        (diff["from"].clone(), diff["to"].clone()),
        (json!(18), json!(19))
    );
    let instances = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/spec/instances")
        .unwrap_or_else(|| panic!("{diff:#}"));
    assert_eq!(
        (instances["before"].clone(), instances["after"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        dev.error_code(
            "{ diff(app: \"/nope\", from: {offset: 1}, to: {offset: 2}) { from } }",
            Value::Null
        ),
        "NOT_FOUND"
    );

    // The audit trail: who changed the app, from where, and what each change did.
    let audit = dev.data(
        "{ audit(subject: \"app:/nginx\", first: 10) { totalCount edges { node {
             offset type subject previous actor { principal api remoteAddr requestId }
             change { changes { path } } } } } }",
        Value::Null,
    )["audit"]
        .clone();
    assert_eq!(audit["totalCount"], 4);
    let entries: Vec<&Value> = audit["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["AppDeleted", "AppUpdated", "AppScaled", "AppCreated"]
    );
    assert_eq!(
        entries[0]["actor"],
        json!({"principal": "user:alice", "api": "graphql", "remoteAddr": "127.0.0.1:53412", "requestId": "req-7"})
    );
    assert_eq!(entries[2]["previous"], 12, "the scale follows the creation");
    let scaled_paths: Vec<&str> = entries[2]["change"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        scaled_paths.contains(&"/spec/instances"),
        "{scaled_paths:?}"
    );
    let by_alice = dev.data("{ audit(actor: \"alice\") { totalCount } }", Value::Null);
    let alice_events = dev.data(
        "{ events(filter: {actor: \"user:alice\"}, first: 500) { edges { cursor } } }",
        Value::Null,
    );
    assert_eq!(
        by_alice["audit"]["totalCount"].as_u64().unwrap() as usize,
        alice_events["events"]["edges"].as_array().unwrap().len(),
        "every change alice made is in the audit trail"
    );
}

/// The raw log as pages: every record exactly once going forwards or backwards, filters that
/// agree with a scan of the whole log, and the CLI over the same API.
#[test]
fn the_event_log_pages_filters_and_follows_without_gap_or_duplicate() {
    let dir = cairn_tests::workdir();
    let dev = quiet(dir.path());
    let (_, head) = dev.append(&synthetic_entries(3000));
    // The allocator may offer the synthetic agents to the synthetic frameworks at any moment:
    // the pages read the log as of the head appended here, which later records never change.
    assert!(dev.head() >= head);
    let at = json!({ "offset": head });

    let page = "query($first: Int, $after: String, $last: Int, $before: String, $filter: EventFilter, $at: AsOf) {
        events(first: $first, after: $after, last: $last, before: $before, filter: $filter, asOf: $at) {
          edges { cursor node { offset type actor { principal } payload } }
          pageInfo { hasNextPage hasPreviousPage } scannedTo head } }";
    let mut all: Vec<Value> = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = dev.data(page, json!({ "first": 333, "after": after, "at": at }));
        let events = &data["events"];
        all.extend(
            events["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone()),
        );
        if events["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = events["edges"].as_array().unwrap().last().unwrap()["cursor"].clone();
    }
    // The timeline: evenly spread offsets from the first to the head, times in order.
    let points = dev.data("{ timeline(points: 11) { offset at } }", Value::Null)["timeline"]
        .as_array()
        .unwrap()
        .clone();
    let spread: Vec<u64> = points
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    // The head it read: the runner may have appended since (offers to the synthetic
    // frameworks).
    let seen = *spread.last().unwrap();
    assert!(seen >= head);
    assert_eq!(
        spread,
        (0..11).map(|i| 1 + (seen - 1) * i / 10).collect::<Vec<_>>()
    );
    assert!(points
        .windows(2)
        .all(|w| w[0]["at"].as_str() <= w[1]["at"].as_str()));
    for bad in [1, 1001] {
        assert_eq!(
            dev.error_code(
                "query($p: Int!) { timeline(points: $p) { offset } }",
                json!({ "p": bad })
            ),
            "VALIDATION"
        );
    }

    let offsets: Vec<u64> = all.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(
        offsets,
        (1..=head).collect::<Vec<_>>(),
        "forwards: each record once, in order"
    );

    let mut backwards: Vec<u64> = Vec::new();
    let mut before = Value::Null;
    loop {
        let data = dev.data(page, json!({ "last": 400, "before": before, "at": at }));
        let edges = data["events"]["edges"].as_array().unwrap().clone();
        let mut chunk: Vec<u64> = edges
            .iter()
            .map(|e| e["node"]["offset"].as_u64().unwrap())
            .collect();
        chunk.extend(backwards);
        backwards = chunk;
        if data["events"]["pageInfo"]["hasPreviousPage"] != true {
            break;
        }
        before = edges[0]["cursor"].clone();
    }
    assert_eq!(backwards, offsets, "backwards: the same records");

    // Each filter agrees with filtering the whole log by hand.
    let some_task = all
        .iter()
        .find_map(|e| (e["type"] == "TaskLaunched").then(|| e["payload"]["task_id"].clone()))
        .unwrap();
    let some_agent = all
        .iter()
        .find_map(|e| (e["type"] == "AgentRegistered").then(|| e["payload"]["agent_id"].clone()))
        .unwrap();
    let filters = [
        (
            json!({"types": ["TaskLaunched", "AppCreated"]}),
            Box::new(|e: &Value| e["type"] == "TaskLaunched" || e["type"] == "AppCreated")
                as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            json!({"task": some_task}),
            Box::new(|e: &Value| {
                e["payload"]
                    .to_string()
                    .contains(&format!("\"task_id\":{some_task}"))
            }),
        ),
        (
            json!({"agent": some_agent, "types": ["TaskLaunched"]}),
            Box::new(|e: &Value| {
                e["type"] == "TaskLaunched" && e["payload"]["agent_id"] == some_agent
            }),
        ),
        (
            json!({"actor": "scheduler:apps"}),
            Box::new(|e: &Value| e["actor"]["principal"] == "scheduler:apps"),
        ),
    ];
    for (filter, expected) in filters {
        let data = dev.data(page, json!({ "first": 500, "filter": filter, "at": at }));
        let got: Vec<u64> = data["events"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["offset"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = all
            .iter()
            .filter(|e| expected(e))
            .map(|e| e["offset"].as_u64().unwrap())
            .take(500)
            .collect();
        assert!(!want.is_empty(), "{filter}: the history has such records");
        assert_eq!(got, want, "filter {filter}");
    }
    assert_eq!(
        dev.error_code(page, json!({ "filter": { "types": ["NoSuchEvent"] } })),
        "VALIDATION"
    );
    assert_eq!(dev.error_code(page, json!({ "after": "x" })), "VALIDATION");

    // The CLI prints the same history, filtered the same way.
    let out = cairn(&[
        "events",
        "--masters",
        &dev.addr(),
        "--type",
        "AppCreated",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let created: Vec<&Value> = all.iter().filter(|e| e["type"] == "AppCreated").collect();
    assert_eq!(printed.len(), created.len());
    assert!(printed
        .iter()
        .zip(&created)
        .all(|(p, c)| p["offset"] == c["offset"] && p["payload"] == c["payload"]));

    // Following: a subscriber from offset 1 gets the history, then new records as they
    // commit; one that stops and resumes from its last offset + 1 misses nothing and repeats
    // nothing.
    let follow = |from: u64| {
        let mut child = Command::new(cairn_bin())
            .args(["events", "--follow", "-o", "json", "--masters", &dev.addr()])
            .args(["--from", &from.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Lines::new(child.stdout.take().unwrap());
        (Proc(child), lines)
    };
    let read_until = |lines: &Lines, last: u64, seen: &mut Vec<u64>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.last() != Some(&last) {
            let line = lines
                .next_before(deadline)
                .expect("the subscription went quiet");
            let event: Value = serde_json::from_str(&line).unwrap();
            seen.push(event["offset"].as_u64().unwrap());
        }
    };
    let mut seen = Vec::new();
    let (first_follower, lines) = follow(1);
    read_until(&lines, 1200, &mut seen);
    drop(first_follower);
    let (_second, lines) = follow(seen.last().unwrap() + 1);
    read_until(&lines, head, &mut seen);
    let (_, more) = dev.append(&synthetic_entries(50));
    read_until(&lines, more, &mut seen);
    assert_eq!(seen, (1..=more).collect::<Vec<_>>());
}

#[test]
fn limits_reject_a_request_before_any_resolver_runs() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start(dir.path());
    // Each rejection returns no data at all: not even the harmless `state` field ran.
    assert_eq!(
        dev.error_code(
            "{ state { offset } apps(first: 501) { totalCount } }",
            Value::Null
        ),
        "VALIDATION"
    );
    let response = dev.graphql(
        "query($n: Int) { state { offset } events(last: $n) { head } }",
        json!({ "n": 100_000 }),
    );
    assert!(response["data"].is_null(), "{response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("last: 100000 is not in 0..=500"),
        "{message}"
    );

    let mut deep = String::from("id");
    for _ in 0..8 {
        deep = format!("id tasks {{ agent {{ {deep} }} }}");
    }
    let deep = format!("{{ state {{ offset }} agents {{ {deep} }} }}");
    let response = dev.graphql(&deep, Value::Null);
    assert!(response["data"].is_null(), "{response}");
    assert_eq!(response["errors"][0]["extensions"]["code"], "VALIDATION");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{response}"
    );

    let wide: String = (0..30)
        .map(|i| {
            format!("e{i}: events(first: 500) {{ edges {{ node {{ offset type at payload }} }} }} ")
        })
        .collect();
    let response = dev.graphql(&format!("{{ state {{ offset }} {wide} }}"), Value::Null);
    assert!(response["data"].is_null(), "{response}");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{response}"
    );
    assert_eq!(response["errors"][0]["extensions"]["code"], "VALIDATION");

    let big = json!({ "query": format!("{{ state {{ offset }} }} #{}", "x".repeat(300_000)) })
        .to_string();
    let (status, body) = dev.http("POST", "/graphql", &big);
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BODY_TOO_LARGE");

    let (status, body) = dev.http("POST", "/graphql", "{\"query\": 12");
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");

    assert_eq!(dev.error_code("{ nope }", Value::Null), "VALIDATION");
    assert_eq!(
        dev.error_code("{ state(asOf: {offset: 999}) { offset } }", Value::Null),
        "NOT_FOUND"
    );
    assert_eq!(
        dev.error_code("{ state(asOf: {time: \"noon\"}) { offset } }", Value::Null),
        "VALIDATION"
    );
    // Each moment of the past is a whole state computed and held for the request: at most
    // eight distinct ones (asking for one again costs nothing), checked as they are reached.
    let (_, last) = dev.append(&golden_entries()[..11]);
    assert!(last >= 9, "{last}");
    wait_folded(&dev);
    let moments = |n: u64| -> String {
        (1..=n)
            .map(|i| format!("s{i}: state(asOf: {{offset: {i}}}) {{ offset }} "))
            .collect()
    };
    let eight = format!(
        "{{ {} again: state(asOf: {{offset: 1}}) {{ offset }} }}",
        moments(8)
    );
    let response = dev.graphql(&eight, Value::Null);
    assert!(response["errors"].is_null(), "{response}");
    assert_eq!(response["data"]["s8"]["offset"], 8);
    assert_eq!(response["data"]["again"]["offset"], 1);
    let response = dev.graphql(&format!("{{ {} }}", moments(9)), Value::Null);
    let errors = response["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{response}");
    assert_eq!(errors[0]["extensions"]["code"], "VALIDATION");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("asOf: a request reads at most 8 moments of the past"),
        "{message}"
    );

    // The same limits hold over the CLI, which exits non-zero and prints the error.
    let out = cairn(&[
        "query",
        "--masters",
        &dev.addr(),
        "{ apps(first: 9999) { totalCount } }",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\": \"VALIDATION\""));
}

#[test]
fn the_console_and_the_cli_work_with_no_internet() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start(dir.path());
    let (status, page) = dev.http("GET", "/graphql", "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>cairn · GraphQL console</title>"));
    assert!(
        page.contains("fetch(\"/graphql\""),
        "it posts to this master"
    );
    for external in ["src=\"http", "href=\"http", "@import", "//cdn"] {
        assert!(!page.contains(external), "the console loads {external}…");
    }
    // The web UI: the page at `/`, its files from the binary, nothing else.
    let (status, index) = dev.http("GET", "/", "");
    assert_eq!(status, 200);
    assert!(index.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    let (status, script) = dev.http("GET", "/ui/app.js", "");
    assert_eq!(status, 200);
    assert!(script.contains("from \"./gql.js\""));
    assert_eq!(dev.http("GET", "/ui/nothing.js", "").0, 404);

    dev.append(&golden_entries());
    let head = wait_folded(&dev);
    let out = cairn(&[
        "query",
        "--masters",
        &dev.addr(),
        "--var",
        "id=\"/nginx\"",
        "query($id: String!) { app(id: $id, asOf: {offset: 16}) { tasksRunning } }",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["data"]["app"]["tasksRunning"], 1);

    let out = cairn(&["state", "--masters", &dev.addr(), "--as-of", "16"]);
    assert!(out.status.success());
    let (_, served) = dev.state(Some("16"));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end(), served);
    let state: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(state["offset"], 16);
    assert!(state["apps"]["apps"]["/nginx"].is_object());

    let out = cairn(&[
        "state",
        "--masters",
        &dev.addr(),
        "--as-of",
        &(head + 5).to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("beyond the log's head"));
    let out = cairn(&["state", "--masters", &dev.addr(), "--as-of", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("as_of: \"yesterday\" is neither"));
}

/// The state as of any offset equals a fold of the log up to there done here, by the pure
/// fold; deleting or corrupting every checkpoint changes no answer.
#[test]
fn checkpoints_are_only_a_cache() {
    let dir = cairn_tests::workdir();
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!("[projections]\ncheckpoint-every = 100\ncheckpoints-kept = 8\n{QUIET}"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let port = cairn_tests::free_port();
    let dev = Dev::start_with(&data, Some(&config), port);
    dev.append(&synthetic_entries(3000));
    let head = wait_folded(&dev);
    let checkpoints = data.join("checkpoints");
    let files = || std::fs::read_dir(&checkpoints).unwrap().count();
    // While one is being written the next is skipped, so how many exist depends on speed.
    wait_until("checkpoints are written", Duration::from_secs(30), || {
        files() >= 2
    });
    assert!(files() <= 8, "at most checkpoints-kept remain");

    let moments: Vec<u64> = vec![
        0,
        1,
        99,
        100,
        101,
        799,
        800,
        1234,
        2047,
        2048,
        2500,
        head - 1,
        head,
    ];
    let answers = |dev: &Dev| -> Vec<String> {
        moments
            .iter()
            .map(|m| {
                let (status, body) = dev.state(Some(&m.to_string()));
                assert_eq!(status, 200, "{body}");
                body
            })
            .collect()
    };
    let first = answers(&dev);
    // The runner may append after the synthetic history (offers to its frameworks): the live
    // state is compared with the state as of its own offset.
    let live = dev.state(None).1;
    let live_offset = serde_json::from_str::<Value>(&live).unwrap()["offset"]
        .as_u64()
        .unwrap();
    assert!(live_offset >= head);
    assert_eq!(
        dev.state(Some(&live_offset.to_string())).1,
        live,
        "the live state is the state as of its offset"
    );

    // The oracle: the records this master serves, folded here.
    let (_, ndjson) = dev.http("GET", &format!("/v1/log/events?from=1&limit={head}"), "");
    let records: Vec<cairn_log::Record> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as u64, head);
    let mut state = State::default();
    let mut expected = Vec::new();
    for &m in &moments {
        state.advance(records.iter().cloned(), m);
        expected.push(serde_json::to_string(&state).unwrap());
    }
    assert_eq!(first, expected, "served as-of states are folds of the log");

    dev.stop();
    std::fs::remove_dir_all(&checkpoints).unwrap();
    let dev = Dev::start_with(&data, Some(&config), port);
    assert_eq!(answers(&dev), first, "without checkpoints");
    wait_until(
        "checkpoints are written again",
        Duration::from_secs(30),
        || files() >= 1,
    );
    dev.stop();

    // Corrupt every checkpoint: each is refused (and deleted), the answers stay the same.
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    }
    let dev = Dev::start_with(&data, Some(&config), port);
    assert_eq!(answers(&dev), first, "with corrupt checkpoints");
    dev.stop();

    // A checkpoint in the format before (the state as JSON, in a `.json` file) is refused and
    // deleted too: the query as of 1234 finds it first.
    let old = checkpoints.join(format!("{:020}.json", 1234));
    let header = r#"{"format":1,"offset":1234,"at":"2026-01-01T00:00:00.000000Z","genesis":null,"crc32":0,"len":2}"#;
    std::fs::write(&old, format!("{header}\n{{}}")).unwrap();
    let dev = Dev::start_with(&data, Some(&config), port);
    assert_eq!(
        answers(&dev),
        first,
        "with a checkpoint of the older format"
    );
    assert!(!old.exists(), "the older checkpoint is deleted");
    dev.stop();
}
