//! Counters and gauges of a manager, as a snapshot and (feature `prometheus`) as Prometheus
//! text exposition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::report::ExitKind;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    sessions: AtomicU64,
    runs: AtomicU64,
    restarts: AtomicU64,
    exits: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub(crate) fn session_started(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_started(&self) {
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn exit(&self, kind: ExitKind) {
        if let Ok(mut exits) = self.exits.lock() {
            *exits.entry(kind.as_str()).or_default() += 1;
        }
    }

    pub(crate) fn snapshot(&self, live: u64, queued: u64, sessions_live: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            sessions_started: self.sessions.load(Ordering::Relaxed),
            sessions_live,
            runs_started: self.runs.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            live_processes: live,
            queued,
            exits: self.exits.lock().map(|e| e.clone()).unwrap_or_default(),
        }
    }
}

/// A point-in-time view of a manager.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Sessions ever started.
    pub sessions_started: u64,
    /// Sessions not finished.
    pub sessions_live: u64,
    /// Runs ever started (first runs and restarts).
    pub runs_started: u64,
    /// Restarts.
    pub restarts: u64,
    /// Sessions with a live process now.
    pub live_processes: u64,
    /// Sessions waiting for a slot.
    pub queued: u64,
    /// Run exits by reason (`exited`, `memory_limit`, ...).
    pub exits: BTreeMap<&'static str, u64>,
}

#[cfg(feature = "prometheus")]
impl MetricsSnapshot {
    /// The snapshot in the Prometheus text exposition format (through `prometheus-client`).
    pub fn to_prometheus(&self) -> String {
        use prometheus_client::encoding::text::encode;
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::registry::Registry;

        let mut registry = Registry::with_prefix("claude_pm");
        let counter = |v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            c
        };
        let gauge = |v: u64| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        registry.register(
            "sessions_started",
            "Sessions started",
            counter(self.sessions_started),
        );
        registry.register(
            "runs_started",
            "Runs started (first runs and restarts)",
            counter(self.runs_started),
        );
        registry.register("restarts", "Restarts", counter(self.restarts));
        registry.register(
            "sessions_live",
            "Sessions not finished",
            gauge(self.sessions_live),
        );
        registry.register(
            "live_processes",
            "Sessions with a live process",
            gauge(self.live_processes),
        );
        registry.register("queued", "Sessions waiting for a slot", gauge(self.queued));
        let exits = Family::<Vec<(String, String)>, Counter>::default();
        for (reason, n) in &self.exits {
            exits
                .get_or_create(&vec![("reason".to_owned(), (*reason).to_owned())])
                .inc_by(*n);
        }
        registry.register("exits", "Run exits by reason", exits);
        let mut out = String::new();
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(all(test, feature = "prometheus"))]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_metric() {
        let m = Metrics::default();
        m.session_started();
        m.run_started();
        m.run_started();
        m.restart();
        m.exit(ExitKind::MemoryLimit);
        let text = m.snapshot(1, 2, 1).to_prometheus();
        for line in [
            "claude_pm_sessions_started_total 1",
            "claude_pm_runs_started_total 2",
            "claude_pm_restarts_total 1",
            "claude_pm_live_processes 1",
            "claude_pm_queued 2",
            "claude_pm_exits_total{reason=\"memory_limit\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
