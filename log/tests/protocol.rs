//! Golden shapes of the agent protocol: `golden/protocol.json` holds one of each message as
//! agents and masters exchange them. A change to a shape fails here until the file is
//! regenerated deliberately (`CAIRN_UPDATE_GOLDEN=1`), and the committed file must still
//! decode, so an agent and a master of adjacent versions keep understanding each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cairn_log::event::{
    AgentId, CommandSpec, ExecutorSpec, FrameworkId, PortRange, Resources, StatusSource, TaskId,
    TaskSpec, TaskState, Term, Timestamp,
};
use cairn_log::protocol::{
    Ack, Command, Envelope, ErrorBody, Kill, KnownTask, Launch, Register, Registered, StatusUpdate,
};
use serde_json::{json, Value};

fn examples() -> Value {
    let agent_id = AgentId::new("5f0c1e2d3a4b5c6d-S0").unwrap();
    let task_id = TaskId::new("hello.0123456789abcdef").unwrap();
    let resources = Resources {
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        ports: vec![PortRange {
            begin: 31000,
            end: 31000,
        }],
    };
    let at = Timestamp::parse_rfc3339("2026-11-26T19:00:00.000001Z").unwrap();
    let register = Register {
        agent_id: Some(agent_id.clone()),
        hostname: "node-1".into(),
        address: "10.0.0.1:5051".into(),
        resources: resources.clone(),
        attributes: BTreeMap::from([("rack".into(), "r1".into())]),
        version: "0.1.0".into(),
        tasks: vec![KnownTask {
            task_id: task_id.clone(),
            state: TaskState::Running,
        }],
        term: Term(3),
    };
    let launch = Envelope {
        term: Term(4),
        command: Command::Launch(Box::new(Launch {
            task_id: task_id.clone(),
            name: "hello".into(),
            resources,
            spec: TaskSpec {
                command: Some(CommandSpec {
                    value: Some("echo hi $PORT0".into()),
                    args: vec![],
                    shell: true,
                    env: BTreeMap::from([("GREETING".into(), "hi".into())]),
                    user: None,
                }),
                ports: vec![31000],
                ..TaskSpec::default()
            },
            offset: 42,
            framework_id: None,
        })),
    };
    let executor_launch = Envelope {
        term: Term(4),
        command: Command::Launch(Box::new(Launch {
            task_id: TaskId::new("work-1").unwrap(),
            name: "work".into(),
            resources: Resources {
                cpus_milli: 150,
                mem_mib: 64,
                ..Resources::default()
            },
            spec: TaskSpec {
                executor: Some(Box::new(ExecutorSpec {
                    executor_id: "pool-1".into(),
                    name: "pool".into(),
                    command: CommandSpec {
                        value: Some("python3 executor.py".into()),
                        shell: true,
                        ..CommandSpec::default()
                    },
                    resources: Resources {
                        cpus_milli: 50,
                        mem_mib: 32,
                        ..Resources::default()
                    },
                })),
                data: Some("aGVsbG8=".into()),
                ..TaskSpec::default()
            },
            offset: 44,
            framework_id: Some(FrameworkId::new("c0ffee-0001").unwrap()),
        })),
    };
    let kill = Envelope {
        term: Term(4),
        command: Command::Kill(Kill {
            task_id: task_id.clone(),
            grace_period_secs: Some(5),
        }),
    };
    let ping = Envelope {
        term: Term(4),
        command: Command::Ping,
    };
    let update = StatusUpdate {
        uuid: "8d4f0a7c9b2e4f1a8d4f0a7c9b2e4f1a".into(),
        task_id,
        state: TaskState::Finished,
        reason: None,
        message: Some("Command exited with status 0".into()),
        healthy: None,
        at,
        source: StatusSource::Agent,
    };
    let executor_update = StatusUpdate {
        uuid: "00112233445566778899aabbccddeeff".into(),
        task_id: TaskId::new("work-1").unwrap(),
        state: TaskState::Running,
        reason: None,
        message: Some("hello".into()),
        healthy: None,
        at,
        source: StatusSource::Executor,
    };
    json!({
        "register": register,
        "registered": Registered { agent_id, term: Term(4), offset: 7 },
        "launch": launch,
        "executor_launch": executor_launch,
        "kill": kill,
        "ping": ping,
        "status": [update, executor_update],
        "acks": [Ack { uuid: "8d4f0a7c9b2e4f1a8d4f0a7c9b2e4f1a".into(), offset: 43 }],
        "error": ErrorBody { error: "this master does not lead".into(), leader: Some("10.0.0.2:5050".into()) },
    })
}

#[test]
fn protocol_shapes_match_the_golden_file_and_it_still_decodes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/protocol.json");
    let now = serde_json::to_string_pretty(&examples()).unwrap() + "\n";
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("set CAIRN_UPDATE_GOLDEN=1 to create it");
    assert_eq!(
        now,
        golden,
        "a protocol shape changed; see {}",
        path.display()
    );
    let golden: Value = serde_json::from_str(&golden).unwrap();
    let _: Register = serde_json::from_value(golden["register"].clone()).unwrap();
    let _: Registered = serde_json::from_value(golden["registered"].clone()).unwrap();
    for name in ["launch", "executor_launch", "kill", "ping"] {
        let _: Envelope = serde_json::from_value(golden[name].clone()).unwrap();
    }
    let _: Vec<StatusUpdate> = serde_json::from_value(golden["status"].clone()).unwrap();
    let _: Vec<Ack> = serde_json::from_value(golden["acks"].clone()).unwrap();
    let _: ErrorBody = serde_json::from_value(golden["error"].clone()).unwrap();
    // An agent of the first release registered with only the required fields.
    let minimal: Register = serde_json::from_value(json!({
        "hostname": "h", "address": "h:5051", "version": "0.1.0",
        "resources": { "cpus_milli": 1000, "mem_mib": 64 }
    }))
    .unwrap();
    assert!(minimal.agent_id.is_none() && minimal.tasks.is_empty());
}
