//! claude-health against real processes: what the sampler measures is what they do.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod checker;
mod sampler;

/// CPU-, rate- and timing-sensitive tests run one at a time (the machine has two cores).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
