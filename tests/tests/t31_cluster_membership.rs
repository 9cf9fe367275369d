//! Membership of a cluster of `cairn master` processes: a master whose peers disagree with
//! its stored membership refuses to start; a member that fell behind past a snapshot catches
//! up by fetching the events it lacks; masters can be added and removed while it runs.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairn_bin, free_port, http_get, http_post, Proc};

/// Masters that take a snapshot (and purge their raft log) every 20 entries, so that a member
/// that misses a few hundred appends can only catch up from a snapshot.
struct Masters {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
}

impl Masters {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cairn.toml"),
            "[log]\nsnapshot-every = 20\nkept-after-snapshot = 0\n",
        )
        .unwrap();
        Masters {
            dir,
            ports: (0..n).map(|_| free_port()).collect(),
            procs: (0..n).map(|_| None).collect(),
        }
    }

    fn peers(&self, members: usize) -> String {
        let peers: Vec<String> = self.ports[..members]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        peers.join(",")
    }

    fn command(&self, i: usize, members: usize) -> Command {
        let mut c = Command::new(cairn_bin());
        c.args([
            "master",
            "--log-level",
            "warn",
            "--node-id",
            &(i + 1).to_string(),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", self.ports[i]),
            "--peers",
            &self.peers(members),
        ])
        .arg("--config")
        .arg(self.dir.path().join("cairn.toml"))
        .arg("--data-dir")
        .arg(self.data_dir(i));
        c
    }

    fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("m{}", i + 1))
    }

    fn start(&mut self, i: usize, members: usize) {
        let child = self
            .command(i, members)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs[i] = Some(Proc(child));
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let status = p
                .wait_for_exit(Duration::from_secs(30))
                .expect("stops on SIGTERM");
            assert!(status.success(), "master {} exited with {status}", i + 1);
        }
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.ports[i], "/v1/cluster/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn append(&self, i: usize, n: u64) {
        let body = format!(
            r#"[{{"actor":{{"principal":{{"user":{{"name":"t"}}}}}},"event":{{"JobDeleted":{{"job":"j-{n}"}}}}}}]"#
        );
        let (code, text) = http_post(self.ports[i], "/v1/log/append", &body).unwrap();
        assert_eq!(code, 200, "{text}");
    }

    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(cairn_bin()).args(args).output().unwrap()
    }
}

fn head(s: &serde_json::Value) -> u64 {
    s["head"].as_u64().unwrap()
}

#[test]
fn a_master_whose_peers_disagree_with_its_stored_membership_is_refused() {
    let mut m = Masters::new(2);
    m.start(0, 1);
    m.wait_until("a leader", |m| {
        m.status(0).is_some_and(|s| s["role"] == "Leader")
    });
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
    m.wait_until("a leader again", |m| {
        m.status(0).is_some_and(|s| s["role"] == "Leader")
    });
    m.stop(0);
}

#[test]
fn a_member_behind_a_snapshot_catches_up_and_members_come_and_go() {
    let mut m = Masters::new(4);
    for i in 0..3 {
        m.start(i, 3);
    }
    m.wait_until("a leader", |m| {
        (0..3).any(|i| m.status(i).is_some_and(|s| s["role"] == "Leader"))
    });
    m.stop(2);
    for n in 0..200 {
        m.append(n as usize % 2, n);
    }
    // The others have snapshotted and purged past everything member 3 had.
    let behind = {
        let out = m.cairn(&["log", "dump", "--data-dir", m.data_dir(2).to_str().unwrap()]);
        String::from_utf8(out.stdout).unwrap().lines().count() as u64
    };
    m.wait_until("a snapshot past member 3", |m| {
        m.status(0)
            .is_some_and(|s| s["purged_index"].as_u64().unwrap_or(0) > behind + 5)
    });
    m.start(2, 3);
    m.wait_until("member 3 to catch up", |m| {
        let heads: Vec<_> = (0..3).map(|i| m.status(i).map(|s| head(&s))).collect();
        heads.iter().all(|h| h.is_some() && *h == heads[0])
    });

    // A fourth master joins, then leaves.
    m.start(3, 4);
    let masters = format!("127.0.0.1:{}", m.ports[0]);
    let address = format!("127.0.0.1:{}", m.ports[3]);
    let add = m.cairn(&[
        "cluster",
        "add",
        "--masters",
        &masters,
        "--node-id",
        "4",
        "--address",
        &address,
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    m.wait_until("four voters", |m| {
        m.status(0)
            .is_some_and(|s| s["voters"].as_array().unwrap().len() == 4)
    });
    m.append(3, 1000);
    m.wait_until("member 4 to catch up", |m| {
        let heads: Vec<_> = (0..4).map(|i| m.status(i).map(|s| head(&s))).collect();
        heads.iter().all(|h| h.is_some() && *h == heads[0])
    });
    let remove = m.cairn(&["cluster", "remove", "--masters", &masters, "--node-id", "4"]);
    assert!(
        remove.status.success(),
        "{}",
        String::from_utf8_lossy(&remove.stderr)
    );
    m.wait_until("three voters", |m| {
        m.status(0)
            .is_some_and(|s| s["voters"].as_array().unwrap().len() == 3)
    });
    m.append(0, 1001);
    let leader = m.status(0).unwrap();
    let (committed, applied) = (
        leader["commit_index"].as_u64().unwrap(),
        leader["last_applied"].as_u64().unwrap(),
    );
    assert!(
        committed >= applied && applied > 0,
        "commit index {committed}, applied {applied}"
    );
    let status = m.cairn(&["cluster", "status", "--masters", &masters]);
    let table = String::from_utf8(status.stdout).unwrap();
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

    m.wait_until("the three to converge", |m| {
        let heads: Vec<_> = (0..3).map(|i| m.status(i).map(|s| head(&s))).collect();
        heads.iter().all(|h| h.is_some() && *h == heads[0])
    });
    for i in 0..4 {
        m.stop(i);
    }
    let dumps: Vec<String> = (0..3)
        .map(|i| {
            let out = m.cairn(&["log", "dump", "--data-dir", m.data_dir(i).to_str().unwrap()]);
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert!(
        dumps[0] == dumps[1] && dumps[0] == dumps[2],
        "the three logs are byte-identical"
    );
    let verify = m.cairn(&[
        "log",
        "verify",
        "--data-dir",
        m.data_dir(2).to_str().unwrap(),
    ]);
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
    let mut m = Masters::new(1);
    m.start(0, 1);
    m.wait_until("a leader", |m| {
        m.status(0).is_some_and(|s| s["role"] == "Leader")
    });
    let before = m.status(0).unwrap();
    let vote =
        r#"{"vote":{"leader_id":{"term":99,"node_id":9},"committed":false},"last_log_id":null}"#;
    let (code, body) = http_post(m.ports[0], "/raft/vote", vote).unwrap();
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
