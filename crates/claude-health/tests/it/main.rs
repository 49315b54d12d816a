//! claude-health against real processes: what the sampler measures is what they do.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

mod sampler;
