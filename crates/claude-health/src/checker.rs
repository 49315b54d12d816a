//! `HealthChecker` and the periodic monitor that implements it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::hang::{Activity, HangConfig, HangDetector};
use crate::probe::{ProbeRole, ProbeRunner, ProbeVerdict};
use crate::sample::{ProcState, Sampler, TreeSample};
use crate::signals::{Signals, StoppedBy};
use crate::status::{HealthReason, HealthStatus};

/// One sample as the monitor took it, with the rates since the previous one.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The tree.
    pub sample: TreeSample,
    /// Since the previous sample (`None` for the first).
    pub rates: Option<crate::sample::Rates>,
}

/// A status change, as handlers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    /// The pid watched.
    pub pid: u32,
    /// Before.
    pub from: HealthStatus,
    /// After.
    pub to: HealthStatus,
}

/// Called on every status change, in registration order, off the sampling loop.
pub type HealthHandler = Box<dyn Fn(&HealthChange) + Send + Sync>;

/// The health-checking interface the facade uses.
#[async_trait]
pub trait HealthChecker: Send + Sync {
    /// Check `pid` now (liveness and resource thresholds; hang detection needs history and is
    /// part of the periodic status).
    async fn check_health(&self, pid: u32) -> HealthStatus;

    /// The latest status of the monitored process.
    fn health_status(&self) -> HealthStatus;

    /// Add a handler for status changes.
    fn register_health_handler(&self, handler: HealthHandler);
}

/// Resource thresholds. `None` disables a check.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    /// Unhealthy above this tree RSS.
    pub max_rss_bytes: Option<u64>,
    /// Degraded when the tree uses at least this CPU percent while no work is in flight
    /// (the idle 100% loop reported against the CLI).
    pub idle_cpu_percent: Option<f64>,
    /// Degraded when open descriptors grew by more than this since monitoring started.
    pub max_fd_growth: Option<u64>,
}

/// What the monitor does and how often.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Sampling period.
    pub interval: Duration,
    /// Resource thresholds.
    pub thresholds: Thresholds,
    /// Hang classification; `None` disables it.
    pub hang: Option<HangConfig>,
    /// A clock shared with other monitors (one timer per interval for all of them); `None`:
    /// a timer of its own.
    pub clock: Option<crate::SharedClock>,
}

impl MonitorConfig {
    /// The files its checks need besides `stat`: `io` for hang detection, `fd/` for the
    /// descriptor-growth threshold. Reading less keeps sampling cheap.
    pub fn fields(&self) -> crate::sample::Fields {
        crate::sample::Fields {
            switches: false,
            io: self.hang.is_some(),
            fds: self.thresholds.max_fd_growth.is_some(),
            wchan: false,
        }
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            hang: Some(HangConfig::default()),
            clock: None,
        }
    }
}

/// Liveness and thresholds over one sample (no history needed). A stopped root is unhealthy
/// unless an enforcer holds it (throttling) or job control suspended it (degraded). Returns who
/// stopped the root, if the sample shows it stopped.
fn judge_sample(
    tree: &TreeSample,
    thresholds: &Thresholds,
    signals: &Signals,
    unhealthy: &mut Vec<HealthReason>,
    degraded: &mut Vec<HealthReason>,
) -> Option<StoppedBy> {
    let mut stopped = None;
    if let Some(root) = tree.root() {
        match root.state {
            ProcState::Zombie => unhealthy.push(HealthReason::Exited { pid: root.pid }),
            ProcState::Stopped => {
                let by = signals.stopped_by();
                match by {
                    StoppedBy::Enforcer | StoppedBy::Ended => {}
                    StoppedBy::JobControl(signal) => degraded.push(HealthReason::Suspended {
                        pid: root.pid,
                        signal,
                    }),
                    StoppedBy::Other => unhealthy.push(HealthReason::Stopped { pid: root.pid }),
                }
                stopped = Some(by);
            }
            _ => {}
        }
    }
    let zombies = tree
        .processes
        .iter()
        .skip(1)
        .filter(|p| p.state == ProcState::Zombie)
        .count();
    if zombies > 0 {
        degraded.push(HealthReason::ZombieDescendants { count: zombies });
    }
    if let Some(max) = thresholds.max_rss_bytes {
        if tree.totals.rss_bytes > max {
            unhealthy.push(HealthReason::RssAbove {
                rss_bytes: tree.totals.rss_bytes,
                max_bytes: max,
            });
        }
    }
    stopped
}

/// Samples one process tree periodically, runs probes, classifies hangs, publishes a status.
/// Never sends a signal. Stops by itself when the process is gone.
pub struct HealthMonitor {
    pid: u32,
    status: watch::Receiver<HealthStatus>,
    latest: watch::Receiver<Option<Observation>>,
    handlers: Arc<Mutex<Vec<HealthHandler>>>,
    signals: Arc<Signals>,
    activity: watch::Receiver<Option<Activity>>,
    task: tokio::task::JoinHandle<()>,
    config: MonitorConfig,
    sampler: Sampler,
}

