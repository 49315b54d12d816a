//! Integration tests of claude-auth: real files, real processes, real locks.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod chain;
mod endpoint;
mod handover;
mod helper;
mod leaks;
mod refresh;
mod store;
