//! `cairn-scheduler`: the leader's deciders — the allocator (DRF resource offers), the apps
//! scheduler (Marathon semantics) and the jobs scheduler (Chronos semantics).
//!
//! **Status.** Empty: the deciders land with the offers/apps (#6) and jobs (#7) issues.
//!
//! **Boundary.** Depends on `cairn-projections` and `cairn-log`; nothing here serves HTTP.
//!
//! **Invariants.** Each decider is a pure `decide(state, now, input) -> Decision`: `now` is a
//! parameter, ids are minted by the runner before appending, and only the `runner` module
//! performs I/O (`clippy.toml` here forbids clocks and hash maps elsewhere).
