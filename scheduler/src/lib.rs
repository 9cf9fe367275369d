//! `cairn-scheduler`: the leader's deciders — the agents decider (registration,
//! reconciliation, lost agents, command routing), one-off task placement, the allocator (DRF
//! offers to every framework), the apps scheduler (Marathon semantics, a built-in framework
//! that takes offers: [`apps`], its placement [`constraints`] and the changes that start
//! [`deployments`]), the jobs scheduler ([`jobs`], Chronos semantics) and external
//! frameworks' calls ([`external`], Mesos' scheduler API).
//!
//! **Boundary.** Depends on `cairn-projections` and `cairn-log` (its vocabulary, the agent
//! protocol's shapes, and the engine for the runner); nothing here serves HTTP: the binary
//! mounts routes that call the [`runner::Runner`].
//!
//! **Invariants.** Each decider is a pure function of the state and its input: `now` is a
//! parameter, ids are minted by the runner before deciding, and only the [`runner`] module
//! performs I/O (`clippy.toml` here forbids clocks and hash maps elsewhere). The runner takes
//! one decision at a time, each on the state that includes every earlier one.

pub mod agents;
pub mod allocator;
pub mod apps;
pub mod chronos;
pub mod constraints;
pub mod deployments;
pub mod external;
pub mod framework;
pub mod jobs;
mod json;
pub mod marathon;
pub mod runner;
pub mod tasks;

pub use runner::{Error, Runner, RunnerConfig};
