//! One session's supervision, in stages: wait for a slot, **prepare** the run (a credential and
//! the process configuration, `prepare.rs`), **spawn** it and **watch** it (health, timeout,
//! requests, the API through the CLI's output, `watch.rs`), **classify** how it ended
//! (`classify.rs`), then let the restart engine ([`claude_proc::RestartState`], the only place
//! restart rules live) decide what follows.

mod classify;
mod prepare;
mod probe;
mod watch;

pub(crate) use prepare::resumable;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use claude_limits::{LimitsHook, Mechanism};
use claude_proc::{Decision, GiveUpReason, RestartState, RunOutcome};
use claude_sandbox::SessionSandbox;
use tokio::sync::{broadcast, mpsc, watch as watch_channel, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::events::{EventKind, LimitAction, ManagerEvent, SessionState};
use crate::metrics::Metrics;
use crate::report::{ClaudeOutcome, ExitKind, SessionReport};
use crate::spec::{Program, SessionSpec};
use crate::Run;

/// Commands from the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Stop,
    /// Stop without a grace period (a second Ctrl-C), also while a stop is under way.
    Kill,
    Restart,
}

pub(crate) struct SessionTask {
    pub(crate) spec: SessionSpec,
    pub(crate) binary: PathBuf,
    /// The program's arguments, with the Claude options' flags (checked at start).
    pub(crate) args: Vec<std::ffi::OsString>,
    /// The conversation the next run resumes ([`SessionSpec::resume_on_restart`]).
    pub(crate) resume_id: Option<String>,
    pub(crate) limits: Option<Arc<LimitsHook>>,
    /// The session's isolation: its leased uid, held until the session's last tree is gone.
    pub(crate) sandbox: Option<Arc<SessionSandbox>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) events: broadcast::Sender<ManagerEvent>,
    pub(crate) state: watch_channel::Sender<SessionState>,
    pub(crate) cmd: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) runs: mpsc::UnboundedSender<Run>,
    pub(crate) metrics: Arc<Metrics>,
    /// The manager's sampling clock, shared by every session's monitor.
    pub(crate) clock: claude_health::SharedClock,
    /// The caller asked for a restart of the run now ending ([`Cmd::Restart`]).
    pub(crate) restart_requested: bool,
    /// Where the CLI writes its debug log, when the manager reads API errors from there.
    pub(crate) api_log: Option<PathBuf>,
}

/// How one run ended, as the loop and the report need it.
pub(crate) struct RunResult {
    pub(crate) kind: ExitKind,
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) by_manager: bool,
    pub(crate) detail: String,
    /// What the restart engine decides on.
    pub(crate) outcome: RunOutcome,
    pub(crate) rate_limited: bool,
}

/// What a session adds up over its runs.
#[derive(Default)]
pub(crate) struct Totals {
    /// Runs attempted (a slot taken), 1 for the first.
    pub(crate) runs: u32,
    /// Runs whose process was spawned (or tried to be).
    pub(crate) started: u32,
    pub(crate) cpu: Duration,
    pub(crate) max_rss: u64,
    pub(crate) claude: Arc<Mutex<ClaudeOutcome>>,
    /// This run's largest sampled tree RSS.
    pub(crate) run_rss: u64,
    /// This run's CPU time from the samples (exited processes kept).
    pub(crate) run_cpu: claude_health::CpuLedger,
}

impl SessionTask {
    pub(crate) fn emit(&self, kind: EventKind) {
        let _ = self.events.send(ManagerEvent {
            session: self.spec.name.clone(),
            at: SystemTime::now(),
            kind,
        });
    }

    pub(crate) fn set_state(&self, to: SessionState) {
        let from = self.state.borrow().clone();
        if from != to {
            self.state.send_replace(to.clone());
            self.emit(EventKind::State { from, to });
        }
    }

