//! Stage 4, classify: how a run ended, in the report's terms ([`ExitKind`], code, signal,
//! detail) and in the restart engine's ([`RunOutcome`]).

use claude_proc::{ExitInfo, RunOutcome, StopCause};

use super::watch::Seen;
use super::{RunResult, SessionTask, Totals};
use crate::events::{EventKind, LimitAction};
use crate::report::{code_and_signal, ExitKind};

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
            detail: e.to_string(),
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
        totals.cpu += info.cpu_time.unwrap_or_default();
        // The kernel's peak of any single process the leader reaped covers what fell between
        // samples (and runs shorter than the health interval).
        totals.max_rss = totals.max_rss.max(info.max_rss_bytes.unwrap_or(0));
        let (code, signal, by_manager) = code_and_signal(&info.reason);
        let mut kind = ExitKind::of(&info.reason);
        if seen.auth_failed
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
            detail: format!("{}{tail}", info.reason),
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
