//! claude-limits on this machine's real kernel interfaces (cgroup v1 beneath the test's own
//! cgroups, rlimits): every limit is proven by measurement.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod enforce;
mod soft;
mod v2;

/// CPU- and memory-heavy tests run one at a time (the machine has two cores).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
