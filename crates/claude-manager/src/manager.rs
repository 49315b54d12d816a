//! `ProcessManager`: starts sessions, caps how many processes live at once, lists them,
//! reports their events and metrics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use claude_health::Signals;
use claude_proc::{ChildStdin, ClaudeSession, OutputReceiver};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::events::{EventKind, ManagerEvent, SessionState};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::plan::{plan_limits, plan_sandbox};
use crate::report::{ExitKind, SessionReport};
use crate::session::{Cmd, SessionTask};
use crate::spec::{Program, SessionSpec};

/// How a manager behaves across sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// At most this many sessions have a live process at once; more starts queue (0: no cap).
    pub max_live: usize,
    /// Events kept for slow subscribers before the oldest are dropped for them.
    pub event_buffer: usize,
    /// Where isolated sessions' uid leases live (shared by every manager of the host).
    pub lease_dir: PathBuf,
    /// `claude-pm serve`'s state directory (its socket, registry and logs); `None`: the
    /// default for this user.
    pub state_dir: Option<PathBuf>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_live: 0,
            event_buffer: 4096,
            lease_dir: PathBuf::from(claude_sandbox::DEFAULT_LEASE_DIR),
            state_dir: None,
        }
    }
}

/// The streams of one run, handed out as it starts ([`SessionHandle::next_run`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Run {
    /// 1 for the first run.
    pub number: u32,
    /// The leader's pid.
    pub pid: u32,
    /// Stdin, if the spec piped it (for a stream-json Claude session: inside `session`).
    pub stdin: Option<ChildStdin>,
    /// Stdout, if the spec asked for lines or chunks (for Claude, after the manager looked;
    /// for a stream-json session: inside `session`).
    pub stdout: Option<OutputReceiver>,
    /// A stream-json Claude session with piped stdin: the session over this run's streams
    /// (the manager's liveness probe pings the CLI through a handle of it).
    pub session: Option<ClaudeSession>,
    /// Stderr, likewise.
    pub stderr: Option<OutputReceiver>,
    /// Tell hang detection when work is in flight ([`Signals::set_in_flight`]); Claude
    /// sessions are tracked from their output without this, and another program's run counts
    /// as in flight from its start when the spec asks for hang detection.
    pub signals: Arc<Signals>,
    /// Whether the leader is stopped, and by which signal (job control: a terminal front end
    /// passes `SIGTSTP` and the terminal on).
    pub stop_probe: claude_proc::StopProbe,
}

struct Entry {
    id: u64,
    name: String,
    state: watch::Receiver<SessionState>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

/// A session in [`ProcessManager::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// Assigned at start, unique within the manager.
    pub id: u64,
    /// The spec's name.
    pub name: String,
    /// Its state now.
    pub state: SessionState,
}

/// Starts and supervises Claude (and other) sessions. Dropping it stops every session.
pub struct ProcessManager {
    slots: Arc<Semaphore>,
    max_live: usize,
    /// What `plan_sandbox` needs: the lease and state directories.
    dirs: ManagerConfig,
    events: broadcast::Sender<ManagerEvent>,
    sessions: Arc<Mutex<Vec<Entry>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// One sampling timer per interval for every session's health monitor.
    clock: claude_health::SharedClock,
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager")
            .field("max_live", &self.max_live)
            .field("sessions", &self.list().len())
            .finish()
    }
}

impl Drop for ProcessManager {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl ProcessManager {
    /// A manager with `config`.
    pub fn new(config: ManagerConfig) -> ProcessManager {
        let permits = match config.max_live {
            0 => Semaphore::MAX_PERMITS,
            n => n,
        };
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        ProcessManager {
            slots: Arc::new(Semaphore::new(permits)),
            max_live: config.max_live,
            dirs: ManagerConfig {
                lease_dir: config.lease_dir,
                state_dir: config.state_dir,
                ..ManagerConfig::default()
            },
            events,
            sessions: Arc::default(),
            next_id: AtomicU64::new(1),
            metrics: Arc::default(),
            clock: claude_health::SharedClock::new(),
        }
    }

