//! Three `cairn master` processes on loopback; a client appends steadily through any of them
//! while the leader is killed with SIGKILL again and again, and restarted. At the end every
//! acknowledged append is present exactly once, at the offset it was acknowledged with, on
//! every master, and the three logs are byte-identical with identical hash chains.
//! Reproduce a failure with the printed `CAIRN_FAILOVER_SEED`; `CAIRN_FAILOVER_KILLS` sets
//! how many times the leader dies (default 20).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_tests::{cairn_bin, free_port, http_get, http_post, Proc};
use rand::{Rng, SeedableRng};

struct Cluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
}

impl Cluster {
    fn new(size: usize) -> Self {
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            ports: (0..size).map(|_| free_port()).collect(),
            procs: (0..size).map(|_| None).collect(),
        };
        for i in 0..size {
            cluster.start(i);
        }
        cluster
    }

    fn peers(&self) -> String {
        let peers: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        peers.join(",")
    }

    fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("m{}", i + 1))
    }

    fn start(&mut self, i: usize) {
        let child = Command::new(cairn_bin())
            .args(["master", "--log-format", "json", "--log-level", "warn"])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &self.peers()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs[i] = Some(Proc(child));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.0.kill().unwrap();
            p.0.wait().unwrap();
        }
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
                .expect("master stops on SIGTERM");
            assert!(status.success(), "master {} exited with {status}", i + 1);
        }
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.ports[i], "/v1/cluster/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// The index of the member that every live member agrees leads, waiting up to `within`.
    fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<usize> = (0..self.ports.len())
                .filter(|i| self.procs[*i].is_some())
                .collect();
            let leaders: Vec<Option<u64>> = live
                .iter()
                .map(|i| self.status(*i).and_then(|s| s["leader"].as_u64()))
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                let index = *leader as usize - 1;
                if leaders.iter().all(|l| *l == Some(*leader))
                    && self.procs[index].is_some()
                    && self.status(index).is_some_and(|s| s["role"] == "Leader")
                {
                    return index;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every member has applied the same head, and returns it.
    fn wait_converged(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let heads: Vec<Option<u64>> = (0..self.ports.len())
                .map(|i| self.status(i).and_then(|s| s["head"].as_u64()))
                .collect();
            if heads.iter().all(|h| h.is_some() && *h == heads[0]) {
                return heads[0].unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "members did not converge: heads {heads:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn entry(seq: u64) -> String {
    format!(
        r#"[{{"actor":{{"principal":{{"user":{{"name":"client"}}}}}},"event":{{"TaskKillRequested":{{"task_id":"c-{seq}","reason":"failover test"}}}}}}]"#
    )
}

#[test]
fn acknowledged_appends_survive_repeated_leader_kills() {
    let seed: u64 = match std::env::var("CAIRN_FAILOVER_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("reproduce with CAIRN_FAILOVER_SEED={seed:#x}");
    let kills: usize =
        std::env::var("CAIRN_FAILOVER_KILLS").map_or(20, |k| k.parse().expect("number"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::new(3);
    cluster.wait_for_leader(Duration::from_secs(60));

    // The client: appends one entry at a time through a random member, forever until told to
    // stop; an error (member down, no leader) moves on to the next sequence number.
    let acked = Arc::new(Mutex::new(BTreeMap::<u64, u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (acked, stop, ports) = (acked.clone(), stop.clone(), cluster.ports.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 1);
        std::thread::spawn(move || {
            let mut seq = 0;
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let port = ports[rng.random_range(0..ports.len())];
                match http_post(port, "/v1/log/append", &entry(seq)) {
                    Ok((200, body)) => {
                        let ack: serde_json::Value = serde_json::from_str(&body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert(seq, ack["first"].as_u64().unwrap());
                    }
                    _ => errors += 1,
                }
            }
            errors
        })
    };
    let acks = || acked.lock().unwrap().len();

    for round in 0..kills {
        // Let the cluster make progress under this leader first.
        let target = acks() + rng.random_range(5..40);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks() < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: no progress ({} acks)",
                acks()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let leader = cluster.wait_for_leader(Duration::from_secs(60));
        cluster.kill(leader);
        let next = cluster.wait_for_leader(Duration::from_secs(60));
        assert_ne!(next, leader);
        cluster.start(leader);
    }
    let target = acks() + 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks() < target {
        assert!(
            Instant::now() < deadline,
            "no progress after the last restart"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let errors = client.join().unwrap();
    let head = cluster.wait_converged(Duration::from_secs(60));
    for i in 0..3 {
        cluster.stop(i);
    }

    let mut dumps = Vec::new();
    let mut verifies = Vec::new();
    for i in 0..3 {
        let data_dir = cluster.data_dir(i);
        let verify = Command::new(cairn_bin())
            .args(["log", "verify", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "master {}: {}",
            i + 1,
            String::from_utf8_lossy(&verify.stderr)
        );
        verifies.push(String::from_utf8(verify.stdout).unwrap());
        let dump = Command::new(cairn_bin())
            .args(["log", "dump", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        dumps.push(String::from_utf8(dump.stdout).unwrap());
    }
    assert_eq!(verifies[0], verifies[1], "same records and tip hash");
    assert_eq!(verifies[0], verifies[2], "same records and tip hash");
    assert!(
        dumps[0] == dumps[1] && dumps[0] == dumps[2],
        "the three logs are byte-identical"
    );

    let mut seen = BTreeMap::new();
    for line in dumps[0].lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(task) = r["event"]["TaskKillRequested"]["task_id"].as_str() {
            let seq: u64 = task.trim_start_matches("c-").parse().unwrap();
            assert!(
                seen.insert(seq, r["offset"].as_u64().unwrap()).is_none(),
                "c-{seq} appears twice"
            );
        }
    }
    let acked = acked.lock().unwrap();
    for (seq, offset) in acked.iter() {
        assert_eq!(
            seen.get(seq),
            Some(offset),
            "acknowledged c-{seq} is not at offset {offset}"
        );
    }
    eprintln!(
        "{kills} leader kills; {} appends acknowledged, {errors} refused or lost in flight; {head} records on each master",
        acked.len()
    );
}
