//! Membership of a cluster of `cairn master` processes: a master whose peers disagree with
//! its stored membership refuses to start; a member that fell behind past a snapshot catches
//! up by fetching the events it lacks; masters can be added and removed while it runs; raft
//! messages from strangers are refused.

use std::process::Stdio;
use std::time::Duration;

use cairn_tests::cluster::{job_entry, wait_until, Masters};
use cairn_tests::{cairn_bin, http_to, Proc};

const MINUTE: Duration = Duration::from_secs(60);
const SECONDS: Duration = Duration::from_secs(10);

/// Masters that take a snapshot (and purge their raft log) every 20 entries, so that a member
/// that misses a few hundred appends can only catch up from a snapshot.
fn masters(n: usize) -> Masters {
    Masters::on_loopback(n).with_config("[log]\nsnapshot-every = 20\nkept-after-snapshot = 0\n")
}

fn heads_agree(m: &Masters, members: usize) -> bool {
    m.converged(&(0..members).collect::<Vec<_>>())
}

#[test]
fn a_master_whose_peers_disagree_with_its_stored_membership_is_refused() {
    let mut m = masters(2);
    m.start(0, 1);
    wait_until("a leader", MINUTE, || m.leader_among(&[0]).is_some());
    m.stop(0);
    let mut refused = Proc(m.command(0, 2).stderr(Stdio::piped()).spawn().unwrap());
    let status = refused
        .wait_for_exit(Duration::from_secs(30))
        .expect("refuses at once");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("peers:") && err.contains("disagrees with the membership stored"),
        "{err}"
    );
    // Nothing changed: it starts again with the peers it has.
    m.start(0, 1);
    wait_until("a leader again", MINUTE, || m.leader_among(&[0]).is_some());
    m.stop(0);
}

