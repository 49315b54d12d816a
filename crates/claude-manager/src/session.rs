//! One session's supervision loop: queue for a slot, get a credential, spawn with limits,
//! watch health and the API, stop on a timeout, a hang or an auth failure, and restart per the
//! policy. All the composing happens here; the pieces live in the four crates.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use claude_auth::{Credential, CredentialHook};
use claude_health::{
    HangConfig, HealthMonitor, HealthStatus, MonitorConfig, Probe, ProbeRole, ProbeRunner, Sampler,
    Signals, Thresholds,
};
use claude_limits::LimitsHook;
use claude_proc::{
    spawn, ClaudeSession, EnvPolicy, ExitInfo, OutputMode, ProcessConfig, RestartMode,
    SessionControl, StopCause,
};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::events::{EventKind, ManagerEvent, SessionState};
use crate::metrics::Metrics;
use crate::report::{code_and_signal, ClaudeOutcome, ExitKind, SessionReport};
use crate::spec::{is_claude_setting, Program, SessionSpec};
use crate::tee::{tee, ApiTrouble};
use crate::Run;

/// The liveness probe of a stream-json session: a control request the CLI answers without
/// any API traffic.
struct ControlPing {
    control: SessionControl,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Probe for ControlPing {
    fn name(&self) -> String {
        "control ping".into()
    }

    async fn probe(&self) -> Result<(), String> {
        self.control
            .initialize(self.timeout)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Commands from the handle.
#[derive(Debug)]
pub(crate) enum Cmd {
    Stop,
    Restart,
}

pub(crate) struct SessionTask {
    pub(crate) spec: SessionSpec,
    pub(crate) binary: PathBuf,
    pub(crate) limits: Option<Arc<LimitsHook>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) events: broadcast::Sender<ManagerEvent>,
    pub(crate) state: watch::Sender<SessionState>,
    pub(crate) cmd: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) runs: mpsc::UnboundedSender<Run>,
    pub(crate) metrics: Arc<Metrics>,
    /// The caller asked for a restart of the run now ending ([`Cmd::Restart`]).
    pub(crate) restart_requested: bool,
}

/// How one run ended, as the loop needs it.
struct RunEnd {
    kind: ExitKind,
    code: Option<i32>,
    signal: Option<i32>,
    by_manager: bool,
    detail: String,
    retryable: bool,
    rate_limited: bool,
}

impl SessionTask {
    fn emit(&self, kind: EventKind) {
        let _ = self.events.send(ManagerEvent {
            session: self.spec.name.clone(),
            at: SystemTime::now(),
            kind,
        });
    }

    fn set_state(&self, to: SessionState) {
        let from = self.state.borrow().clone();
        if from != to {
            self.state.send_replace(to.clone());
            self.emit(EventKind::State { from, to });
        }
    }

