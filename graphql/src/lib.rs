//! `cairn-graphql`: the GraphQL API (async-graphql on axum) — queries over the projections,
//! `asOf` time travel, mutations, and subscriptions to the event stream.
//!
//! **Status.** Empty: the schema lands with the projections and GraphQL issue (#4).
//!
//! **Boundary.** Depends on `cairn-projections`, `cairn-scheduler` and `cairn-log`.
//!
//! **Invariants.** No domain decisions here: every write becomes validated inputs to deciders
//! or validated events, with the caller as the record's actor.
