//! Stages 2 and 3, spawn and watch: start the run, hand its streams to the caller, and watch it
//! until the whole tree is gone: the health monitor, the timeout, stop and restart requests,
//! and for Claude the API's answers as the CLI reports them.

use std::sync::Arc;
use std::time::Duration;

use claude_health::{
    HangConfig, HealthMonitor, HealthReason, HealthStatus, MonitorConfig, Observation, ProbeRole,
    ProbeRunner, Sampler, Signals, Thresholds,
};
use claude_proc::{spawn, Child, ClaudeSession, ExitInfo, OutputMode, ProcessConfig, StopCause};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::ControlPing;
use super::{Cmd, RunResult, SessionTask, Totals};
use crate::events::{EventKind, SessionState};
use crate::spec::Program;
use crate::tee::{follow_api_log, tee, ApiTrouble};
use crate::Run;

/// A run being watched.
pub(super) struct Live {
    child: Child,
    pid: u32,
    trouble: mpsc::UnboundedReceiver<ApiTrouble>,
    tee: Option<JoinHandle<()>>,
    /// Follows the CLI's debug log for API errors (json and text output).
    api_log: Option<JoinHandle<()>>,
    monitor: Option<HealthMonitor>,
}

/// What the watch saw besides the exit.
#[derive(Default)]
pub(super) struct Seen {
    /// The HTTP status with which the API rejected the credential (401, 403).
    pub(super) auth_rejected: Option<u16>,
    pub(super) rate_limited: bool,
    /// The CLI failed before its first turn (a resume of a conversation that is gone).
    pub(super) failed_before_turn: bool,
}

impl Seen {
    fn record(&mut self, trouble: ApiTrouble) {
        match trouble {
            ApiTrouble::Auth(status) => self.auth_rejected = Some(status),
            ApiTrouble::RateLimited => self.rate_limited = true,
            ApiTrouble::FailedBeforeTurn => self.failed_before_turn = true,
        }
    }
}

/// Why a run should be stopped for its health, if at all: a hang is [`StopCause::Hung`], any
/// other unhealthy reason [`StopCause::Unhealthy`]; a process that is gone needs nothing.
fn stop_cause_for(status: &HealthStatus) -> Option<StopCause> {
    let HealthStatus::Unhealthy(reasons) = status else {
        return None;
    };
    if reasons
        .iter()
        .any(|r| matches!(r, HealthReason::Exited { .. }))
    {
        return None;
    }
    if reasons
        .iter()
        .any(|r| matches!(r, HealthReason::Hung { .. }))
    {
        return Some(StopCause::Hung);
    }
    let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    Some(StopCause::Unhealthy {
        reason: text.join("; "),
    })
}

impl SessionTask {
    /// Spawn with `config`, watch the run to its end, and classify it.
    pub(super) async fn spawn_and_watch(
        &mut self,
        config: &ProcessConfig,
        signals: Arc<Signals>,
        totals: &mut Totals,
    ) -> RunResult {
        let child = match spawn(config).await {
            Ok(child) => child,
            Err(e) => return RunResult::spawn_failed(&e),
        };
        let mut live = self.start_watching(child, signals, totals);
        let (info, mut seen) = self.watch(&mut live, totals).await;
        drop(live.monitor.take());
        if let Some(task) = live.api_log.take() {
            task.abort();
        }
        if let Some(task) = live.tee.take() {
            // The tree is gone, so the pipe is at its end; the tee finishes promptly.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        while let Ok(t) = live.trouble.try_recv() {
            seen.record(t);
        }
        self.note_conversation(totals, &seen);
        self.classify(info, &seen, totals)
    }

