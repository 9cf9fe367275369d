//! `cairn dev` with its agent: one-off process tasks from the CLI, end to end: they run with
//! their ports and environment, write logs the CLI reads back, end with the Mesos states and
//! reasons, are killed without leaving a process behind, survive an agent restart, and bad
//! ones are refused with a reason that names the field; the master runs without transparent
//! huge pages, its tasks with the kernel's setting.

use std::time::Duration;

use cairn_tests::agent::{alive, cairn, run_task, sandbox_file, states, task, wait_for_state};
use cairn_tests::dev::Dev;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn process_tasks_run_log_end_and_are_killed_without_orphans() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "2", "--mem", "512"]);
    let masters = vec![dev.addr()];
    let agent = dev.agent_addr();

    // A task that finishes: its port, its environment, both logs.
    let id = run_task(
        &masters,
        &[
            "--wait",
            "--ports",
            "1",
            "--env",
            "GREETING=hi",
            "--",
            "echo $GREETING $PORT0 $MESOS_TASK_ID; echo to-stderr >&2",
        ],
    );
    let logs = cairn(&masters, &["task", "logs", &id]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs), format!("hi 31000 {id}\n"));
    let errors = cairn(&masters, &["task", "logs", "--stderr", &id]);
    assert_eq!(stdout(&errors), "to-stderr\n");
    let done = task(&dev.addr(), &id);
    assert_eq!(
        states(&done),
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FINISHED"
        ]
    );
    assert_eq!(done["statuses"][3]["source"], "agent");
    assert_eq!(
        done["statuses"][3]["message"],
        "Command exited with status 0"
    );

    // A task that fails: exit 1 from `--wait`, and the Mesos reason.
    let out = cairn(
        &masters,
        &["task", "run", "--wait", "--name", "failing", "--", "exit 3"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = task(&dev.addr(), stdout(&out).trim());
    assert_eq!(failed["state"], "TASK_FAILED");
    assert_eq!(
        failed["statuses"][3]["reason"],
        "REASON_COMMAND_EXECUTOR_FAILED"
    );
    assert_eq!(
        failed["statuses"][3]["message"],
        "Command exited with status 3"
    );

    // Process tasks run in their own cgroup where the host allows it.
    if dev_isolation(&agent) != "none" {
        let id = run_task(&masters, &["--wait", "--", "cat /proc/self/cgroup"]);
        let cgroups = stdout(&cairn(&masters, &["task", "logs", &id]));
        assert!(cgroups.contains(&format!("cairn-{id}")), "{cgroups}");
    }

    // A task whose shell ignores SIGTERM and which started a child of its own: the kill ends
    // both, with SIGKILL after the grace period.
    let id = run_task(
        &masters,
        &[
            "--",
            "trap '' TERM; sleep 1000 & echo $! > child.pid; echo $$ > shell.pid; wait",
        ],
    );
    wait_for_state(&dev.addr(), &id, "TASK_RUNNING", WITHIN);
    let child: i64 = sandbox_file(&agent, &id, "child.pid", WITHIN)
        .trim()
        .parse()
        .unwrap();
    let shell: i64 = sandbox_file(&agent, &id, "shell.pid", WITHIN)
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child) && alive(shell));
    let out = cairn(&masters, &["task", "kill", "--grace", "1", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let killed = wait_for_state(&dev.addr(), &id, "TASK_KILLED", WITHIN);
    assert!(
        killed["statuses"][3]["message"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{killed}"
    );
    assert!(!alive(child), "the task's child {child} outlived it");
    assert!(!alive(shell), "the task's shell {shell} outlived it");

    // Killing it again is a conflict: it has ended.
    let again = cairn(&masters, &["task", "kill", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already ended"),
        "{}",
        stderr(&again)
    );

    // `task list` shows what runs; `--all` what ended too.
    let all = stdout(&cairn(&masters, &["task", "list", "--all", "-o", "json"]));
    assert_eq!(
        all.lines().count(),
        if dev_isolation(&agent) != "none" {
            4
        } else {
            3
        }
    );
    let running = stdout(&cairn(&masters, &["task", "list"]));
    assert!(running.trim().is_empty(), "{running}");
    dev.stop();
}

/// The `THP_enabled` line of a process's status.
fn huge_pages(status: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("a kernel that reports THP_enabled")
        .to_owned()
}

#[test]
fn the_master_folds_without_huge_pages_and_its_tasks_keep_the_kernels_setting() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "1", "--mem", "256"]);
    let masters = vec![dev.addr()];
    let status = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        huge_pages(&status(&dev.pid().to_string())),
        "THP_enabled:\t0"
    );
    // The task's setting is this test's own, inherited from the same kernel and shell.
    let id = run_task(
        &masters,
        &["--wait", "--", "grep THP_enabled /proc/self/status"],
    );
    let logs = cairn(&masters, &["task", "logs", &id]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs).trim_end(), huge_pages(&status("self")));
}

fn dev_isolation(agent: &str) -> String {
    let (_, body) =
        cairn_tests::http_to(agent, "GET", "/state", "", Duration::from_secs(10)).unwrap();
    let state: Value = serde_json::from_str(&body).unwrap();
    state["isolation"].as_str().unwrap().to_owned()
}

