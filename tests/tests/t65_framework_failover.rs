//! External frameworks across a leader change: two subscribe to the leader of three masters
//! (raw scheduler API streams), the leader is killed, one comes back to the new leader under
//! its id, the other does not. The new leader, seeing no stream of the absent one once its
//! reconnect grace is over, marks it disconnected, and removes it when its failover timeout
//! runs out; the one that came back stays active. And a leader cut off from the other
//! masters (nftables; needs root, as CI runs) ends its frameworks' streams, so that they
//! subscribe again and find the leader the others elect.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::http_to;
use cairn_tests::partition::Partition;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

/// `SUBSCRIBE` on `addr`, the stream left open in the socket answered with the framework's
/// id and the stream's `Mesos-Stream-Id`; `None` if the master refuses (no leader yet).
fn subscribe(
    addr: &str,
    name: &str,
    id: Option<&str>,
    failover_secs: u64,
) -> Option<(TcpStream, String, String)> {
    let mut body = json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": {
        "name": name, "user": "root", "failover_timeout": failover_secs } } });
    if let Some(id) = id {
        body["framework_id"] = json!({ "value": id });
        body["subscribe"]["framework_info"]["id"] = json!({ "value": id });
    }
    let body = body.to_string();
    let mut socket = TcpStream::connect(addr).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if !text.starts_with("HTTP/1.1 200") && text.contains("\r\n\r\n") {
            return None;
        }
        let marker = "\"framework_id\":{\"value\":\"";
        if let Some(at) = text.find(marker) {
            let rest = &text[at + marker.len()..];
            if let Some(end) = rest.find('"') {
                let id = rest[..end].to_owned();
                let stream_id = text.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("mesos-stream-id: ")
                        .map(str::to_owned)
                })?;
                return Some((socket, id, stream_id));
            }
        }
    }
}

fn graphql(m: &Masters, query: &str) -> Value {
    let addr = m.addr(m.wait_for_leader());
    let body = json!({ "query": query }).to_string();
    let (status, body) =
        http_to(&addr, "POST", "/graphql", &body, Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert!(response["errors"].is_null(), "{response}");
    response["data"].clone()
}

/// The framework's status, `REMOVED` once it is gone from the cluster.
fn status(m: &Masters, id: &str) -> String {
    let data = graphql(m, "{ frameworks { id status } }");
    data["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .map_or("REMOVED".to_owned(), |f| {
            f["status"].as_str().unwrap().to_owned()
        })
}

#[test]
fn a_new_leader_times_out_the_frameworks_that_do_not_come_back() {
    let mut m = Masters::on_loopback(3).with_config("[agents]\nreconnect-grace-secs = 1\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    let leader = m.wait_for_leader();
    let mut streams = Vec::new();
    let mut ids = Vec::new();
    for (name, failover) in [("gone", 2), ("back", 3600)] {
        let mut subscribed = None;
        wait_until(&format!("{name} subscribed"), WITHIN, || {
            subscribed = subscribe(&m.addr(leader), name, None, failover);
            subscribed.is_some()
        });
        let (stream, id, stream_id) = subscribed.unwrap();
        streams.push((stream, stream_id));
        ids.push(id);
    }
    let (gone, back) = (ids[0].clone(), ids[1].clone());
    assert_eq!(status(&m, &gone), "ACTIVE");

    // A call must come with its framework's current stream id: none, another framework's, or
    // a framework that is not subscribed is refused, Mesos' way, and nothing is logged.
    let head = || {
        graphql(&m, "{ state { offset } }")["state"]["offset"]
            .as_u64()
            .unwrap()
    };
    let before = head();
    let revive = |framework: &str, stream_id: Option<&str>| {
        let body = json!({ "type": "REVIVE", "framework_id": { "value": framework } }).to_string();
        let headers: Vec<(&str, &str)> = stream_id
            .map(|s| ("Mesos-Stream-Id", s))
            .into_iter()
            .collect();
        cairn_tests::http_with(
            &m.addr(leader),
            "POST",
            "/api/v1/scheduler",
            &headers,
            &body,
            WITHIN,
        )
        .unwrap()
    };
    for (framework, stream_id, status, says) in [
        (&gone, None, 400, "Mesos-Stream-Id"),
        (&gone, Some(streams[1].1.as_str()), 400, "Mesos-Stream-Id"),
        (
            &"never-subscribed".to_owned(),
            Some(streams[0].1.as_str()),
            403,
            "not subscribed here",
        ),
    ] {
        let (got, text) = revive(framework, stream_id);
        assert_eq!(got, status, "{text}");
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(revive(&gone, Some(streams[0].1.as_str())).0, 202);
    // Refused calls would have been logged before the good one: once it is folded, nothing
    // else is there.
    wait_until("the good call folded", WITHIN, || head() > before);
    assert_eq!(head(), before + 1, "only the good call was logged");

    m.kill(leader);
    let mut again = None;
    wait_until("back subscribed to the new leader", WITHIN, || {
        again = subscribe(&m.addr(m.wait_for_leader()), "back", Some(&back), 3600);
        again.is_some()
    });
    let (_stream, id, _) = again.unwrap();
    assert_eq!(id, back);
    let since = graphql(&m, "{ state { offset } }")["state"]["offset"]
        .as_u64()
        .unwrap();

    wait_until("the absent framework removed", WITHIN, || {
        status(&m, &gone) == "REMOVED"
    });
    assert_eq!(status(&m, &back), "ACTIVE");
    // The absent one was disconnected by the new leader first; the one that came back was
    // not disconnected after it came back.
    let data = graphql(
        &m,
        "{ events(filter: {types: [\"FrameworkDisconnected\", \"FrameworkRemoved\"]}, first: 50) { nodes { offset type payload } } }",
    );
    let nodes = data["events"]["nodes"].as_array().unwrap();
    let of = |id: &str| -> Vec<(u64, String)> {
        nodes
            .iter()
            .filter(|n| n["payload"]["framework_id"] == id)
            .map(|n| {
                (
                    n["offset"].as_u64().unwrap(),
                    n["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let gone_events: Vec<String> = of(&gone).into_iter().map(|(_, kind)| kind).collect();
    assert_eq!(
        gone_events,
        ["FrameworkDisconnected", "FrameworkRemoved"],
        "{nodes:?}"
    );
    assert!(
        of(&back).iter().all(|(offset, _)| *offset < since),
        "{back} disconnected after it came back: {nodes:?}"
    );
    drop(streams);
}

#[test]
fn a_leader_cut_off_from_the_others_ends_its_frameworks_streams() {
    const HOSTS: [&str; 3] = ["127.0.65.1", "127.0.65.2", "127.0.65.3"];
    let mut m = Masters::on(&HOSTS);
    for i in 0..3 {
        m.start(i, 3);
    }
    let leader = m.wait_for_leader();
    let mut subscribed = None;
    wait_until("a framework subscribed", WITHIN, || {
        subscribed = subscribe(&m.addr(leader), "cut-off", None, 3600);
        subscribed.is_some()
    });
    let (mut stream, _, _) = subscribed.unwrap();
    let others: Vec<&str> = (0..3).filter(|i| *i != leader).map(|i| HOSTS[i]).collect();
    let partition = Partition::isolate("t65", HOSTS[leader], &others);

    // The stream ends (its last chunk), although heartbeats would keep an open one alive.
    let deadline = Instant::now() + WITHIN;
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "the cut-off leader kept the stream open"
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            Err(e) => panic!("the stream neither ended nor went on: {e}"),
        }
    }
    drop(partition);
}
