//! What `claude-pm top` shows, kept from the daemon's list and then its event stream: one row
//! per session, sorted and filtered by the operator's keys.

use std::collections::BTreeMap;

use claude_daemon::wire::{ExitView, SessionView};
use serde_json::Value;

/// One session's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) pid: Option<u32>,
    pub(crate) cpu: Option<f64>,
    pub(crate) rss: Option<u64>,
    pub(crate) processes: Option<u64>,
    pub(crate) health: Option<String>,
    pub(crate) restarts: u32,
    pub(crate) turns: Option<u32>,
    pub(crate) cost: Option<f64>,
    /// When the session entered its state, seconds since the epoch.
    pub(crate) since: Option<f64>,
    pub(crate) program: String,
    pub(crate) last_exit: Option<ExitView>,
}

impl Row {
    pub(crate) fn from_view(v: SessionView) -> Row {
        Row {
            name: v.name,
            state: v.state,
            pid: v.pid,
            cpu: v.cpu_percent,
            rss: v.rss_bytes,
            processes: v.processes,
            health: v.health_summary,
            restarts: v.restarts,
            turns: v.turns,
            cost: v.cost_usd,
            since: v.since,
            program: v.program,
            last_exit: v.last_exit,
        }
    }
}

/// The column the rows are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sort {
    #[default]
    Name,
    Cpu,
    Memory,
    State,
    Restarts,
}

impl Sort {
    pub(crate) fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Cpu,
            Sort::Cpu => Sort::Memory,
            Sort::Memory => Sort::State,
            Sort::State => Sort::Restarts,
            Sort::Restarts => Sort::Name,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Cpu => "cpu",
            Sort::Memory => "memory",
            Sort::State => "state",
            Sort::Restarts => "restarts",
        }
    }
}

/// Every session and how they are shown.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    rows: BTreeMap<String, Row>,
    pub(crate) sort: Sort,
    pub(crate) filter: String,
}

/// What an event asks of the view besides redrawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing more.
    None,
    /// A session the view does not know: list again.
    Unknown(String),
}

