//! Exponential backoff with full jitter, and the circuit breaker.

use std::time::Duration;

use std::time::Instant;

use crate::error::{Error, Result};

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(max, initial * multiplier^n)]` (AWS "full jitter"), so a fleet of restarting
/// sessions spreads out instead of retrying in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first delay; zero restarts at once every time.
    pub initial: Duration,
    /// The ceiling never exceeds this.
    pub max: Duration,
    /// Growth per attempt (2.0 doubles).
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// Check the values: `initial <= max`, multiplier finite and >= 1.
    pub fn validate(&self) -> Result<()> {
        if self.max < self.initial {
            return Err(Error::InvalidValue {
                field: "backoff.max",
                value: format!("{:?} is below backoff.initial {:?}", self.max, self.initial),
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(Error::InvalidValue {
                field: "backoff.multiplier",
                value: self.multiplier.to_string(),
            });
        }
        Ok(())
    }

    /// The ceiling for attempt `n` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.min(1024) as i32);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The jittered delay for attempt `n`, using `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        self.ceiling(attempt).mul_f64(rng.f64())
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Attempts are allowed.
    Closed,
    /// Attempts wait until the open period ends.
    Open,
    /// The next attempt is a trial; its outcome closes or re-opens the breaker.
    HalfOpen,
}

/// A circuit breaker over restarts: after `threshold` consecutive failures (or one failure an
/// upper layer marked non-retryable) it opens for `open_for`; the first attempt after that is a
/// trial, and a failed trial re-opens it at once. Pure: every method that needs the time takes
/// it, so the restart engine and its tests decide what "now" is.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    consecutive: u32,
    open_until: Option<Instant>,
    half_open: bool,
}

impl CircuitBreaker {
    /// A closed breaker. `threshold` of 0 is taken as 1.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            open_for,
            consecutive: 0,
            open_until: None,
            half_open: false,
        }
    }

    /// The state at `now` (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
            None if self.half_open => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    /// How long the next attempt must wait from `now` (zero unless open). An open breaker's
    /// next attempt is its trial: the breaker is half-open from here on.
    pub fn wait_before_attempt(&mut self, now: Instant) -> Duration {
        match self.open_until.take() {
            Some(until) => {
                self.half_open = true;
                until.saturating_duration_since(now)
            }
            None => Duration::ZERO,
        }
    }

    /// The attempt succeeded (or ran long enough to count as stable): close.
    pub fn record_success(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.half_open = false;
    }

    /// The attempt failed at `now`. Returns true if this opened the breaker.
    pub fn record_failure(&mut self, retryable: bool, now: Instant) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        let open = !retryable || self.half_open || self.consecutive >= self.threshold;
        if open {
            // A period too long to add to an instant is an open breaker for decades.
            self.open_until = Some(crate::time::instant_after(now, self.open_for));
            self.half_open = false;
        }
        open
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.consecutive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(0, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(250))
            .count();
        let high = delays
            .iter()
            .filter(|d| **d > Duration::from_millis(750))
            .count();
        // Uniform: about a quarter in each end.
        assert!((180..320).contains(&low), "low {low}");
        assert!((180..320).contains(&high), "high {high}");
    }

    #[test]
    fn zero_backoff_restarts_at_once_every_time() {
        let b = Backoff {
            initial: Duration::ZERO,
            ..Backoff::default()
        };
        assert!(b.validate().is_ok());
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in [0, 1, 5, 30, 1000] {
            assert_eq!(b.delay(attempt, &mut rng), Duration::ZERO);
        }
    }

    #[test]
    fn invalid_backoff_is_rejected() {
        let b = Backoff {
            multiplier: f64::NAN,
            ..Backoff::default()
        };
        assert!(b.validate().is_err());
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        };
        assert!(b.validate().is_err());
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut br = CircuitBreaker::new(3, Duration::from_secs(30));
        assert!(!br.record_failure(true, at(0)));
        assert!(!br.record_failure(true, at(0)));
        assert_eq!(br.state(at(0)), BreakerState::Closed);
        assert_eq!(br.wait_before_attempt(at(0)), Duration::ZERO);
        assert!(br.record_failure(true, at(0)));
        assert_eq!(br.state(at(29)), BreakerState::Open);
        assert_eq!(br.state(at(30)), BreakerState::HalfOpen);
        // The next attempt waits out the period and is the trial.
        assert_eq!(br.wait_before_attempt(at(10)), Duration::from_secs(20));
        assert_eq!(br.state(at(10)), BreakerState::HalfOpen);
        // A failed trial re-opens at once.
        assert!(br.record_failure(true, at(40)));
        assert_eq!(br.state(at(41)), BreakerState::Open);
        assert_eq!(br.wait_before_attempt(at(70)), Duration::ZERO);
        br.record_success();
        assert_eq!(br.state(at(70)), BreakerState::Closed);
        assert_eq!(br.failures(), 0);
    }

    #[test]
    fn non_retryable_failure_opens_immediately() {
        let now = Instant::now();
        let mut br = CircuitBreaker::new(5, Duration::from_secs(10));
        assert!(br.record_failure(false, now));
        assert_eq!(br.state(now), BreakerState::Open);
        assert_eq!(br.wait_before_attempt(now), Duration::from_secs(10));
    }

    #[test]
    fn an_open_period_too_long_for_an_instant_does_not_panic() {
        let now = Instant::now();
        let mut br = CircuitBreaker::new(1, Duration::MAX);
        assert!(br.record_failure(true, now));
        assert_eq!(br.state(now), BreakerState::Open);
        assert!(br.wait_before_attempt(now) > Duration::from_secs(3600 * 24 * 365));
    }
}