    pub(crate) async fn run(mut self) -> SessionReport {
        let started = Instant::now();
        let workdir = self.workdir();
        let mut breaker = claude_proc::CircuitBreaker::new(
            self.spec.restart.breaker_threshold,
            self.spec.restart.breaker_open_for,
        );
        let mut recent: VecDeque<Instant> = VecDeque::new();
        let mut rng = fastrand::Rng::new();
        let (mut attempt, mut runs, mut restarts) = (0u32, 0u32, 0u32);
        let mut cpu = Duration::ZERO;
        let mut max_rss = 0u64;
        let outcome = Arc::new(Mutex::new(ClaudeOutcome::default()));
        let mut refresh_next = false;
        let mut auth_retried = false;
        let mut last: Option<RunEnd> = None;
        let mut limits_reported = false;
        loop {
            self.set_state(SessionState::Queued);
            let permit = tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => permit.ok(),
                cmd = self.cmd.recv() => match cmd {
                    Some(Cmd::Restart) => continue,
                    _ => {
                        last.get_or_insert_with(|| stopped_before_start("stopped while queued"));
                        break;
                    }
                },
            };
            let Some(permit) = permit else {
                break;
            };
            self.set_state(SessionState::Starting);
            runs += 1;
            let run_started = Instant::now();
            let end = match self
                .prepare(refresh_next, workdir.as_ref().map(|d| d.path()))
                .await
            {
                Err(end) => end,
                Ok(config) => {
                    if !limits_reported {
                        limits_reported = true;
                        self.report_limits();
                    }
                    self.one_run(&config, runs, &outcome, &mut max_rss, &mut cpu)
                        .await
                }
            };
            drop(permit);
            refresh_next = false;
            let restart_requested = std::mem::take(&mut self.restart_requested);
            let stop_requested = end.kind == ExitKind::Stopped && !restart_requested;
            let failed = !(end.kind == ExitKind::Exited && end.code == Some(0));
            self.metrics.exit(end.kind);
            if run_started.elapsed() >= self.spec.restart.reset_after {
                attempt = 0;
                breaker.record_success();
            }
            let end_kind = end.kind;
            let rate_limited = end.rate_limited;
            let retryable = end.retryable;
            last = Some(end);
            if stop_requested {
                break;
            }
            if restart_requested {
                // Asked for, whatever the policy: a new run now, not counted as a failure.
                restarts += 1;
                self.metrics.restart();
                continue;
            }
            if end_kind == ExitKind::AuthFailed {
                // One refresh and an immediate restart; a second failure in a row is final.
                if self.spec.credentials.is_some() && !auth_retried {
                    auth_retried = true;
                    refresh_next = true;
                    restarts += 1;
                    self.metrics.restart();
                    tracing::warn!(session = %self.spec.name, "auth failed: refreshing and restarting");
                    continue;
                }
                break;
            }
            if !failed {
                auth_retried = false;
                breaker.record_success();
            } else {
                breaker.record_failure(retryable);
            }
            let again = match self.spec.restart.mode {
                RestartMode::Never => false,
                RestartMode::OnFailure => failed,
                _ => true,
            };
            if !again || !retryable {
                break;
            }
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.spec.restart.window)
            {
                recent.pop_front();
            }
            if recent.len() as u32 >= self.spec.restart.max_restarts {
                if let Some(end) = last.as_mut() {
                    end.detail = format!(
                        "{}; gave up after {} restarts in {:?}",
                        end.detail,
                        recent.len(),
                        self.spec.restart.window
                    );
                }
                break;
            }
            recent.push_back(now);
            restarts += 1;
            self.metrics.restart();
            let mut delay = self.spec.restart.backoff.delay(attempt, &mut rng);
            attempt = attempt.saturating_add(1);
            if rate_limited {
                // The API asked for patience: a long pause, jittered so sessions spread out.
                let pause = self.spec.rate_limit_pause;
                delay = delay.max(pause + pause.mul_f64(rng.f64()));
            }
            if let Err(claude_proc::Error::BreakerOpen { remaining }) = breaker.allow() {
                delay = delay.max(remaining);
            }
            self.set_state(SessionState::BackingOff { delay });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                cmd = self.cmd.recv() => {
                    if !matches!(cmd, Some(Cmd::Restart)) {
                        if let Some(end) = last.as_mut() {
                            end.kind = ExitKind::Stopped;
                        }
                        break;
                    }
                }
            }
        }
        self.set_state(SessionState::Finished);
        let end = last.unwrap_or_else(|| stopped_before_start("never started"));
        let claude = matches!(self.spec.program, Program::Claude { .. })
            .then(|| outcome.lock().map(|o| o.clone()).unwrap_or_default());
        let report = SessionReport {
            name: self.spec.name.clone(),
            reason: end.kind,
            code: end.code,
            signal: end.signal,
            signal_sent_by_manager: end.by_manager,
            cpu_time: cpu,
            max_rss_bytes: max_rss,
            wall: started.elapsed(),
            restarts,
            detail: end.detail,
            claude,
        };
        self.emit(EventKind::Exit(report.clone()));
        drop(workdir);
        report
    }

    /// The session's own directory (config dir and, if asked, HOME), removed at the end.
    fn workdir(&self) -> Option<tempfile::TempDir> {
        if !self.spec.isolation.config_dir && !self.spec.isolation.home {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("claude-pm-{}-", sanitize(&self.spec.name)))
            .tempdir()
            .ok()?;
        std::fs::create_dir_all(dir.path().join(".claude")).ok()?;
        Some(dir)
    }

    fn report_limits(&self) {
        if let Some(hook) = &self.limits {
            for (kind, mechanism, _) in &hook.report().entries {
                let action = match mechanism {
                    claude_limits::Mechanism::NotEnforced => "not-enforced",
                    _ => "applied",
                };
                self.emit(EventKind::Limit {
                    limit: kind.name(),
                    mechanism: mechanism.to_string(),
                    action,
                });
            }
        }
    }

    /// A credential (refreshed if asked) and the process configuration for the next run.
    async fn prepare(
        &self,
        refresh: bool,
        workdir: Option<&std::path::Path>,
    ) -> Result<ProcessConfig, RunEnd> {
        let credential: Option<Credential> = match &self.spec.credentials {
            None => None,
            Some(source) => {
                let got = if refresh {
                    source.refresh_token().await
                } else {
                    source.get_token().await
                };
                match got.and_then(|c| source.validate_token(&c).map(|()| c)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        return Err(RunEnd {
                            kind: ExitKind::AuthFailed,
                            code: None,
                            signal: None,
                            by_manager: false,
                            detail: format!("no usable credential: {e}"),
                            retryable: false,
                            rate_limited: false,
                        })
                    }
                }
            }
        };
        let spec = &self.spec;
        let (program, args, claude) = match &spec.program {
            Program::Command { program, args } => (program.clone(), args.clone(), false),
            Program::Claude { args, .. } => (self.binary.clone(), args.clone(), true),
        };
        let mut b = ProcessConfig::builder(program)
            .args(args)
            .stdin(spec.stdin)
            .stderr(spec.stderr)
            .grace(spec.grace);
        if let Some(cwd) = &spec.cwd {
            b = b.cwd(cwd);
        }
        if claude {
            // A clean environment: the CLI's settings pass, credentials only through the hook.
            b = b.env_policy(EnvPolicy::Clean);
            for (name, _) in std::env::vars_os() {
                if name.to_str().is_some_and(is_claude_setting) {
                    b = b.pass_env(name);
                }
            }
            b = b.env("CLAUDE_CODE_ENTRYPOINT", "sdk-claude-pm");
            // The manager watches stdout, so it is always piped as lines.
            b = b.stdout(match spec.stdout {
                OutputMode::Lines { .. } => spec.stdout,
                _ => OutputMode::lines(),
            });
        } else {
            b = b.env_policy(EnvPolicy::Inherit).stdout(spec.stdout);
        }
        if let Some(dir) = workdir {
            if spec.isolation.config_dir {
                b = b.env("CLAUDE_CONFIG_DIR", dir.join(".claude"));
            }
            if spec.isolation.home {
                b = b.env("HOME", dir);
            }
        }
        for (k, v) in &spec.env {
            b = b.env(k, v);
        }
        for k in &spec.pass_env {
            b = b.pass_env(k);
        }
        if let Some(credential) = credential {
            b = b.hook(Arc::new(CredentialHook::new(credential, spec.delivery)));
        }
        if let Some(limits) = &self.limits {
            b = b.hook(Arc::clone(limits) as Arc<dyn claude_proc::SpawnHook>);
        }
        b.build().map_err(|e| RunEnd {
            kind: ExitKind::SpawnFailed,
            code: Some(spawn_code(&e)),
            signal: None,
            by_manager: false,
            detail: e.to_string(),
            retryable: false,
            rate_limited: false,
        })
    }

    /// Spawn, hand the streams to the caller, watch until the run ends.
    async fn one_run(
        &mut self,
        config: &ProcessConfig,
        number: u32,
        outcome: &Arc<Mutex<ClaudeOutcome>>,
        max_rss: &mut u64,
        cpu: &mut Duration,
    ) -> RunEnd {
        let mut child = match spawn(config).await {
            Ok(child) => child,
            Err(e) => {
                let retryable = !matches!(
                    e,
                    claude_proc::Error::ProgramNotFound { .. }
                        | claude_proc::Error::NotExecutable { .. }
                        | claude_proc::Error::MissingCwd { .. }
                );
                return RunEnd {
                    kind: ExitKind::SpawnFailed,
                    code: Some(spawn_code(&e)),
                    signal: None,
                    by_manager: false,
                    detail: e.to_string(),
                    retryable,
                    rate_limited: false,
                };
            }
        };
        let pid = child.pid();
        self.metrics.run_started();
        self.set_state(SessionState::Running { pid, run: number });
        let signals = Arc::new(Signals::default());
        let (trouble_tx, mut trouble_rx) = mpsc::unbounded_channel();
        let mut stdout = child.take_stdout();
        let mut tee_task = None;
        if matches!(self.spec.program, Program::Claude { .. }) {
            if self.spec.program.is_one_shot_claude() {
                signals.set_in_flight(true);
            }
            if let Some(out) = stdout.take() {
                let forward = matches!(self.spec.stdout, OutputMode::Lines { .. }).then(|| {
                    let (tx, rx) = mpsc::channel(256);
                    stdout = Some(claude_proc::OutputReceiver::from_channel(rx));
                    tx
                });
                tee_task = Some(tokio::spawn(tee(
                    out,
                    forward,
                    Arc::clone(&signals),
                    Arc::clone(outcome),
                    trouble_tx,
                )));
            }
        }
        let mut stdin = child.take_stdin();
        let mut session = None;
        if self.spec.program.is_stream_session() {
            if let (Some(i), Some(o)) = (stdin.take(), stdout.take()) {
                session = Some(ClaudeSession::from_streams(pid, i, o));
            }
        }
        let probes = match (&session, self.spec.health.as_ref().and_then(|h| h.probe)) {
            (Some(s), Some(spec)) => vec![ProbeRunner::new(
                ProbeRole::Liveness,
                spec,
                Arc::new(ControlPing {
                    control: s.control_handle(),
                    timeout: spec.timeout,
                }),
            )],
            _ => Vec::new(),
        };
        let monitor = self.spec.health.as_ref().map(|h| {
            HealthMonitor::start_with_signals(
                pid,
                MonitorConfig {
                    interval: h.interval,
                    thresholds: Thresholds {
                        max_rss_bytes: h.max_rss_bytes,
                        ..Thresholds::default()
                    },
                    hang: h.hang_after.map(|after| HangConfig {
                        hang_after: after,
                        ..HangConfig::default()
                    }),
                },
                Sampler::default(),
                probes,
                Arc::clone(&signals),
            )
        });
        let _ = self.runs.send(Run {
            number,
            pid,
            stdin,
            stdout,
            session,
            stderr: child.take_stderr(),
            signals: Arc::clone(&signals),
        });
        let deadline = self.spec.limits.timeout.map(|t| Instant::now() + t);
        let mut status = monitor.as_ref().map(HealthMonitor::watch_status);
        let mut samples = monitor.as_ref().map(HealthMonitor::watch_samples);
        let act = self
            .spec
            .health
            .as_ref()
            .is_some_and(|h| h.act_on_unhealthy);
        let (mut stopping, mut auth_failed, mut rate_limited) = (false, false, false);
        let info: Option<ExitInfo> = loop {
            tokio::select! {
                info = child.wait() => break info.ok(),
                _ = sleep_until_opt(deadline), if !stopping => {
                    stopping = true;
                    self.set_state(SessionState::Stopping { pid });
                    child.request_stop(StopCause::Timeout);
                }
                cmd = self.cmd.recv(), if !stopping => {
                    stopping = true;
                    self.set_state(SessionState::Stopping { pid });
                    self.restart_requested = matches!(cmd, Some(Cmd::Restart));
                    child.request_stop(match cmd {
                        Some(Cmd::Restart) => StopCause::Other { reason: "restart requested".into() },
                        _ => StopCause::Requested,
                    });
                }
                Some(t) = trouble_rx.recv() => match t {
                    ApiTrouble::Auth if !stopping && self.spec.credentials.is_some() => {
                        auth_failed = true;
                        stopping = true;
                        self.set_state(SessionState::Stopping { pid });
                        child.request_stop(StopCause::AuthFailed);
                    }
                    ApiTrouble::Auth => auth_failed = true,
                    ApiTrouble::RateLimited => rate_limited = true,
                },
                Some(()) = changed(&mut status) => {
                    let now = status.as_ref().map(|s| s.borrow().clone()).unwrap_or(HealthStatus::Unknown);
                    self.emit(EventKind::Health { status: status_name(&now), reasons: now.reasons().to_vec() });
                    if act && !stopping {
                        if let HealthStatus::Unhealthy(reasons) = &now {
                            // The monitor says "exited" when the process is gone: nothing to do.
                            if !reasons.iter().any(|r| r.ends_with("exited")) {
                                let cause = if reasons.iter().any(|r| r.starts_with("hung")) {
                                    StopCause::Hung
                                } else {
                                    StopCause::Unhealthy { reason: reasons.join("; ") }
                                };
                                stopping = true;
                                self.set_state(SessionState::Stopping { pid });
                                child.request_stop(cause);
                            }
                        }
                    }
                }
                Some(()) = changed(&mut samples) => {
                    let obs = samples.as_ref().and_then(|s| s.borrow().clone());
                    if let Some(obs) = obs {
                        let t = obs.sample.totals;
                        *max_rss = (*max_rss).max(t.rss_bytes);
                        self.emit(EventKind::Sample {
                            cpu_percent: obs.rates.map_or(0.0, |r| r.cpu_percent),
                            rss_bytes: t.rss_bytes,
                            read_bytes: t.read_bytes,
                            write_bytes: t.write_bytes,
                            processes: t.processes,
                        });
                    }
                }
            }
        };
        drop(monitor);
        if let Some(task) = tee_task {
            // The tree is gone, so the pipe is at its end; the tee finishes promptly.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        while let Ok(t) = trouble_rx.try_recv() {
            match t {
                ApiTrouble::Auth => auth_failed = true,
                ApiTrouble::RateLimited => rate_limited = true,
            }
        }
        let Some(info) = info else {
            return RunEnd {
                kind: ExitKind::Signaled,
                code: None,
                signal: None,
                by_manager: false,
                detail: "the run's monitor went away".into(),
                retryable: true,
                rate_limited,
            };
        };
        *cpu += info.cpu_time.unwrap_or_default();
        // The kernel's peak of any single process the leader reaped covers what fell between
        // samples (and runs shorter than the health interval).
        *max_rss = (*max_rss).max(info.max_rss_bytes.unwrap_or(0));
        let (code, signal, by_manager) = code_and_signal(&info.reason);
        let mut kind = ExitKind::of(&info.reason);
        if auth_failed && matches!(kind, ExitKind::Exited | ExitKind::AuthFailed) && code != Some(0)
        {
            kind = ExitKind::AuthFailed;
        }
        if let Some(limit) = info.reason.cause().and_then(|c| match c {
            StopCause::LimitExceeded { limit } => Some(limit.clone()),
            _ => None,
        }) {
            let mechanism = self
                .limits
                .as_ref()
                .and_then(|h| {
                    h.report()
                        .entries
                        .iter()
                        .find(|(k, _, _)| k.name() == limit)
                        .map(|(_, m, _)| m.to_string())
                })
                .unwrap_or_else(|| "unknown".into());
            self.emit(EventKind::Limit {
                limit: limit_name(&limit),
                mechanism,
                action: if signal == Some(9) {
                    "killed"
                } else {
                    "stopped"
                },
            });
        }
        let tail = info
            .stderr_tail
            .lines()
            .last()
            .map(|l| format!(" (stderr: {})", l.trim()))
            .unwrap_or_default();
        RunEnd {
            kind,
            code,
            signal,
            by_manager,
            detail: format!("{}{tail}", info.reason),
            retryable: kind != ExitKind::AuthFailed,
            rate_limited,
        }
    }
}

fn stopped_before_start(detail: &str) -> RunEnd {
    RunEnd {
        kind: ExitKind::Stopped,
        code: None,
        signal: None,
        by_manager: false,
        detail: detail.into(),
        retryable: false,
        rate_limited: false,
    }
}

/// 127 for a program that does not exist, 126 for one that cannot be executed.
fn spawn_code(e: &claude_proc::Error) -> i32 {
    match e {
        claude_proc::Error::ProgramNotFound { .. } => 127,
        _ => 126,
    }
}

fn limit_name(limit: &str) -> &'static str {
    match limit {
        "memory" => "memory",
        "pids" => "pids",
        "cpu_time" => "cpu_time",
        "file_size" => "file_size",
        _ => "other",
    }
}

fn status_name(s: &HealthStatus) -> &'static str {
    match s {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded(_) => "degraded",
        HealthStatus::Unhealthy(_) => "unhealthy",
        _ => "unknown",
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next change of an optional watch; pending forever without one or once it closed.
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(r) => {
            if r.changed().await.is_ok() {
                Some(())
            } else {
                *rx = None;
                std::future::pending().await
            }
        }
        None => std::future::pending().await,
    }
}
