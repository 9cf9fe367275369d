//! `cairn-agent`: the agent — registration with the leading master, executors (processes and
//! Docker via bollard), health checks, and status updates kept until acknowledged.
//!
//! **Status.** Empty: the agent lands with the agents issue (#5).
//!
//! **Boundary.** Depends on `cairn-log`'s vocabulary only (`default-features = false`): the
//! agent never compiles the log's storage and never reads projections; it learns everything
//! from the commands the master sends.
//!
//! **Invariants.** A status update is stored durably before it is sent and deleted only when
//! the master acknowledges it with the offset where it was logged.