    /// Validate `spec` (limits, binary) and start its session in the background. Must be
    /// called within a tokio runtime. The first run waits for a slot if `max_live` are live.
    pub fn start(&self, spec: SessionSpec) -> Result<SessionHandle> {
        spec.restart.validate()?;
        let binary = match &spec.program {
            Program::Claude { binary, .. } => claude_proc::resolve_claude(binary.as_deref())?,
            Program::Command { program, .. } => program.clone(),
        };
        // The program's arguments with the Claude options' flags, checked now.
        let args = spec.args()?;
        let resume_id = spec.first_resume(&args)?;
        // Validates every limit; attached only if it enforces something at spawn (the
        // timeout is the session loop's).
        let hook = plan_limits(&spec)?;
        let limits = hook
            .report()
            .entries
            .iter()
            .any(|e| e.limit != claude_limits::LimitKind::Timeout)
            .then(|| Arc::new(hook));
        // Last of the checks: it leases a uid and grants the working directory.
        let sandbox = plan_sandbox(&spec, &self.dirs)?.map(Arc::new);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (state_tx, state_rx) = watch::channel(SessionState::Queued);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(None);
        let name = spec.name.clone();
        let task = SessionTask {
            spec,
            binary,
            args,
            resume_id,
            limits,
            sandbox,
            slots: Arc::clone(&self.slots),
            events: self.events.clone(),
            state: state_tx.clone(),
            cmd: cmd_rx,
            runs: runs_tx,
            metrics: Arc::clone(&self.metrics),
            clock: self.clock.clone(),
            restart_requested: false,
            api_log: None,
        };
        self.metrics.session_started();
        tracing::info!(session = %name, id, "session starting");
        let span = tracing::info_span!("session", name = %name, id);
        let ending = Ending {
            name: name.clone(),
            state: state_tx,
            events: self.events.clone(),
        };
        tokio::spawn(async move {
            // The session runs in its own task so that a bug there (a panic) still ends with a
            // report and an exit event, never with a session its owner waits on forever; its
            // tree dies with the task's state (claude-proc kills a dropped child's tree).
            let report = match tokio::spawn(task.run().instrument(span)).await {
                Ok(report) => report,
                Err(e) => ending.failed(e),
            };
            tracing::info!(session = %report.name, reason = %report.reason, restarts = report.restarts, "session over");
            done_tx.send_replace(Some(report));
        });
        if let Ok(mut sessions) = self.sessions.lock() {
            // Forget finished sessions beyond the last thousand.
            let finished = sessions
                .iter()
                .filter(|e| *e.state.borrow() == SessionState::Finished)
                .count();
            if finished > 1000 {
                let mut drop_n = finished - 1000;
                sessions.retain(|e| {
                    let old = drop_n > 0 && *e.state.borrow() == SessionState::Finished;
                    drop_n -= usize::from(old);
                    !old
                });
            }
            sessions.push(Entry {
                id,
                name: name.clone(),
                state: state_rx.clone(),
                cmd: cmd_tx.clone(),
            });
        }
        Ok(SessionHandle {
            id,
            name,
            cmd: cmd_tx,
            state: state_rx,
            runs: runs_rx,
            done: done_rx,
        })
    }

    /// The cap on live sessions (0: none).
    pub fn max_live(&self) -> usize {
        self.max_live
    }

