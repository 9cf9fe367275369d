//! `cairn-projections`: read models folded from the event log — cluster, tasks, apps, jobs and
//! audit — and the state as of any offset.
//!
//! **Role.** [`State`] holds every read model; [`Fold::apply`] folds one record into it. The
//! state as of offset N is the fold of records 1..=N, or of a checkpoint (a serialized
//! `State` at some M ≤ N) and records M+1..=N: checkpoints are a cache, never the truth.
//!
//! **Boundary.** The fold depends only on `cairn-log`'s vocabulary (`default-features = false`)
//! serde, and chrono with iso8601 for schedule arithmetic: never on storage, tokio or any API crate. Feature `live` adds [`live`]: the
//! state a master serves, folded from a running log, with checkpoints on disk, time travel and
//! its metrics. It is the crate's only I/O and sits on top of the fold, never inside it.
//!
//! **Invariants.** Pure and synchronous: a fold reads only the records it is given (time from
//! `Record::at`), never a clock, random numbers or hash-map iteration order (`clippy.toml`
//! here forbids them); so every replay of the same log gives byte-identical state
//! (`tests/determinism.rs`). The one hash table, inside [`IdMap`], only finds entries: it is
//! never iterated, and its seed decides where an entry sits in it, never what the state holds
//! or in which order; its order, merged on the first ordered read after a change, is that of
//! the keys alone. A fold never fails: a record that does not fit is counted in
//! [`Anomalies`] and replay goes on.

pub mod apps;
pub mod audit;
mod bulk;
pub mod cluster;
mod idmap;
pub mod jobs;
#[cfg(feature = "live")]
pub mod live;
pub mod schedule;
mod state;
#[cfg(feature = "synth")]
pub mod synth;
pub mod tasks;

use cairn_log::Record;

pub use idmap::IdMap;
pub use state::{Anomalies, Anomaly, Retention, State};

/// A read model built by folding records in offset order.
pub trait Fold {
    /// Folds the next record. Total: never fails, never panics. Takes the record, so that
    /// what the models keep of it (a task's spec, a status's message) is moved in, not copied:
    /// a replay has no other use for its records once folded.
    fn apply(&mut self, record: Record);
}

impl State {
    /// Folds the records of `records` that come after this state, up to offset `until`
    /// (inclusive): the step from a checkpoint to the state as of `until`.
    pub fn advance(&mut self, records: impl IntoIterator<Item = Record>, until: u64) {
        for record in records.into_iter().take_while(|r| r.offset.get() <= until) {
            if record.offset.get() > self.offset {
                self.apply(record);
            }
        }
    }
}
