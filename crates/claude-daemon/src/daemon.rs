//! The daemon's sessions: each a definition, the `ProcessManager`'s handle driven by a task of
//! its own, the session's last output lines and its last report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use claude_manager::proc::ClaudeSession;
use claude_manager::{ProcessManager, SessionHandle, SessionState, Settings};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::live::{keep_lines, Live};
use crate::registry::Registry;
use crate::views::{detail, exit_view, view, view_now};
use crate::wire::{ProgramDef, SessionDef, SessionDetail, SessionView};

/// Variables that carry a Claude credential.
const CREDENTIAL_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// Output lines kept per session.
pub const KEPT_LINES: usize = 1000;

#[derive(Debug, Clone, Copy)]
enum Control {
    Stop,
    Restart,
}

/// Where a session's definition came from: reload replaces only the config file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Config,
    Api,
}

/// One session of the daemon.
pub(crate) struct Session {
    pub(crate) def: SessionDef,
    pub(crate) origin: Origin,
    control: mpsc::UnboundedSender<Control>,
    pub(crate) state: watch::Receiver<SessionState>,
    /// Set when the session's task has seen its end (the report is in `last`).
    pub(crate) done: watch::Receiver<bool>,
    pub(crate) live: Arc<Live>,
    /// Each limit and its mechanism, as planned for the session.
    pub(crate) limits: Vec<crate::wire::LimitView>,
}

/// The daemon's state: the manager, the daemon-wide default settings and the sessions.
pub struct Daemon {
    manager: Arc<ProcessManager>,
    /// The config file's top-level settings (replaced by a reload).
    pub(crate) file_settings: Mutex<Settings>,
    /// `CLAUDE_PM_*` and flags: over the file's, fixed for the daemon's life.
    overrides: Settings,
    /// The config file, for reloads.
    pub(crate) config: Option<std::path::PathBuf>,
    sessions: Mutex<BTreeMap<String, Session>>,
    draining: AtomicBool,
    pub(crate) events: Arc<crate::events::EventLog>,
    registry: Option<Arc<Registry>>,
    /// Where sessions' log files go, and the size cap of one file.
    logs: Option<(std::path::PathBuf, u64)>,
    /// Where Claude sessions keep their own directory (config, saved conversations) across
    /// restarts of the daemon.
    session_dirs: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("sessions", &self.list().len())
            .finish_non_exhaustive()
    }
}

/// Drive one session's handle: keep each run's output, pass control requests on, and keep the
/// report when it ends.
async fn drive(
    mut handle: SessionHandle,
    mut control: mpsc::UnboundedReceiver<Control>,
    live: Arc<Live>,
    done: watch::Sender<bool>,
    registry: Option<Arc<Registry>>,
) {
    loop {
        tokio::select! {
            run = handle.next_run() => {
                let Some(mut run) = run else { break };
                if let Ok(mut runs) = live.runs.lock() {
                    *runs += 1;
                }
                for rx in [run.stdout.take(), run.stderr.take()].into_iter().flatten() {
                    tokio::spawn(keep_lines(rx, Arc::clone(&live)));
                }
                if let Ok(mut claude) = live.claude.lock() {
                    *claude = run.session.take();
                }
            }
            c = control.recv() => match c {
                Some(Control::Stop) | None => handle.request_stop(),
                Some(Control::Restart) => handle.restart(),
            },
        }
    }
    let report = handle.wait().await.ok();
    if let (Some(registry), Some(r)) = (&registry, &report) {
        if let Err(e) = registry.report(&r.name, &exit_view(r), r.restarts) {
            tracing::warn!(session = %r.name, error = %e, "the report was not recorded");
        }
    }
    if let Ok(mut last) = live.last.lock() {
        *last = report;
    }
    done.send_replace(true);
}