    /// Every session (finished ones too, up to the last thousand) and its state.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.sessions
            .lock()
            .map(|s| {
                s.iter()
                    .map(|e| SessionInfo {
                        id: e.id,
                        name: e.name.clone(),
                        state: e.state.borrow().clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every event of every session from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ManagerEvent> {
        self.events.subscribe()
    }

    /// Counters and gauges now.
    pub fn metrics(&self) -> MetricsSnapshot {
        let list = self.list();
        let count =
            |f: &dyn Fn(&SessionState) -> bool| list.iter().filter(|s| f(&s.state)).count() as u64;
        self.metrics.snapshot(
            count(&|s| s.pid().is_some()),
            count(&|s| *s == SessionState::Queued),
            count(&|s| *s != SessionState::Finished),
        )
    }

    /// Ask every session to stop (their handles' `wait` returns when each is down).
    pub fn stop_all(&self) {
        if let Ok(sessions) = self.sessions.lock() {
            for e in sessions.iter() {
                let _ = e.cmd.send(Cmd::Stop);
            }
        }
    }
}

/// What finishing a session needs if its task failed.
struct Ending {
    name: String,
    state: watch::Sender<SessionState>,
    events: broadcast::Sender<ManagerEvent>,
}

impl Ending {
    /// The report and exit event of a session whose task panicked.
    fn failed(self, error: tokio::task::JoinError) -> SessionReport {
        let why = match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()),
            Err(e) => e.to_string(),
        };
        tracing::error!(session = %self.name, %why, "the session's task failed");
        let mut report = SessionReport::new(&self.name, ExitKind::InternalError);
        report.detail = format!("the supervision of this session failed: {why}");
        self.state.send_replace(SessionState::Finished);
        let _ = self.events.send(ManagerEvent {
            session: self.name,
            at: std::time::SystemTime::now(),
            kind: EventKind::Exit(report.clone()),
        });
        report
    }
}

/// One session. Dropping the handle stops the session (its tree is stopped gracefully in the
/// background); keep it for as long as the session should live.
#[derive(Debug)]
pub struct SessionHandle {
    id: u64,
    name: String,
    cmd: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<SessionState>,
    runs: mpsc::UnboundedReceiver<Run>,
    done: watch::Receiver<Option<SessionReport>>,
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
    }
}

impl SessionHandle {
    /// The id the manager assigned.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The spec's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state now.
    pub fn state(&self) -> SessionState {
        self.state.borrow().clone()
    }

    /// A `watch` of the state.
    pub fn watch_state(&self) -> watch::Receiver<SessionState> {
        self.state.clone()
    }

    /// The streams of the next run as it starts; `None` once the session is over.
    ///
    /// A run is published here before the session's `exit` event (its `running` state event
    /// comes first): a caller that selects over this and [`ProcessManager::subscribe`] and
    /// stops at `exit` should poll this first (`biased`), or a quick run's output is never taken.
    pub async fn next_run(&mut self) -> Option<Run> {
        self.runs.recv().await
    }

    /// End the current run and start another per the policy's backoff.
    pub fn restart(&self) {
        let _ = self.cmd.send(Cmd::Restart);
    }

    /// Ask for the stop without waiting.
    pub fn request_stop(&self) {
        let _ = self.cmd.send(Cmd::Stop);
    }

    /// Stop without a grace period: SIGKILL the whole tree now, also while a graceful stop is
    /// under way (what a second Ctrl-C asks for). No further run starts.
    pub fn kill(&self) {
        let _ = self.cmd.send(Cmd::Kill);
    }

    /// Stop gracefully (the tree gets the stop sequence) and wait for the report.
    pub async fn stop(&mut self) -> Result<SessionReport> {
        self.request_stop();
        self.wait().await
    }

    /// Wait until the session is over.
    pub async fn wait(&mut self) -> Result<SessionReport> {
        let gone = || Error::SessionGone {
            name: self.name.clone(),
        };
        let report = self
            .done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| gone())?;
        report.clone().ok_or_else(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bug that panics in a session's task ends the session with a report and an exit event;
    /// its owner is never left waiting (claude-pm would have hung, deaf to SIGTERM).
    #[tokio::test]
    async fn a_panicking_session_task_still_reports_and_finishes() {
        let manager = ProcessManager::new(ManagerConfig::default());
        let mut events = manager.subscribe();
        let spec = SessionSpec::command(crate::session::tests::PANIC_NAME, "/bin/true", [""; 0]);
        let mut handle = manager.start(spec).unwrap();
        let report = tokio::time::timeout(std::time::Duration::from_secs(5), handle.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.reason, ExitKind::InternalError);
        assert!(report.detail.contains("injected"), "{}", report.detail);
        let mut exit = None;
        while let Ok(e) = events.try_recv() {
            if let EventKind::Exit(r) = e.kind {
                exit = Some(r);
            }
        }
        assert_eq!(exit.map(|r| r.reason), Some(ExitKind::InternalError));
        assert_eq!(manager.list()[0].state, SessionState::Finished);
    }
}