#[test]
fn bad_tasks_are_refused_with_a_reason_and_change_nothing() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "1", "--mem", "256"]);
    let masters = vec![dev.addr()];
    let head = dev.head();

    for (args, field) in [
        (vec!["--cpus", "64", "--", "true"], "64 CPUs"),
        (vec!["--mem", "0", "--", "true"], "mem:"),
        (vec!["--ports", "5000", "--", "true"], "ports:"),
        (vec![], "command:"),
        (
            vec!["--docker", "img", "--network", "WEIRD"],
            "docker.network",
        ),
        (
            vec!["--docker", "img", "--network", "HOST", "--publish", "80"],
            "docker.portMappings",
        ),
        (vec!["--env", "NOEQUALS", "--", "true"], "--env"),
    ] {
        let mut all = vec!["task", "run"];
        all.extend_from_slice(&args);
        let out = cairn(&masters, &all);
        assert_ne!(out.status.code(), Some(0), "{args:?} was accepted");
        assert!(stderr(&out).contains(field), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(dev.head(), head, "a refused task changed the log");

    // Refused by the agent: each ends with a reason, and nothing runs.
    let out = cairn(
        &masters,
        &["task", "run", "--wait", "--", "/nonexistent/program", "arg"],
    );
    assert_eq!(out.status.code(), Some(1));
    let missing = task(&dev.addr(), stdout(&out).trim());
    assert_eq!(missing["state"], "TASK_FAILED");
    assert!(missing["statuses"][3]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/program"));
    let out = cairn(
        &masters,
        &[
            "task",
            "run",
            "--wait",
            "--user",
            "no-such-user",
            "--",
            "true",
        ],
    );
    let nobody = task(&dev.addr(), stdout(&out).trim());
    assert_eq!(nobody["state"], "TASK_ERROR");
    assert_eq!(nobody["statuses"][2]["reason"], "REASON_TASK_INVALID");
    assert!(nobody["statuses"][2]["message"]
        .as_str()
        .unwrap()
        .contains("command.user"));

    // Unknown tasks; paths outside the sandboxes.
    let out = cairn(&masters, &["task", "kill", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown"));
    let (status, body) = cairn_tests::http_to(
        &dev.agent_addr(),
        "GET",
        "/files/read?path=../../etc/passwd",
        "",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("inside the sandboxes"));
    // A task controls its sandbox: a link out of it, or a FIFO, is not served.
    let id = run_task(
        &masters,
        &["--wait", "--", "ln -s / escape; mkfifo pipe; echo done"],
    );
    for (path, code, why) in [
        (
            format!("{id}/escape/etc/passwd"),
            400,
            "inside the sandboxes",
        ),
        (format!("{id}/pipe"), 404, "not a regular file"),
    ] {
        for route in ["read", "download"] {
            let (status, body) = cairn_tests::http_to(
                &dev.agent_addr(),
                "GET",
                &format!("/files/{route}?path={path}"),
                "",
                Duration::from_secs(10),
            )
            .unwrap();
            assert_eq!(status, code, "{route} {path}: {body}");
            assert!(body.contains(why), "{route} {path}: {body}");
        }
    }
    // A whole file, downloaded: what a read of it gives.
    let read = |route: &str| {
        let (status, body) = cairn_tests::http_to(
            &dev.agent_addr(),
            "GET",
            &format!("/files/{route}?path={id}/stdout"),
            "",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(status, 200, "{route}: {body}");
        body
    };
    let part: serde_json::Value = serde_json::from_str(&read("read")).unwrap();
    let whole = read("download");
    assert!(whole.contains("done\n"), "{whole:?}");
    assert_eq!(part["data"].as_str(), Some(whole.as_str()));
    let (status, body) = cairn_tests::http_to(
        &dev.agent_addr(),
        "GET",
        "/livez",
        "",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, metrics) = cairn_tests::http_to(
        &dev.agent_addr(),
        "GET",
        "/metrics",
        "",
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        metrics.lines().any(|l| l == "cairn_agent_launches_total 3"),
        "{metrics}"
    );
    dev.stop();
}

#[test]
fn tasks_outlive_an_agent_restart_and_their_ends_are_reported_once() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(dir.path(), None, &["--cpus", "2", "--mem", "512"]);
    let masters = vec![dev.addr()];
    let long = run_task(&masters, &["--", "echo $$ > pid; exec sleep 1000"]);
    let short = run_task(&masters, &["--", "sleep 2; echo done"]);
    wait_for_state(&dev.addr(), &long, "TASK_RUNNING", WITHIN);
    wait_for_state(&dev.addr(), &short, "TASK_RUNNING", WITHIN);
    let pid: i64 = sandbox_file(&dev.agent_addr(), &long, "pid", WITHIN)
        .trim()
        .parse()
        .unwrap();

    // The master and its agent die; the short task ends while nobody watches.
    let ports = (dev.port, dev.agent_port.unwrap());
    dev.kill();
    let exit = dir
        .path()
        .join(format!("sandboxes/{short}/.cairn/exit.json"));
    cairn_tests::cluster::wait_until("the short task to end", WITHIN, || exit.exists());
    assert!(alive(pid), "the long task died with the agent");

    let dev = Dev::start_with_agent_on(dir.path(), None, ports, &["--cpus", "2", "--mem", "512"]);
    let masters = vec![dev.addr()];
    let ended = wait_for_state(&dev.addr(), &short, "TASK_FINISHED", WITHIN);
    assert_eq!(
        states(&ended),
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FINISHED"
        ]
    );
    assert_eq!(task(&dev.addr(), &long)["state"], "TASK_RUNNING");
    assert!(alive(pid));
    let out = cairn(&masters, &["task", "kill", &long]);
    assert!(out.status.success());
    wait_for_state(&dev.addr(), &long, "TASK_KILLED", WITHIN);
    assert!(!alive(pid));
    dev.stop();
}
