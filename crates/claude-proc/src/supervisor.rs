//! Restart policy and the supervisor that applies it across runs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::backoff::{Backoff, CircuitBreaker};
use crate::child::{spawn_in, ExitInfo};
use crate::config::ProcessConfig;
use crate::error::{Error, Result};
use crate::output::OutputReceiver;
use crate::status::{ProcessStatus, StatusCell, StatusEvent, StopCause};
use crate::stdin::ChildStdin;

/// When a run that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestartMode {
    /// Never (the default).
    #[default]
    Never,
    /// When the run did not exit with code 0 (a signal, a stop by an upper layer, a spawn error).
    OnFailure,
    /// Always, until stopped.
    Always,
}

/// How and how often to restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// At most this many restarts within `window`; one more and the supervisor gives up.
    pub max_restarts: u32,
    /// The window for `max_restarts`.
    pub window: Duration,
    /// Delay between runs.
    pub backoff: Backoff,
    /// A run that lasted this long resets the backoff and closes the breaker.
    pub reset_after: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open.
    pub breaker_open_for: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Never,
            max_restarts: 5,
            window: Duration::from_secs(300),
            backoff: Backoff::default(),
            reset_after: Duration::from_secs(60),
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// Check every value; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.backoff.validate()?;
        for (field, value) in [
            ("restart.window", self.window),
            ("restart.reset_after", self.reset_after),
            ("restart.breaker_open_for", self.breaker_open_for),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidDuration { field, value });
            }
        }
        if self.breaker_threshold == 0 {
            return Err(Error::InvalidValue {
                field: "restart.breaker_threshold",
                value: "0".into(),
            });
        }
        Ok(())
    }
}

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
    /// Too many restarts within the window.
    GaveUp {
        /// The restarts counted in the window.
        restarts: u32,
    },
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
            rng: fastrand::Rng::new(),
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

    /// End the current run with `cause` and let the policy decide what follows. A cause that is
    /// not retryable ([`StopCause::is_retryable`]) opens the circuit breaker at once.
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
    rng: fastrand::Rng,
}

enum Ended {
    Exit(ExitInfo),
    SpawnError(Error),
    Stopped(Option<ExitInfo>),
}

impl SupervisorTask {
    async fn run(mut self) -> SupervisorExit {
        let mut breaker =
            CircuitBreaker::new(self.policy.breaker_threshold, self.policy.breaker_open_for);
        let mut attempt = 0u32;
        let mut restarts = 0u32;
        let mut runs = 0u32;
        let mut recent: VecDeque<Instant> = VecDeque::new();
        let mut last = None;
        let mut last_error = None;
        loop {
            if let Err(Error::BreakerOpen { remaining }) = breaker.allow() {
                if self.wait_or_stop(remaining).await {
                    return self.end(Outcome::Stopped, runs, restarts, last, last_error);
                }
                continue;
            }
            runs += 1;
            let started = Instant::now();
            let (failed, retryable) = match self.one_run(runs).await {
                Ended::Stopped(info) => {
                    last = info.or(last);
                    return self.end(Outcome::Stopped, runs, restarts, last, last_error);
                }
                Ended::SpawnError(error) => {
                    // A missing or non-executable program will not fix itself.
                    let retryable = !matches!(
                        error,
                        Error::ProgramNotFound { .. }
                            | Error::NotExecutable { .. }
                            | Error::MissingCwd { .. }
                    );
                    last_error = Some(error.to_string());
                    (true, retryable)
                }
                Ended::Exit(info) => {
                    let failed = !info.reason.success();
                    let retryable = info.reason.cause().is_none_or(StopCause::is_retryable);
                    last = Some(info);
                    last_error = None;
                    (failed, retryable)
                }
            };
            if started.elapsed() >= self.policy.reset_after {
                attempt = 0;
                breaker.record_success();
            }
            if failed {
                breaker.record_failure(retryable);
            } else {
                breaker.record_success();
            }
            let again = match self.policy.mode {
                RestartMode::Never => false,
                RestartMode::OnFailure => failed,
                RestartMode::Always => true,
            };
            if !again {
                return self.end(Outcome::Completed, runs, restarts, last, last_error);
            }
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.policy.window)
            {
                recent.pop_front();
            }
            if recent.len() as u32 >= self.policy.max_restarts {
                let restarts_in_window = recent.len() as u32;
                return self.end(
                    Outcome::GaveUp {
                        restarts: restarts_in_window,
                    },
                    runs,
                    restarts,
                    last,
                    last_error,
                );
            }
            recent.push_back(now);
            restarts += 1;
            let mut delay = self.policy.backoff.delay(attempt, &mut self.rng);
            attempt = attempt.saturating_add(1);
            if let Err(Error::BreakerOpen { remaining }) = breaker.allow() {
                delay = delay.max(remaining);
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
