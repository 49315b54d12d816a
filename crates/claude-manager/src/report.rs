//! How a session ended, in the terms operators and scripts use.

use std::fmt;
use std::time::Duration;

use claude_proc::{ExitReason, LimitKind, StopCause};

/// Why a session ended (the `reason` of the `exit` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitKind {
    /// It exited by itself (any code).
    Exited,
    /// A signal the manager did not send ended it.
    Signaled,
    /// The wall-clock timeout ran out.
    Timeout,
    /// The memory limit ended it (cgroup OOM kill or the soft limit).
    MemoryLimit,
    /// It failed after the pids limit refused a fork.
    PidsLimit,
    /// `RLIMIT_CPU` ended it.
    CpuTimeLimit,
    /// Hang detection found no progress while work was in flight.
    Hung,
    /// Health checks judged it unhealthy.
    Unhealthy,
    /// Authentication failed (and a refreshed credential did not help).
    AuthFailed,
    /// It could not be started.
    SpawnFailed,
    /// Stopped on request.
    Stopped,
    /// The manager's own supervision of the session failed (a bug: the report's detail says
    /// what); the session's processes were killed.
    InternalError,
}

impl ExitKind {
    /// The name in events and reports (`memory_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExitKind::Exited => "exited",
            ExitKind::Signaled => "signaled",
            ExitKind::Timeout => "timeout",
            ExitKind::MemoryLimit => "memory_limit",
            ExitKind::PidsLimit => "pids_limit",
            ExitKind::CpuTimeLimit => "cpu_time_limit",
            ExitKind::Hung => "hung",
            ExitKind::Unhealthy => "unhealthy",
            ExitKind::AuthFailed => "auth_failed",
            ExitKind::SpawnFailed => "spawn_failed",
            ExitKind::Stopped => "stopped",
            ExitKind::InternalError => "internal_error",
        }
    }

    /// Classify a run's exit.
    pub fn of(reason: &ExitReason) -> ExitKind {
        match reason.cause() {
            None => match reason {
                ExitReason::Signaled { .. } => ExitKind::Signaled,
                _ => ExitKind::Exited,
            },
            Some(cause) => match cause {
                StopCause::Requested => ExitKind::Stopped,
                StopCause::Timeout => ExitKind::Timeout,
                StopCause::Hung => ExitKind::Hung,
                StopCause::Unhealthy { .. } => ExitKind::Unhealthy,
                StopCause::AuthFailed => ExitKind::AuthFailed,
                StopCause::LimitExceeded { limit } => match limit {
                    LimitKind::Memory => ExitKind::MemoryLimit,
                    LimitKind::Pids => ExitKind::PidsLimit,
                    LimitKind::CpuTime => ExitKind::CpuTimeLimit,
                    LimitKind::Timeout => ExitKind::Timeout,
                    // SIGXFSZ and the like: the signal tells it.
                    _ => ExitKind::Signaled,
                },
                _ => ExitKind::Stopped,
            },
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a Claude turn, from the CLI's `result` line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaudeOutcome {
    /// Turns the CLI reported.
    pub turns: u32,
    /// Cost the CLI reported, USD.
    pub cost_usd: f64,
    /// Whether the last result was an error.
    pub is_error: bool,
    /// The HTTP status of the API error behind it, if any.
    pub api_error_status: Option<u16>,
    /// Results seen (one per turn).
    pub results: u32,
    /// The conversation's id, as the CLI last reported it (its `init` and `result` lines).
    pub session_id: Option<String>,
}

/// How a session ended: the last run's exit plus what the manager measured over all runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionReport {
    /// The session's name.
    pub name: String,
    /// Why it ended.
    pub reason: ExitKind,
    /// The last run's exit code, if it exited with one.
    pub code: Option<i32>,
    /// The signal that ended the last run, if one did.
    pub signal: Option<i32>,
    /// Whether the manager (stop sequence or an enforcer) sent that signal.
    pub signal_sent_by_manager: bool,
    /// CPU time of all runs' whole trees: the cgroup's accounting where the session has a CPU
    /// cgroup; otherwise the higher of the sampled ledger (every process the tree had, killed
    /// and orphaned ones included, up to their last sample) and the kernel's accounting of the
    /// leader and what it reaped.
    pub cpu_time: Duration,
    /// The highest peak memory of any run's whole tree: the memory cgroup's peak where the
    /// session has a memory cgroup (page cache included, as the limit counts it); otherwise the
    /// higher of the largest sampled tree RSS and the kernel's peak of the largest single
    /// process (read at exit, so a burst between samples counts).
    pub max_rss_bytes: u64,
    /// From the first start to the end.
    pub wall: Duration,
    /// Restarts: runs whose process was started, less the first (a run that failed before its
    /// process could start, such as a refresh that failed, is not one).
    pub restarts: u32,
    /// A human sentence: the last exit, a spawn error, the stderr tail's last line.
    pub detail: String,
    /// Claude sessions: what the CLI's results said.
    pub claude: Option<ClaudeOutcome>,
}

impl SessionReport {
    /// A report of `reason` with nothing measured yet (no code, signal, time or restarts).
    pub fn new(name: impl Into<String>, reason: ExitKind) -> Self {
        SessionReport {
            name: name.into(),
            reason,
            code: None,
            signal: None,
            signal_sent_by_manager: false,
            cpu_time: Duration::ZERO,
            max_rss_bytes: 0,
            wall: Duration::ZERO,
            restarts: 0,
            detail: String::new(),
            claude: None,
        }
    }
}

/// The exit code and signal of an `ExitReason`, and whether the manager sent the signal.
pub(crate) fn code_and_signal(reason: &ExitReason) -> (Option<i32>, Option<i32>, bool) {
    match reason {
        ExitReason::Exited { code } => (Some(*code), None, false),
        ExitReason::Signaled { signal, .. } => (None, Some(*signal), false),
        ExitReason::Stopped { exit, .. } | ExitReason::Enforced { exit, .. } => {
            (exit.code, exit.signal, exit.signal.is_some())
        }
        ExitReason::KilledAfterGrace { .. } | ExitReason::Killed { .. } => (None, Some(9), true),
        _ => (None, None, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_proc::RawExit;

    #[test]
    fn causes_map_to_kinds() {
        let enforced = |limit| ExitReason::Enforced {
            cause: StopCause::LimitExceeded { limit },
            exit: RawExit {
                code: None,
                signal: Some(9),
            },
        };
        assert_eq!(
            ExitKind::of(&enforced(LimitKind::Memory)),
            ExitKind::MemoryLimit
        );
        assert_eq!(
            ExitKind::of(&enforced(LimitKind::Pids)),
            ExitKind::PidsLimit
        );
        assert_eq!(
            ExitKind::of(&enforced(LimitKind::CpuTime)),
            ExitKind::CpuTimeLimit
        );
        assert_eq!(
            ExitKind::of(&enforced(LimitKind::FileSize)),
            ExitKind::Signaled
        );
        assert_eq!(
            ExitKind::of(&ExitReason::KilledAfterGrace {
                cause: StopCause::Hung
            }),
            ExitKind::Hung
        );
        assert_eq!(
            ExitKind::of(&ExitReason::Exited { code: 1 }),
            ExitKind::Exited
        );
    }
}