impl fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("pid", &self.pid)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HealthMonitor {
    /// Start monitoring `pid` with `probes` (any of startup, liveness, readiness). The loop
    /// reads only the files its checks need ([`MonitorConfig::fields`]).
    pub fn start(
        pid: u32,
        config: MonitorConfig,
        sampler: Sampler,
        probes: Vec<ProbeRunner>,
    ) -> HealthMonitor {
        Self::start_with_signals(pid, config, sampler, probes, Arc::default())
    }

    /// [`HealthMonitor::start`] with [`Signals`] the caller already feeds (for example from a
    /// reader that was running before the monitor started).
    pub fn start_with_signals(
        pid: u32,
        config: MonitorConfig,
        sampler: Sampler,
        probes: Vec<ProbeRunner>,
        signals: Arc<Signals>,
    ) -> HealthMonitor {
        let (status_tx, status_rx) = watch::channel(HealthStatus::Unknown);
        let (activity_tx, activity_rx) = watch::channel(None);
        let (latest_tx, latest_rx) = watch::channel(None);
        let handlers: Arc<Mutex<Vec<HealthHandler>>> = Arc::default();
        let (change_tx, change_rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(change_rx, Arc::clone(&handlers)));
        let task = tokio::spawn(
            Loop {
                pid,
                hang: config.hang.map(HangDetector::new),
                config: config.clone(),
                probes,
                signals: Arc::clone(&signals),
                status: status_tx,
                activity: activity_tx,
                latest: latest_tx,
                changes: change_tx,
                first_fds: None,
            }
            .run(sampler.clone().with_fields(config.fields())),
        );
        HealthMonitor {
            pid,
            status: status_rx,
            latest: latest_rx,
            handlers,
            signals,
            activity: activity_rx,
            task,
            config,
            sampler,
        }
    }

    /// Inputs for hang detection.
    pub fn signals(&self) -> Arc<Signals> {
        Arc::clone(&self.signals)
    }

    /// A `watch` of the status.
    pub fn watch_status(&self) -> watch::Receiver<HealthStatus> {
        self.status.clone()
    }

    /// A `watch` of the latest sample and the rates since the one before (the monitor samples
    /// anyway: callers that report usage need not sample again).
    pub fn watch_samples(&self) -> watch::Receiver<Option<Observation>> {
        self.latest.clone()
    }

    /// The latest hang classification.
    pub fn activity(&self) -> Option<Activity> {
        *self.activity.borrow()
    }

    /// Whether the monitoring loop has ended (the process is gone).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[async_trait]
impl HealthChecker for HealthMonitor {
    async fn check_health(&self, pid: u32) -> HealthStatus {
        match self.sampler.tree(pid) {
            Ok(tree) => {
                let (mut unhealthy, mut degraded) = (Vec::new(), Vec::new());
                let _ = judge_sample(
                    &tree,
                    &self.config.thresholds,
                    &self.signals,
                    &mut unhealthy,
                    &mut degraded,
                );
                HealthStatus::from_reasons(unhealthy, degraded)
            }
            Err(crate::Error::ProcessGone { .. }) => {
                HealthStatus::Unhealthy(vec![HealthReason::Exited { pid }])
            }
            Err(e) => HealthStatus::Unhealthy(vec![HealthReason::SampleFailed {
                detail: e.to_string(),
            }]),
        }
    }

    fn health_status(&self) -> HealthStatus {
        self.status.borrow().clone()
    }

