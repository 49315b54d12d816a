//! The health of a supervised process, and why: typed reasons, so the facade decides by
//! variant (hung, exited, over a threshold) and never by the wording of a message.

use std::fmt;
use std::time::Duration;

use crate::probe::ProbeRole;

/// The health of a supervised process.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Nothing known yet.
    Unknown,
    /// All checks pass.
    Healthy,
    /// Usable, with concerns (not ready, near a threshold).
    Degraded(Vec<HealthReason>),
    /// Not usable: the facade should act (stop, restart).
    Unhealthy(Vec<HealthReason>),
}

impl HealthStatus {
    /// The reasons, if any.
    pub fn reasons(&self) -> &[HealthReason] {
        match self {
            HealthStatus::Degraded(r) | HealthStatus::Unhealthy(r) => r,
            _ => &[],
        }
    }

    /// The name in events and reports (`healthy`, `degraded`, `unhealthy`, `unknown`).
    pub fn name(&self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded(_) => "degraded",
            HealthStatus::Unhealthy(_) => "unhealthy",
        }
    }

    pub(crate) fn from_reasons(unhealthy: Vec<HealthReason>, degraded: Vec<HealthReason>) -> Self {
        if !unhealthy.is_empty() {
            HealthStatus::Unhealthy(unhealthy)
        } else if !degraded.is_empty() {
            HealthStatus::Degraded(degraded)
        } else {
            HealthStatus::Healthy
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let reasons = self.reasons();
        for (i, reason) in reasons.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// One reason for a status other than healthy.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HealthReason {
    /// The watched process is gone (exited and reaped, or a zombie): monitoring has ended.
    Exited {
        /// Its pid.
        pid: u32,
    },
    /// The watched process is stopped (SIGSTOP, a job-control stop, traced).
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// Job control suspended the watched process (`SIGTSTP`, `SIGTTIN`, `SIGTTOU`): degraded,
    /// never acted on; it goes on when continued.
    Suspended {
        /// Its pid.
        pid: u32,
        /// The stop signal.
        signal: i32,
    },
    /// Descendants that exited and nobody reaped (degrades).
    ZombieDescendants {
        /// How many.
        count: usize,
    },
    /// The tree's RSS is above the threshold.
    RssAbove {
        /// The tree's RSS.
        rss_bytes: u64,
        /// The threshold.
        max_bytes: u64,
    },
    /// The tree burns CPU while no work is in flight (degrades).
    BusyWhileIdle {
        /// CPU percent of one core.
        cpu_percent: f64,
    },
    /// Open descriptors grew past the threshold since monitoring started (degrades).
    DescriptorGrowth {
        /// How many more than at the first sample.
        growth: u64,
    },
    /// Work is in flight and nothing progressed (output, CPU, IO) for the hang threshold.
    Hung {
        /// How long nothing progressed.
        quiet_for: Duration,
    },
    /// The process sat in uninterruptible sleep past the threshold.
    StuckInDiskSleep,
    /// A probe fails (liveness and startup: unhealthy; readiness: degraded).
    ProbeFailing {
        /// The probe's role.
        role: ProbeRole,
        /// The probe's own reason (its name and what happened).
        detail: String,
    },
    /// The tree could not be sampled (not the process being gone).
    SampleFailed {
        /// What failed.
        detail: String,
    },
}

impl fmt::Display for HealthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthReason::Exited { pid } => write!(f, "process {pid} exited"),
            HealthReason::Stopped { pid } => write!(f, "process {pid} is stopped"),
            HealthReason::Suspended { pid, signal } => write!(
                f,
                "process {pid} is suspended ({})",
                claude_proc::signal_name(*signal).unwrap_or("job control")
            ),
            HealthReason::ZombieDescendants { count } => {
                write!(f, "{count} unreaped zombie descendant(s)")
            }
            HealthReason::RssAbove {
                rss_bytes,
                max_bytes,
            } => write!(
                f,
                "rss {} MiB above {} MiB",
                rss_bytes >> 20,
                max_bytes >> 20
            ),
            HealthReason::BusyWhileIdle { cpu_percent } => {
                write!(f, "{cpu_percent:.0}% CPU while idle")
            }
            HealthReason::DescriptorGrowth { growth } => {
                write!(f, "open descriptors grew by {growth}")
            }
            HealthReason::Hung { quiet_for } => write!(
                f,
                "hung: no progress for {:.1}s with work in flight",
                quiet_for.as_secs_f64()
            ),
            HealthReason::StuckInDiskSleep => f.write_str("stuck in uninterruptible sleep"),
            HealthReason::ProbeFailing { detail, .. } | HealthReason::SampleFailed { detail } => {
                f.write_str(detail)
            }
        }
    }
}
