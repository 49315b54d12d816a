//! The limits and the isolation a session's runs get, planned once: [`ProcessManager::start`]
//! attaches the hooks these return, and `claude-pm doctor` prints their reports, so what doctor
//! says and what runs cannot differ.
//!
//! [`ProcessManager::start`]: crate::ProcessManager::start

use std::path::PathBuf;

use claude_limits::{block_device_of, LimitsHook};
use claude_sandbox::{SandboxConfig, SessionSandbox};

use crate::error::Result;
use crate::manager::ManagerConfig;
use crate::spec::SessionSpec;

/// The isolation `spec` asks for, checked against this host and leased: a uid from the spec's
/// range held for the session's life, its working directory granted. `None` without
/// isolation. Sandboxed sessions see neither the lease directory nor `manager`'s state
/// directory. Fails, naming what is missing, when the level cannot be enforced here.
pub fn plan_sandbox(spec: &SessionSpec, manager: &ManagerConfig) -> Result<Option<SessionSandbox>> {
    let mut config = SandboxConfig::default();
    config.level = spec.isolation;
    config.uid_range = spec.uid_range;
    config.lease_dir = manager.lease_dir.clone();
    // The manager's own state (a daemon's socket, registry and logs) is no session's to see.
    config.hidden.extend(manager.state_dir.iter().cloned());
    config.network = spec.network;
    config.api_url = api_url(spec);
    Ok(SessionSandbox::start(&config, &workdir_of(spec))?)
}

/// The API the session's CLI talks to: its `ANTHROPIC_BASE_URL` (the spec's, else the one it
/// inherits), else the CLI's default.
pub fn api_url(spec: &SessionSpec) -> String {
    let name = std::ffi::OsStr::new("ANTHROPIC_BASE_URL");
    spec.env
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .or_else(|| std::env::var("ANTHROPIC_BASE_URL").ok())
        .unwrap_or_else(|| claude_sandbox::DEFAULT_API_URL.to_owned())
}

/// The session's working directory: the spec's, or the manager's.
fn workdir_of(spec: &SessionSpec) -> PathBuf {
    spec.cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Validate `spec`'s limits and choose what enforces each one on this host
/// ([`LimitsHook::report`] says which). A disk IO limit without a device applies to the disk
/// holding the session's working directory. Fails, naming the limit, when one cannot be
/// enforced here (unless the spec's options allow best effort).
pub fn plan_limits(spec: &SessionSpec) -> Result<LimitsHook> {
    let mut options = spec.limit_options.clone();
    if spec.limits.max_disk_io.is_some() && options.io_device.is_none() {
        options.io_device = block_device_of(&workdir_of(spec));
    }
    Ok(LimitsHook::new(spec.limits, options)?)
}
