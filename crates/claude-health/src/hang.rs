//! Hang classification: telling "waiting on the API" from "wedged".

use std::collections::VecDeque;
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
    /// CPU averaged over the whole `hang_after` window below this (percent of a core) is not
    /// progress. A runtime waiting on the network still burns some CPU in timer and garbage
    /// collector bursts (the Claude CLI idles at about 10 % of a core, in spikes of up to 75 %
    /// over a quarter second), so the share is judged over the window, not per sample.
    pub cpu_progress_percent: f64,
    /// Storage IO (read and written) over the window below this many bytes is not progress:
    /// a waiting program still flushes a log or a settings file now and then.
    pub io_progress_bytes: u64,
}

impl Default for HangConfig {
    fn default() -> Self {
        HangConfig {
            hang_after: Duration::from_secs(300),
            disk_sleep_after: Duration::from_secs(60),
            cpu_progress_percent: 25.0,
            io_progress_bytes: 1 << 20,
        }
    }
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// When the interval ended.
    at: Instant,
    cpu: Duration,
    io: u64,
}

/// Folds samples into an [`Activity`].
#[derive(Debug, Clone)]
pub struct HangDetector {
    config: HangConfig,
    /// The last sample's time and sums.
    previous: Option<(std::time::Instant, Duration, u64)>,
    /// The steps since `window_start`, covering at most about `hang_after`.
    window: VecDeque<Step>,
    /// Where the window begins: the last output, the last time nothing was in flight, or
    /// `hang_after` ago.
    window_start: Instant,
    last_output: u64,
    disk_sleep_since: Option<Instant>,
}

impl HangDetector {
    /// A detector whose window starts now.
    pub fn new(config: HangConfig) -> Self {
        HangDetector {
            config,
            previous: None,
            window: VecDeque::new(),
            window_start: Instant::now(),
            last_output: 0,
            disk_sleep_since: None,
        }
    }

    /// How long the current window of too little progress has lasted.
    pub fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.window_start)
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
        let io_total = sample.totals.read_bytes + sample.totals.write_bytes;
        // A shrinking sum (a process left the tree) counts as no progress, not a negative one.
        let (cpu, io, secs) = match self.previous {
            Some((at, cpu, io)) => (
                sample.totals.cpu_time.saturating_sub(cpu),
                io_total.saturating_sub(io),
                sample.at.saturating_duration_since(at).as_secs_f64(),
            ),
            None => (Duration::ZERO, 0, 0.0),
        };
        self.previous = Some((sample.at, sample.totals.cpu_time, io_total));
        let root_in_d = sample
            .root()
            .is_some_and(|r| r.state == ProcState::DiskSleep);
        if root_in_d {
            self.disk_sleep_since.get_or_insert(now);
        } else {
            self.disk_sleep_since = None;
        }
        let stuck = self.disk_sleep_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.config.disk_sleep_after
        });
        let output_seen = output != self.last_output;
        self.last_output = output;
        if output_seen || !in_flight {
            // Progress (or nothing to wait for): a new window starts.
            self.window.clear();
            self.window_start = now;
        } else {
            self.slide(Step { at: now, cpu, io });
        }
        let busy_now =
            secs > 0.0 && cpu.as_secs_f64() / secs * 100.0 >= self.config.cpu_progress_percent;
        // The window's verdict comes before this interval's: a burst inside a quiet window is
        // the runtime's background, not progress.
        match () {
            () if stuck => Activity::StuckInDiskSleep,
            () if !in_flight => Activity::Idle,
            () if output_seen => Activity::Working,
            () if self.quiet_window_is_hung(now) => Activity::Hung,
            () if busy_now || io >= self.config.io_progress_bytes => Activity::Working,
            () => Activity::Waiting,
        }
    }

    /// Add `step` and drop steps from the front while what remains still covers `hang_after`.
    fn slide(&mut self, step: Step) {
        self.window.push_back(step);
        let now = step.at;
        while let Some(front) = self.window.front().copied() {
            if now.saturating_duration_since(front.at) < self.config.hang_after {
                break;
            }
            self.window_start = front.at;
            self.window.pop_front();
        }
    }

    /// Whether the window covers `hang_after` with too little CPU and IO in it.
    fn quiet_window_is_hung(&self, now: Instant) -> bool {
        let span = self.quiet_for(now);
        if span < self.config.hang_after || span.is_zero() {
            return false;
        }
        let cpu: Duration = self.window.iter().map(|s| s.cpu).sum();
        let io: u64 = self.window.iter().map(|s| s.io).sum();
        let share = cpu.as_secs_f64() / span.as_secs_f64() * 100.0;
        share < self.config.cpu_progress_percent && io < self.config.io_progress_bytes
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
                &sample(s(13), 1000, 2 << 20, ProcState::Sleeping),
                1,
                true,
                s(13)
            ),
            Activity::Working
        );
        // Nothing in flight: idle, never hung.
        assert_eq!(
            d.observe(
                &sample(s(60), 1000, 2 << 20, ProcState::Sleeping),
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

    /// A runtime waiting on a stalled stream: 10 % of a core on average, in bursts of 75 % over
    /// a quarter second, and a 4 KiB flush now and then. Every burst used to count as progress,
    /// so such a stall was never judged hung; over the window it is.
    #[tokio::test(start_paused = true)]
    async fn background_bursts_of_a_waiting_runtime_are_not_progress() {
        let config = HangConfig {
            hang_after: Duration::from_secs(3),
            ..HangConfig::default()
        };
        let mut d = HangDetector::new(config);
        let t0 = Instant::now();
        let (mut cpu_ms, mut write) = (0, 0);
        let mut hung_at = None;
        for i in 1..=40u64 {
            let at = t0 + Duration::from_millis(250 * i);
            // Every fourth quarter second: a 100 ms burst (10 % overall).
            if i % 4 == 0 {
                cpu_ms += 100;
            }
            if i % 10 == 0 {
                write += 4096;
            }
            if d.observe(&sample(at, cpu_ms, write, ProcState::Sleeping), 0, true, at)
                == Activity::Hung
            {
                hung_at.get_or_insert(i);
            }
        }
        // Hung once a full window (3 s, twelve quarter seconds) has passed, not before.
        assert_eq!(hung_at, Some(12));
    }

    /// Steady work of 40 % of a core, or a few MiB written per window, is never a hang.
    #[tokio::test(start_paused = true)]
    async fn sustained_cpu_or_io_is_progress() {
        let config = HangConfig {
            hang_after: Duration::from_secs(3),
            ..HangConfig::default()
        };
        for (cpu_per_step, io_per_step) in [(100u64, 0u64), (0, 512 << 10)] {
            let mut d = HangDetector::new(config);
            let t0 = Instant::now();
            for i in 1..=40u64 {
                let at = t0 + Duration::from_millis(250 * i);
                let activity = d.observe(
                    &sample(at, cpu_per_step * i, io_per_step * i, ProcState::Sleeping),
                    0,
                    true,
                    at,
                );
                assert_ne!(activity, Activity::Hung, "step {i}");
            }
        }
    }
}
