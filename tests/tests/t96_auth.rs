//! API tokens against `cairn dev` configured with three, made by `cairn token new`: a
//! `read` one, an `operate` one and an `admin` one. Without a token every API refuses in its
//! own shape while the probes and the UI's files stay open; a read token queries but changes
//! nothing (GraphQL, Marathon); an operate token changes things through GraphQL, Marathon
//! (marathon-python with a user and password, the token as password) and Chronos
//! (chronos-python, which answers the Basic challenge), each audited under the token's name
//! whatever user the client claims; only the admin token appends raw records. The CLI
//! presents `--token` / `CAIRN_TOKEN`, the `events --follow` websocket too.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::agent::cairn;
use cairn_tests::cluster::job_entry;
use cairn_tests::compat::call_as;
use cairn_tests::compat::run_framework;
use cairn_tests::dev::{new_token, Dev};
use cairn_tests::{cairn_bin, free_port, http_with, Lines};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

struct Api(String);

impl Api {
    /// `(status, body as JSON, or as a string when it is not JSON)`.
    fn call(&self, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (status, body) = http_with(&self.0, method, path, &headers, body, WITHIN).unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    fn graphql(&self, auth: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.call("POST", "/graphql", auth, &body)
    }

    /// The data of a query that must succeed.
    fn data(&self, auth: &str, query: &str) -> Value {
        let (status, body) = self.graphql(Some(auth), query, Value::Null);
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[test]
fn tokens_decide_who_may_read_operate_and_administer() {
    let dir = cairn_tests::workdir();
    let (reader, reader_entry) = new_token("reader", "read");
    let (deployer, deployer_entry) = new_token("deployer", "operate");
    let (root, root_entry) = new_token("root", "admin");
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!("{reader_entry}\n{deployer_entry}\n{root_entry}"),
    )
    .unwrap();
    let dev = Dev::start_with(&dir.path().join("data"), Some(&config), free_port());
    let api = Api(dev.addr());
    let (reader_h, deployer_h, root_h) = (bearer(&reader), bearer(&deployer), bearer(&root));

    // Open: the probes, the UI's files (the page must load to ask for a token), the console.
    for path in ["/livez", "/readyz", "/ping", "/", "/ui/app.js", "/graphql"] {
        assert_eq!(api.call("GET", path, None, "").0, 200, "{path}");
    }

    // Without a token, or with one the cluster does not know: refused in each API's shape.
    let (status, body) = api.graphql(None, "{ apps { totalCount } }", Value::Null);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (status, body) = api.graphql(
        Some("Bearer cairn-0000"),
        "{ viewer { name } }",
        Value::Null,
    );
    assert_eq!(status, 401, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("not one this cluster accepts"),
        "{message}"
    );
    for path in [
        "/v2/apps",
        "/v1/state",
        "/metrics",
        "/scheduler/jobs",
        "/master/state",
    ] {
        let (status, body) = api.call("GET", path, None, "");
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "UNAUTHENTICATED", "{path}: {body}");
    }

    // A read token reads, and knows it may only read.
    let viewer = api.data(&reader_h, "{ viewer { name role tokenRequired } }");
    assert_eq!(
        viewer["viewer"],
        json!({ "name": "reader", "role": "READ", "tokenRequired": true })
    );
    assert_eq!(api.call("GET", "/v2/apps", Some(&reader_h), "").0, 200);
    let marathon = format!("http://{}", dev.addr());
    let listed = call_as(
        "marathon",
        &marathon,
        Some(&format!("token:{reader}")),
        "[a.id for a in c.list_apps()]",
        &[],
    );
    assert_eq!(listed, Ok(json!([])));

    // ... and changes nothing.
    let create = "mutation($d: JSON!) { createApp(definition: $d) { deploymentId } }";
    let app =
        |id: &str| json!({ "id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0 });
    let (status, body) = api.graphql(Some(&reader_h), create, json!({ "d": app("/a") }));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("\"reader\" has the role read; this needs operate"),
        "{message}"
    );
    let (status, body) = api.call("POST", "/v2/apps", Some(&reader_h), &app("/a").to_string());
    assert_eq!(status, 403, "{body}");
    let refused = call_as(
        "marathon",
        &marathon,
        Some(&format!("basic:reader:{reader}")),
        "c.create_app('x', MarathonApp(cmd='sleep 1', cpus=0.1, mem=16, instances=0))",
        &[],
    );
    assert!(refused.is_err_and(|e| e.contains("has the role read")));
    let (status, body) = api.call("POST", "/v1/log/append", Some(&deployer_h), &job_entry("x"));
    assert_eq!(
        status, 403,
        "an operate token appends no raw records: {body}"
    );
    let nothing = api.data(
        &reader_h,
        r#"{ apps { totalCount } events(filter: {types: ["AppCreated", "JobDeleted"]}) { nodes { offset } } }"#,
    );
    assert_eq!(nothing["apps"]["totalCount"], 0, "{nothing}");
    assert_eq!(nothing["events"]["nodes"], json!([]), "{nothing}");

    // An operate token changes things through every API, audited under its own name.
    let headers = [
        ("Authorization", deployer_h.as_str()),
        ("X-Cairn-User", "mallory"),
    ];
    let body = json!({ "query": create, "variables": { "d": app("/a") } }).to_string();
    let (status, answer) =
        http_with(&dev.addr(), "POST", "/graphql", &headers, &body, WITHIN).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains("errors"), "{answer}");
    let created = call_as(
        "marathon",
        &marathon,
        Some(&format!("basic:whoever:{deployer}")),
        "c.create_app('b', MarathonApp(cmd='sleep 1000', cpus=0.1, mem=16, instances=0)).id",
        &[],
    );
    assert_eq!(created, Ok(json!("/b")));
    let job = json!({ "name": "nightly", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/P1D",
                      "epsilon": "PT1H", "cpus": 0.1, "mem": 16, "disabled": false, "owner": "ops@example.com" });
    let chronos = dev.addr();
    let added = call_as(
        "chronos",
        &chronos,
        Some(&format!("basic:ops:{deployer}")),
        "add",
        &[job],
    );
    assert!(added.is_ok(), "{added:?}");
    let unauthenticated = call_as("chronos", &chronos, None, "list", &[]);
    assert!(unauthenticated.is_err(), "{unauthenticated:?}");
    let jobs = call_as(
        "chronos",
        &chronos,
        Some(&format!("basic:ops:{reader}")),
        "[j['name'] for j in c.list()]",
        &[],
    );
    assert_eq!(jobs, Ok(json!(["nightly"])));
    let audit = api.data(
        &reader_h,
        r#"{ a: audit(subject: "app:/a") { nodes { actor { principal api } } }
             b: audit(subject: "app:/b") { nodes { actor { principal api } } }
             j: audit(subject: "job:nightly") { nodes { actor { principal api } } } }"#,
    );
    for (subject, api_name) in [("a", "graphql"), ("b", "marathon"), ("j", "chronos")] {
        let actor = &audit[subject]["nodes"][0]["actor"];
        assert_eq!(
            *actor,
            json!({ "principal": "user:deployer", "api": api_name }),
            "{audit}"
        );
    }