    pub(crate) async fn run(mut self) -> SessionReport {
        #[cfg(test)]
        if self.spec.name == tests::PANIC_NAME {
            // Fault injection for the test that a failing session task still reports.
            panic!("injected for the test");
        }
        let started = Instant::now();
        let workdir = self.workdir();
        if let (Some(sandbox), Some(dir)) = (&self.sandbox, &workdir) {
            if let Err(e) = sandbox.adopt_home(dir.path()) {
                tracing::warn!(error = %e, "giving the session its home directory");
            }
        }
        if let (Some(dir), Program::Claude { .. }) = (&workdir, &self.spec.program) {
            if !self.spec.program.reports_api_errors() && !self.spec.configures_cli_debugging() {
                self.api_log = Some(dir.path().join("claude-pm-api.log"));
            }
        }
        let mut engine = RestartState::new(self.spec.restart.clone());
        let mut totals = Totals::default();
        let mut refresh = false;
        let mut last: Option<RunResult> = None;
        self.report_limits();
        loop {
            let Some(permit) = self.wait_for_slot().await else {
                last.get_or_insert_with(|| RunResult::stopped_before_start("stopped while queued"));
                break;
            };
            totals.runs += 1;
            let run_started = Instant::now();
            let workdir = workdir.as_ref().map(|d| d.path());
            // What the health monitor, the soft enforcer and the caller share for this run.
            let signals = Arc::new(claude_health::Signals::default());
            let end = match self.prepare(refresh, workdir, &signals).await {
                Err(mut end) => {
                    if let Some(rejected) = last.as_ref().filter(|_| refresh) {
                        // Keep why the last credential was refused; the refresh failing is
                        // the second half of the story.
                        end.detail = format!(
                            "{}; refreshing the credential failed: {}",
                            rejected.detail, end.detail
                        );
                    }
                    end
                }
                Ok(config) => {
                    totals.started += 1;
                    self.spawn_and_watch(&config, signals, &mut totals).await
                }
            };
            drop(permit);
            self.metrics.exit(end.kind);
            // Only a source that can give a different credential is worth a restart.
            engine.set_credential_refresh(
                self.spec
                    .credentials
                    .as_ref()
                    .is_some_and(|c| c.can_refresh()),
            );
            let engine_end = claude_proc::RunEnd::new(end.outcome, run_started.elapsed())
                .rate_limited(end.rate_limited);
            let decision = engine.on_run_end(engine_end, Instant::now().into_std());
            let end = last.insert(end);
            match decision {
                Decision::Restart {
                    delay,
                    refresh_credential,
                } => {
                    self.metrics.restart();
                    refresh = refresh_credential;
                    if refresh {
                        tracing::warn!(session = %self.spec.name, "auth failed: refreshing and restarting");
                    }
                    if !self.back_off(delay).await {
                        end.kind = ExitKind::Stopped;
                        break;
                    }
                }
                Decision::GiveUp(reason @ GiveUpReason::TooManyRestarts { .. }) => {
                    end.detail = format!("{}; {reason}", end.detail);
                    break;
                }
                _ => break,
            }
        }
        // The last tree is gone: end what still runs under the uid, take the working
        // directory back and free the uid before anyone hears the session ended.
        if let Some(sandbox) = self.sandbox.take() {
            let _ = tokio::task::spawn_blocking(move || sandbox.release()).await;
        }
        self.set_state(SessionState::Finished);
        let end = last.unwrap_or_else(|| RunResult::stopped_before_start("never started"));
        // Restarts are runs that started after the first, not decisions whose run could not
        // even be prepared.
        let restarts = totals.started.saturating_sub(1);
        let report = self.report(end, &totals, restarts, started.elapsed());
        self.emit(EventKind::Exit(report.clone()));
        drop(workdir);
        report
    }

