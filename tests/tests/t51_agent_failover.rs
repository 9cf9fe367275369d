//! A standalone `cairn agent` against real masters: status updates are never lost or logged
//! twice when the leader and the agent are killed (SIGKILL) at random moments; an agent that
//! stays away is lost with its tasks, and when it returns the master reconciles: tasks the log
//! says ended are killed, tasks the agent no longer has are gone.
//! Reproduce a failure with the printed `CAIRN_AGENT_SEED`.

use std::time::Duration;

use cairn_tests::agent::{alive, run_task, sandbox_file, states, task, wait_for_state, Agent};
use cairn_tests::cluster::{wait_until, Masters};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn state(addr: &str) -> Value {
    let (status, body) =
        cairn_tests::http_to(addr, "GET", "/v1/state", "", Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn status_updates_survive_leader_and_agent_kills() {
    let seed: u64 = match std::env::var("CAIRN_AGENT_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("reproduce with CAIRN_AGENT_SEED={seed:#x}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Agents are never lost here: every update must arrive from the agent itself.
    let mut m = Masters::on_loopback(3).with_config("[agents]\ntimeout-secs = 3600\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    m.wait_for_leader();
    let masters: Vec<String> = (0..3).map(|i| m.addr(i)).collect();
    let dir = cairn_tests::workdir();
    let mut agent = Agent::start(&masters, dir.path(), &["--cpus", "8", "--mem", "4096"]);

    let mut ids = Vec::new();
    for round in 0..3 {
        for i in 0..6 {
            let pause = format!("sleep 0.{}{}; echo ok", rng.random_range(2..9), i);
            ids.push(run_task(
                &masters,
                &["--name", &format!("r{round}"), "--", &pause],
            ));
        }
        // The leader dies at a random moment while tasks start and end, and comes back.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        let old = m.wait_for_leader();
        m.kill(old);
        m.wait_for_leader();
        m.start(old, 3);
        // Then the agent, at another random moment.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        agent.kill();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        agent.restart(&masters, &["--cpus", "8", "--mem", "4096"]);
    }

    for id in &ids {
        let addr = m.addr(m.wait_for_leader());
        let done = wait_for_state(&addr, id, "TASK_FINISHED", MINUTE);
        assert_eq!(
            states(&done),
            [
                "TASK_STAGING",
                "TASK_STARTING",
                "TASK_RUNNING",
                "TASK_FINISHED"
            ],
            "task {id}: every update once, in order"
        );
    }
    let addr = m.addr(m.wait_for_leader());
    let state = state(&addr);
    assert_eq!(state["anomalies"]["count"], 0, "{}", state["anomalies"]);
    assert_eq!(
        agent.state()["pending_updates"],
        0,
        "the agent still holds updates"
    );
}

/// One master that gives up on a silent agent after 2 s; its address; a dir for an agent.
fn impatient_master() -> (Masters, Vec<String>, cairn_tests::WorkDir) {
    let mut m = Masters::on_loopback(1)
        .with_config("[agents]\ntimeout-secs = 2\nreconnect-grace-secs = 1\n");
    m.start(0, 1);
    m.wait_for_leader();
    let masters = vec![m.addr(0)];
    (m, masters, cairn_tests::workdir())
}

#[test]
fn a_silent_agent_is_lost_and_reconciled_when_it_returns() {
    let (_m, masters, dir) = impatient_master();
    let mut agent = Agent::start(&masters, dir.path(), &["--cpus", "2", "--mem", "512"]);

    // The agent vanishes while its task runs: the agent and the task are lost.
    let lost = run_task(&masters, &["--", "echo $$ > pid; exec sleep 1000"]);
    wait_for_state(&masters[0], &lost, "TASK_RUNNING", MINUTE);
    let pid: i64 = sandbox_file(&agent.addr(), &lost, "pid", MINUTE)
        .trim()
        .parse()
        .unwrap();
    agent.kill();
    let gone = wait_for_state(&masters[0], &lost, "TASK_LOST", MINUTE);
    assert_eq!(gone["statuses"][3]["reason"], "REASON_AGENT_REMOVED");
    assert_eq!(gone["statuses"][3]["source"], "master");
    let agent_id = gone["agentId"].as_str().unwrap().to_owned();
    let agents = state(&masters[0])["cluster"]["agents"].clone();
    assert_eq!(agents[&agent_id]["status"], "Lost");
    assert!(alive(pid), "the task outlives its agent");

    // It comes back still running the task the log says was lost: the task is killed.
    agent.restart(&masters, &["--cpus", "2", "--mem", "512"]);
    wait_until("the lost task to be killed", MINUTE, || !alive(pid));
    assert_eq!(
        state(&masters[0])["cluster"]["agents"][&agent_id]["status"],
        "Active"
    );
    assert_eq!(task(&masters[0], &lost)["state"], "TASK_LOST");

    // The agent forgets a task while it is away (its record and process gone): when it
    // re-registers without it, the master marks it gone.
    let forgotten = run_task(&masters, &["--", "exec sleep 1000"]);
    wait_for_state(&masters[0], &forgotten, "TASK_RUNNING", MINUTE);
    let record = dir.path().join(format!("agent/tasks/{forgotten}.json"));
    let runtime: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let executor = runtime["runtime"]["process"]["pid"].as_i64().unwrap();
    agent.kill();
    // The executor leads the task's process group.
    let group = nix::unistd::Pid::from_raw(-(executor as i32));
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    std::fs::remove_file(&record).unwrap();
    agent.restart(&masters, &["--cpus", "2", "--mem", "512"]);
    let gone = wait_for_state(&masters[0], &forgotten, "TASK_GONE", MINUTE);
    assert_eq!(gone["statuses"][3]["reason"], "REASON_RECONCILIATION");
}

#[test]
fn sandboxes_of_ended_tasks_are_collected_oldest_first() {
    let mut m = Masters::on_loopback(1);
    m.start(0, 1);
    m.wait_for_leader();
    let masters = vec![m.addr(0)];
    let dir = cairn_tests::workdir();
    let _agent = Agent::start(&masters, dir.path(), &["--sandboxes-kept", "2"]);
    let sandboxes = dir.path().join("sandboxes");
    let count = || std::fs::read_dir(&sandboxes).map_or(0, |d| d.count());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(run_task(&masters, &["--wait", "--", &format!("echo {i}")]));
    }
    // The two newest stay, with their logs.
    wait_until("old sandboxes to be collected", MINUTE, || count() == 2);
    for id in &ids[3..] {
        assert!(
            sandboxes.join(id).join("stdout").exists(),
            "{id} was collected"
        );
    }
}

#[test]
fn a_hung_agent_is_noticed_by_its_silence_and_recovers_when_it_wakes() {
    let (_m, masters, dir) = impatient_master();
    let agent = Agent::start(&masters, dir.path(), &["--cpus", "2", "--mem", "512"]);
    let id = run_task(&masters, &["--", "exec sleep 1000"]);
    wait_for_state(&masters[0], &id, "TASK_RUNNING", MINUTE);
    let agent_id = task(&masters[0], &id)["agentId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Hung, its connection still open: no heartbeat for three pings ends its session.
    agent.signal(nix::sys::signal::Signal::SIGSTOP);
    let lost = wait_for_state(&masters[0], &id, "TASK_LOST", MINUTE);
    assert_eq!(lost["statuses"][3]["reason"], "REASON_AGENT_REMOVED");
    assert_eq!(
        state(&masters[0])["cluster"]["agents"][&agent_id]["status"],
        "Lost"
    );

    // Awake again, it re-registers, and its task, lost in the log, is killed.
    agent.signal(nix::sys::signal::Signal::SIGCONT);
    wait_until("the agent to be back", MINUTE, || {
        state(&masters[0])["cluster"]["agents"][&agent_id]["status"] == "Active"
    });
    wait_until("the lost task to be killed on the agent", MINUTE, || {
        agent.state()["tasks"].as_array().is_some_and(Vec::is_empty)
    });
}