    // Only the admin token appends raw records.
    let (status, body) = api.call("POST", "/v1/log/append", Some(&root_h), &job_entry("x"));
    assert_eq!(status, 200, "{body}");

    // The CLI presents its token, the websocket of `events --follow` too.
    let masters = [dev.addr()];
    let out = cairn(&masters, &["app", "list", "-o", "json"]);
    assert!(!out.status.success(), "{out:?}");
    let out = Command::new(cairn_bin())
        .args(["app", "list", "-o", "json", "--token", &reader])
        .env("CAIRN_MASTERS", dev.addr())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ids: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, [json!("/a"), json!("/b")]);
    let out = Command::new(cairn_bin())
        .args(["app", "scale", "/a", "1"])
        .env("CAIRN_MASTERS", dev.addr())
        .env("CAIRN_TOKEN", &reader)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a refusal: {out:?}");
    let out = Command::new(cairn_bin())
        .args(["events", "--follow", "--from", "1"])
        .env("CAIRN_MASTERS", dev.addr())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a token"),
        "{out:?}"
    );
    let mut follow = Command::new(cairn_bin())
        .args(["events", "--follow", "--from", "1", "-o", "json"])
        .env("CAIRN_MASTERS", dev.addr())
        .env("CAIRN_TOKEN", &reader)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::from_reader(follow.stdout.take().unwrap());
    let first = lines
        .next_before(Instant::now() + WITHIN)
        .expect("the first event");
    follow.kill().unwrap();
    follow.wait().unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["offset"], 1, "{first}");
    dev.stop();
}

/// pymesos sends a framework's `principal` and `secret` as HTTP Basic credentials: with a
/// token as the secret, a framework runs on a cluster that requires tokens, and the audit
/// names the token.
#[test]
fn a_pymesos_framework_authenticates_with_a_token_as_its_secret() {
    let dir = cairn_tests::workdir();
    let (secret, entry) = new_token("pymesos", "operate");
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, entry).unwrap();
    let mut dev = Dev::start_with_agent(
        &dir.path().join("data"),
        Some(&config),
        &["--cpus", "2", "--mem", "1024"],
    );
    let (_, framework) = run_framework(
        &dev.addr(),
        "mesos_framework.py",
        &[
            ("CAIRN_MESOS_PRINCIPAL", "my-framework"),
            ("CAIRN_MESOS_SECRET", &secret),
        ],
    );
    dev.token = Some(secret);
    let audit = dev.data(
        "query($s: String!) { audit(subject: $s, first: 50) { nodes { type actor { principal api } } } }",
        json!({ "s": format!("framework:{framework}") }),
    );
    let nodes = audit["audit"]["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty(), "{audit}");
    for node in nodes {
        assert_eq!(
            node["actor"],
            json!({ "principal": "user:pymesos", "api": "mesos" }),
            "{audit}"
        );
    }
    dev.stop();
}
