//! A log writer to be killed: appends under load from several concurrent appenders and prints
//! one line per acknowledged append, *after* the acknowledgement:
//! `ack <appender> <first seq> <last seq> <first offset> <last offset>`.
//! The crash test kills it with SIGKILL and checks that every printed append survived.
//!
//! Usage: `crash-writer <log dir> <appenders>`

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cairn_log::engine::{Log, LogConfig, SystemClock};
use cairn_log::event::Entry;
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .context("usage: crash-writer <log dir> <appenders>")?;
    let appenders: u64 = args.next().context("missing <appenders>")?.parse()?;
    let log = Log::open_single_node(
        LogConfig::new(dir),
        Arc::new(SystemClock),
        &mut Registry::default(),
    )
    .await?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let tasks: Vec<_> = (0..appenders)
        .map(|appender| tokio::spawn(append_forever(log.clone(), out.clone(), appender)))
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn append_forever(
    log: Log,
    out: Arc<Mutex<std::io::Stdout>>,
    appender: u64,
) -> anyhow::Result<()> {
    let mut seq = 0u64;
    loop {
        // Batches of 1..=64 entries, varying so that groups and chunks vary in size.
        let n = 1 + (seq * 7 + appender * 13) % 64;
        let batch: Vec<Entry> = (seq..seq + n)
            .map(|s| cairn_tests::crash_entry(appender, s))
            .collect();
        let ack = log.append(batch).await?;
        let mut out = out.lock().expect("stdout lock");
        writeln!(
            out,
            "ack {appender} {seq} {} {} {}",
            seq + n - 1,
            ack.first,
            ack.last
        )?;
        out.flush()?;
        seq += n;
    }
}
