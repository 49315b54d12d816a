//! The supervisor: one program run again and again as the restart engine decides.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::child::{spawn_in, ExitInfo};
use crate::config::ProcessConfig;
use crate::error::{Error, Result};
use crate::output::OutputReceiver;
use crate::restart::{Decision, GiveUpReason, RestartPolicy, RestartState, RunEnd, RunOutcome};
use crate::status::{ExitReason, ProcessStatus, StatusCell, StatusEvent, StopCause};
use crate::stdin::ChildStdin;

/// The streams of one run, handed out as each run starts.
#[derive(Debug)]
pub struct Run {
    /// 1 for the first run.
    pub number: u32,
    /// The leader's pid.
    pub pid: u32,
    /// Stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// Stdout, if framed or chunked.
    pub stdout: Option<OutputReceiver>,
    /// Stderr, if framed or chunked.
    pub stderr: Option<OutputReceiver>,
}

/// Why supervision ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Stopped on request.
    Stopped,
    /// The last run ended and the policy does not restart it.
    Completed,
    /// The restart engine gave up.
    GaveUp(GiveUpReason),
}

/// The end of supervision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorExit {
    /// Why it ended.
    pub outcome: Outcome,
    /// How many runs were started.
    pub runs: u32,
    /// How many of them were restarts.
    pub restarts: u32,
    /// How the last run ended, if one ran.
    pub last: Option<ExitInfo>,
    /// The last spawn error, rendered, if the last attempt could not start.
    pub last_error: Option<String>,
}

#[derive(Debug)]
enum Command {
    Stop(StopCause),
    Restart(StopCause),
}

/// Runs a configuration again and again per a [`RestartPolicy`], with backoff and a circuit
/// breaker. Dropping the supervisor stops the current run (gracefully, in the background).
#[derive(Debug)]
pub struct Supervisor {
    cell: Arc<StatusCell>,
    cmd: mpsc::UnboundedSender<Command>,
    runs: mpsc::UnboundedReceiver<Run>,
    done: watch::Receiver<Option<SupervisorExit>>,
}

impl Supervisor {
    /// Validate the policy and start the first run in the background.
    pub fn start(config: ProcessConfig, policy: RestartPolicy) -> Result<Supervisor> {
        policy.validate()?;
        let cell = Arc::new(StatusCell::new());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (runs_tx, runs_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(None);
        let task = SupervisorTask {
            config,
            policy,
            cell: Arc::clone(&cell),
            cmd: cmd_rx,
            runs: runs_tx,
        };
        tokio::spawn(async move {
            let exit = task.run().await;
            done_tx.send_replace(Some(exit));
        });
        Ok(Supervisor {
            cell,
            cmd: cmd_tx,
            runs: runs_rx,
            done: done_rx,
        })
    }

    /// The current status (across runs: `BackingOff` between them).
    pub fn status(&self) -> ProcessStatus {
        self.cell.get()
    }

    /// A `watch` of the status.
    pub fn watch_status(&self) -> watch::Receiver<ProcessStatus> {
        self.cell.subscribe()
    }

    /// Every transition from now on.
    pub fn events(&self) -> broadcast::Receiver<StatusEvent> {
        self.cell.events()
    }

    /// The streams of the next run, as it starts; `None` once supervision is over.
    pub async fn next_run(&mut self) -> Option<Run> {
        self.runs.recv().await
    }

    /// End the current run with `cause` and let the restart engine decide what follows
    /// ([`crate::RestartState`]: an authentication failure is not restarted, having nothing to
    /// refresh; any other cause counts as a failure).
    pub fn restart_with(&self, cause: StopCause) {
        let _ = self.cmd.send(Command::Restart(cause));
    }

    /// Stop supervising: the current run gets the stop sequence; no more runs.
    pub async fn stop(&mut self) -> Result<SupervisorExit> {
        let _ = self.cmd.send(Command::Stop(StopCause::Requested));
        self.wait().await
    }

    /// Wait for supervision to end.
    pub async fn wait(&mut self) -> Result<SupervisorExit> {
        let exit = self
            .done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::SupervisorGone)?;
        exit.clone().ok_or(Error::SupervisorGone)
    }
}