#[test]
fn a_member_behind_a_snapshot_catches_up_and_members_come_and_go() {
    let mut m = masters(4);
    for i in 0..3 {
        m.start(i, 3);
    }
    wait_until("a leader", MINUTE, || m.leader_among(&[0, 1, 2]).is_some());
    m.stop(2);
    for n in 0..200 {
        m.append(n % 2, &job_entry(&format!("j-{n}")), SECONDS)
            .expect("append");
    }
    // The others have snapshotted and purged past everything member 3 had.
    let behind = m.dump(2).lines().count() as u64;
    wait_until("a snapshot past member 3", MINUTE, || {
        m.status(0)
            .is_some_and(|s| s["purged_index"].as_u64().unwrap_or(0) > behind + 5)
    });
    m.start(2, 3);
    wait_until("member 3 to catch up", MINUTE, || heads_agree(&m, 3));

    // A fourth master joins, then leaves.
    m.start(3, 4);
    let masters = m.addr(0);
    let cluster = |args: &[&str]| {
        std::process::Command::new(cairn_bin())
            .arg("cluster")
            .args(args)
            .output()
            .unwrap()
    };
    let add = cluster(&[
        "add",
        "--masters",
        &masters,
        "--node-id",
        "4",
        "--address",
        &m.addr(3),
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    wait_until("four voters", MINUTE, || {
        m.status(0)
            .is_some_and(|s| s["voters"].as_array().unwrap().len() == 4)
    });
    // A member that has just joined forwards appends once it has heard from the leader.
    wait_until("member 4 to know the leader", MINUTE, || {
        m.status(3).is_some_and(|s| s["leader"].is_number())
    });
    // Just joined, it may still refuse a forward (not caught up with what it was sent): a
    // client retries, as it would against any member that is not ready.
    wait_until("an append through member 4", MINUTE, || {
        m.append(3, &job_entry("j-1000"), SECONDS).is_some()
    });
    wait_until("member 4 to catch up", MINUTE, || heads_agree(&m, 4));
    let remove = cluster(&["remove", "--masters", &masters, "--node-id", "4"]);
    assert!(
        remove.status.success(),
        "{}",
        String::from_utf8_lossy(&remove.stderr)
    );
    wait_until("three voters", MINUTE, || {
        m.status(0)
            .is_some_and(|s| s["voters"].as_array().unwrap().len() == 3)
    });
    m.append(0, &job_entry("j-1001"), SECONDS).expect("append");
    let leader = m.status(0).unwrap();
    let (committed, applied) = (
        leader["commit_index"].as_u64().unwrap(),
        leader["last_applied"].as_u64().unwrap(),
    );
    assert!(
        committed >= applied && applied > 0,
        "commit index {committed}, applied {applied}"
    );
    let table = String::from_utf8(cluster(&["status", "--masters", &masters]).stdout).unwrap();
    assert_eq!(
        table.lines().filter(|l| l.contains("Leader")).count(),
        1,
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        4,
        "a header and three members:\n{table}"
    );

    wait_until("the three to converge", MINUTE, || heads_agree(&m, 3));
    for i in 0..4 {
        m.stop(i);
    }
    let dumps: Vec<String> = (0..3).map(|i| m.dump(i)).collect();
    assert!(
        dumps[0] == dumps[1] && dumps[0] == dumps[2],
        "the three logs are byte-identical"
    );
    let verify = m.offline(2, &["log", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(
        dumps[0]
            .lines()
            .filter(|l| l.contains("JobDeleted"))
            .count(),
        202
    );
}

#[test]
fn a_raft_message_from_an_unknown_node_is_refused_and_changes_nothing() {
    let mut m = masters(1);
    m.start(0, 1);
    wait_until("a leader", MINUTE, || m.leader_among(&[0]).is_some());
    let before = m.status(0).unwrap();
    let vote =
        r#"{"vote":{"leader_id":{"term":99,"node_id":9},"committed":false},"last_log_id":null}"#;
    let (code, body) = http_to(&m.addr(0), "POST", "/raft/vote", vote, SECONDS).unwrap();
    assert_eq!(code, 403);
    assert!(
        body.contains("node 9 is not a member of this cluster"),
        "{body}"
    );
    let after = m.status(0).unwrap();
    assert_eq!(
        (&after["term"], &after["role"]),
        (&before["term"], &before["role"])
    );
    m.stop(0);
}

/// Starts master `i` of `m` on its cluster's ids and addresses while another cluster runs
/// there: it must refuse to start. Its stderr.
fn refused_stranger(m: &Masters, i: usize) -> String {
    let mut stranger = Proc(m.command(i, 3).stderr(Stdio::piped()).spawn().unwrap());
    // Its log is read as it is written: a full pipe would stop it before it could refuse.
    let mut stderr = stranger.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        err
    });
    // Generous: on a loaded machine its peers may be slow to answer the check.
    let status = stranger.wait_for_exit(Duration::from_secs(60));
    if status.is_none() {
        let _ = stranger.0.kill();
        let _ = stranger.0.wait();
    }
    let err = reader.join().unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "it did not refuse:\n{err}"
    );
    assert!(err.contains("belongs to another cluster"), "{err}");
    err
}

#[test]
fn a_data_dir_from_another_cluster_is_refused_even_with_the_same_membership() {
    let mut x = Masters::on_loopback(3);
    // Runs a cluster until all its members hold a record, then stops it leader last (so that
    // its leader restarts believing it leads). Its leader's index.
    let run = |m: &mut Masters, who: &str| {
        for i in 0..3 {
            m.start(i, 3);
        }
        wait_until(who, MINUTE, || m.leader_among(&[0, 1, 2]).is_some());
        m.append(0, &job_entry(who), SECONDS).expect("append");
        // Every member holds the record: each data dir is wholly this cluster's.
        wait_until("all members to apply it", MINUTE, || heads_agree(m, 3));
        let leader = m.wait_for_leader();
        for i in (0..3).filter(|i| *i != leader) {
            m.stop(i);
        }
        m.stop(leader);
        leader
    };
    run(&mut x, "cluster x");
    // Another cluster on the very same ids and addresses: its membership is indistinguishable.
    let mut y = Masters::sharing_addresses(&x);
    let y_leader = run(&mut y, "cluster y");
    // And a third that its first member made but that never elected a leader: its data dir
    // holds a raft log (the membership) but no record, so no record can tell it apart.
    let mut z = Masters::sharing_addresses(&x);
    z.start(0, 3);
    wait_until("z's first member to make its cluster", MINUTE, || {
        z.status(0).is_some_and(|s| {
            s["cluster"].is_string() && s["members"].as_object().is_some_and(|m| m.len() == 3)
        })
    });
    z.stop(0);

    // x runs on two members; each stranger takes the third's place.
    let mut run_x_without = |absent: usize| {
        for i in 0..3 {
            if i == absent {
                x.stop(i);
            } else if !x.is_running(i) {
                x.start(i, 3);
            }
        }
        let up: Vec<usize> = (0..3).filter(|i| *i != absent).collect();
        wait_until("x to lead", MINUTE, || x.leader_among(&up).is_some());
        x.status(up[0]).unwrap()["cluster"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // y's leader resumes leading, and its first append can never commit: it must still exit.
    let cluster = run_x_without(y_leader);
    let err = refused_stranger(&y, y_leader);
    assert!(err.contains(&cluster), "{err}");
    let cluster = run_x_without(0);
    let err = refused_stranger(&z, 0);
    assert!(err.contains(&cluster), "{err}");

    // x's members refuse a raft message naming another cluster, and one that carries a log
    // without naming any: both could move their term, or their log.
    let other = "ab".repeat(16);
    let vote = r#"{"vote":{"leader_id":{"term":99,"node_id":1},"committed":false},"last_log_id":{"leader_id":{"term":98,"node_id":1},"index":7}}"#;
    for (header, says) in [
        (
            format!("x-cairn-cluster: {other}\r\n"),
            "belongs to another cluster",
        ),
        (String::new(), "without naming its cluster"),
    ] {
        let addr = x.addr(1);
        let socket: std::net::SocketAddr = addr.parse().unwrap();
        let mut stream = std::net::TcpStream::connect_timeout(&socket, SECONDS).unwrap();
        let request = format!(
            "POST /raft/vote HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{vote}",
            vote.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        assert!(response.starts_with("HTTP/1.0 403"), "{response}");
        assert!(response.contains(says), "{response}");
    }
    assert!(
        x.status(1).unwrap()["term"].as_u64() < Some(98),
        "its term moved"
    );
    x.stop(1);
    x.stop(2);
    let log = x.dump(1);
    assert!(log.contains("cluster x"), "{log}");
    assert!(!log.contains("cluster y"), "nothing of y reached x");
}
