//! Crash safety: a writer process appending under load is killed with SIGKILL at random
//! moments, many times; every append it acknowledged must survive, in order, with an intact
//! hash chain. Reproduce a failure with the printed `CAIRN_CRASH_SEED`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_log::engine::{Log, LogConfig, SystemClock};
use cairn_log::event::Event;
use cairn_log::Offset;
use cairn_tests::{Lines, Proc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prometheus_client::registry::Registry;
use rand::{Rng, SeedableRng};

/// One acknowledged append, as the writer printed it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    appender: u64,
    first_seq: u64,
    last_seq: u64,
    first: u64,
    last: u64,
}

fn parse(line: &str) -> Ack {
    let f: Vec<u64> = line
        .strip_prefix("ack ")
        .unwrap_or_else(|| panic!("unexpected writer output {line:?}"))
        .split(' ')
        .map(|n| n.parse().expect("number"))
        .collect();
    Ack {
        appender: f[0],
        first_seq: f[1],
        last_seq: f[2],
        first: f[3],
        last: f[4],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_appends_survive_sigkill() {
    let seed: u64 = match std::env::var("CAIRN_CRASH_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("reproduce with CAIRN_CRASH_SEED={seed:#x}");
    let kills: usize =
        std::env::var("CAIRN_CRASH_KILLS").map_or(30, |k| k.parse().expect("number"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = cairn_tests::workdir();
    let log_dir = dir.path().join("log");

    let mut acked = Vec::new();
    for round in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&log_dir)
            .arg("8")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Lines::new(child.stdout.take().unwrap());
        let child = Proc(child);
        // Sometimes before the first ack (while opening), mostly mid-stream.
        let wait_for = if rng.random_ratio(1, 6) {
            0
        } else {
            rng.random_range(1..300)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..wait_for {
            let line = lines
                .next_before(deadline)
                .unwrap_or_else(|| panic!("round {round}: the writer stopped acknowledging"));
            acked.push(parse(&line));
        }
        kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).unwrap();
        // Acks printed before the kill landed are promises too.
        acked.extend(
            lines
                .drain(Duration::from_secs(30))
                .iter()
                .map(|l| parse(l)),
        );
        drop(child);
    }
    assert!(
        acked.len() > kills * 50,
        "too few acks to mean anything: {}",
        acked.len()
    );

    let log = Log::open_single_node(
        LogConfig::new(&log_dir),
        Arc::new(SystemClock),
        &mut Registry::default(),
    )
    .await
    .expect("the log reopens after every crash");
    let report = log
        .verify()
        .expect("offsets dense, chain intact, every record decodes");
    let mut task_at = BTreeMap::new();
    let mut leaderships = 0;
    let mut from = Offset::FIRST;
    while from.get() <= log.head() {
        for r in log.read(from, 50_000).unwrap() {
            match &r.event {
                Event::TaskStatusUpdated(u) => {
                    task_at.insert(r.offset.get(), u.task_id.to_string());
                }
                // Each start of the writer records that it leads.
                Event::LeaderElected(_) => leaderships += 1,
                other => panic!("unexpected {other:?}"),
            }
            from = r.offset.next();
        }
    }
    assert_eq!(task_at.len() as u64 + leaderships, report.records);

    let mut owner = BTreeMap::new();
    for ack in &acked {
        assert_eq!(
            ack.last - ack.first,
            ack.last_seq - ack.first_seq,
            "{ack:?}"
        );
        for (offset, seq) in (ack.first..=ack.last).zip(ack.first_seq..) {
            let want = format!("w{}-{seq}", ack.appender);
            let got = task_at
                .get(&offset)
                .unwrap_or_else(|| panic!("acked offset {offset} is gone ({ack:?})"));
            assert_eq!(
                got, &want,
                "offset {offset} holds another entry than acknowledged"
            );
            assert!(
                owner.insert(offset, *ack).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
    }
    eprintln!(
        "{} kills, {} acknowledged appends, {} records, all present",
        kills,
        acked.len(),
        report.records
    );
}
