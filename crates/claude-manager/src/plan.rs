//! The limits a session's runs get, planned once: [`ProcessManager::start`] attaches the hook
//! this returns, and `claude-pm doctor` prints its report, so what doctor says and what runs
//! cannot differ.
//!
//! [`ProcessManager::start`]: crate::ProcessManager::start

use claude_limits::{block_device_of, LimitsHook};

use crate::error::Result;
use crate::spec::SessionSpec;

/// Validate `spec`'s limits and choose what enforces each one on this host
/// ([`LimitsHook::report`] says which). A disk IO limit without a device applies to the disk
/// holding the session's working directory. Fails, naming the limit, when one cannot be
/// enforced here (unless the spec's options allow best effort).
pub fn plan_limits(spec: &SessionSpec) -> Result<LimitsHook> {
    let mut options = spec.limit_options.clone();
    if spec.limits.max_disk_io.is_some() && options.io_device.is_none() {
        let dir = spec
            .cwd
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| ".".into());
        options.io_device = block_device_of(&dir);
    }
    Ok(LimitsHook::new(spec.limits, options)?)
}
