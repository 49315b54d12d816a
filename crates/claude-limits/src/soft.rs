//! Soft limits in user space, for hosts without usable cgroups: the tree is sampled through
//! `/proc`; memory over the limit runs the stop sequence; CPU and storage IO over their rates are
//! throttled by stopping the whole tree (SIGSTOP) until its budget has refilled (SIGCONT).
//!
//! Throttling is as fine as the sampling interval: a tree that writes faster than it is
//! sampled overshoots by what it moves in one interval, and the debt is paid by a longer stop
//! afterwards, so the long-run average holds while a short window may not.
//!
//! Guarantees: the enforcer always leaves the tree running. Dropping it (or the task ending)
//! sends SIGCONT to every process it stopped. If the manager dies outright, the tree's leader
//! dies by its parent-death signal, and the kernel sends SIGHUP and SIGCONT to a process group
//! that becomes orphaned with stopped members.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_health::{Fields, Sampler, Signals, TreeSample};
use claude_proc::{StopCause, Stopper};
use tokio::time::Instant;

/// Limits enforced from user space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftLimits {
    /// Tree RSS above this runs the stop sequence (cause: `memory`).
    pub max_memory: Option<u64>,
    /// CPU in cores, enforced by duty-cycling the tree.
    pub max_cpu: Option<f64>,
    /// Storage IO (read + write) in bytes per second, enforced the same way.
    pub max_disk_io: Option<u64>,
    /// How often the tree is sampled (default 20 ms: throttling is only as fine as this).
    pub interval: Duration,
}

impl Default for SoftLimits {
    fn default() -> Self {
        SoftLimits {
            max_memory: None,
            max_cpu: None,
            max_disk_io: None,
            interval: Duration::from_millis(20),
        }
    }
}

/// Pids this enforcer stopped, to be continued whatever happens; and the health monitor's
/// signals, told while the tree is held (a stop it holds is throttling, not a fault).
#[derive(Debug, Default)]
struct Stopped {
    pids: Mutex<Vec<u32>>,
    signals: Option<Arc<Signals>>,
}

impl Stopped {
    fn stop(&self, tree: &TreeSample) {
        if let Ok(mut stopped) = self.pids.lock() {
            if stopped.is_empty() {
                // Told before the first SIGSTOP, so no sample sees an unexplained stop.
                if let Some(signals) = &self.signals {
                    signals.set_held_stopped(true);
                }
            }
            for p in &tree.processes {
                signal(p.pid, libc::SIGSTOP);
                if !stopped.contains(&p.pid) {
                    stopped.push(p.pid);
                }
            }
        }
    }

    fn resume(&self) {
        if let Ok(mut stopped) = self.pids.lock() {
            if stopped.is_empty() {
                return;
            }
            for pid in stopped.drain(..) {
                signal(pid, libc::SIGCONT);
            }
            // Cleared after every SIGCONT went out.
            if let Some(signals) = &self.signals {
                signals.set_held_stopped(false);
            }
        }
    }
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a pid sampled from this tree a moment ago; no memory involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A running soft enforcer. Dropping it stops enforcing and continues every stopped process.
#[derive(Debug)]
pub struct SoftEnforcer {
    task: tokio::task::JoinHandle<()>,
    stopped: Arc<Stopped>,
}

impl Drop for SoftEnforcer {
    fn drop(&mut self) {
        self.task.abort();
        self.stopped.resume();
    }
}

impl SoftEnforcer {
    /// Enforce `limits` on the tree of `stopper`'s child.
    pub fn start(stopper: Stopper, limits: SoftLimits) -> SoftEnforcer {
        Self::start_reporting(stopper, limits, None)
    }

    /// [`SoftEnforcer::start`], telling `signals` (the run's health monitor's) while it holds
    /// the tree stopped, so the monitor does not take its own throttling for a fault.
    pub fn start_reporting(
        stopper: Stopper,
        limits: SoftLimits,
        signals: Option<Arc<Signals>>,
    ) -> SoftEnforcer {
        let stopped = Arc::new(Stopped {
            pids: Mutex::default(),
            signals,
        });
        let task = tokio::spawn(run(stopper, limits, Arc::clone(&stopped)));
        SoftEnforcer { task, stopped }
    }
}

/// A refilling budget: `rate` units per second, at most one second's worth banked.
struct Bucket {
    rate: f64,
    level: f64,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket { rate, level: 0.0 }
    }

    fn refill(&mut self, secs: f64) {
        self.level = (self.level + self.rate * secs).min(self.rate * 0.1);
    }
}

async fn run(stopper: Stopper, limits: SoftLimits, stopped: Arc<Stopped>) {
    let sampler = Sampler::default().with_fields(Fields {
        io: limits.max_disk_io.is_some(),
        ..Fields::MINIMAL
    });
    let mut cpu = limits.max_cpu.map(Bucket::new);
    let mut io = limits.max_disk_io.map(|b| Bucket::new(b as f64));
    let mut previous: Option<TreeSample> = None;
    let mut last = Instant::now();
    let mut watch = sampler.watch(stopper.pid());
    let mut ticker = tokio::time::interval(limits.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let tree = match watch.sample() {
            Ok(tree) => tree,
            Err(claude_health::Error::ProcessGone { .. }) => {
                stopped.resume();
                return;
            }
            Err(e) => {
                // Out of descriptors or an unreadable file: the tree is not held blind.
                tracing::warn!(pid = stopper.pid(), error = %e, "soft limits: sample failed");
                stopped.resume();
                continue;
            }
        };
        let now = Instant::now();
        let secs = now.saturating_duration_since(last).as_secs_f64();
        last = now;
        if let Some(max) = limits.max_memory {
            if tree.totals.rss_bytes > max {
                tracing::warn!(
                    pid = stopper.pid(),
                    rss = tree.totals.rss_bytes,
                    max,
                    "soft memory limit exceeded"
                );
                stopped.resume();
                stopper.request_stop(StopCause::LimitExceeded {
                    limit: claude_proc::LimitKind::Memory,
                });
                return;
            }
        }
        let mut over = false;
        if let Some(prev) = &previous {
            if let Some(bucket) = cpu.as_mut() {
                bucket.refill(secs);
                bucket.level -= tree
                    .totals
                    .cpu_time
                    .saturating_sub(prev.totals.cpu_time)
                    .as_secs_f64();
                over |= bucket.level < 0.0;
            }
            if let Some(bucket) = io.as_mut() {
                bucket.refill(secs);
                let moved = (tree.totals.read_bytes + tree.totals.write_bytes)
                    .saturating_sub(prev.totals.read_bytes + prev.totals.write_bytes);
                bucket.level -= moved as f64;
                over |= bucket.level < 0.0;
            }
        }
        if over {
            stopped.stop(&tree);
        } else {
            stopped.resume();
        }
        previous = Some(tree);
    }
}
