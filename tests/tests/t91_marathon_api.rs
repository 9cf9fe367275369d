//! Marathon's REST API driven by the real marathon-python (0.13) and marathon-deploy (3.0.2)
//! against `cairn dev` with its agent: an app created, listed with its tasks, scaled, a task
//! killed with scale, updated from the app as fetched (read-only fields and all), restarted,
//! its versions read; a Docker app (the nginx example) through the client's models; the queue, groups,
//! info and leader read; conflicts and invalid apps refused Marathon's way, changing nothing;
//! marathon-deploy's `--put`, `--scale` and `--instances`; every write audited as `marathon`.
//! The clients use the master's `marathon-port`; raw checks its own port.

use std::time::Duration;

use cairn_tests::cluster::wait_until;
use cairn_tests::compat::{call, marathon_tool};
use cairn_tests::dev::Dev;
use cairn_tests::free_port;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(90);

fn marathon(server: &str, expr: &str, args: &[Value]) -> Value {
    call("marathon", server, expr, args).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn running(server: &str, app: &str) -> usize {
    marathon(server, &format!("c.get_app({app:?}).tasks_running"), &[])
        .as_u64()
        .unwrap() as usize
}

fn no_deployments(server: &str) -> bool {
    marathon(server, "c.list_deployments()", &[]) == json!([])
}

fn example(name: &str) -> String {
    format!("{}/fixtures/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Removes the Docker containers whose names start with `prefix`.
fn remove_containers(prefix: &str) {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^{prefix}")])
        .output()
        .expect("docker runs");
    let ids = String::from_utf8_lossy(&out.stdout);
    for id in ids.split_whitespace() {
        let removed = std::process::Command::new("docker")
            .args(["rm", "-f", id])
            .status()
            .expect("docker runs");
        assert!(removed.success(), "docker rm -f {id}");
    }
}

/// Live log subscriptions on the master (the event stream holds one).
fn subscribers(dev: &Dev) -> u64 {
    let (status, body) = dev.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("cairn_log_subscribers "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the subscribers gauge")
}

#[test]
fn marathon_python_and_marathon_deploy_manage_apps_on_cairn() {
    let dir = cairn_tests::workdir();
    // The clients talk to the extra port Marathon's tools expect (`marathon-port`); the raw
    // checks below use the master's own.
    let marathon_port = free_port();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, format!("marathon-port = {marathon_port}\n")).unwrap();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        Some(&config),
        &["--cpus", "4", "--mem", "2048", "--ports", "32400-32499"],
    );
    // Containers outlive their agent: a run of this test that failed leaves its own behind.
    remove_containers("cairn-compat-nginx.");
    let at = format!("127.0.0.1:{marathon_port}");
    let url = format!("http://{at}");
    let server = url.as_str();

    assert_eq!(marathon(server, "c.ping()", &[]), json!("\"pong\""));
    let info = marathon(server, "c.get_info()", &[]);
    assert_eq!(info["name"], "marathon");
    // Marathon's JSON metrics to its client; Prometheus keeps its text on the same path.
    let metrics = marathon(server, "c.get_metrics()", &[]);
    assert!(
        metrics["gauges"]["cairn_log_head_offset"]["value"].as_f64() > Some(0.0),
        "{metrics}"
    );
    assert!(
        metrics["counters"]["cairn_log_appended_records_total"]["count"].as_f64() > Some(0.0),
        "{metrics}"
    );
    assert!(metrics["timers"].is_object());
    // The leader, as reached: here, this master on its Marathon port.
    assert_eq!(
        marathon(server, "c.get_leader()", &[]),
        json!({ "leader": at })
    );

    // Created: 201 with the app, which the client reads into its model.
    let created = marathon(
        server,
        "c.create_app('sleeper', MarathonApp(cmd='sleep 1000', cpus=0.1, mem=32, instances=2))",
        &[],
    );
    assert_eq!(created["id"], "/sleeper");
    assert_eq!(created["instances"], 2);
    wait_until("two instances run", WITHIN, || {
        running(server, "sleeper") == 2
    });
    let apps = marathon(server, "c.list_apps(embed_tasks=True)", &[]);
    assert_eq!(apps[0]["tasks"].as_array().unwrap().len(), 2, "{apps}");
    let tasks = marathon(server, "c.list_tasks('sleeper')", &[]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for task in tasks {
        assert_eq!(task["state"], "TASK_RUNNING");
        assert_eq!(task["appId"], "/sleeper");
        assert_eq!(task["ports"].as_array().unwrap().len(), 1, "{task}");
    }
    let endpoints = marathon(server, "c.list_endpoints()", &[]);
    assert_eq!(endpoints.as_array().unwrap().len(), 2, "{endpoints}");

    // Scaled up, then one task killed with scale: two again, and a deployment for each.
    marathon(server, "c.scale_app('sleeper', instances=3)", &[]);
    wait_until("three run", WITHIN, || running(server, "sleeper") == 3);
    let victim = marathon(server, "c.list_tasks('sleeper')[0].id", &[]);
    let killed = marathon(
        server,
        "c.kill_task('sleeper', A[0], scale=True)",
        std::slice::from_ref(&victim),
    );
    assert!(killed["deploymentId"].is_string(), "{killed}");
    wait_until("two run again, the victim gone", WITHIN, || {
        let ids = marathon(server, "[t.id for t in c.list_tasks('sleeper')]", &[]);
        running(server, "sleeper") == 2 && !ids.as_array().unwrap().contains(&victim)
    });
    assert_eq!(
        marathon(server, "c.get_app('sleeper').instances", &[]),
        json!(2)
    );

    // Updated from the app as fetched, read-only fields and all: a new version, rolled out.
    wait_until("deployments done", WITHIN, || no_deployments(server));
    let versions_before = marathon(server, "c.list_versions('sleeper')", &[]);
    let update = marathon(
        server,
        "(lambda a: (setattr(a, 'cmd', 'sleep 2000'), c.update_app('sleeper', a))[1])(c.get_app('sleeper'))",
        &[],
    );
    assert!(update["deploymentId"].is_string(), "{update}");
    wait_until("the new version runs", WITHIN, || {
        no_deployments(server)
            && marathon(server, "[t.version for t in c.list_tasks('sleeper')]", &[])
                .as_array()
                .unwrap()
                .iter()
                .all(|v| *v == marathon(server, "c.get_app('sleeper').version", &[]))
    });
    assert_eq!(
        marathon(server, "c.get_app('sleeper').cmd", &[]),
        "sleep 2000"
    );
    let versions = marathon(server, "c.list_versions('sleeper')", &[]);
    assert_eq!(
        versions.as_array().unwrap().len(),
        versions_before.as_array().unwrap().len() + 1
    );
    let first = versions.as_array().unwrap().last().unwrap().clone();
    let old = marathon(server, "c.get_version('sleeper', A[0])", &[first]);
    assert_eq!(old["cmd"], "sleep 1000");

    // The event stream, as marathon-python reads it: a deployment's success arrives.
    let attached = subscribers(&dev);
    let stream = {
        let server = server.to_owned();
        std::thread::spawn(move || {
            call(
                "marathon",
                &server,
                "next(iter(c.event_stream(event_types=['deployment_success'])))",
                &[],
            )
        })
    };
    wait_until("the event stream is attached", WITHIN, || {
        subscribers(&dev) > attached
    });
    let restart = marathon(server, "c.restart_app('sleeper')", &[]);
    assert!(restart["deploymentId"].is_string(), "{restart}");
    wait_until("the restart is done", WITHIN, || no_deployments(server));
    let event = stream.join().unwrap().expect("an event");
    assert_eq!(event["eventType"], "deployment_success", "{event}");
    assert_eq!(event["id"], restart["deploymentId"], "{event}");

    // A Docker app through the client's models (container, port mappings): the nginx
    // example in the real Docker engine, without its `rexray` volume parameters (that
    // driver's plugin is t52's; the example as it is runs there).
    let mut nginx: Value =
        serde_json::from_str(&std::fs::read_to_string(example("nginx-app.json")).unwrap()).unwrap();
    nginx["container"]["docker"]
        .as_object_mut()
        .unwrap()
        .remove("parameters");
    marathon(
        server,
        "c.create_app('compat-nginx', MarathonApp.from_json(A[0]))",
        &[nginx],
    );
    wait_until("nginx runs", WITHIN, || {
        running(server, "compat-nginx") == 1
    });
    let task = marathon(server, "c.list_tasks('compat-nginx')[0]", &[]);
    let port = task["ports"][0].as_u64().unwrap();
    assert!((32400..=32499).contains(&port), "{task}");
    let group = marathon(server, "c.get_group('/')", &[]);
    assert_eq!(group["apps"].as_array().unwrap().len(), 2, "{group}");

    // Refused Marathon's way, changing nothing.
    let conflict = call(
        "marathon",
        server,
        "c.create_app('sleeper', MarathonApp(cmd='true', cpus=0.1, mem=32))",
        &[],
    )
    .unwrap_err();
    assert!(conflict.contains("ConflictError"), "{conflict}");
    let (status, body) = dev.http(
        "POST",
        "/v2/apps",
        &json!({"id": "/bad", "cmd": "true", "cpus": -1, "mem": 32}).to_string(),
    );
    assert_eq!(status, 422, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "Object is not valid");
    assert_eq!(body["details"][0]["path"], "/cpus", "{body}");
    let (status, _) = dev.http("GET", "/v2/apps//bad", "");
    assert_eq!(status, 404);
    assert_eq!(marathon(server, "len(c.list_apps())", &[]), json!(2));

    // marathon-deploy: a new app from a file, scaled, its instances read.
    let file = dir.path().join("echo.json");
    std::fs::write(
        &file,
        json!({"id": "/web/echo", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1})
            .to_string(),
    )
    .unwrap();
    let (code, out) = marathon_tool(
        "marathon-deploy",
        server,
        &["--put", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    wait_until("echo runs", WITHIN, || running(server, "/web/echo") == 1);
    let (code, out) = marathon_tool(
        "marathon-deploy",
        server,
        &["--appid", "/web/echo", "--scale", "2"],
    );
    assert_eq!(code, 0, "{out}");
    wait_until("two echoes run", WITHIN, || {
        running(server, "/web/echo") == 2
    });
    let (code, out) = marathon_tool(
        "marathon-deploy",
        server,
        &["--appid", "/web/echo", "--instances"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.trim() == "2"), "{out}");

    // Deleted; their tasks go.
    for app in ["sleeper", "compat-nginx", "/web/echo"] {
        marathon(server, &format!("c.delete_app({app:?})"), &[]);
    }
    wait_until("no app is left and every task has ended", WITHIN, || {
        let live = dev.data(
            "{ tasks(first: 500) { edges { node { terminal } } } }",
            json!({}),
        );
        marathon(server, "len(c.list_apps())", &[]) == json!(0)
            && live["tasks"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["node"]["terminal"] == true)
    });

    // Who did it, through which API.
    let audit = dev.data(
        "{ audit(subject: \"app:/sleeper\", first: 100) { edges { node { type actor { api } } } } }",
        json!({}),
    );
    let by_marathon: Vec<&Value> = audit["audit"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["actor"]["api"] == "marathon")
        .map(|e| &e["node"]["type"])
        .collect();
    for kind in ["AppCreated", "AppScaled", "AppUpdated", "AppDeleted"] {
        assert!(by_marathon.contains(&&json!(kind)), "{kind}: {audit:#}");
    }
    dev.stop();
}

/// The apps under a group (`/shop`), with their instance counts.
fn shop(dev: &Dev) -> Vec<(String, u64)> {
    let apps = dev.data("{ apps(first: 100) { nodes { id instances } } }", json!({}));
    apps["apps"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["id"].as_str().unwrap().starts_with("/shop/"))
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["instances"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Groups written through marathon-python: created with a subgroup, refused when created
/// twice or when an app leaves the group, scaled by a factor, replaced (an app updated, one
/// added, the subgroup kept when the update leaves `groups` out, then dropped when it gives
/// them), and deleted, each change one deployment.
#[test]
fn marathon_python_writes_groups() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "4", "--mem", "2048"],
    );
    let url = format!("http://{}", dev.addr());
    let server = url.as_str();
    let app = |id: &str, n: u32| json!({"id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": n});
    let settled = || {
        no_deployments(server)
            && dev.data(
                "{ apps(first: 100) { nodes { tasksRunning instances } } }",
                json!({}),
            )["apps"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["tasksRunning"] == a["instances"])
    };

    let created = marathon(
        server,
        "c.create_group(MarathonGroup.from_json(A[0]))",
        &[json!({"id": "/shop", "apps": [app("web", 1)],
                 "groups": [{"id": "db", "apps": [app("pg", 1)]}]})],
    );
    assert!(created["deploymentId"].is_string(), "{created}");
    wait_until("the group's apps run", WITHIN, settled);
    assert_eq!(
        shop(&dev),
        [("/shop/db/pg".into(), 1), ("/shop/web".into(), 1)]
    );
    let group = marathon(server, "c.get_group('/shop')", &[]);
    assert_eq!(group["apps"][0]["id"], "/shop/web", "{group}");
    assert_eq!(group["groups"][0]["id"], "/shop/db", "{group}");

    // Refused, changing nothing: the group again, and an app outside the group.
    let again = call(
        "marathon",
        server,
        "c.create_group(MarathonGroup.from_json(A[0]))",
        &[json!({"id": "/shop", "apps": [app("other", 1)]})],
    );
    assert!(again.is_err_and(|e| e.contains("already created")));
    let head = dev.head();
    let (status, body) = dev.http(
        "PUT",
        "/v2/groups/shop",
        &json!({"apps": [app("/elsewhere/x", 1)]}).to_string(),
    );
    assert_eq!(status, 422, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["details"][0]["path"], "/apps/0/id", "{body}");
    assert_eq!(dev.head(), head);

    // Scaled by a factor: every app under it.
    marathon(server, "c.scale_group('/shop', 2)", &[]);
    wait_until("the scale", WITHIN, settled);
    assert_eq!(
        shop(&dev),
        [("/shop/db/pg".into(), 2), ("/shop/web".into(), 2)]
    );

    // Replaced: web to 1, cache added; marathon-python leaves out the empty `groups`, so
    // the subgroup stays.
    let update = json!({"id": "/shop", "apps": [app("web", 1), app("cache", 1)]});
    let replaced = marathon(
        server,
        "c.update_group('/shop', MarathonGroup.from_json(A[0]))",
        &[update],
    );
    assert!(replaced["deploymentId"].is_string(), "{replaced}");
    wait_until("the replacement", WITHIN, settled);
    assert_eq!(
        shop(&dev),
        [
            ("/shop/cache".into(), 1),
            ("/shop/db/pg".into(), 2),
            ("/shop/web".into(), 1)
        ]
    );
    // Given `groups`, the group's subgroups are those: db goes, in the same deployment as
    // the rest of the change.
    let (status, body) = dev.http(
        "PUT",
        "/v2/groups/shop",
        &json!({"groups": [{"id": "jobs", "apps": [app("worker", 1)]}]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let deployment: Value = serde_json::from_str(&body).unwrap();
    wait_until("the subgroups replaced", WITHIN, settled);
    assert_eq!(
        shop(&dev),
        [
            ("/shop/cache".into(), 1),
            ("/shop/jobs/worker".into(), 1),
            ("/shop/web".into(), 1)
        ]
    );
    let started = dev.data(
        "{ events(filter: {types: [\"DeploymentStarted\"]}, last: 1) { nodes { payload } } }",
        json!({}),
    );
    let started = &started["events"]["nodes"][0]["payload"];
    assert_eq!(
        started["deployment_id"], deployment["deploymentId"],
        "{started}"
    );
    assert_eq!(
        started["app_ids"],
        json!(["/shop/db/pg", "/shop/jobs/worker"]),
        "{started}"
    );

    // Deleted: every app under it, and the group is gone.
    marathon(server, "c.delete_group('/shop')", &[]);
    wait_until("the group's apps gone", WITHIN, || {
        shop(&dev).is_empty() && no_deployments(server)
    });
    let gone = call("marathon", server, "c.get_group('/shop')", &[]);
    assert!(gone.is_err_and(|e| e.contains("does not exist")));
    dev.stop();
}

/// Launches of app `id` so far, from the log.
fn launches(dev: &Dev, id: &str) -> usize {
    let data = dev.data(
        "query($app: String) { events(filter: {types: [\"TaskLaunched\"], app: $app}, first: 100) { nodes { offset } } }",
        json!({ "app": id }),
    );
    data["events"]["nodes"].as_array().unwrap().len()
}

/// `DELETE /v2/queue/{id}/delay` through marathon-python's `reset_delay`: an app that failed
/// waits out an hour's backoff until the delay is reset, then launches at once (and again
/// after GraphQL's `resetAppDelay`); an app without a delay is Marathon's 404, and nothing is
/// recorded.
#[test]
fn marathon_python_resets_a_launch_delay() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(&dir.path().join("data"), None, &["--cpus", "2"]);
    let url = format!("http://{}", dev.addr());
    let server = url.as_str();
    let failing = json!({"id": "/flaky", "cmd": "exit 1", "cpus": 0.1, "mem": 16, "instances": 1,
                         "backoffSeconds": 3600, "maxLaunchDelaySeconds": 7200});
    marathon(
        server,
        "c.create_app('flaky', MarathonApp.from_json(A[0]))",
        &[failing],
    );
    wait_until("the failure's backoff", WITHIN, || {
        let queue = marathon(server, "c.list_queue()", &[]);
        queue.as_array().is_some_and(|q| {
            q.iter()
                .any(|item| item["app"]["id"] == "/flaky" && item["delay"]["overdue"] == false)
        })
    });
    let before = launches(&dev, "/flaky");
    assert_eq!(before, 1);

    marathon(server, "c.reset_delay('flaky')", &[]);
    wait_until("a launch at once", WITHIN, || {
        launches(&dev, "/flaky") > before
    });
    let steady =
        json!({"id": "/steady", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 1});
    marathon(
        server,
        "c.create_app('steady', MarathonApp.from_json(A[0]))",
        &[steady],
    );
    let refused = call("marathon", server, "c.reset_delay('steady')", &[]);
    assert!(refused.is_err_and(|e| e.contains("not found in tasks queue")));
    // Failed again, so backing off again: reset through GraphQL this time.
    // (The reset cleared the backoff; the launch after it decided on none.)
    wait_until("the second failure's backoff", WITHIN, || {
        let app = dev.data(r#"{ app(id: "/flaky") { backoff { until } } }"#, json!({}));
        launches(&dev, "/flaky") == 2 && !app["app"]["backoff"].is_null()
    });
    dev.data(r#"mutation { resetAppDelay(id: "/flaky") }"#, json!({}));
    wait_until("another launch at once", WITHIN, || {
        launches(&dev, "/flaky") > 2
    });
    // The resets made are recorded, by the API each came through; the refused one is not.
    let reset = dev.data(
        "{ events(filter: {types: [\"AppBackoffReset\"]}, first: 10) { nodes { actor { api } payload } } }",
        json!({}),
    );
    assert_eq!(
        reset["events"]["nodes"],
        json!([
            { "actor": { "api": "marathon" }, "payload": { "app_id": "/flaky" } },
            { "actor": { "api": "graphql" }, "payload": { "app_id": "/flaky" } }
        ])
    );
    dev.stop();
}
