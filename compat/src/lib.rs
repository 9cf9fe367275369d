//! `cairn-compat`: the Marathon `/v2`, Chronos `/scheduler` and Mesos master/agent HTTP APIs,
//! so that existing clients work against cairn unchanged.
//!
//! **Status.** Empty: the compatible APIs land with issue #9.
//!
//! **Boundary.** Depends on `cairn-projections`, `cairn-scheduler` and `cairn-log`.
//!
//! **Invariants.** Translation only: each endpoint maps to the same inputs and events as the
//! GraphQL API; no logic of its own.
