//! Fencing: an agent refuses commands from a leader term older than one it has obeyed. A
//! scripted master (this test's own HTTP server speaking the agent protocol) registers the
//! agent at term 5, then sends a launch stamped term 4: the agent must refuse it, reconnect,
//! and run the term-5 launch that follows. Failover between real masters cannot be timed to
//! produce a stale command on purpose, hence the scripted peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_agent::AgentConfig;
use cairn_log::event::{AgentId, CommandSpec, Resources, TaskId, TaskSpec, Term};
use cairn_log::protocol::{Ack, Command, Envelope, Launch, Register, Registered, StatusUpdate};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Script {
    streams: usize,
    updates: Vec<StatusUpdate>,
}

type Shared = Arc<Mutex<Script>>;

fn launch(id: &str) -> Command {
    Command::Launch(Box::new(Launch {
        task_id: TaskId::new(id).unwrap(),
        name: id.into(),
        resources: Resources {
            cpus_milli: 100,
            mem_mib: 16,
            ..Resources::default()
        },
        spec: TaskSpec {
            command: Some(CommandSpec {
                value: Some("true".into()),
                shell: true,
                ..CommandSpec::default()
            }),
            ..TaskSpec::default()
        },
        offset: 1,
        framework_id: None,
    }))
}

async fn register(Json(_): Json<Register>) -> Json<Registered> {
    Json(Registered {
        agent_id: AgentId::new("a1").unwrap(),
        term: Term(5),
        offset: 1,
    })
}

async fn commands(State(script): State<Shared>) -> String {
    let n = {
        let mut s = script.lock().unwrap();
        s.streams += 1;
        s.streams
    };
    // The first stream carries a stale command; the next ones a current one.
    let envelope = if n == 1 {
        Envelope {
            term: Term(4),
            command: launch("stale"),
        }
    } else {
        Envelope {
            term: Term(5),
            command: launch("current"),
        }
    };
    serde_json::to_string(&envelope).unwrap() + "\n"
}

async fn status(
    State(script): State<Shared>,
    Json(updates): Json<Vec<StatusUpdate>>,
) -> Json<Vec<Ack>> {
    let acks = updates
        .iter()
        .map(|u| Ack {
            uuid: u.uuid.clone(),
            offset: 2,
        })
        .collect();
    script.lock().unwrap().updates.extend(updates);
    Json(acks)
}

#[tokio::test]
async fn commands_from_a_stale_term_are_refused() {
    let script: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/agents/register", post(register))
        .route("/v1/agents/{id}/commands", get(commands))
        .route("/v1/agents/{id}/status", post(status))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = AgentConfig {
        masters: vec![master],
        data_dir: dir.path().to_owned(),
        listen,
        advertise: None,
        hostname: "test".into(),
        resources: Resources {
            cpus_milli: 1000,
            mem_mib: 256,
            ..Resources::default()
        },
        attributes: BTreeMap::new(),
        // No executor binary here: the current task fails to start, which is an update too.
        executable: "/bin/false".into(),
        kill_grace: Duration::from_secs(1),
        sandboxes_kept: 10,
    };
    let stop = CancellationToken::new();
    let agent = tokio::spawn(cairn_agent::run(config, stop.clone()));

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ended = script
            .lock()
            .unwrap()
            .updates
            .iter()
            .any(|u| u.task_id.as_str() == "current" && u.state.is_terminal());
        if ended {
            break;
        }
        assert!(Instant::now() < deadline, "the current launch never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let script = script.lock().unwrap();
        assert!(script.streams >= 2, "the agent reconnected after refusing");
        assert!(
            script.updates.iter().all(|u| u.task_id.as_str() != "stale"),
            "the stale launch ran"
        );
    }
    assert!(!dir.path().join("agent/tasks/stale.json").exists());
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "cairn_agent_commands_refused_total 1"),
        "{metrics}"
    );
    stop.cancel();
    agent.await.unwrap().unwrap();
}
