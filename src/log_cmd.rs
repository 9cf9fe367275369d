//! `cairn log verify` and `cairn log dump`: offline inspection of a data dir's log. Both open
//! it for inspection only: they change nothing, not even a torn tail.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_log::engine::{OpenMode, Store};

use crate::config::log_path;

/// Records per read while dumping: bounds memory whatever the log's size.
const DUMP_CHUNK: usize = 10_000;

#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Check every record's checksum, the offsets, the hash chain and that each decodes; name
    /// the first bad offset.
    Verify {
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
        data_dir: PathBuf,
    },
    /// Print records as NDJSON, one per line.
    Dump {
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
        data_dir: PathBuf,
        /// First offset to print.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        from: u64,
        /// Last offset to print [default: the last record].
        #[arg(long)]
        to: Option<u64>,
    },
}

fn open(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    let path = log_path(data_dir);
    anyhow::ensure!(path.exists(), "data-dir: no log at {}", path.display());
    Ok(Store::open(&path, OpenMode::Inspect, 64 << 20)?)
}

pub fn main(command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::Verify { data_dir } => {
            let store = open(&data_dir)?;
            let head = store.tip().last;
            let report = store.verify(head, |_| {}).context("verify failed")?;
            println!(
                "ok: {} records, offsets 1..={}, chain intact, last at {}, tip hash {}",
                report.records,
                report.tip.last,
                report.tip.at,
                hex(&report.tip.hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Dump { data_dir, from, to } => {
            let store = open(&data_dir)?;
            let head = to.unwrap_or(u64::MAX).min(store.tip().last);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut next = from;
            while next <= head {
                let records = store.read(next, DUMP_CHUNK, head)?;
                let Some(last) = records.last() else { break };
                next = last.offset.get() + 1;
                for record in &records {
                    serde_json::to_writer(&mut out, record)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
