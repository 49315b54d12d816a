//! The `claude-pm` binary as users run it: exit statuses, events, signals, the claude
//! subcommand against the stand-in API, doctor.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod cli;
mod edges;
mod integrity;
mod isolation;
mod registry;
mod serve;
mod settings;
mod terminal;
mod top;
mod web;

/// Heavy tests run one at a time (the machine has two cores).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
