//! `cairn dev` as a user runs it: a real process on loopback, its endpoints, a clean stop on
//! SIGTERM, and the offline `cairn log verify` / `cairn log dump` over what it wrote.

use std::process::{Command, Output};

use cairn_tests::dev::Dev;
use cairn_tests::{cairn_bin, free_port, http_get};

fn cairn(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn dev_serves_health_and_metrics_stops_cleanly_and_leaves_a_verifiable_log() {
    let dir = cairn_tests::workdir();
    let port = free_port();
    let dev = Dev::start_with(dir.path(), None, port);
    assert_eq!(http_get(port, "/livez").unwrap(), (200, "ok\n".into()));
    assert_eq!(http_get(port, "/readyz").unwrap(), (200, "ready\n".into()));
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "cairn_log_appended_records_total 1",
        "cairn_log_head_offset 1",
        // The master's own projections follow the log, and so does the runner's command
        // router.
        "cairn_log_subscribers 2",
        "cairn_log_group_commits_total 1",
        "cairn_log_commit_seconds_count 1",
        // No as-of query was asked.
        "cairn_projections_as_of_computing 0",
        "cairn_projections_as_of_computed_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from\n{metrics}"
        );
    }
    let flushes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_log_flush_seconds_count "));
    assert!(
        flushes.is_some_and(|n| n.parse::<u64>().unwrap() >= 1),
        "{metrics}"
    );
    assert_eq!(http_get(port, "/nope").unwrap().0, 404);
    dev.stop();

    // A second start continues the same log, and records that it leads again.
    let dev = Dev::start_with(dir.path(), None, port);
    dev.stop();

    let verify = cairn(&["log", "verify"], dir.path());
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        stdout(&verify).starts_with("ok: 2 records, offsets 1..=2, chain intact"),
        "{}",
        stdout(&verify)
    );

    let dump = stdout(&cairn(&["log", "dump"], dir.path()));
    let records: Vec<serde_json::Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    let mut last_term = 0;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["offset"], i as u64 + 1);
        let term = r["term"].as_u64().unwrap();
        assert!(term >= last_term.max(1), "terms never go back");
        last_term = term;
        assert_eq!(
            r["event"]["LeaderElected"]["term"], term,
            "recorded in the term it names"
        );
        assert_eq!(
            r["event"]["LeaderElected"]["address"],
            format!("127.0.0.1:{port}")
        );
        assert_eq!(r["actor"]["principal"]["master"]["node_id"], 1);
    }
    let second = stdout(&cairn(
        &["log", "dump", "--from", "2", "--to", "2"],
        dir.path(),
    ));
    assert_eq!(second.lines().count(), 1);
    assert_eq!(second.lines().next(), dump.lines().nth(1));
}

#[test]
fn verify_names_the_first_bad_offset() {
    let dir = cairn_tests::workdir();
    let port = free_port();
    for _ in 0..3 {
        let dev = Dev::start_with(dir.path(), None, port);
        dev.stop();
    }
    {
        let db = sled::Config::new()
            .path(dir.path().join("log"))
            .segment_size(cairn_log::engine::SEGMENT_BYTES)
            .open()
            .unwrap();
        let events = db.open_tree("events").unwrap();
        let mut value = events.get(2u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let at = value.len() - 10;
        value[at] ^= 0x01;
        events.insert(2u64.to_be_bytes(), value).unwrap();
        db.flush().unwrap();
    }
    let verify = cairn(&["log", "verify"], dir.path());
    assert_eq!(verify.status.code(), Some(1));
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        err.contains("record at offset 2 is corrupt: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let dir = cairn_tests::workdir();
    let out = Command::new(cairn_bin())
        .args(["dev", "--listen", "0.0.0.0:5999", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen: cairn serves loopback only"), "{err}");
    assert!(!dir.path().join("log").exists(), "nothing was created");

    let missing = dir.path().join("nothing-here");
    let out = cairn(&["log", "verify"], &missing);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data-dir: no log at"));
}
