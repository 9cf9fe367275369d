//! Every master folds every committed record: leader and followers hold byte-identical
//! projections, including a follower that was down and caught up from a snapshot.

use std::time::Duration;

use cairn_tests::cluster::{wait_until, Masters};
use cairn_tests::dev::synthetic_entries;
use cairn_tests::http_to;

const MINUTE: Duration = Duration::from_secs(60);

/// `GET /v1/state[?as_of=…]` of master `i`: its projected state's canonical JSON.
fn state(m: &Masters, i: usize, as_of: Option<u64>) -> Option<String> {
    let path = match as_of {
        Some(offset) => format!("/v1/state?as_of={offset}"),
        None => "/v1/state".to_owned(),
    };
    let (code, body) = http_to(&m.addr(i), "GET", &path, "", Duration::from_secs(30)).ok()?;
    (code == 200).then_some(body)
}

fn offset_of(state: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(state).expect("state JSON");
    value["offset"].as_u64().expect("offset")
}

#[test]
fn leader_and_followers_hold_byte_identical_projections() {
    // Snapshots every 20 raft entries: the member that misses the appends can only catch up
    // from a snapshot, fetching the events it lacks. The built-in schedulers are off: the
    // synthetic history's apps and jobs would otherwise keep them appending (as the jobs fall
    // due, whenever that is) while states are compared.
    let mut m = Masters::on_loopback(3)
        .with_config("[log]\nsnapshot-every = 20\nkept-after-snapshot = 0\n[projections]\ncheckpoint-every = 500\n[apps]\nenabled = false\n[jobs]\nenabled = false\n");
    for i in 0..3 {
        m.start(i, 3);
    }
    wait_until("a leader", MINUTE, || m.leader_among(&[0, 1, 2]).is_some());
    m.stop(2);
    for chunk in synthetic_entries(3000).chunks(100) {
        let body = serde_json::to_string(chunk).unwrap();
        assert!(
            m.append(0, &body, MINUTE).is_some(),
            "append through master 1"
        );
    }
    m.start(2, 3);
    wait_until("the three logs converge", MINUTE, || {
        m.converged(&[0, 1, 2])
    });
    let head = m.status(0).unwrap()["head"].as_u64().unwrap();
    wait_until("every master folds the head", MINUTE, || {
        (0..3).all(|i| state(&m, i, None).is_some_and(|s| offset_of(&s) >= head))
    });

    // The leader's offer cycle still runs (it offers the synthetic history's agents to its
    // frameworks) and may append between two reads: compare live states read at one offset.
    let mut live: Vec<String> = Vec::new();
    wait_until("the three live states at one offset", MINUTE, || {
        live = (0..3).map(|i| state(&m, i, None).unwrap()).collect();
        live.iter().all(|s| offset_of(s) == offset_of(&live[0]))
    });
    assert!(live[0].len() > 100_000, "a state worth comparing");
    assert_eq!(live[1], live[0], "master 2 folds what master 1 does");
    assert_eq!(live[2], live[0], "master 3, caught up from a snapshot, too");
    for as_of in [1, head / 2, head - 1] {
        let past: Vec<String> = (0..3).map(|i| state(&m, i, Some(as_of)).unwrap()).collect();
        assert_eq!(offset_of(&past[0]), as_of);
        assert!(past.iter().all(|p| *p == past[0]), "as of {as_of}");
    }
    for i in 0..3 {
        m.stop(i);
    }
}