fn f64_of(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

impl Fleet {
    /// Replace every row with the daemon's list; a row whose state an event changed after
    /// the list was taken keeps that state (a list answer can arrive after newer events).
    pub(crate) fn load(&mut self, list: Vec<SessionView>) {
        let old = std::mem::take(&mut self.rows);
        for view in list {
            let mut row = Row::from_view(view);
            if let Some(before) = old.get(&row.name) {
                row.turns = row.turns.or(before.turns);
                row.cost = row.cost.or(before.cost);
                if let (Some(ours), Some(theirs)) = (before.since, row.since) {
                    if ours > theirs {
                        row.state.clone_from(&before.state);
                        row.pid = before.pid;
                        row.since = before.since;
                        row.last_exit.clone_from(&before.last_exit);
                    }
                }
            }
            self.rows.insert(row.name.clone(), row);
        }
    }

    /// Apply one record of the event stream (`{"event": ..., "session": ..., ...}`).
    pub(crate) fn apply(&mut self, record: &Value) -> Effect {
        let Some(name) = record.get("session").and_then(Value::as_str) else {
            return Effect::None;
        };
        let Some(row) = self.rows.get_mut(name) else {
            return Effect::Unknown(name.to_owned());
        };
        let ts = f64_of(record, "ts");
        match record.get("event").and_then(Value::as_str) {
            Some("state") => {
                if let Some(to) = record.get("to").and_then(Value::as_str) {
                    row.state = to.to_owned();
                    row.since = ts;
                }
                row.pid = record
                    .get("pid")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .filter(|_| matches!(row.state.as_str(), "running" | "stopping"));
                if !matches!(row.state.as_str(), "running" | "stopping") {
                    row.cpu = None;
                    row.processes = None;
                }
            }
            Some("sample") => {
                row.cpu = f64_of(record, "cpu_percent");
                row.rss = record.get("rss_bytes").and_then(Value::as_u64);
                row.processes = record.get("processes").and_then(Value::as_u64);
            }
            Some("health") => {
                let summary = record.get("summary").and_then(Value::as_str);
                row.health = summary.map(str::to_owned);
            }
            Some("exit") => {
                row.state = "finished".into();
                row.pid = None;
                row.cpu = None;
                row.since = ts;
                row.restarts = record
                    .get("restarts")
                    .and_then(Value::as_u64)
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(row.restarts);
                row.turns = record
                    .get("turns")
                    .and_then(Value::as_u64)
                    .and_then(|t| u32::try_from(t).ok())
                    .or(row.turns);
                row.cost = f64_of(record, "cost_usd").or(row.cost);
                let reason = record.get("reason").and_then(Value::as_str).unwrap_or("");
                row.last_exit = Some(ExitView::new(
                    reason,
                    record
                        .get("code")
                        .and_then(Value::as_i64)
                        .and_then(|c| i32::try_from(c).ok()),
                    record
                        .get("signal")
                        .and_then(Value::as_i64)
                        .and_then(|c| i32::try_from(c).ok()),
                    record.get("detail").and_then(Value::as_str).unwrap_or(""),
                ));
            }
            _ => {}
        }
        Effect::None
    }

    /// Forget sessions the daemon no longer has.
    pub(crate) fn retain(&mut self, names: &[String]) {
        self.rows.retain(|n, _| names.contains(n));
    }

    /// The rows shown: filtered by name or state, in the sort order.
    pub(crate) fn shown(&self) -> Vec<&Row> {
        let filter = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .rows
            .values()
            .filter(|r| {
                filter.is_empty()
                    || r.name.to_lowercase().contains(&filter)
                    || r.state.contains(&filter)
            })
            .collect();
        let by_f64 = |a: Option<f64>, b: Option<f64>| {
            b.unwrap_or(-1.0)
                .partial_cmp(&a.unwrap_or(-1.0))
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        match self.sort {
            Sort::Name => {}
            Sort::Cpu => rows.sort_by(|a, b| by_f64(a.cpu, b.cpu).then(a.name.cmp(&b.name))),
            Sort::Memory => rows.sort_by(|a, b| b.rss.cmp(&a.rss).then(a.name.cmp(&b.name))),
            Sort::State => rows.sort_by(|a, b| a.state.cmp(&b.state).then(a.name.cmp(&b.name))),
            Sort::Restarts => {
                rows.sort_by(|a, b| b.restarts.cmp(&a.restarts).then(a.name.cmp(&b.name)));
            }
        }
        rows
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Bytes for people: `512 B`, `3.2 KiB`, `171 MiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// A duration for people: `42s`, `5m07s`, `3h12m`, `2d04h`.
pub(crate) fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(fleet: &Fleet, name: &str) -> Row {
        fleet
            .shown()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
            .clone()
    }

    fn view(name: &str, state: &str) -> SessionView {
        serde_json::from_value(json!({
            "name": name, "state": state, "pid": null, "restarts": 0,
            "program": "/bin/sleep 100", "last_exit": null,
        }))
        .unwrap()
    }

    #[test]
    fn events_update_rows_and_unknown_sessions_ask_for_a_list() {
        let mut fleet = Fleet::default();
        fleet.load(vec![view("a", "queued"), view("b", "running")]);
        let run = json!({"event": "state", "session": "a", "from": "starting", "to": "running", "pid": 42, "ts": 100.0});
        assert_eq!(fleet.apply(&run), Effect::None);
        let sample = json!({"event": "sample", "session": "a", "cpu_percent": 99.5, "rss_bytes": 2048, "processes": 3, "ts": 101.0});
        fleet.apply(&sample);
        let a = row(&fleet, "a");
        assert_eq!(
            (a.state.as_str(), a.pid, a.cpu, a.rss),
            ("running", Some(42), Some(99.5), Some(2048))
        );
        assert_eq!(a.since, Some(100.0));
        let health = json!({"event": "health", "session": "a", "status": "unhealthy", "reasons": ["process 42 is stopped"], "summary": "unhealthy: process 42 is stopped"});
        fleet.apply(&health);
        assert_eq!(
            row(&fleet, "a").health.as_deref(),
            Some("unhealthy: process 42 is stopped")
        );
        let exit = json!({"event": "exit", "session": "a", "reason": "signaled", "code": null, "signal": 15, "restarts": 2, "turns": 3, "cost_usd": 0.25, "detail": "stopped", "ts": 102.0});
        fleet.apply(&exit);
        let a = row(&fleet, "a");
        assert_eq!(
            (a.state.as_str(), a.pid, a.restarts, a.turns),
            ("finished", None, 2, Some(3))
        );
        assert_eq!(a.last_exit.unwrap().signal, Some(15));
        let new = json!({"event": "state", "session": "c", "from": "queued", "to": "starting"});
        assert_eq!(fleet.apply(&new), Effect::Unknown("c".into()));
        // A list taken before the exit (still "stopping" at 101.5) does not undo it.
        let mut stale = view("a", "stopping");
        stale.since = Some(101.5);
        fleet.load(vec![stale, view("b", "running")]);
        let a = row(&fleet, "a");
        assert_eq!(a.state, "finished");
    }

    #[test]
    fn rows_sort_and_filter() {
        let mut fleet = Fleet::default();
        fleet.load(vec![
            view("web", "running"),
            view("api", "running"),
            view("db", "finished"),
        ]);
        fleet.apply(&json!({"event": "sample", "session": "web", "cpu_percent": 5.0, "rss_bytes": 10, "processes": 1}));
        fleet.apply(&json!({"event": "sample", "session": "db", "cpu_percent": 50.0, "rss_bytes": 5, "processes": 1}));
        let names = |f: &Fleet| f.shown().iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fleet), ["api", "db", "web"]);
        fleet.sort = Sort::Cpu;
        assert_eq!(names(&fleet), ["db", "web", "api"]);
        fleet.sort = Sort::Memory;
        assert_eq!(names(&fleet), ["web", "db", "api"]);
        fleet.filter = "finished".into();
        assert_eq!(names(&fleet), ["db"]);
        fleet.filter = "AP".into();
        assert_eq!(names(&fleet), ["api"]);
        fleet.retain(&["web".into()]);
        assert_eq!(fleet.len(), 1);
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 10), "3.0 KiB");
        assert_eq!(bytes(171 << 20), "171 MiB");
        assert_eq!(duration(42.9), "42s");
        assert_eq!(duration(307.0), "5m07s");
        assert_eq!(duration(11_520.0), "3h12m");
        assert_eq!(duration(187_200.0), "2d04h");
    }
}
