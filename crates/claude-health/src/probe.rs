//! Probes with the semantics users know from Kubernetes: initial delay, period, timeout, failure
//! and success thresholds; startup, liveness and readiness roles.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

/// A responsiveness check (the facade implements one with a stream-json control request).
#[async_trait]
pub trait Probe: Send + Sync {
    /// A short name for reasons (`"control ping"`).
    fn name(&self) -> String;

    /// `Err(reason)` is a failure. The caller enforces the timeout.
    async fn probe(&self) -> Result<(), String>;
}

/// Timing and thresholds of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Wait this long after monitoring starts before the first probe.
    pub initial_delay: Duration,
    /// Time between probes.
    pub period: Duration,
    /// A probe taking longer fails.
    pub timeout: Duration,
    /// Consecutive failures that make the probe fail.
    pub failure_threshold: u32,
    /// Consecutive successes that make a failed probe pass again.
    pub success_threshold: u32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// What a probe is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeRole {
    /// Gates the others until it first passes; failing it is unhealthy.
    Startup,
    /// Failing it is unhealthy (the facade restarts).
    Liveness,
    /// Failing it is degraded (not ready for work).
    Readiness,
}

/// `d` from now; decades from now for a `d` too long to add (a setting's typo is a long wait,
/// never an overflow panic).
fn after(d: Duration) -> Instant {
    Instant::from_std(claude_proc::instant_after(Instant::now().into_std(), d))
}

/// The verdict of a probe so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Not enough results yet.
    Pending,
    /// Passing.
    Passing,
    /// Failing, with the last reason.
    Failing(String),
}

/// One probe's schedule and counters. Pure logic over [`Instant`]: tests drive it with paused
/// time.
#[derive(Clone)]
pub struct ProbeRunner {
    role: ProbeRole,
    spec: ProbeSpec,
    probe: Arc<dyn Probe>,
    next_due: Instant,
    failures: u32,
    successes: u32,
    verdict: ProbeVerdict,
}

impl std::fmt::Debug for ProbeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRunner")
            .field("role", &self.role)
            .field("probe", &self.probe.name())
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

impl ProbeRunner {
    /// A runner starting now.
    pub fn new(role: ProbeRole, spec: ProbeSpec, probe: Arc<dyn Probe>) -> Self {
        ProbeRunner {
            role,
            spec,
            probe,
            next_due: after(spec.initial_delay),
            failures: 0,
            successes: 0,
            verdict: ProbeVerdict::Pending,
        }
    }

    /// Its role.
    pub fn role(&self) -> ProbeRole {
        self.role
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &ProbeVerdict {
        &self.verdict
    }

    /// When it is due next.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Run the probe once (with its timeout) and update the counters.
    pub async fn run(&mut self) -> &ProbeVerdict {
        let outcome = match tokio::time::timeout(self.spec.timeout, self.probe.probe()).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:?}", self.spec.timeout)),
        };
        self.next_due = after(self.spec.period);
        self.record(outcome);
        &self.verdict
    }

    fn record(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.spec.success_threshold.max(1) {
                    self.verdict = ProbeVerdict::Passing;
                }
            }
            Err(reason) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.spec.failure_threshold.max(1) {
                    self.verdict = ProbeVerdict::Failing(format!(
                        "{} probe {}: {reason}",
                        role_name(self.role),
                        self.probe.name()
                    ));
                }
            }
        }
    }
}

fn role_name(role: ProbeRole) -> &'static str {
    match role {
        ProbeRole::Startup => "startup",
        ProbeRole::Liveness => "liveness",
        ProbeRole::Readiness => "readiness",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails while `fail_left` > 0; sleeps `delay` first.
    struct Scripted {
        fail_left: AtomicU32,
        delay: Duration,
    }

    #[async_trait]
    impl Probe for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        async fn probe(&self) -> Result<(), String> {
            tokio::time::sleep(self.delay).await;
            let left = self.fail_left.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_left.store(left - 1, Ordering::SeqCst);
                Err("no pong".into())
            } else {
                Ok(())
            }
        }
    }

    fn runner(fails: u32, delay: Duration, spec: ProbeSpec) -> ProbeRunner {
        ProbeRunner::new(
            ProbeRole::Liveness,
            spec,
            Arc::new(Scripted {
                fail_left: AtomicU32::new(fails),
                delay,
            }),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_and_schedule() {
        let spec = ProbeSpec {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 2,
        };
        let start = Instant::now();
        let mut r = runner(3, Duration::ZERO, spec);
        assert_eq!(r.next_due(), start + Duration::from_secs(5));
        assert_eq!(r.run().await, &ProbeVerdict::Pending);
        assert_eq!(r.next_due(), start + Duration::from_secs(10));
        assert_eq!(r.run().await, &ProbeVerdict::Pending);
        assert!(
            matches!(r.run().await, ProbeVerdict::Failing(reason) if reason.contains("liveness probe scripted: no pong"))
        );
        // One success is not enough to pass again (success_threshold 2).
        assert!(matches!(r.run().await, ProbeVerdict::Failing(_)));
        assert_eq!(r.run().await, &ProbeVerdict::Passing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_fails_by_timeout() {
        let spec = ProbeSpec {
            timeout: Duration::from_millis(100),
            failure_threshold: 1,
            ..ProbeSpec::default()
        };
        let mut r = runner(0, Duration::from_secs(5), spec);
        let started = Instant::now();
        assert!(
            matches!(r.run().await, ProbeVerdict::Failing(reason) if reason.contains("timed out"))
        );
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
