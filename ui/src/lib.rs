//! `cairn-ui`: the web UI, hand-written HTML, CSS and JavaScript embedded in the binary, with no
//! build step and nothing loaded from the internet.
//!
//! **Status.** Empty: the UI lands with issue #10.
//!
//! **Boundary.** No Rust dependencies; the UI talks only to the GraphQL API.
//!
//! **Invariants.** Every asset is served from the binary.
