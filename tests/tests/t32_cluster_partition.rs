//! A network partition: three `cairn master` processes on their own loopback addresses
//! (127.0.77.1–3); nftables rules cut the leader off from the other two. The minority side
//! acknowledges nothing, the majority elects a new leader and keeps accepting writes, and once
//! the rules are removed the old leader rejoins and every log converges byte for byte.
//! Needs root (nftables); CI runs as root.

use std::time::Duration;

use cairn_tests::cluster::{job_entry, wait_until, Masters};
use cairn_tests::partition::Partition;

const HOSTS: [&str; 3] = ["127.0.77.1", "127.0.77.2", "127.0.77.3"];
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_minority_acknowledges_nothing_and_the_old_leader_rejoins() {
    let mut m = Masters::on(&HOSTS);
    for i in 0..3 {
        m.start(i, 3);
    }
    let mut old = None;
    wait_until("a leader", MINUTE, || {
        old = m.leader_among(&[0, 1, 2]);
        old.is_some()
    });
    let old = old.unwrap();
    let mut acked = Vec::new();
    for n in 0..10 {
        let offset = m
            .append(old, &job_entry(&format!("p-{n}")), Duration::from_secs(10))
            .expect("healthy append");
        acked.push((n, offset));
    }

    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let partition = Partition::isolate("t32", HOSTS[old], &[HOSTS[others[0]], HOSTS[others[1]]]);
    // The old leader cannot reach a quorum: nothing it is sent is acknowledged.
    for n in 100..103 {
        let reply = m.append(old, &job_entry(&format!("p-{n}")), Duration::from_secs(2));
        assert_eq!(reply, None, "the minority acknowledged p-{n}");
    }
    let mut new = None;
    wait_until("a new leader on the majority side", MINUTE, || {
        new = m.leader_among(&others);
        new.is_some()
    });
    let new = new.unwrap();
    for n in 10..30 {
        let offset = m
            .append(new, &job_entry(&format!("p-{n}")), Duration::from_secs(10))
            .expect("the majority accepts writes");
        acked.push((n, offset));
    }
    drop(partition);

    wait_until(
        "the old leader to follow and everyone to converge",
        MINUTE,
        || m.status(old).is_some_and(|s| s["role"] == "Follower") && m.converged(&[0, 1, 2]),
    );
    for i in 0..3 {
        m.stop(i);
    }
    let dumps: Vec<String> = (0..3).map(|i| m.dump(i)).collect();
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
