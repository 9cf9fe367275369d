//! A network partition: three `cairn master` processes on their own loopback addresses
//! (127.0.77.1–3); nftables rules cut the leader off from the other two. The minority side
//! acknowledges nothing, the majority elects a new leader and keeps accepting writes, and once
//! the rules are removed the old leader rejoins and every log converges byte for byte.
//! Needs root (nftables); CI runs as root.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairn_bin, Proc};

const HOSTS: [&str; 3] = ["127.0.77.1", "127.0.77.2", "127.0.77.3"];

/// nftables rules dropping traffic between one address and others; removed on drop.
struct Partition {
    table: String,
}

impl Partition {
    fn isolate(host: &str, from: &[&str]) -> Self {
        // A run that was killed could not remove its rules: clear them first.
        let tables = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("nft (nftables) is installed");
        for line in String::from_utf8_lossy(&tables.stdout).lines() {
            if let Some(stale) = line
                .strip_prefix("table inet ")
                .filter(|t| t.starts_with("cairn_partition_"))
            {
                nft(&format!("delete table inet {stale}\n"));
            }
        }
        let table = format!("cairn_partition_{}", std::process::id());
        let mut script = format!("add table inet {table}\nadd chain inet {table} out {{ type filter hook output priority 0; }}\n");
        for other in from {
            script += &format!("add rule inet {table} out ip saddr {host} ip daddr {other} drop\n");
            script += &format!("add rule inet {table} out ip saddr {other} ip daddr {host} drop\n");
        }
        nft(&script);
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        nft(&format!("delete table inet {}\n", self.table));
    }
}

fn nft(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (nftables) is installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "nft refused:\n{script}");
}

fn port_on(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = format!("{host}:{port}").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    Some((code, response.split_once("\r\n\r\n")?.1.to_owned()))
}

fn status(host: &str, port: u16) -> Option<serde_json::Value> {
    let (code, body) = http(
        host,
        port,
        "GET",
        "/v1/cluster/status",
        "",
        Duration::from_secs(2),
    )?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn append(host: &str, port: u16, n: u64, timeout: Duration) -> Option<u64> {
    let body = format!(
        r#"[{{"actor":{{"principal":{{"user":{{"name":"p"}}}}}},"event":{{"JobDeleted":{{"job":"p-{n}"}}}}}}]"#
    );
    let (code, body) = http(host, port, "POST", "/v1/log/append", &body, timeout)?;
    (code == 200)
        .then(|| serde_json::from_str::<serde_json::Value>(&body).ok()?["first"].as_u64())
        .flatten()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_minority_acknowledges_nothing_and_the_old_leader_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = HOSTS.iter().map(|h| port_on(h)).collect();
    let peers: Vec<String> = HOSTS
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (h, p))| format!("{}={h}:{p}", i + 1))
        .collect();
    let mut procs: Vec<Option<Proc>> = (0..3)
        .map(|i| {
            let child = Command::new(cairn_bin())
                .args([
                    "master",
                    "--log-level",
                    "warn",
                    "--node-id",
                    &(i + 1).to_string(),
                ])
                .args([
                    "--listen",
                    &format!("{}:{}", HOSTS[i], ports[i]),
                    "--peers",
                    &peers.join(","),
                ])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{}", i + 1)))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Some(Proc(child))
        })
        .collect();
    let leader_among = |members: &[usize]| {
        members
            .iter()
            .copied()
            .find(|&i| status(HOSTS[i], ports[i]).is_some_and(|s| s["role"] == "Leader"))
    };
    let mut old = None;
    wait_until("a leader", || {
        old = leader_among(&[0, 1, 2]);
        old.is_some()
    });
    let old = old.unwrap();
    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push((
            n,
            append(HOSTS[old], ports[old], n, Duration::from_secs(10)).expect("healthy append"),
        ));
    }

    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let partition = Partition::isolate(HOSTS[old], &[HOSTS[others[0]], HOSTS[others[1]]]);
    // The old leader cannot reach a quorum: nothing it is sent is acknowledged.
    for n in 100..103 {
        assert_eq!(
            append(HOSTS[old], ports[old], n, Duration::from_secs(2)),
            None,
            "the minority acknowledged p-{n}"
        );
    }
    let mut new = None;
    wait_until("a new leader on the majority side", || {
        new = leader_among(&others);
        new.is_some()
    });
    let new = new.unwrap();
    for n in 10..30 {
        acked.push((
            n,
            append(HOSTS[new], ports[new], n, Duration::from_secs(10))
                .expect("the majority accepts writes"),
        ));
    }
    drop(partition);

    wait_until("the old leader to follow and everyone to converge", || {
        let s: Vec<_> = (0..3).map(|i| status(HOSTS[i], ports[i])).collect();
        s.iter().all(|s| s.is_some())
            && s[old].as_ref().unwrap()["role"] == "Follower"
            && s.iter()
                .all(|x| x.as_ref().unwrap()["head"] == s[0].as_ref().unwrap()["head"])
    });
    for p in procs.iter_mut() {
        let mut p = p.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(p
            .wait_for_exit(Duration::from_secs(30))
            .expect("stops")
            .success());
    }
    let dumps: Vec<String> = (0..3)
        .map(|i| {
            let out = Command::new(cairn_bin())
                .args(["log", "dump", "--data-dir"])
                .arg(dir.path().join(format!("m{}", i + 1)))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert!(
        dumps[0] == dumps[1] && dumps[0] == dumps[2],
        "the three logs are byte-identical"
    );
    for (n, offset) in acked {
        let line = dumps[0].lines().nth(offset as usize - 1).unwrap();
        assert!(
            line.contains(&format!("\"p-{n}\"")),
            "acknowledged p-{n} is not at offset {offset}: {line}"
        );
    }
    for n in 100..103 {
        assert!(
            !dumps[0].contains(&format!("\"p-{n}\"")),
            "p-{n}, sent to the minority, was applied"
        );
    }
}
