//! Stage 4, classify: how a run ended, in the report's terms ([`ExitKind`], code, signal,
//! detail) and in the restart engine's ([`RunOutcome`]).

use claude_proc::{ExitInfo, ExitReason, RunOutcome, StopCause};

use super::watch::Seen;
use super::{RunResult, SessionTask, Totals};
use crate::events::{EventKind, LimitAction};
use crate::report::{code_and_signal, ExitKind};

/// How a run ended, for people: the reason's name says why (`timeout`, `memory_limit`), so the
/// detail says how, adding why only where the name does not carry it (what was unhealthy).
fn detail(kind: ExitKind, reason: &ExitReason) -> String {
    let how = reason.how();
    match reason.cause() {
        Some(StopCause::Unhealthy { reason }) | Some(StopCause::Other { reason }) => {
            format!("{reason}; {how}")
        }
        Some(cause @ StopCause::LimitExceeded { .. }) if kind == ExitKind::Signaled => {
            format!("{cause}; {how}")
        }
        _ => how,
    }
}

impl RunResult {
    /// A run whose process could not be started: 127 for a missing program, 126 otherwise.
    pub(crate) fn spawn_failed(e: &claude_proc::Error) -> RunResult {
        let code = match e {
            claude_proc::Error::ProgramNotFound { .. } => 127,
            _ => 126,
        };
        RunResult {
            kind: ExitKind::SpawnFailed,
            code: Some(code),
            signal: None,
            by_manager: false,
            detail: crate::error::describe_error(e),
            outcome: if e.is_permanent() {
                RunOutcome::FailedPermanently
            } else {
                RunOutcome::Failed
            },
            rate_limited: false,
        }
    }

    pub(crate) fn stopped_before_start(detail: &str) -> RunResult {
        RunResult {
            kind: ExitKind::Stopped,
            code: None,
            signal: None,
            by_manager: false,
            detail: detail.into(),
            outcome: RunOutcome::StopRequested,
            rate_limited: false,
        }
    }
}

impl Totals {
    /// Add a finished run's CPU time and peak memory, each from the best source there is:
    /// - CPU: the cgroup's accounting of the whole tree where one exists; otherwise the higher of
    ///   the samples' ledger (every process the tree had, killed and orphaned ones included) and
    ///   the kernel's accounting at reap (the leader and what it reaped, short runs included);
    /// - peak memory: the memory cgroup's peak of the whole tree where one exists (page cache
    ///   included, as the limit counts it); otherwise the higher of the largest sampled tree
    ///   total and the kernel's peak of the largest single process (bursts between samples).
    pub(crate) fn add_run(&mut self, info: &ExitInfo) {
        let sampled_cpu = std::mem::take(&mut self.run_cpu).total();
        let cpu = info
            .tree
            .cpu_time
            .unwrap_or_else(|| sampled_cpu.max(info.cpu_time.unwrap_or_default()));
        self.cpu += cpu;
        let sampled_rss = std::mem::take(&mut self.run_rss);
        let peak = info
            .tree
            .peak_memory_bytes
            .unwrap_or_else(|| sampled_rss.max(info.max_rss_bytes.unwrap_or(0)));
        self.max_rss = self.max_rss.max(peak);
    }
}

impl SessionTask {
    /// Classify a run that was spawned; adds its CPU time and peak RSS to `totals`, and reports
    /// a limit that ended it.
    pub(super) fn classify(
        &mut self,
        info: Option<ExitInfo>,
        seen: &Seen,
        totals: &mut Totals,
    ) -> RunResult {
        let restart_requested = std::mem::take(&mut self.restart_requested);
        let Some(info) = info else {
            return RunResult {
                kind: ExitKind::Signaled,
                code: None,
                signal: None,
                by_manager: false,
                detail: "the run's monitor went away".into(),
                outcome: RunOutcome::Failed,
                rate_limited: seen.rate_limited,
            };
        };
        totals.add_run(&info);
        let (code, signal, by_manager) = code_and_signal(&info.reason);
        let mut kind = ExitKind::of(&info.reason);
        if seen.auth_rejected.is_some()
            && matches!(kind, ExitKind::Exited | ExitKind::AuthFailed)
            && code != Some(0)
        {
            kind = ExitKind::AuthFailed;
        }
        if let Some(StopCause::LimitExceeded { limit }) = info.reason.cause() {
            self.report_limit_hit(*limit, signal);
        }
        let outcome = if restart_requested {
            RunOutcome::RestartRequested
        } else {
            match kind {
                ExitKind::Stopped => RunOutcome::StopRequested,
                ExitKind::AuthFailed => RunOutcome::AuthFailed,
                ExitKind::Exited if code == Some(0) => RunOutcome::Succeeded,
                _ => RunOutcome::Failed,
            }
        };
        let tail = info
            .stderr_tail
            .lines()
            .last()
            .map(|l| format!(" (stderr: {})", l.trim()))
            .unwrap_or_default();
        RunResult {
            kind,
            code,
            signal,
            by_manager,
            detail: match seen.auth_rejected.filter(|_| kind == ExitKind::AuthFailed) {
                Some(status) => format!(
                    "the API rejected the credential (HTTP {status}); {}{tail}",
                    info.reason.how()
                ),
                None => format!("{}{tail}", detail(kind, &info.reason)),
            },
            outcome,
            rate_limited: seen.rate_limited,
        }
    }

    /// A `limit` event for the limit whose enforcer ended the run.
    fn report_limit_hit(&self, limit: claude_proc::LimitKind, signal: Option<i32>) {
        let Some(mechanism) = self
            .limits
            .as_ref()
            .and_then(|h| h.report().mechanism(limit))
        else {
            return;
        };
        self.emit(EventKind::Limit {
            limit,
            mechanism,
            // SIGKILL (9): a kill, not the stop sequence.
            action: if signal == Some(9) {
                LimitAction::Killed
            } else {
                LimitAction::Stopped
            },
        });
    }
}