impl Daemon {
    /// A daemon whose sessions get the config file's top-level settings, then `overrides`
    /// (`CLAUDE_PM_*`, flags), under their own; `config` is re-read by [`Daemon::reload`].
    /// Must be called within a tokio runtime (the event log's task starts here).
    pub fn new(
        manager: Arc<ProcessManager>,
        file_settings: Settings,
        overrides: Settings,
        config: Option<std::path::PathBuf>,
    ) -> Daemon {
        let events = crate::events::EventLog::start(manager.subscribe());
        Daemon {
            events,
            registry: None,
            logs: None,
            session_dirs: None,
            manager,
            file_settings: Mutex::new(file_settings),
            overrides,
            config,
            sessions: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// Write each session's output lines to `<dir>/<name>.log`, rotated past `cap` bytes.
    pub fn with_log_files(mut self, dir: std::path::PathBuf, cap: u64) -> Daemon {
        self.logs = Some((dir, cap));
        self
    }

    /// Give each Claude session without isolation its own directory `<dir>/<name>` (its
    /// `CLAUDE_CONFIG_DIR`, where the CLI saves conversations), kept across restarts of the
    /// daemon so a session started again resumes its conversation; removed when the session
    /// is deleted. An isolated session's home belongs to its leased uid and goes with it.
    pub fn with_session_dirs(mut self, dir: std::path::PathBuf) -> Daemon {
        self.session_dirs = Some(dir);
        self
    }

    /// Keep API-made sessions' definitions and every report in `registry`.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Daemon {
        self.registry = Some(registry);
        self
    }

    /// Start again every session the registry kept (after a restart of the daemon); the
    /// names of those started, and each one refused with why.
    pub fn restore(&self) -> (Vec<String>, Vec<String>) {
        let Some(registry) = &self.registry else {
            return (Vec::new(), Vec::new());
        };
        let (mut started, mut refused) = (Vec::new(), Vec::new());
        match registry.definitions() {
            Ok(defs) => {
                for def in defs {
                    match def {
                        Ok(def) => {
                            let name = def.name.clone();
                            match self.create_from(def, Origin::Api, false) {
                                Ok(_) => started.push(name),
                                Err(e) => refused.push(format!("{name}: {e}")),
                            }
                        }
                        Err((name, why)) => refused.push(format!("{name}: {why}")),
                    }
                }
            }
            Err(e) => refused.push(e.to_string()),
        }
        (started, refused)
    }

    /// The settings every session starts from.
    fn defaults(&self) -> Settings {
        let file = self
            .file_settings
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        file.merged(self.overrides.clone())
    }

    pub(crate) fn launch(&self, def: SessionDef, origin: Origin) -> Result<Session> {
        let mut spec = def.spec(&self.defaults())?;
        // The conversation this session last had (before a restart of the daemon, or of the
        // session once finished) goes on; a deleted session's are forgotten.
        spec.resume_id = self
            .registry
            .as_ref()
            .and_then(|r| r.claude_sessions(&def.name).ok())
            .and_then(|ids| ids.last().cloned());
        let plain = spec.isolation == claude_manager::IsolationLevel::None;
        if let (Some(dir), ProgramDef::Claude(_), true) = (&self.session_dirs, &def.program, plain)
        {
            spec.dirs.root = Some(dir.join(&def.name));
        }
        // A credential the definition sets in the session's environment is the session's;
        // otherwise, as `claude-pm claude`, the one the CLI would find, from the daemon's
        // environment and files, handed over by the auth hook (and refreshed by it).
        let own_credential = def.settings.iter().any(|(key, value)| {
            key == "env"
                && CREDENTIAL_VARS.iter().any(|v| {
                    value
                        .strip_prefix(v)
                        .is_some_and(|rest| rest.starts_with('='))
                })
        });
        if let (ProgramDef::Claude(_), false) = (&def.program, own_credential) {
            let chain = claude_manager::auth::TokenChain::cli_default(&|k| std::env::var_os(k));
            spec.credentials = Some(Arc::new(chain));
        }
        // A program that is not there is refused now, not reported as a failed first run.
        if let ProgramDef::Command(argv) = &def.program {
            let path = std::env::var_os("PATH");
            let program = std::path::Path::new(argv.first().map_or("", String::as_str));
            claude_manager::proc::resolve_program(program, path.as_deref()).map_err(|e| {
                Error::Field {
                    field: "command".into(),
                    why: e.to_string(),
                }
            })?;
        }
        // What enforces each limit (the same plan the manager applies at start).
        let limits = claude_manager::plan_limits(&spec)
            .map(|hook| {
                hook.report()
                    .entries
                    .iter()
                    .map(|e| crate::wire::LimitView {
                        limit: e.limit.name().to_owned(),
                        mechanism: e.mechanism.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let handle = self.manager.start(spec).map_err(|e| Error::Refused {
            name: def.name.clone(),
            why: claude_manager::describe_error(&e),
        })?;
        let (control, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(false);
        let live = Arc::new(Live {
            registry: self.registry.clone().map(|r| (def.name.clone(), r)),
            ..Live::default()
        });
        if let (Some((dir, cap)), Ok(mut file)) = (&self.logs, live.file.lock()) {
            *file = Some(crate::logfile::LogFile::open(dir, &def.name, *cap));
        }
        let state = handle.watch_state();
        let registry = self.registry.clone();
        tokio::spawn(drive(handle, rx, Arc::clone(&live), done_tx, registry));
        tracing::info!(session = %def.name, "session created");
        Ok(Session {
            def,
            origin,
            control,
            state,
            done,
            live,
            limits,
        })
    }

    /// Start a new session from `def`: refused while draining, for a name in use, or when
    /// the manager cannot start it (nothing is left started then).
    pub fn create(&self, def: SessionDef) -> Result<SessionDetail> {
        self.create_from(def, Origin::Api, true)
    }

    /// [`Daemon::create`] for a session of the config file.
    pub fn create_configured(&self, def: SessionDef) -> Result<SessionDetail> {
        self.create_from(def, Origin::Config, false)
    }

    fn create_from(&self, def: SessionDef, origin: Origin, persist: bool) -> Result<SessionDetail> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(Error::Draining);
        }
        let mut sessions = self.lock();
        if sessions.contains_key(&def.name) {
            return Err(Error::Exists { name: def.name });
        }
        let name = def.name.clone();
        let registry = self.registry.as_ref().filter(|_| persist);
        if let Some(registry) = registry {
            registry.put(&def)?;
        }
        let session = match self.launch(def, origin) {
            Ok(s) => s,
            Err(e) => {
                if let Some(registry) = registry {
                    let _ = registry.remove(&name);
                }
                return Err(e);
            }
        };
        let detail = detail(&name, &session, self.events.latest(&name));
        sessions.insert(name, session);
        Ok(detail)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every session, by name.
    pub fn list(&self) -> Vec<SessionView> {
        self.lock()
            .iter()
            .map(|(n, s)| view_now(n, s, &self.events))
            .collect()
    }

    /// One session's chart (the last 15 minutes in 5-second steps), state changes and last
    /// ends.
    pub fn history(&self, name: &str) -> Result<crate::history::HistoryView> {
        if !self.lock().contains_key(name) {
            return Err(not_found(name));
        }
        let mut view = self.events.history.view(name);
        if let Some(registry) = &self.registry {
            view.exits = registry.reports(name, 10).unwrap_or_default();
        }
        Ok(view)
    }

    /// One session.
    pub fn inspect(&self, name: &str) -> Result<SessionDetail> {
        let sessions = self.lock();
        let session = sessions.get(name).ok_or_else(|| not_found(name))?;
        Ok(detail(name, session, self.events.latest(name)))
    }

    /// The session's kept lines, then (with `follow`) each new one as it comes, as a body;
    /// a follower that falls behind gets a line saying how many it missed.
    pub(crate) fn follow_lines(
        &self,
        name: &str,
        follow: bool,
    ) -> Result<crate::events::ChannelBody> {
        let (kept, mut feed) = {
            let sessions = self.lock();
            let session = sessions.get(name).ok_or_else(|| not_found(name))?;
            session.live.follow()
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let line = |text: String| bytes::Bytes::from(text + "\n");
            for text in kept {
                if tx.send(line(text)).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                let text = match feed.recv().await {
                    Ok(text) => text,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        format!("[claude-pm: {n} lines missed]")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(line(text)).await.is_err() {
                    return;
                }
            }
        });
        Ok(crate::events::ChannelBody(rx))
    }

    /// Take `name`'s stream-json Claude session for a turn (given back by
    /// [`Daemon::give_back`]) and the number of runs so far: refused for another program, a
    /// session between runs, or one whose turn is under way.
    pub(crate) fn take_claude(&self, name: &str) -> Result<(ClaudeSession, u32)> {
        let sessions = self.lock();
        let session = sessions.get(name).ok_or_else(|| not_found(name))?;
        if !session.def.program.is_stream_json() {
            return Err(Error::Conflict {
                why: format!("{name} is not a stream-json Claude session (claude = [\"-p\", \"--input-format\", \"stream-json\", ...])"),
            });
        }
        let runs = session.live.runs.lock().map_or(0, |r| *r);
        let taken = session.live.claude.lock().ok().and_then(|mut c| c.take());
        taken.map(|t| (t, runs)).ok_or_else(|| Error::Conflict {
            why: format!("{name} has a turn under way, or no live run"),
        })
    }

    /// `name`'s CLI reported this Claude session id (during a turn).
    pub(crate) fn note_session_id(&self, name: &str, id: &str) {
        if let Some(session) = self.lock().get(name) {
            session.live.note_session_id(id);
        }
    }

    /// `name`'s CLI finished a turn; its running cost `total_cost_usd`.
    pub(crate) fn note_result(&self, name: &str, total_cost_usd: Option<f64>) {
        if let Some(session) = self.lock().get(name) {
            session.live.note_result(total_cost_usd);
        }
    }

    /// Hand a session back after its turn (unless its run changed meanwhile).
    pub(crate) fn give_back(&self, name: &str, claude: ClaudeSession) {
        let sessions = self.lock();
        if let Some(session) = sessions.get(name) {
            if let Ok(mut slot) = session.live.claude.lock() {
                if slot.is_none() && session.state.borrow().pid().is_some() {
                    *slot = Some(claude);
                }
            }
        }
    }

    /// Ask the session to stop (its tree within its grace).
    pub fn stop(&self, name: &str) -> Result<SessionView> {
        let sessions = self.lock();
        let session = sessions.get(name).ok_or_else(|| not_found(name))?;
        let _ = session.control.send(Control::Stop);
        Ok(view(name, session))
    }

    /// Restart the session: its current run is stopped and a new one started; a finished
    /// session starts again from its definition.
    pub fn restart(&self, name: &str) -> Result<SessionView> {
        let mut sessions = self.lock();
        let session = sessions.get(name).ok_or_else(|| not_found(name))?;
        if *session.done.borrow() {
            if self.draining.load(Ordering::SeqCst) {
                return Err(Error::Draining);
            }
            let fresh = self.launch(session.def.clone(), session.origin)?;
            let shown = view(name, &fresh);
            sessions.insert(name.to_owned(), fresh);
            return Ok(shown);
        }
        let _ = session.control.send(Control::Restart);
        Ok(view(name, session))
    }

    /// Stop the session, wait until its tree is gone, and forget it.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let mut done = {
            let sessions = self.lock();
            let session = sessions.get(name).ok_or_else(|| not_found(name))?;
            let _ = session.control.send(Control::Stop);
            session.done.clone()
        };
        let _ = done.wait_for(|d| *d).await;
        self.lock().remove(name);
        self.events.forget(name);
        if let Some(dir) = &self.session_dirs {
            // The name is checked (no `/`, no leading `.`): always a child of `dir`.
            let own = dir.join(name);
            if let Err(e) = std::fs::remove_dir_all(&own) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %own.display(), error = %e, "removing a session's directory");
                }
            }
        }
        if let Some(registry) = &self.registry {
            registry.remove(name)?;
        }
        Ok(())
    }

    /// No new sessions; stop every one and wait until all trees are gone. The sessions stay
    /// listed (finished).
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let waits: Vec<watch::Receiver<bool>> = self
            .lock()
            .values()
            .map(|s| {
                let _ = s.control.send(Control::Stop);
                s.done.clone()
            })
            .collect();
        for mut done in waits {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Whether the daemon is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The manager's metrics as Prometheus text.
    pub fn metrics(&self) -> String {
        self.manager.metrics().to_prometheus()
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound { name: name.into() }
}
