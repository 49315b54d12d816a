//! The restart engine: one pure state machine that decides, when a run ends, whether and when the
//! next one starts. [`crate::Supervisor`] and claude-manager's session loop both feed it; no
//! restart rule exists anywhere else.
//!
//! It owns every rule: the policy mode, at most N restarts within a window, exponential backoff
//! with full jitter, the reset after a stable run, the circuit breaker, the long pause after the
//! API rate-limited a run, and the one credential refresh an authentication failure earns. It
//! reads no clock and sleeps nowhere: the caller passes `now` and waits the returned delay, so
//! tests drive it with paused time or plain instants.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use std::time::Instant;

use crate::backoff::{Backoff, CircuitBreaker};
use crate::error::{Error, Result};

/// When a run that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestartMode {
    /// Never (the default).
    #[default]
    Never,
    /// When the run failed (not exit code 0: a code, a signal, a stop by an upper layer, a
    /// spawn error that may pass).
    OnFailure,
    /// Always, until stopped.
    Always,
}

impl RestartMode {
    /// Every mode.
    pub const ALL: [RestartMode; 3] = [
        RestartMode::Never,
        RestartMode::OnFailure,
        RestartMode::Always,
    ];

    /// The name in settings and reports (`never`, `on-failure`, `always`).
    pub fn name(self) -> &'static str {
        match self {
            RestartMode::Never => "never",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        }
    }
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How and how often to restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// At most this many restarts within `window`; one more and the engine gives up.
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
    /// After a run the API rate-limited (429, 529), the next waits at least this long, plus up
    /// to as much again at random so a fleet spreads out. Zero: no pause beyond the backoff.
    pub rate_limit_pause: Duration,
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
            rate_limit_pause: Duration::from_secs(30),
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

/// How a run ended, in the terms the engine decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// Exit code 0.
    Succeeded,
    /// Failed in a way another run may not repeat: a code, a signal, a limit, a hang, a spawn
    /// error that may pass.
    Failed,
    /// Failed in a way no new run can fix: the program is missing or not executable, the
    /// working directory is missing, the configuration is invalid.
    FailedPermanently,
    /// The credential was rejected.
    AuthFailed,
    /// Whoever owns the session asked for the stop.
    StopRequested,
    /// Whoever owns the session asked for a restart: a new run now, whatever the policy, not
    /// counted as a failure.
    RestartRequested,
}

/// One run's end, as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunEnd {
    /// How it ended.
    pub outcome: RunOutcome,
    /// How long it ran (spawn to exit; zero if it never started).
    pub ran_for: Duration,
    /// Whether the API rate-limited it (429) or was overloaded (529).
    pub rate_limited: bool,
}

impl RunEnd {
    /// A run that ended with `outcome` after `ran_for`, not rate-limited.
    pub fn new(outcome: RunOutcome, ran_for: Duration) -> Self {
        RunEnd {
            outcome,
            ran_for,
            rate_limited: false,
        }
    }

    /// The same end, rate-limited or not.
    pub fn rate_limited(mut self, yes: bool) -> Self {
        self.rate_limited = yes;
        self
    }
}

/// What happens after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Start the next run after `delay`.
    Restart {
        /// How long to wait first.
        delay: Duration,
        /// Get a fresh credential for it (the last one was rejected).
        refresh_credential: bool,
    },
    /// No further run: the stop was asked for, or the policy does not restart this end.
    Done,
    /// No further run: restarting cannot help, or was tried too often.
    GiveUp(GiveUpReason),
}

/// Why the engine gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// `max_restarts` restarts happened within the window.
    TooManyRestarts {
        /// The restarts counted in the window.
        restarts: u32,
        /// The window.
        window: Duration,
    },
    /// The run failed in a way no new run can fix.
    NotRetryable,
    /// The credential was rejected again after one refresh, or there is nothing to refresh.
    AuthFailed,
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUpReason::TooManyRestarts { restarts, window } => write!(
                f,
                "gave up after {restarts} restart{} in {}",
                if *restarts == 1 { "" } else { "s" },
                human_duration(*window)
            ),
            GiveUpReason::NotRetryable => f.write_str("not restarted: another run cannot fix it"),
            GiveUpReason::AuthFailed => f.write_str("not restarted: the credential was rejected"),
        }
    }
}

/// A duration as people write it: `250 ms`, `1.5 s`, `5 min`, `1 h 30 min`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = ms / 100;
        return match tenths % 10 {
            0 => format!("{} s", tenths / 10),
            t => format!("{}.{t} s", tenths / 10),
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if s > 0 {
        parts.push(format!("{s} s"));
    }
    parts.join(" ")
}

