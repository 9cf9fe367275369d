//! Docker tasks in the real Docker Engine, with images the test setup builds locally
//! (`tests/images/build.sh`): output into the sandbox, exit statuses, Marathon's parameters,
//! limits and networks, the example app `shared/examples/nginx-app.json` deployed as it is
//! and serving HTTP on its host port (its volume driver served by a local plugin), kills,
//! containers that outlive an agent restart, and clear reasons for what cannot run.

use std::time::Duration;

use cairn_tests::agent::{cairn, run_task, states, task, wait_for_state};
use cairn_tests::cluster::wait_until;
use cairn_tests::dev::Dev;
use cairn_tests::docker::{containers_of, docker, volume_plugin};
use cairn_tests::http_to;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

fn logs(masters: &[String], id: &str) -> String {
    String::from_utf8_lossy(&cairn(masters, &["task", "logs", id]).stdout).into_owned()
}

#[test]
fn docker_tasks_run_with_their_parameters_limits_and_networks() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--ports", "32100-32199"]);
    let masters = vec![dev.addr()];
    let image = ["--docker", "cairn-test/busybox"];

    // Output, environment and the sandbox mounted inside.
    let mut args = image.to_vec();
    args.extend([
        "--wait",
        "--",
        "echo hello $MESOS_TASK_ID; ls $MESOS_SANDBOX",
    ]);
    let id = run_task(&masters, &args);
    assert_eq!(logs(&masters, &id), format!("hello {id}\nstderr\nstdout\n"));
    assert_eq!(
        states(&task(&dev.addr(), &id)),
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FINISHED"
        ]
    );
    assert!(
        containers_of(&id).is_empty(),
        "the ended container is removed"
    );

    // A failing command.
    let mut args = image.to_vec();
    args.extend(["--wait", "--", "exit 3"]);
    let out = cairn(&masters, &[&["task", "run"], &args[..]].concat());
    let failed = task(&dev.addr(), String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(failed["state"], "TASK_FAILED");
    assert_eq!(
        failed["statuses"][3]["message"],
        "Command exited with status 3"
    );

    // Parameters as Marathon passes them.
    let mut args = image.to_vec();
    args.extend([
        "--wait",
        "--param",
        "env=COLOR=blue",
        "--param",
        "workdir=/tmp",
        "--param",
        "user=65534",
        "--",
        "echo $COLOR; pwd; id -u",
    ]);
    let id = run_task(&masters, &args);
    assert_eq!(logs(&masters, &id), "blue\n/tmp\n65534\n");

    // Limits, labels and the network, seen by the engine while the container runs.
    let mut args = image.to_vec();
    args.extend([
        "--cpus",
        "0.2",
        "--mem",
        "64",
        "--network",
        "NONE",
        "--param",
        "label=team=storage",
        "--",
        "sleep 1000",
    ]);
    let id = run_task(&masters, &args);
    wait_for_state(&dev.addr(), &id, "TASK_RUNNING", WITHIN);
    let container = containers_of(&id);
    let inspect = docker(&[
        "inspect", "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.NetworkMode}} {{index .Config.Labels \"team\"}}",
        &container,
    ]);
    assert_eq!(inspect, format!("200000000 {} none storage", 64 << 20));
    let out = cairn(&masters, &["task", "kill", "--grace", "1", &id]);
    assert!(out.status.success());
    wait_for_state(&dev.addr(), &id, "TASK_KILLED", WITHIN);
    wait_until("the killed container to be removed", WITHIN, || {
        containers_of(&id).is_empty()
    });

    // What cannot run says why, and leaves no container behind.
    let out = cairn(
        &masters,
        &[
            "task",
            "run",
            "--wait",
            "--docker",
            "no-such/image:1",
            "--",
            "true",
        ],
    );
    let missing = task(&dev.addr(), String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(missing["state"], "TASK_FAILED");
    let last = &missing["statuses"][2];
    assert_eq!(last["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("is not on this agent and cannot be pulled"),
        "{last}"
    );
    let mut args = image.to_vec();
    args.extend(["--wait", "--param", "memory-swappiness=0", "--", "true"]);
    let out = cairn(&masters, &[&["task", "run"], &args[..]].concat());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let bad = task(&dev.addr(), &id);
    assert_eq!(bad["state"], "TASK_ERROR");
    assert!(bad["statuses"][2]["message"]
        .as_str()
        .unwrap()
        .contains("unknown parameter \"memory-swappiness\""));
    assert!(containers_of(&id).is_empty());
    dev.stop();
}

#[test]
fn the_nginx_example_serves_http_on_its_host_port() {
    // Its volume driver, `rexray`, served by a local plugin over Docker's plugin socket.
    let volumes = cairn_tests::workdir();
    let _plugin = volume_plugin("rexray", volumes.path());

    // The example app, deployed as it is.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/examples/nginx-app.json"
    );
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--ports", "32200-32299"]);
    let masters = vec![dev.addr()];
    let out = cairn(
        &masters,
        &["app", "apply", "-f", example, "--wait", "--timeout", "60"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dev.data(
        "{ app(id: \"/nginx\") { tasks { id state ports } } }",
        Value::Null,
    );
    let task = &data["app"]["tasks"][0];
    assert_eq!(task["state"], "TASK_RUNNING", "{data}");
    let id = task["id"].as_str().unwrap().to_owned();
    let port = task["ports"][0].as_u64().unwrap();
    assert!((32200..=32299).contains(&port));
    let mut body = String::new();
    wait_until("nginx to answer on its host port", WITHIN, || {
        body = match http_to(
            &format!("127.0.0.1:{port}"),
            "GET",
            "/",
            "",
            Duration::from_secs(5),
        ) {
            Ok((200, body)) => body,
            _ => String::new(),
        };
        !body.is_empty()
    });
    assert!(body.contains("served by cairn"), "{body}");
    assert!(
        volumes.path().join("nginx-data/index.html").exists(),
        "the volume holds the site"
    );
    let out = cairn(
        &masters,
        &["app", "delete", "nginx", "--wait", "--timeout", "60"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_state(&dev.addr(), &id, "TASK_KILLED", WITHIN);
    wait_until("the container to be removed", WITHIN, || {
        containers_of(&id).is_empty()
    });
    dev.stop();
    let _ = docker(&["volume", "rm", "nginx-data"]);
}

#[test]
fn containers_outlive_an_agent_restart_and_strays_are_removed() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--ports", "32300-32399"]);
    let masters = vec![dev.addr()];
    let id = run_task(
        &masters,
        &[
            "--docker",
            "cairn-test/busybox",
            "--",
            "echo up; exec sleep 1000",
        ],
    );
    wait_for_state(&dev.addr(), &id, "TASK_RUNNING", WITHIN);
    let container = containers_of(&id);
    let ports = (dev.port, dev.agent_port.unwrap());
    dev.kill();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &container]),
        "true"
    );

    // A container labelled as this agent's, for a task it does not know, is a stray.
    let agent_label = std::fs::canonicalize(dir.path())
        .unwrap()
        .display()
        .to_string();
    let stray = docker(&[
        "run",
        "-d",
        "--label",
        &format!("cairn.agent={agent_label}"),
        "--label",
        "cairn.task_id=stray",
        "cairn-test/busybox",
        "sleep",
        "1000",
    ]);
    assert!(!stray.is_empty());

    let dev = Dev::start_with_agent_on(dir.path(), None, ports, &["--ports", "32300-32399"]);
    let masters = vec![dev.addr()];
    wait_until("the stray container to be removed", WITHIN, || {
        containers_of("stray").is_empty()
    });
    assert_eq!(task(&dev.addr(), &id)["state"], "TASK_RUNNING");
    assert_eq!(
        containers_of(&id),
        container,
        "the same container still runs the task"
    );
    let out = cairn(&masters, &["task", "kill", "--grace", "1", &id]);
    assert!(out.status.success());
    wait_for_state(&dev.addr(), &id, "TASK_KILLED", WITHIN);
    assert!(logs(&masters, &id).starts_with("up\n"));
    dev.stop();
}
