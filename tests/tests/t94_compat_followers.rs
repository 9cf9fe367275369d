//! The compatible APIs through a follower of a 3-master cluster: marathon-python and
//! chronos-python pointed at a master that does not lead work unchanged — writes are
//! forwarded to the leader and read back at once from the follower (read-your-writes), the
//! audit names the caller's address rather than the follower's, and a Mesos scheduler API
//! `SUBSCRIBE` stream is carried through.

use std::io::{Read, Write};
use std::time::Duration;

use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::compat::call;
use cairn_tests::http_to;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn graphql(addr: &str, query: &str) -> Value {
    let body = json!({ "query": query }).to_string();
    let (status, text) = http_to(addr, "POST", "/graphql", &body, MINUTE).expect("graphql");
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer.get("errors").is_none(), "{answer}");
    answer["data"].clone()
}

/// A request sent from a socket whose address we know: status, head and body.
fn request_from(addr: &str, raw_head: &str, body: &str) -> (String, String, String) {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(MINUTE)).unwrap();
    let local = socket.local_addr().unwrap().to_string();
    write!(
        socket,
        "{raw_head}\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (local, head.to_owned(), body.to_owned())
}

#[test]
fn marathon_and_chronos_clients_work_through_a_follower() {
    let mut m = Masters::on_loopback(3);
    for i in 0..3 {
        m.start(i, 3);
    }
    let leader = m.wait_for_leader();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let url = format!("http://{}", m.addr(follower));
    let server = url.as_str();
    let marathon =
        |expr: &str| call("marathon", server, expr, &[]).unwrap_or_else(|e| panic!("{expr}: {e}"));

    // Created through the follower, and read back from it at once.
    let created = marathon(
        "c.create_app('web', MarathonApp(cmd='sleep 1000', cpus=0.1, mem=32, instances=1))",
    );
    assert_eq!(created["id"], "/web");
    assert_eq!(marathon("c.get_app('web').instances"), 1);
    marathon("c.scale_app('web', instances=3, force=True)");
    assert_eq!(marathon("c.get_app('web').instances"), 3);
    let ids = marathon("[a.id for a in c.list_apps()]");
    assert_eq!(ids, json!(["/web"]));
    // A GraphQL mutation through the follower is decided by the leader too (the web UI's
    // actions work on any master); a query is answered by the follower.
    let scaled = graphql(
        &m.addr(follower),
        r#"mutation { scaleApp(id: "/web", instances: 4, force: true) { deploymentId } }"#,
    );
    assert!(scaled["scaleApp"]["deploymentId"].is_string(), "{scaled}");
    wait_until("the follower to fold the scale", MINUTE, || {
        graphql(&m.addr(follower), r#"{ app(id: "/web") { instances } }"#)["app"]["instances"] == 4
    });
    marathon("c.scale_app('web', instances=3, force=True)");
    // The leader holds the same app: one log.
    let on_leader = graphql(&m.addr(leader), r#"{ app(id: "/web") { instances } }"#);
    assert_eq!(on_leader["app"]["instances"], 3);

    // Refused by the leader, in Marathon's shape, through the follower.
    let refused = call(
        "marathon",
        server,
        "c.create_app('web', MarathonApp(cmd='sleep 1', cpus=0.1, mem=32))",
        &[],
    );
    assert!(refused.is_err_and(|e| e.contains("already exists")));

    // Chronos: add, list, delete through the follower.
    let job = json!({"name": "nightly", "command": "echo hi", "schedule": "R/2030-01-01T00:00:00Z/P1D",
                     "epsilon": "PT30M", "owner": "ops@example.com", "cpus": 0.1, "mem": 32, "disabled": false});
    // (chronos-python takes `host:port`.)
    let chronos = m.addr(follower);
    let list = || call("chronos", &chronos, "[j['name'] for j in c.list()]", &[]).unwrap();
    assert_eq!(call("chronos", &chronos, "add", &[job]), Ok(Value::Null));
    assert_eq!(list(), json!(["nightly"]));
    assert_eq!(
        call("chronos", &chronos, "delete", &[json!("nightly")]),
        Ok(Value::Null)
    );
    let names = list();
    assert_eq!(names, json!([]));

    // The audit names the caller's own address, not the follower's.
    let (local, head, body) = request_from(
        &m.addr(follower),
        "POST /v2/apps HTTP/1.1",
        r#"{"id": "/raw", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 0}"#,
    );
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{body}");
    let audit = graphql(
        &m.addr(leader),
        r#"{ audit(subject: "app:/raw") { nodes { type actor { api remoteAddr } } } }"#,
    );
    assert_eq!(
        audit["audit"]["nodes"][0],
        json!({ "type": "AppCreated", "actor": { "api": "marathon", "remoteAddr": local } })
    );

    // A scheduler API stream, carried through the follower from the leader.
    let mut socket = std::net::TcpStream::connect(m.addr(follower)).unwrap();
    socket.set_read_timeout(Some(MINUTE)).unwrap();
    let subscribe = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"test","name":"through-a-follower"}}}"#;
    write!(
        socket,
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{subscribe}",
        m.addr(follower),
        subscribe.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    wait_until("SUBSCRIBED through the follower", MINUTE, || {
        let n = socket.read(&mut buf).expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.contains("\"SUBSCRIBED\"")
    });
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("mesos-stream-id:"),
        "{seen}"
    );
    let frameworks = graphql(&m.addr(leader), "{ frameworks { name status } }");
    assert!(frameworks["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "through-a-follower" && f["status"] == "ACTIVE"));
    drop(socket);
    for i in 0..3 {
        m.stop(i);
    }
}