/// The state of one supervised program across its runs. Feed it every run's end with
/// [`RestartState::on_run_end`] and do what it decides.
///
/// The rules, in the order they apply:
/// 1. A requested stop is [`Decision::Done`]; a requested restart is an immediate restart.
/// 2. A run that lasted [`RestartPolicy::reset_after`] resets the backoff and closes the breaker.
/// 3. An authentication failure earns one immediate restart with a refreshed credential (if
///    a source that can refresh is attached); a second one in a row gives up.
/// 4. A permanent failure gives up.
/// 5. The mode decides whether this end is restarted at all ([`Decision::Done`] if not).
/// 6. `max_restarts` restarts within the window give up.
/// 7. The delay is the backoff's (full jitter), at least the rate-limit pause (jittered up to
///    twice) after a rate-limited run, and at least what remains of an open breaker, whose next
///    run is then its trial.
#[derive(Debug, Clone)]
pub struct RestartState {
    policy: RestartPolicy,
    can_refresh: bool,
    breaker: CircuitBreaker,
    attempt: u32,
    recent: VecDeque<Instant>,
    restarts: u32,
    auth_refreshed: bool,
    rng: fastrand::Rng,
}

impl RestartState {
    /// A fresh state for `policy` (jitter from a random seed).
    pub fn new(policy: RestartPolicy) -> Self {
        Self::with_rng(policy, fastrand::Rng::new())
    }

    /// A fresh state whose jitter follows `seed` (reproducible tests).
    pub fn with_seed(policy: RestartPolicy, seed: u64) -> Self {
        Self::with_rng(policy, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(policy: RestartPolicy, rng: fastrand::Rng) -> Self {
        RestartState {
            breaker: CircuitBreaker::new(policy.breaker_threshold, policy.breaker_open_for),
            policy,
            can_refresh: false,
            attempt: 0,
            recent: VecDeque::new(),
            restarts: 0,
            auth_refreshed: false,
            rng,
        }
    }

    /// Whether a credential source that can refresh is attached (rule 3).
    pub fn with_credential_refresh(mut self, yes: bool) -> Self {
        self.can_refresh = yes;
        self
    }

    /// Change whether a credential refresh is possible (rule 3); a source may learn it only
    /// after its first answer.
    pub fn set_credential_refresh(&mut self, yes: bool) {
        self.can_refresh = yes;
    }

    /// The policy.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Restarts decided so far (of every kind).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Decide what follows a run that ended at `now`.
    pub fn on_run_end(&mut self, end: RunEnd, now: Instant) -> Decision {
        match end.outcome {
            RunOutcome::StopRequested => return Decision::Done,
            RunOutcome::RestartRequested => return self.restart(Duration::ZERO, false),
            _ => {}
        }
        if end.ran_for >= self.policy.reset_after {
            self.attempt = 0;
            self.breaker.record_success();
        }
        match end.outcome {
            RunOutcome::AuthFailed if self.can_refresh && !self.auth_refreshed => {
                self.auth_refreshed = true;
                return self.restart(Duration::ZERO, true);
            }
            RunOutcome::AuthFailed => return Decision::GiveUp(GiveUpReason::AuthFailed),
            RunOutcome::FailedPermanently => return Decision::GiveUp(GiveUpReason::NotRetryable),
            RunOutcome::Succeeded => {
                self.auth_refreshed = false;
                self.breaker.record_success();
            }
            _ => {
                self.auth_refreshed = false;
                self.breaker.record_failure(true, now);
            }
        }
        let again = match self.policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => end.outcome != RunOutcome::Succeeded,
            RestartMode::Always => true,
        };
        if !again {
            return Decision::Done;
        }
        let window = self.policy.window;
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        let in_window = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if in_window >= self.policy.max_restarts {
            return Decision::GiveUp(GiveUpReason::TooManyRestarts {
                restarts: in_window,
                window,
            });
        }
        self.recent.push_back(now);
        let mut delay = self.policy.backoff.delay(self.attempt, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        if end.rate_limited && !self.policy.rate_limit_pause.is_zero() {
            let pause = self.policy.rate_limit_pause;
            delay = delay.max(pause.saturating_add(pause.mul_f64(self.rng.f64())));
        }
        delay = delay.max(self.breaker.wait_before_attempt(now));
        self.restart(delay, false)
    }

    fn restart(&mut self, delay: Duration, refresh_credential: bool) -> Decision {
        self.restarts = self.restarts.saturating_add(1);
        Decision::Restart {
            delay,
            refresh_credential,
        }
    }
}

#[cfg(test)]
mod tests;
