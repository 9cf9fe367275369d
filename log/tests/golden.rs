//! Golden logs: a log written by every released format must still decode, to the same events.
//!
//! `golden/vN.frames` holds the exact bytes that format N stored (frames, checksums, hash
//! chain). It is written once, when format N is released, and never again:
//! `CAIRN_WRITE_GOLDEN_FRAMES=1 cargo test -p cairn-log --test golden` creates a missing one
//! from `vN.events.jsonl`. `vN.events.jsonl` is what today's binary must decode those bytes
//! to; when a release adds a field (with a default), regenerate it deliberately with
//! `CAIRN_UPDATE_GOLDEN=1`. `v5.events.jsonl` is the records of formats 1 to 4, renumbered:
//! the first packed format holds every event kind.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cairn_log::codec::{self, ChainCheck, Frames, Header, GENESIS};
use cairn_log::event::{Entry, EventKind};
use cairn_log::Record;
use strum::IntoEnumIterator;

/// Every released format, oldest first.
const FORMATS: &[u16] = &[1, 2, 3, 4, 5];
/// The formats with packed payloads.
const PACKED: &[u16] = &[5];

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn frames_from_jsonl(format: u16, jsonl: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = GENESIS;
    for line in jsonl.lines() {
        let r: Record = serde_json::from_str(line).expect("golden jsonl line");
        let header = Header {
            format,
            offset: r.offset.get(),
            term: r.term,
            at: r.at,
            prev_hash: prev,
        };
        let entry = Entry {
            actor: r.actor,
            event: r.event,
        };
        let payload = if format <= codec::JSON_FORMAT {
            serde_json::to_vec(&entry).unwrap()
        } else {
            codec::Payload::pack(&entry).unwrap().bytes().to_vec()
        };
        prev = codec::write_frame(&mut out, &header, &payload);
    }
    out
}

fn decode_all(bytes: &[u8]) -> Vec<Record> {
    let mut chain = ChainCheck::genesis();
    Frames::new(bytes, 1)
        .map(|frame| {
            let frame = frame.expect("golden frame intact");
            chain.check(&frame).expect("golden chain intact");
            frame.decode().expect("golden record decodes")
        })
        .collect()
}

#[test]
fn every_released_format_still_decodes_to_its_events() {
    for format in FORMATS {
        let frames_path = golden(&format!("v{format}.frames"));
        let jsonl_path = golden(&format!("v{format}.events.jsonl"));
        let expected = std::fs::read_to_string(&jsonl_path).unwrap();
        if !frames_path.exists() {
            assert!(
                std::env::var_os("CAIRN_WRITE_GOLDEN_FRAMES").is_some(),
                "{} is missing: set CAIRN_WRITE_GOLDEN_FRAMES=1 once, when format {format} is released",
                frames_path.display()
            );
            std::fs::write(&frames_path, frames_from_jsonl(*format, &expected)).unwrap();
        }
        let bytes = std::fs::read(&frames_path).unwrap();
        let decoded: String = decode_all(&bytes)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&jsonl_path, &decoded).unwrap();
        }
        for (n, (got, want)) in decoded.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "v{format} record {} decodes differently", n + 1);
        }
        assert_eq!(decoded.lines().count(), expected.lines().count());
    }
}

/// Every event kind in the golden logs, and in the packed ones alone too: there a field's
/// position is its name, so each struct's order must be pinned.
#[test]
fn the_golden_logs_cover_every_event_kind() {
    for (formats, which) in [(FORMATS, "golden"), (PACKED, "packed golden")] {
        let mut seen = BTreeSet::new();
        for format in formats {
            let bytes = std::fs::read(golden(&format!("v{format}.frames"))).unwrap();
            seen.extend(decode_all(&bytes).iter().map(|r| r.event.kind()));
        }
        let missing: Vec<EventKind> = EventKind::iter().filter(|k| !seen.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "no {which} record of {missing:?}: add them to a new format's golden log"
        );
    }
}
