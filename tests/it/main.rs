//! The quick soak, the chaos tests and the checks that the reliability table names real tests.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod chaos;
mod docs;
mod soak;

/// Heavy tests run one at a time (the machine has two cores).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