struct SupervisorTask {
    config: ProcessConfig,
    policy: RestartPolicy,
    cell: Arc<StatusCell>,
    cmd: mpsc::UnboundedReceiver<Command>,
    runs: mpsc::UnboundedSender<Run>,
}

enum Ended {
    Exit(ExitInfo),
    SpawnError(Error),
    Stopped(Option<ExitInfo>),
}

/// The engine's view of a run's exit.
fn outcome_of(reason: &ExitReason) -> RunOutcome {
    match reason.cause() {
        _ if reason.success() => RunOutcome::Succeeded,
        Some(StopCause::AuthFailed) => RunOutcome::AuthFailed,
        _ => RunOutcome::Failed,
    }
}

impl SupervisorTask {
    async fn run(mut self) -> SupervisorExit {
        let mut engine = RestartState::new(self.policy.clone());
        let mut runs = 0u32;
        let mut last = None;
        let mut last_error = None;
        loop {
            runs += 1;
            let started = Instant::now();
            let run_outcome = match self.one_run(runs).await {
                Ended::Stopped(info) => {
                    last = info.or(last);
                    RunOutcome::StopRequested
                }
                Ended::SpawnError(error) => {
                    let outcome = if error.is_permanent() {
                        RunOutcome::FailedPermanently
                    } else {
                        RunOutcome::Failed
                    };
                    last_error = Some(error.to_string());
                    outcome
                }
                Ended::Exit(info) => {
                    let outcome = outcome_of(&info.reason);
                    last = Some(info);
                    last_error = None;
                    outcome
                }
            };
            let end = RunEnd::new(run_outcome, started.elapsed());
            let (outcome, delay) = match engine.on_run_end(end, Instant::now().into_std()) {
                Decision::Restart { delay, .. } => (None, delay),
                Decision::GiveUp(reason) => (Some(Outcome::GaveUp(reason)), Duration::ZERO),
                _ if run_outcome == RunOutcome::StopRequested => {
                    (Some(Outcome::Stopped), Duration::ZERO)
                }
                _ => (Some(Outcome::Completed), Duration::ZERO),
            };
            let restarts = engine.restarts();
            if let Some(outcome) = outcome {
                return self.end(outcome, runs, restarts, last, last_error);
            }
            let _ = self.cell.set(ProcessStatus::BackingOff {
                attempt: restarts,
                delay,
            });
            tracing::info!(restart = restarts, ?delay, "backing off before restart");
            if self.wait_or_stop(delay).await {
                return self.end(Outcome::Stopped, runs, restarts, last, last_error);
            }
        }
    }

    async fn one_run(&mut self, number: u32) -> Ended {
        let mut child = match spawn_in(&self.config, Arc::clone(&self.cell)).await {
            Ok(child) => child,
            Err(error) => return Ended::SpawnError(error),
        };
        let _ = self.runs.send(Run {
            number,
            pid: child.pid(),
            stdin: child.take_stdin(),
            stdout: child.take_stdout(),
            stderr: child.take_stderr(),
        });
        let command = tokio::select! {
            info = child.wait() => return match info {
                Ok(info) => Ended::Exit(info),
                Err(error) => Ended::SpawnError(error),
            },
            command = self.cmd.recv() => command,
        };
        match command {
            Some(Command::Restart(cause)) => match child.stop_with(cause).await {
                Ok(info) => Ended::Exit(info),
                Err(error) => Ended::SpawnError(error),
            },
            Some(Command::Stop(cause)) => Ended::Stopped(child.stop_with(cause).await.ok()),
            None => Ended::Stopped(child.stop_with(StopCause::Requested).await.ok()),
        }
    }

    /// Sleep for `delay`; true if a stop arrived meanwhile.
    async fn wait_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => false,
            command = self.cmd.recv() => !matches!(command, Some(Command::Restart(_))),
        }
    }

    fn end(
        &self,
        outcome: Outcome,
        runs: u32,
        restarts: u32,
        last: Option<ExitInfo>,
        last_error: Option<String>,
    ) -> SupervisorExit {
        if outcome == Outcome::Stopped {
            let _ = self.cell.set(ProcessStatus::Stopped);
        }
        tracing::info!(?outcome, runs, restarts, "supervision ended");
        SupervisorExit {
            outcome,
            runs,
            restarts,
            last,
            last_error,
        }
    }
}
