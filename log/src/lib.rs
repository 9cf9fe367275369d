//! `cairn-log`: the event vocabulary and the durable, hash-chained log that holds every
//! cluster event forever, and the wire shapes agents and masters exchange.
//!
//! **Role.** [`event`] defines the one vocabulary of past-tense facts (`AgentRegistered`,
//! `TaskStatusUpdated`, `JobRunTriggered`, …) and [`Record`] the stored shape of each: offset,
//! leader term, leader-assigned time and actor. [`codec`] frames records with a checksum and
//! chains them by hash; [`indexed`] is the compact encoding of payloads (and of checkpoints).
//! With the default `engine` feature, [`engine`] replicates the log
//! across masters with Raft (openraft), stores frames in sled with group commit, and serves
//! reads and subscriptions. [`protocol`] is the agent protocol's wire shapes: the agent and the
//! master's runner both speak it, and neither may depend on the other.
//!
//! **Boundary.** The vocabulary and codec depend only on serde (JSON, MessagePack), base64,
//! chrono and the hash/checksum crates; sled, openraft, tokio, HTTP and metrics come only with `engine`, so `projections` and `agent` use
//! this crate with `default-features = false` and never compile storage. Nothing here knows
//! about projections, scheduling or APIs.
//!
//! **Invariants.**
//! - Offsets are dense from 1; `at` never goes back; every record's `prev_hash` is the hash of
//!   the record before it.
//! - An append is acknowledged only after it is durable (fsync) on a quorum of masters and
//!   applied; nothing is read before it is applied, and every member applies the same
//!   entries to byte-identical frames.
//! - The encoding evolves append-only: a log written by any earlier format decodes; a record of
//!   a newer format is refused, never misread.
//! - The log is never rewritten, except that a torn tail found at open is cut (and kept aside).

pub mod codec;
#[cfg(feature = "engine")]
pub mod engine;
mod error;
pub mod event;
pub mod indexed;
pub mod protocol;
mod record;

pub use error::{Error, Result};
pub use record::{Offset, Record};
