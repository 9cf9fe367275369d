//! `cairn-graphql`: the GraphQL API at `/graphql`: the projections (cluster, agents,
//! frameworks, offers, tasks, apps, deployments, jobs, runs, audit), the raw event log as a
//! Relay connection, each of them as of any offset or time, diffs between two moments, and the
//! event stream as a websocket subscription (`graphql-transport-ws`, also on `/graphql`).
//! `GET /graphql` in a browser opens a query console served from this binary.
//!
//! **Role.** Translates GraphQL requests into reads of [`cairn_projections::live::Projector`]
//! and of the log; it owns the schema, its limits and its error codes.
//!
//! **Boundary.** Reads the projections (state, time travel) and the log (events,
//! subscriptions); writes only through the leader's runner (`cairn-scheduler`), which decides
//! and appends. Its one other I/O: `Task.output` reads a task's stdout/stderr from its agent's
//! sandbox API (`sandbox`), so a browser needs no route to agents. The root binary mounts
//! [`router`].
//!
//! **Invariants.**
//! - On a master with tokens ([`auth`]), every API request is answered only to a token whose
//!   role allows it; mutations need `operate`.
//! - A mutation that reaches a follower is forwarded to the leader ([`forward`]); queries
//!   are answered by the master asked.
//! - One request sees one state: every field without `asOf` reads the live state through a
//!   single read guard taken once per request; `asOf` fields read immutable states.
//! - Limits ([`limits`]) on body size, depth, complexity and page size reject a request before
//!   any resolver runs; every error carries a stable `extensions.code` ([`Code`]).
//! - The committed SDL (`graphql/schema.graphql`) is the schema: a test fails on any change
//!   that is not also made there.

pub mod auth;
mod events;
pub mod forward;
mod http;
pub mod limits;
mod model;
mod mutation;
mod query;
mod sandbox;
mod views;

use async_graphql::Schema;
use cairn_log::engine::Log;
use cairn_projections::live::Projector;
use cairn_scheduler::Runner;

pub use forward::FORWARDED_FOR;
pub use http::{actor, router};

/// The schema type served at `/graphql`.
pub type CairnSchema = Schema<query::Query, mutation::Mutation, events::Subscription>;

/// Stable values of `extensions.code` on every error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// The request is not valid GraphQL, or breaks a limit or an argument's rule.
    Validation,
    /// The body is not a GraphQL request.
    BadRequest,
    /// The body is over the size limit.
    BodyTooLarge,
    /// What was asked for does not exist (at that moment).
    NotFound,
    /// The request needs credentials.
    Unauthenticated,
    /// The credentials presented do not allow this request.
    Forbidden,
    /// The request conflicts with the current state.
    Conflict,
    /// A write reached a master that is not the leader.
    NotLeader,
    /// The query ran longer than the limit.
    Timeout,
    /// Something failed inside cairn.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An error with its code.
pub(crate) fn error(code: Code, message: impl Into<String>) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

/// Builds the schema over a projector, its log and the runner that takes writes.
pub fn schema(projector: Projector, log: Log, runner: Runner) -> CairnSchema {
    Schema::build(query::Query, mutation::Mutation, events::Subscription)
        .limit_depth(limits::MAX_DEPTH)
        .limit_complexity(limits::MAX_COMPLEXITY)
        .limit_directives(limits::MAX_DIRECTIVES)
        .extension(limits::Limits)
        .data(projector)
        .data(log)
        .data(runner)
        .data(sandbox::Sandboxes::new())
        .finish()
}

/// The schema's SDL, as committed in `graphql/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(query::Query, mutation::Mutation, events::Subscription)
        .finish()
        .sdl()
}
