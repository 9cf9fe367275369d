//! `cairn-projections`: read models folded from the event log — cluster, tasks, apps, jobs and
//! audit — and the state as of any offset or time.
//!
//! **Status.** Empty: the folds land with the projections issue (#4). This crate exists now so
//! that the workspace has its final shape and its boundary is fixed from the start.
//!
//! **Boundary.** Depends only on `cairn-log`'s vocabulary (`default-features = false`): never
//! on storage, tokio or any API crate.
//!
//! **Invariants.** Pure and synchronous: a fold reads only the records it is given (time from
//! `Record::at`), never a clock, random numbers or hash-map iteration order (`clippy.toml` here
//! forbids them), so every replay of the same log gives byte-identical state.
