//! What a session reports as it goes: state changes, samples, health, limits, and its end.

use std::time::SystemTime;

use claude_health::HealthStatus;
use claude_limits::Mechanism;
use claude_proc::LimitKind;
use serde_json::{json, Value};

use crate::report::SessionReport;

/// What happened to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitAction {
    /// Set up for the session's runs.
    Applied,
    /// Requested, but nothing here enforces it (best effort only).
    NotEnforced,
    /// Its enforcer killed the run.
    Killed,
    /// Its enforcer stopped the run (the stop sequence).
    Stopped,
}

impl LimitAction {
    /// The name in events (`applied`, `not-enforced`, `killed`, `stopped`).
    pub fn name(self) -> &'static str {
        match self {
            LimitAction::Applied => "applied",
            LimitAction::NotEnforced => "not-enforced",
            LimitAction::Killed => "killed",
            LimitAction::Stopped => "stopped",
        }
    }
}

/// A session's state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionState {
    /// Waiting for a slot under the live-process cap.
    Queued,
    /// Getting a credential and spawning.
    Starting,
    /// A run is live.
    Running {
        /// The leader's pid.
        pid: u32,
        /// 1 for the first run.
        run: u32,
    },
    /// The run is being stopped.
    Stopping {
        /// The leader's pid.
        pid: u32,
    },
    /// Between runs.
    BackingOff {
        /// How long until the next run.
        delay: std::time::Duration,
    },
    /// Over; the report is available.
    Finished,
}

impl SessionState {
    /// The name in events (`queued`, `running`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionState::Queued => "queued",
            SessionState::Starting => "starting",
            SessionState::Running { .. } => "running",
            SessionState::Stopping { .. } => "stopping",
            SessionState::BackingOff { .. } => "backing_off",
            SessionState::Finished => "finished",
        }
    }

    /// The live pid, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            SessionState::Running { pid, .. } | SessionState::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// One event of one session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// The state changed.
    State {
        /// Before.
        from: SessionState,
        /// After.
        to: SessionState,
    },
    /// A sample of the tree.
    Sample {
        /// CPU percent of one core since the previous sample.
        cpu_percent: f64,
        /// Tree RSS.
        rss_bytes: u64,
        /// Storage bytes read so far (the live tree).
        read_bytes: u64,
        /// Storage bytes written so far.
        write_bytes: u64,
        /// Processes in the tree.
        processes: u64,
    },
    /// The health status changed.
    Health(HealthStatus),
    /// A limit was applied or acted.
    Limit {
        /// Which limit.
        limit: LimitKind,
        /// What enforces it.
        mechanism: Mechanism,
        /// What happened.
        action: LimitAction,
    },
    /// The session ended (always the last event of a session).
    Exit(SessionReport),
}

/// An event with its session and time.
#[derive(Debug, Clone)]
pub struct ManagerEvent {
    /// The session's name.
    pub session: String,
    /// When.
    pub at: SystemTime,
    /// What.
    pub kind: EventKind,
}

impl ManagerEvent {
    /// The event as one JSON object: `"event"` and `"ts"` (seconds since the epoch, with
    /// milliseconds) always, then the fields of its kind.
    pub fn to_json(&self) -> Value {
        let ts = self
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0);
        let mut v = match &self.kind {
            EventKind::State { from, to } => json!({
                "event": "state", "from": from.as_str(), "to": to.as_str(),
                "pid": to.pid().or(from.pid()),
            }),
            EventKind::Sample {
                cpu_percent,
                rss_bytes,
                read_bytes,
                write_bytes,
                processes,
            } => json!({
                "event": "sample", "cpu_percent": (cpu_percent * 10.0).round() / 10.0,
                "rss_bytes": rss_bytes, "read_bytes": read_bytes, "write_bytes": write_bytes,
                "processes": processes,
            }),
            EventKind::Health(status) => {
                let reasons: Vec<String> = status.reasons().iter().map(|r| r.to_string()).collect();
                json!({
                    "event": "health", "status": status.name(), "reasons": reasons,
                    "summary": status.to_string(),
                })
            }
            EventKind::Limit {
                limit,
                mechanism,
                action,
            } => json!({
                "event": "limit", "limit": limit.name(), "mechanism": mechanism.to_string(),
                "action": action.name(),
            }),
            EventKind::Exit(r) => {
                let mut exit = json!({
                    "event": "exit", "reason": r.reason.as_str(), "code": r.code,
                    "signal": r.signal, "cpu_seconds": (r.cpu_time.as_secs_f64() * 1000.0).round() / 1000.0,
                    "max_rss_bytes": r.max_rss_bytes,
                    "wall_seconds": (r.wall.as_secs_f64() * 1000.0).round() / 1000.0,
                    "restarts": r.restarts, "detail": r.detail,
                });
                if let (Some(c), Some(obj)) = (&r.claude, exit.as_object_mut()) {
                    obj.insert("turns".into(), json!(c.turns));
                    obj.insert("cost_usd".into(), json!(c.cost_usd));
                    obj.insert("api_error_status".into(), json!(c.api_error_status));
                }
                exit
            }
        };
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ts".into(), json!(ts));
            obj.insert("session".into(), json!(self.session));
        }
        v
    }
}
