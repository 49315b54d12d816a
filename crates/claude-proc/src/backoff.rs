//! Exponential backoff with full jitter, and the circuit breaker.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(max, initial * multiplier^n)]` (AWS "full jitter"), so a fleet of restarting
/// sessions spreads out instead of retrying in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first delay.
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
    /// Check the values: positive durations, `initial <= max`, multiplier finite and >= 1.
    pub fn validate(&self) -> Result<()> {
        if self.initial.is_zero() {
            return Err(Error::InvalidDuration {
                field: "backoff.initial",
                value: self.initial,
            });
        }
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
pub enum BreakerState {
    /// Attempts are allowed.
    Closed,
    /// Attempts are refused until the open period ends.
    Open,
    /// One trial attempt is allowed; its outcome closes or re-opens the breaker.
    HalfOpen,
}

/// A circuit breaker over restarts: after `threshold` consecutive failures (or one failure an
/// upper layer marked non-retryable) it opens for `open_for`; then it lets one trial through.
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

    /// The state now (an open breaker whose time is up reads as half-open).
    pub fn state(&self) -> BreakerState {
        match self.open_until {
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
            None if self.half_open => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    /// Ask to make an attempt: `Err` with the remaining open time while open.
    pub fn allow(&mut self) -> Result<()> {
        if let Some(until) = self.open_until {
            let now = Instant::now();
            if now < until {
                return Err(Error::BreakerOpen {
                    remaining: until - now,
                });
            }
            self.open_until = None;
            self.half_open = true;
        }
        Ok(())
    }

    /// The attempt succeeded (ran long enough to count as stable): close.
    pub fn record_success(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.half_open = false;
    }

    /// The attempt failed. Returns true if this opened the breaker.
    pub fn record_failure(&mut self, retryable: bool) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        let open = !retryable || self.half_open || self.consecutive >= self.threshold;
        if open {
            self.open_until = Some(Instant::now() + self.open_for);
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
    fn invalid_backoff_is_rejected() {
        let b = Backoff {
            multiplier: f64::NAN,
            ..Backoff::default()
        };
        assert!(b.validate().is_err());
        let b = Backoff {
            initial: Duration::ZERO,
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

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_half_opens_and_closes() {
        let mut br = CircuitBreaker::new(3, Duration::from_secs(30));
        assert!(!br.record_failure(true));
        assert!(!br.record_failure(true));
        assert_eq!(br.state(), BreakerState::Closed);
        assert!(br.record_failure(true));
        assert_eq!(br.state(), BreakerState::Open);
        assert!(br.allow().is_err());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(br.allow().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(br.state(), BreakerState::HalfOpen);
        assert!(br.allow().is_ok());
        // A failed trial re-opens at once.
        assert!(br.record_failure(true));
        assert_eq!(br.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(br.allow().is_ok());
        br.record_success();
        assert_eq!(br.state(), BreakerState::Closed);
        assert_eq!(br.failures(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_failure_opens_immediately() {
        let mut br = CircuitBreaker::new(5, Duration::from_secs(10));
        assert!(br.record_failure(false));
        assert_eq!(br.state(), BreakerState::Open);
        match br.allow() {
            Err(Error::BreakerOpen { remaining }) => {
                assert_eq!(remaining, Duration::from_secs(10))
            }
            other => panic!("expected open breaker, got {other:?}"),
        }
    }
}
