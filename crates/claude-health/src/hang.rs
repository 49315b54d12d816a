//! Hang classification: telling "waiting on the API" from "wedged".

use std::time::Duration;

use tokio::time::Instant;

use crate::sample::{ProcState, TreeSample};

/// What a tree is doing, judged over the samples seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activity {
    /// Making progress: CPU, storage IO, or output.
    Working,
    /// No progress, but not for long enough to call it a hang (waiting on the network or
    /// stdin). Waking up (context switches) is not progress: an event loop waiting forever on a
    /// stalled stream wakes for its timers.
    Waiting,
    /// Nothing is in flight and nothing happens.
    Idle,
    /// The root has been in uninterruptible sleep (D) for longer than allowed.
    StuckInDiskSleep,
    /// Work is in flight and there was no progress of any kind for the configured time.
    Hung,
}

/// Thresholds of the classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HangConfig {
    /// No progress for this long while work is in flight is a hang.
    pub hang_after: Duration,
    /// The root in D state for this long is stuck.
    pub disk_sleep_after: Duration,
    /// CPU below this (percent of a core) does not count as progress (background timers).
    pub cpu_progress_percent: f64,
}

impl Default for HangConfig {
    fn default() -> Self {
        HangConfig {
            hang_after: Duration::from_secs(300),
            disk_sleep_after: Duration::from_secs(60),
            cpu_progress_percent: 2.0,
        }
    }
}

/// Folds samples into an [`Activity`].
#[derive(Debug, Clone)]
pub struct HangDetector {
    config: HangConfig,
    previous: Option<TreeSample>,
    last_output: u64,
    last_progress: Instant,
    disk_sleep_since: Option<Instant>,
}

impl HangDetector {
    /// A detector that counts "now" as the last progress.
    pub fn new(config: HangConfig) -> Self {
        HangDetector {
            config,
            previous: None,
            last_output: 0,
            last_progress: Instant::now(),
            disk_sleep_since: None,
        }
    }

    /// Since when nothing progressed.
    pub fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_progress)
    }

    /// Classify with a new sample. `output` is a counter of output events the caller saw (lines
    /// on stdout, say); `in_flight` says whether work (a turn) is running.
    pub fn observe(
        &mut self,
        sample: &TreeSample,
        output: u64,
        in_flight: bool,
        now: Instant,
    ) -> Activity {
        let mut progressed = output != self.last_output;
        self.last_output = output;
        if let Some(previous) = &self.previous {
            let rates = sample.rates_since(previous);
            progressed |= rates.cpu_percent >= self.config.cpu_progress_percent
                || rates.read_bytes_per_sec > 0.0
                || rates.write_bytes_per_sec > 0.0;
        }
        // Rates need the time and the sums only: no copy of every process's sample.
        self.previous = Some(TreeSample {
            at: sample.at,
            processes: Vec::new(),
            totals: sample.totals,
        });
        let root_in_d = sample
            .root()
            .is_some_and(|r| r.state == ProcState::DiskSleep);
        if root_in_d {
            self.disk_sleep_since.get_or_insert(now);
        } else {
            self.disk_sleep_since = None;
        }
        if progressed || !in_flight {
            self.last_progress = now;
        }
        if self.disk_sleep_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.config.disk_sleep_after
        }) {
            return Activity::StuckInDiskSleep;
        }
        if progressed {
            return Activity::Working;
        }
        if !in_flight {
            return Activity::Idle;
        }
        if self.quiet_for(now) >= self.config.hang_after {
            return Activity::Hung;
        }
        Activity::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{ProcessSample, Totals};

    fn sample(at: Instant, cpu_ms: u64, write: u64, state: ProcState) -> TreeSample {
        let p = ProcessSample {
            pid: 1,
            ppid: 0,
            name: "x".into(),
            state,
            cpu_time: Duration::from_millis(cpu_ms),
            rss_bytes: 0,
            threads: 1,
            open_fds: None,
            read_bytes: Some(0),
            write_bytes: Some(write),
            voluntary_switches: 0,
            involuntary_switches: 0,
            wchan: None,
        };
        TreeSample {
            at: at.into_std(),
            totals: Totals {
                processes: 1,
                cpu_time: p.cpu_time,
                write_bytes: write,
                ..Totals::default()
            },
            processes: vec![p],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_work_becomes_a_hang_only_after_the_threshold() {
        let config = HangConfig {
            hang_after: Duration::from_secs(10),
            ..HangConfig::default()
        };
        let mut d = HangDetector::new(config);
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(
            d.observe(&sample(s(0), 0, 0, ProcState::Sleeping), 0, true, s(0)),
            Activity::Waiting
        );
        assert_eq!(
            d.observe(&sample(s(9), 0, 0, ProcState::Sleeping), 0, true, s(9)),
            Activity::Waiting
        );
        assert_eq!(
            d.observe(&sample(s(10), 0, 0, ProcState::Sleeping), 0, true, s(10)),
            Activity::Hung
        );
        // Output is progress.
        assert_eq!(
            d.observe(&sample(s(11), 0, 0, ProcState::Sleeping), 1, true, s(11)),
            Activity::Working
        );
        // So is CPU (1 s of CPU in 1 s) and storage IO.
        assert_eq!(
            d.observe(&sample(s(12), 1000, 0, ProcState::Running), 1, true, s(12)),
            Activity::Working
        );
        assert_eq!(
            d.observe(
                &sample(s(13), 1000, 4096, ProcState::Sleeping),
                1,
                true,
                s(13)
            ),
            Activity::Working
        );
        // Nothing in flight: idle, never hung.
        assert_eq!(
            d.observe(
                &sample(s(60), 1000, 4096, ProcState::Sleeping),
                1,
                false,
                s(60)
            ),
            Activity::Idle
        );
    }

    #[tokio::test(start_paused = true)]
    async fn long_disk_sleep_is_stuck() {
        let config = HangConfig {
            disk_sleep_after: Duration::from_secs(5),
            ..HangConfig::default()
        };
        let mut d = HangDetector::new(config);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_ne!(
            d.observe(&sample(at(0), 0, 0, ProcState::DiskSleep), 0, true, at(0)),
            Activity::StuckInDiskSleep
        );
        assert_eq!(
            d.observe(&sample(at(5), 0, 0, ProcState::DiskSleep), 0, true, at(5)),
            Activity::StuckInDiskSleep
        );
        assert_eq!(
            d.observe(&sample(at(6), 0, 0, ProcState::Sleeping), 0, true, at(6)),
            Activity::Waiting
        );
    }
}
