//! What the fleet views chart: each session's CPU, memory and process count over the last 15
//! minutes in 5-second steps, and its last state changes, kept in memory and bounded (about
//! 4 KiB a session).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use claude_manager::{EventKind, ManagerEvent};
use serde::{Deserialize, Serialize};

/// The width of one step, seconds.
pub const HISTORY_STEP_SECS: u32 = 5;
/// Steps kept: 15 minutes.
pub const HISTORY_STEPS: usize = 180;
/// State changes kept per session.
pub const HISTORY_STATES: usize = 50;

/// One step of a session's chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The step's start, seconds since the epoch.
    pub t: u64,
    /// The mean CPU percent of one core over the step's samples.
    pub cpu_percent: f32,
    /// The largest tree RSS of the step, bytes.
    pub rss_bytes: u64,
    /// The most processes in the tree during the step.
    pub processes: u32,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// When, seconds since the epoch (milliseconds in the fraction).
    pub t: f64,
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
}

/// A session's chart and state timeline (`GET /v1/sessions/{name}/history`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// The width of a step, seconds.
    pub step_seconds: u32,
    /// Oldest first; steps without a sample are absent.
    pub points: Vec<HistoryPoint>,
    /// Oldest first.
    pub states: Vec<StateChange>,
    /// The last ends of the session (kept in the registry), newest first.
    #[serde(default)]
    pub exits: Vec<crate::wire::ExitRecord>,
}

/// The step being filled.
#[derive(Default)]
struct Step {
    t: u64,
    cpu_sum: f64,
    samples: u32,
    rss: u64,
    processes: u32,
}

impl Step {
    fn point(&self) -> Option<HistoryPoint> {
        (self.samples > 0).then(|| HistoryPoint {
            t: self.t,
            cpu_percent: (self.cpu_sum / f64::from(self.samples)) as f32,
            rss_bytes: self.rss,
            processes: self.processes,
        })
    }
}

#[derive(Default)]
struct SessionHistory {
    points: VecDeque<HistoryPoint>,
    step: Step,
    states: VecDeque<StateChange>,
}

/// Every session's history.
#[derive(Default)]
pub(crate) struct History {
    sessions: Mutex<HashMap<String, SessionHistory>>,
}

fn secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl History {
    /// Take in a sample or a state change; other events change nothing.
    pub(crate) fn note(&self, event: &ManagerEvent) {
        let relevant = matches!(
            event.kind,
            EventKind::Sample { .. } | EventKind::State { .. }
        );
        if !relevant {
            return;
        }
        let Ok(mut sessions) = self.sessions.lock() else {
            return;
        };
        let entry = match sessions.get_mut(&event.session) {
            Some(entry) => entry,
            None => sessions.entry(event.session.clone()).or_default(),
        };
        let now = secs(event.at);
        match &event.kind {
            EventKind::Sample {
                cpu_percent,
                rss_bytes,
                processes,
                ..
            } => {
                let t = (now as u64) / u64::from(HISTORY_STEP_SECS) * u64::from(HISTORY_STEP_SECS);
                if t != entry.step.t {
                    if let Some(point) = entry.step.point() {
                        entry.points.push_back(point);
                        while entry.points.len() > HISTORY_STEPS
                            || entry.points.front().is_some_and(|p| {
                                p.t + u64::from(HISTORY_STEP_SECS) * HISTORY_STEPS as u64 <= t
                            })
                        {
                            entry.points.pop_front();
                        }
                    }
                    entry.step = Step {
                        t,
                        ..Step::default()
                    };
                }
                let step = &mut entry.step;
                step.cpu_sum += cpu_percent;
                step.samples += 1;
                step.rss = step.rss.max(*rss_bytes);
                step.processes = step
                    .processes
                    .max(u32::try_from(*processes).unwrap_or(u32::MAX));
            }
            EventKind::State { from, to } => {
                entry.states.push_back(StateChange {
                    t: (now * 1000.0).round() / 1000.0,
                    from: from.as_str().to_owned(),
                    to: to.as_str().to_owned(),
                });
                if entry.states.len() > HISTORY_STATES {
                    entry.states.pop_front();
                }
            }
            _ => {}
        }
    }

    /// `name`'s history, the step being filled included.
    pub(crate) fn view(&self, name: &str) -> HistoryView {
        let Ok(sessions) = self.sessions.lock() else {
            return HistoryView::default();
        };
        let Some(entry) = sessions.get(name) else {
            return HistoryView {
                step_seconds: HISTORY_STEP_SECS,
                ..HistoryView::default()
            };
        };
        let mut points: Vec<HistoryPoint> = entry.points.iter().copied().collect();
        points.extend(entry.step.point());
        HistoryView {
            step_seconds: HISTORY_STEP_SECS,
            points,
            states: entry.states.iter().cloned().collect(),
            exits: Vec::new(),
        }
    }

    /// When `name` entered its current state (its last state change), seconds since the
    /// epoch.
    pub(crate) fn state_since(&self, name: &str) -> Option<f64> {
        let sessions = self.sessions.lock().ok()?;
        sessions.get(name)?.states.back().map(|s| s.t)
    }

    /// Forget `name` (deleted).
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: u64, cpu: f64, rss: u64) -> ManagerEvent {
        ManagerEvent {
            session: "s".into(),
            at: UNIX_EPOCH + Duration::from_secs(at),
            kind: EventKind::Sample {
                cpu_percent: cpu,
                rss_bytes: rss,
                read_bytes: 0,
                write_bytes: 0,
                processes: 3,
            },
        }
    }

    #[test]
    fn samples_fold_into_steps_and_old_steps_go() {
        let h = History::default();
        h.note(&sample(1000, 10.0, 100));
        h.note(&sample(1001, 30.0, 300));
        h.note(&sample(1006, 50.0, 50));
        let v = h.view("s");
        assert_eq!(v.points.len(), 2);
        assert_eq!(v.points[0].t, 1000);
        assert!((v.points[0].cpu_percent - 20.0).abs() < 1e-3);
        assert_eq!(v.points[0].rss_bytes, 300);
        assert_eq!(v.points[1].t, 1005);
        // An hour later: only the new step is left.
        h.note(&sample(4600, 1.0, 1));
        h.note(&sample(4606, 1.0, 1));
        let v = h.view("s");
        assert_eq!(v.points.len(), 2, "{:?}", v.points);
        assert_eq!(v.points[0].t, 4600);
        // Bounded whatever comes.
        for i in 0..1000 {
            h.note(&sample(5000 + i * 5, 1.0, 1));
        }
        assert!(h.view("s").points.len() <= HISTORY_STEPS + 1);
        h.forget("s");
        assert!(h.view("s").points.is_empty());
    }
}