    /// Publish the run (its streams, a stream-json session, its signals) and start the health
    /// monitor and, for Claude, the tee over its stdout.
    fn start_watching(&mut self, mut child: Child, signals: Arc<Signals>, totals: &Totals) -> Live {
        let pid = child.pid();
        self.metrics.run_started();
        self.set_state(SessionState::Running {
            pid,
            run: totals.runs,
        });
        signals.set_stop_probe(child.stop_probe());
        // A program other than Claude has no turns to mark: with hang detection asked for, its
        // whole run counts as work in flight (no output, CPU or IO for that long is a hang).
        let hang_watch = self
            .spec
            .health
            .as_ref()
            .is_some_and(|h| h.hang_after.is_some());
        if hang_watch && matches!(self.spec.program, Program::Command { .. }) {
            signals.set_in_flight(true);
        }
        let (trouble_tx, trouble) = mpsc::unbounded_channel();
        let mut stdout = child.take_stdout();
        let mut tee_task = None;
        let api_log = self.api_log.clone().map(|path| {
            // A fresh log per run: what an earlier run logged is not this run's trouble.
            let _ = std::fs::remove_file(&path);
            tokio::spawn(follow_api_log(path, trouble_tx.clone()))
        });
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
                    Arc::clone(&totals.claude),
                    trouble_tx,
                )));
            }
        }
        let mut stdin = child.take_stdin();
        let mut session = None;
        if self.spec.program.is_stream_session() {
            if let (Some(i), Some(o)) = (stdin.take(), stdout.take()) {
                let s = ClaudeSession::from_streams(pid, i, o);
                s.set_handlers(self.spec.handlers.clone());
                session = Some(s);
            }
        }
        let monitor = self.monitor(pid, session.as_ref(), &signals);
        let _ = self.runs.send(Run {
            number: totals.runs,
            pid,
            stdin,
            stdout,
            session,
            stderr: child.take_stderr(),
            signals,
            stop_probe: child.stop_probe(),
        });
        Live {
            child,
            pid,
            trouble,
            tee: tee_task,
            api_log,
            monitor,
        }
    }

    /// The health monitor the spec asks for, with the control-ping probe of a stream session.
    fn monitor(
        &self,
        pid: u32,
        session: Option<&ClaudeSession>,
        signals: &Arc<Signals>,
    ) -> Option<HealthMonitor> {
        let health = self.spec.health.as_ref()?;
        let probes = match (session, health.probe) {
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
        let config = MonitorConfig {
            interval: health.interval,
            thresholds: Thresholds {
                max_rss_bytes: health.max_rss_bytes,
                ..Thresholds::default()
            },
            hang: health.hang_after.map(|after| HangConfig {
                hang_after: after,
                ..HangConfig::default()
            }),
            clock: Some(self.clock.clone()),
        };
        Some(HealthMonitor::start_with_signals(
            pid,
            config,
            Sampler::default(),
            probes,
            Arc::clone(signals),
        ))
    }

    /// Watch until the leader is reaped and the tree gone; every reason to stop (timeout,
    /// request, rejected credential, health) starts the stop sequence once.
    async fn watch(&mut self, live: &mut Live, totals: &mut Totals) -> (Option<ExitInfo>, Seen) {
        // A timeout too far ahead to represent is no timeout.
        let deadline = self
            .spec
            .limits
            .timeout
            .and_then(|t| Instant::now().checked_add(t));
        let mut status = live.monitor.as_ref().map(HealthMonitor::watch_status);
        let mut samples = live.monitor.as_ref().map(HealthMonitor::watch_samples);
        let mut seen = Seen::default();
        let mut stopping = false;
        let info = loop {
            let cause = tokio::select! {
                info = live.child.wait() => break info.ok(),
                _ = sleep_until_opt(deadline), if !stopping => Some(StopCause::Timeout),
                cmd = self.cmd.recv() => match cmd {
                    Some(Cmd::Kill) => {
                        // Also in the middle of a stop: SIGKILL now.
                        stopping = true;
                        self.set_state(SessionState::Stopping { pid: live.pid });
                        live.child.request_kill(StopCause::Requested);
                        None
                    }
                    _ if stopping => None,
                    cmd => Some(self.on_command(cmd)),
                },
                Some(t) = live.trouble.recv() => {
                    seen.record(t);
                    let auth = matches!(t, ApiTrouble::Auth(_)) && self.spec.credentials.is_some();
                    auth.then_some(StopCause::AuthFailed)
                }
                Some(()) = changed(&mut status) => self.on_health(status.as_ref()),
                Some(()) = changed(&mut samples) => {
                    self.on_sample(samples.as_ref(), totals);
                    None
                }
            };
            if let Some(cause) = cause.filter(|_| !stopping) {
                stopping = true;
                self.set_state(SessionState::Stopping { pid: live.pid });
                live.child.request_stop(cause);
            }
        };
        (info, seen)
    }

    /// A stop or restart request: the stop cause it asks for.
    fn on_command(&mut self, cmd: Option<Cmd>) -> StopCause {
        self.restart_requested = matches!(cmd, Some(Cmd::Restart));
        match cmd {
            Some(Cmd::Restart) => StopCause::Other {
                reason: "restart requested".into(),
            },
            _ => StopCause::Requested,
        }
    }

    /// Report a health change; the stop cause if the run should end for it.
    fn on_health(&self, status: Option<&watch::Receiver<HealthStatus>>) -> Option<StopCause> {
        let now = status.map(|s| s.borrow().clone())?;
        let cause = stop_cause_for(&now);
        self.emit(EventKind::Health(now));
        let act = self
            .spec
            .health
            .as_ref()
            .is_some_and(|h| h.act_on_unhealthy);
        cause.filter(|_| act)
    }

    fn on_sample(
        &self,
        samples: Option<&watch::Receiver<Option<Observation>>>,
        totals: &mut Totals,
    ) {
        let Some(samples) = samples else {
            return;
        };
        // Read in place: the observation holds the whole tree, and a fleet makes hundreds a
        // second.
        let (t, cpu_percent) = {
            let current = samples.borrow();
            let Some(obs) = current.as_ref() else {
                return;
            };
            totals.run_cpu.observe(&obs.sample);
            (obs.sample.totals, obs.rates.map_or(0.0, |r| r.cpu_percent))
        };
        totals.run_rss = totals.run_rss.max(t.rss_bytes);
        self.emit(EventKind::Sample {
            cpu_percent,
            rss_bytes: t.rss_bytes,
            read_bytes: t.read_bytes,
            write_bytes: t.write_bytes,
            processes: t.processes,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_decides_by_reason_not_by_wording() {
        let hung = HealthStatus::Unhealthy(vec![HealthReason::Hung {
            quiet_for: Duration::from_secs(3),
        }]);
        assert_eq!(stop_cause_for(&hung), Some(StopCause::Hung));
        let gone = HealthStatus::Unhealthy(vec![HealthReason::Exited { pid: 7 }]);
        assert_eq!(stop_cause_for(&gone), None);
        let rss = HealthStatus::Unhealthy(vec![HealthReason::RssAbove {
            rss_bytes: 3 << 20,
            max_bytes: 1 << 20,
        }]);
        assert_eq!(
            stop_cause_for(&rss),
            Some(StopCause::Unhealthy {
                reason: "rss 3 MiB above 1 MiB".into()
            })
        );
        assert_eq!(
            stop_cause_for(&HealthStatus::Degraded(vec![
                HealthReason::StuckInDiskSleep
            ])),
            None
        );
    }
}
