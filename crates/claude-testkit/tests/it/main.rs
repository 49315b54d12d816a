//! The stand-in API over real HTTP, and against the real pinned CLI.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod cli;
mod http;