    /// A slot under the live-process cap; `None` if a stop arrived first (a restart request
    /// while queued changes nothing).
    async fn wait_for_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        self.set_state(SessionState::Queued);
        loop {
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => return permit.ok(),
                cmd = self.cmd.recv() => match cmd {
                    Some(Cmd::Restart) => continue,
                    _ => return None,
                },
            }
        }
    }

    /// Remember the conversation the CLI reported, for the next run to resume; after a resume
    /// that failed before its first turn (the conversation is gone), the next run starts a new
    /// one instead of failing the same way until the restart limit.
    fn note_conversation(&mut self, totals: &Totals, seen: &watch::Seen) {
        let wanted = self.spec.resume_on_restart && self.spec.program.is_stream_session();
        if !(wanted && prepare::resumable(&self.args)) {
            return;
        }
        if seen.failed_before_turn {
            if let Some(id) = self.resume_id.take() {
                tracing::warn!(
                    session = %self.spec.name,
                    conversation = %id,
                    "resuming the conversation failed; the next run starts a new one"
                );
                if let Ok(mut o) = totals.claude.lock() {
                    o.session_id = None;
                }
            }
            return;
        }
        if let Some(id) = totals.claude.lock().ok().and_then(|o| o.session_id.clone()) {
            self.resume_id = Some(id);
        }
    }

    /// Wait `delay` before the next run; false if a stop arrived meanwhile (a restart request
    /// ends the wait early).
    async fn back_off(&mut self, delay: Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        self.set_state(SessionState::BackingOff { delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            cmd = self.cmd.recv() => matches!(cmd, Some(Cmd::Restart)),
        }
    }

    fn report(
        &self,
        end: RunResult,
        totals: &Totals,
        restarts: u32,
        wall: Duration,
    ) -> SessionReport {
        let claude = matches!(self.spec.program, Program::Claude { .. })
            .then(|| totals.claude.lock().map(|o| o.clone()).unwrap_or_default());
        SessionReport {
            name: self.spec.name.clone(),
            reason: end.kind,
            code: end.code,
            signal: end.signal,
            signal_sent_by_manager: end.by_manager,
            cpu_time: totals.cpu,
            max_rss_bytes: totals.max_rss,
            wall,
            restarts,
            detail: end.detail,
            claude,
        }
    }

    /// The session's own directory (config dir and, if asked, HOME): a temporary one removed
    /// at the end, or the spec's kept root.
    fn workdir(&self) -> Option<WorkDir> {
        if !self.spec.dirs.config_dir && !self.spec.dirs.home && self.sandbox.is_none() {
            return None;
        }
        let dir = match &self.spec.dirs.root {
            Some(root) => {
                use std::os::unix::fs::DirBuilderExt;
                let made = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(root.join(".claude"));
                if let Err(e) = made {
                    tracing::warn!(dir = %root.display(), error = %e, "the session's directory");
                    return None;
                }
                WorkDir::Kept(root.clone())
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("claude-pm-{}-", sanitize(&self.spec.name)))
                    .tempdir()
                    .ok()?;
                std::fs::create_dir_all(dir.path().join(".claude")).ok()?;
                WorkDir::Temp(dir)
            }
        };
        Some(dir)
    }

    /// One `limit` event per limit and mechanism, before the first run.
    fn report_limits(&self) {
        if let Some(hook) = &self.limits {
            for e in &hook.report().entries {
                let action = match e.mechanism {
                    Mechanism::NotEnforced => LimitAction::NotEnforced,
                    _ => LimitAction::Applied,
                };
                self.emit(EventKind::Limit {
                    limit: e.limit,
                    mechanism: e.mechanism,
                    action,
                });
            }
        }
    }
}

/// A session's own directory.
enum WorkDir {
    /// Removed when dropped.
    Temp(tempfile::TempDir),
    /// Kept ([`crate::SessionDirs::root`]).
    Kept(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &std::path::Path {
        match self {
            WorkDir::Temp(dir) => dir.path(),
            WorkDir::Kept(dir) => dir,
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    /// A session of this name panics in its task (fault injection).
    pub(crate) const PANIC_NAME: &str = "panic in the session task (test)";
}