    fn register_health_handler(&self, handler: HealthHandler) {
        if let Ok(mut handlers) = self.handlers.lock() {
            handlers.push(handler);
        }
    }
}

async fn dispatch(
    mut changes: mpsc::UnboundedReceiver<HealthChange>,
    handlers: Arc<Mutex<Vec<HealthHandler>>>,
) {
    while let Some(change) = changes.recv().await {
        if let Ok(handlers) = handlers.lock() {
            for handler in handlers.iter() {
                handler(&change);
            }
        }
    }
}

/// The monitoring loop's state: what it publishes to and what it remembers between samples.
struct Loop {
    pid: u32,
    config: MonitorConfig,
    probes: Vec<ProbeRunner>,
    signals: Arc<Signals>,
    status: watch::Sender<HealthStatus>,
    activity: watch::Sender<Option<Activity>>,
    latest: watch::Sender<Option<Observation>>,
    changes: mpsc::UnboundedSender<HealthChange>,
    hang: Option<HangDetector>,
    /// The first sample's descriptor count, the base of the growth check.
    first_fds: Option<u64>,
}

impl Loop {
    async fn run(mut self, sampler: Sampler) {
        let mut next_sample = Instant::now();
        let mut watch = sampler.watch(self.pid);
        let mut ticks = self
            .config
            .clock
            .as_ref()
            .map(|c| c.subscribe(self.config.interval));
        loop {
            self.run_due_probes().await;
            if Instant::now() >= next_sample {
                next_sample = crate::clock::next_tick(Instant::now(), self.config.interval);
                let tree = match watch.sample() {
                    Ok(tree) if !tree.root().is_some_and(|r| r.state == ProcState::Zombie) => tree,
                    _ => {
                        let pid = self.pid;
                        self.publish(HealthStatus::Unhealthy(vec![HealthReason::Exited { pid }]));
                        return;
                    }
                };
                // The previous sample is the one the watch still holds: kept once, not cloned.
                let rates = self
                    .latest
                    .borrow()
                    .as_ref()
                    .map(|p| tree.rates_since(&p.sample));
                let status = self.judge(&tree, rates.as_ref());
                self.latest.send_replace(Some(Observation {
                    rates,
                    sample: tree,
                }));
                self.publish(status);
            }
            let probe_due = self.probes.iter().map(ProbeRunner::next_due).min();
            match &mut ticks {
                // The shared ticker wakes every monitor of the interval at the grid's points.
                Some(rx) if probe_due.is_none_or(|due| due >= next_sample) => {
                    if rx.changed().await.is_err() {
                        ticks = None;
                    }
                }
                _ => {
                    let wake = probe_due.map_or(next_sample, |due| due.min(next_sample));
                    tokio::time::sleep_until(wake.max(Instant::now())).await;
                }
            }
        }
    }

    /// Run the probes that are due (each bounded by its own timeout); startup probes gate the
    /// others until they pass, and stop running once they have.
    async fn run_due_probes(&mut self) {
        let now = Instant::now();
        let startup_passed = self
            .probes
            .iter()
            .filter(|p| p.role() == ProbeRole::Startup)
            .all(|p| *p.verdict() == ProbeVerdict::Passing);
        for probe in self.probes.iter_mut() {
            let gated = probe.role() != ProbeRole::Startup && !startup_passed;
            let done_starting = probe.role() == ProbeRole::Startup && startup_passed;
            if !gated && !done_starting && probe.next_due() <= now {
                probe.run().await;
            }
        }
    }

    /// The status `tree` earns: liveness and thresholds, CPU while idle, descriptor growth,
    /// the hang detector's verdict, failing probes.
    fn judge(&mut self, tree: &TreeSample, rates: Option<&crate::sample::Rates>) -> HealthStatus {
        let (mut unhealthy, mut degraded) = (Vec::new(), Vec::new());
        let thresholds = &self.config.thresholds;
        let stopped = judge_sample(
            tree,
            thresholds,
            &self.signals,
            &mut unhealthy,
            &mut degraded,
        );
        // A root held stopped (an enforcer, job control) makes no progress and is not expected
        // to: it is not hanging.
        let paused = stopped.is_some_and(|by| by != StoppedBy::Other);
        let in_flight = self.signals.in_flight() && !paused;
        if let (Some(threshold), Some(rates)) = (thresholds.idle_cpu_percent, rates) {
            let cpu = rates.cpu_percent;
            if !in_flight && cpu >= threshold {
                degraded.push(HealthReason::BusyWhileIdle { cpu_percent: cpu });
            }
        }
        if let (Some(max), Some(first)) = (thresholds.max_fd_growth, self.first_fds) {
            let growth = tree.totals.open_fds.saturating_sub(first);
            if growth > max {
                degraded.push(HealthReason::DescriptorGrowth { growth });
            }
        }
        self.first_fds.get_or_insert(tree.totals.open_fds);
        if let Some(detector) = self.hang.as_mut() {
            let output = self.signals.output();
            let now = Instant::now();
            let judged = detector.observe(tree, output, in_flight, now);
            self.activity.send_replace(Some(judged));
            match judged {
                Activity::Hung => unhealthy.push(HealthReason::Hung {
                    quiet_for: detector.quiet_for(now),
                }),
                Activity::StuckInDiskSleep => unhealthy.push(HealthReason::StuckInDiskSleep),
                _ => {}
            }
        }
        for probe in &self.probes {
            if let ProbeVerdict::Failing(reason) = probe.verdict() {
                let reason = HealthReason::ProbeFailing {
                    role: probe.role(),
                    detail: reason.clone(),
                };
                match probe.role() {
                    ProbeRole::Readiness => degraded.push(reason),
                    _ => unhealthy.push(reason),
                }
            }
        }
        HealthStatus::from_reasons(unhealthy, degraded)
    }

    /// Publish `to` if it differs from the status now, and queue the change for handlers.
    fn publish(&self, to: HealthStatus) {
        let from = self.status.borrow().clone();
        if from != to {
            let _ = self.changes.send(HealthChange {
                pid: self.pid,
                from,
                to: to.clone(),
            });
            self.status.send_replace(to);
        }
    }
}
