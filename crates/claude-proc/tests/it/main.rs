//! Integration tests of claude-proc against real processes on this machine.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod support;

mod config;
mod hooks;
mod lifecycle;
mod namespaces;
mod output;
mod parent_death;
mod real_cli;
mod session;
mod stop;
mod supervisor;
