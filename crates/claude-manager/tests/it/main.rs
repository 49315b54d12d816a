//! The facade against real processes, real cgroups and the real CLI on the stand-in API.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod claude;
mod control;
mod host;
mod isolation;
mod large;
mod permissions;
mod pool;
mod resume;
mod supervise;

/// CPU- and memory-heavy tests run one at a time (the machine has two cores).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether `pid` is gone (or a zombie not ours to care about).
pub(crate) fn gone(pid: u32) -> bool {
    use claude_manager::health::{ProcState, Sampler};
    Sampler::default()
        .process(pid)
        .map_or(true, |p| p.state == ProcState::Zombie)
}
