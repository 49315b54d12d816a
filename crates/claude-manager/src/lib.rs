//! # claude-manager
//!
//! The facade: one [`ProcessManager`] that runs Claude Code sessions (and any other program)
//! with credentials, limits and health checks wired together, restarts them per a policy, caps
//! how many live at once, and reports events and metrics. It holds only orchestration; the
//! work is done by the crates it re-exports: [`proc`] (spawn, stop, stream-json),
//! [`auth`] (credentials), [`health`] (monitoring), [`limits`] (enforcement).
//!
//! ## Theory of operation
//!
//! [`ProcessManager::start`] validates a [`SessionSpec`] (its limits are planned by
//! [`plan_limits`] up front, so an unenforceable limit fails here) and starts one task per
//! session. Each run of a session goes through named stages (`src/session/`):
//!
//! 1. **queue**: wait for a slot under [`ManagerConfig::max_live`] (a semaphore: the cap
//!    bounds the processes that exist, queued starts wait);
//! 2. **prepare**: get a credential from the spec's `TokenManager` (expired OAuth logins are
//!    refreshed there; a fresh one after a rejection) to hand over by variable or descriptor,
//!    every competing variable removed, and build the configuration: for Claude a clean
//!    environment in which only the CLI's settings variables pass, its own `CLAUDE_CONFIG_DIR`;
//! 3. **spawn and watch**: spawn with the credential and limits hooks (cgroups, rlimits, soft
//!    enforcer), then watch the health monitor (samples, liveness, RSS, hang detection, and for
//!    stream-json sessions a liveness probe that pings the CLI with a control request), the
//!    timeout, stop and restart requests, and for Claude the stream-json output: `api_retry`
//!    lines and results carrying 401/403 are an auth failure, 429/529 a rate limit;
//! 4. **classify**: how the run ended ([`ExitKind`]) and what the restart engine should know;
//!    health outcomes and limits arrive as enums ([`health::HealthReason`],
//!    [`proc::LimitKind`]), never as text;
//! 5. **decide**: the restart engine ([`proc::RestartState`], the only place restart rules
//!    live, shared with [`proc::Supervisor`]) answers: an auth failure earns one immediate
//!    restart with a refreshed credential, a second in a row is final; otherwise the policy
//!    (never / on-failure / always, at most N per window, full-jitter backoff, circuit breaker),
//!    with a jittered pause after a rate-limited run.
//!
//! Every step is an event ([`ManagerEvent`], [`ManagerEvent::to_json`]); the session's end is
//! a [`SessionReport`] with the CPU time of all runs, the peak RSS, restarts and, for
//! Claude, turns and cost.
//!
//! **Settings.** [`SETTINGS`] declares every operator setting once (key, value, help, parser,
//! where it lands); flags, `CLAUDE_PM_*` variables and config-file keys are derived from it,
//! and [`Settings`] layers the three onto a [`SessionSpec`] and a [`ManagerConfig`]. Value
//! ranges are the owning types' own (`ResourceLimits::validate`).
//!
//! ## Caveats
//!
//! Dropping a [`SessionHandle`] or the [`ProcessManager`] stops the sessions (gracefully, in
//! the background); if the runtime itself shuts down, claude-proc kills and reaps every tree
//! synchronously. Probes run inside the health monitor's loop: a probe that takes its whole
//! timeout delays the next sample by as much.
//!
//! ## Example
//!
//! ```no_run
//! use claude_manager::{ManagerConfig, ProcessManager, SessionSpec};
//!
//! # async fn demo() -> Result<(), claude_manager::Error> {
//! let manager = ProcessManager::new(ManagerConfig { max_live: 4, ..Default::default() });
//! let mut spec = SessionSpec::claude("review", ["-p", "review this diff", "--output-format", "json"]);
//! spec.limits.max_memory = Some(2 << 30);
//! spec.limits.timeout = Some(std::time::Duration::from_secs(600));
//! let mut session = manager.start(spec)?;
//! let report = session.wait().await?;
//! println!("{}: {} after {:?}", report.name, report.reason, report.wall);
//! # Ok(())
//! # }
//! ```

mod error;
mod events;
mod manager;
mod metrics;
mod plan;
mod pool;
mod report;
mod session;
mod settings;
mod spec;
mod tee;
mod units;

pub use claude_auth as auth;
pub use claude_health as health;
pub use claude_limits as limits;
pub use claude_proc as proc;
pub use claude_sandbox as sandbox;

pub use claude_sandbox::{Level as IsolationLevel, Network, UidRange};
pub use error::{describe_error, Error, Result};
pub use events::{EventKind, LimitAction, ManagerEvent, SessionState};
pub use manager::{ManagerConfig, ProcessManager, Run, SessionHandle, SessionInfo};
pub use metrics::MetricsSnapshot;
pub use plan::plan_limits;
pub use plan::{api_url, plan_sandbox};
pub use pool::{PoolConfig, PoolStats, PooledSession, SessionPool};
pub use report::{ClaudeOutcome, ExitKind, SessionReport};
pub use settings::{
    setting, Setting, Settings, SettingsSource, MAX_CONFIG_BYTES, SESSION_TABLES, SETTINGS,
};
pub use spec::{HealthSpec, Program, SessionDirs, SessionSpec};
pub use units::{parse_duration, parse_size, MAX_DURATION};

/// Start the watchdog (once per process) that, if this process is killed outright, SIGKILLs
/// every process of its sessions' trees (descendants and `setsid` escapees included: they
/// carry the tree marker) and removes the cgroups it created. See
/// [`claude_proc::start_watchdog`]; `claude-pm` calls it at start.
pub async fn start_watchdog() -> Result<()> {
    let root = claude_limits::CgroupV1Root::system();
    let dirs: Vec<std::path::PathBuf> = ["memory", "cpu", "pids", "blkio"]
        .iter()
        .filter_map(|c| root.own_dir(c))
        .collect();
    claude_proc::start_watchdog(&dirs).await?;
    Ok(())
}
