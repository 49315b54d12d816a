//! What a session's task keeps up to date: its output lines (in memory, in its log file, for
//! followers), its last report, its runs, its Claude session and that session's id.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use claude_manager::proc::{ClaudeSession, OutputEvent, OutputReceiver};
use claude_manager::SessionReport;

use crate::daemon::KEPT_LINES;
use crate::registry::Registry;

/// What the session's task updates.
pub(crate) struct Live {
    pub(crate) lines: Mutex<VecDeque<String>>,
    /// Each new line, for followers: made when the first follows, dropped when the last has
    /// gone (its buffer is allocated whole; most sessions are never followed). Locked after
    /// `lines`.
    pub(crate) feed: Mutex<Option<tokio::sync::broadcast::Sender<String>>>,
    pub(crate) last: Mutex<Option<SessionReport>>,
    pub(crate) runs: Mutex<u32>,
    /// A stream-json Claude session's handle on its current run.
    pub(crate) claude: Mutex<Option<ClaudeSession>>,
    /// The session's log file, when the daemon keeps them.
    pub(crate) file: Mutex<Option<crate::logfile::LogFile>>,
    /// The Claude session id the CLI last reported, and where to keep each new one.
    pub(crate) claude_session_id: Mutex<Option<String>>,
    pub(crate) registry: Option<(String, Arc<Registry>)>,
    /// Turns the CLI finished (its `result` lines) and what they cost, over every run.
    pub(crate) usage: Mutex<Usage>,
}

/// A Claude session's turns and cost so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) turns: u32,
    pub(crate) cost_usd: f64,
    /// The CLI's running total at its last result (it counts from zero in each process).
    last_total: f64,
}

impl Usage {
    /// One more result whose running total is `total_cost_usd`.
    pub(crate) fn add(&mut self, total_cost_usd: Option<f64>) {
        self.turns = self.turns.saturating_add(1);
        if let Some(total) = total_cost_usd.filter(|t| t.is_finite() && *t >= 0.0) {
            // A smaller total is a new process of the CLI, counting from zero again.
            let spent = if total >= self.last_total {
                total - self.last_total
            } else {
                total
            };
            self.cost_usd += spent;
            self.last_total = total;
        }
    }
}

impl Live {
    /// The CLI reported `id`: remember it, and keep it in the registry if it is new.
    pub(crate) fn note_session_id(&self, id: &str) {
        let Ok(mut current) = self.claude_session_id.lock() else {
            return;
        };
        if current.as_deref() == Some(id) {
            return;
        }
        *current = Some(id.to_owned());
        if let Some((name, registry)) = &self.registry {
            if let Err(e) = registry.claude_session(name, id) {
                tracing::warn!(session = %name, error = %e, "the Claude session id was not recorded");
            }
        }
    }

    /// The CLI finished a turn costing `total_cost_usd` so far (its running total).
    pub(crate) fn note_result(&self, total_cost_usd: Option<f64>) {
        if let Ok(mut usage) = self.usage.lock() {
            usage.add(total_cost_usd);
        }
    }

    /// The kept lines and a feed of the lines after them (no overlap, no gap).
    pub(crate) fn follow(&self) -> (Vec<String>, tokio::sync::broadcast::Receiver<String>) {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        let rx = match feed.as_ref() {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = tokio::sync::broadcast::channel(FOLLOW_BUFFER);
                *feed = Some(tx);
                rx
            }
        };
        (lines.iter().cloned().collect(), rx)
    }
}

/// What a stream-json line says for the session's record: its `session_id`, and for a
/// `result` line, the CLI's running cost (`Some(None)` when it gives none).
fn read_line(line: &str) -> (Option<String>, Option<Option<f64>>) {
    if !line.contains("\"session_id\"") {
        return (None, None);
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return (None, None);
    };
    let id = value
        .get("session_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let result =
        (value.get("type").and_then(serde_json::Value::as_str) == Some("result")).then(|| {
            value
                .get("total_cost_usd")
                .and_then(serde_json::Value::as_f64)
        });
    (id, result)
}

/// Lines a follower may fall behind before it is told how many it missed.
const FOLLOW_BUFFER: usize = 1024;

/// Keep `rx`'s lines in `live`, the newest [`KEPT_LINES`].
pub(crate) async fn keep_lines(mut rx: OutputReceiver, live: Arc<Live>) {
    while let Some(event) = rx.recv().await {
        let line = match event {
            OutputEvent::Line(l) | OutputEvent::Unterminated(l) => l,
            _ => continue,
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        let (id, result) = read_line(&text);
        if let Some(id) = id {
            live.note_session_id(&id);
        }
        if let Some(cost) = result {
            live.note_result(cost);
        }
        if let Ok(mut file) = live.file.lock() {
            if let Some(file) = file.as_mut() {
                file.append(&text);
            }
        }
        if let Ok(mut lines) = live.lines.lock() {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(text.clone());
            // Sent under the lock, so a follower's kept lines and feed neither overlap nor gap.
            if let Ok(mut feed) = live.feed.lock() {
                if feed.as_ref().is_some_and(|f| f.send(text).is_err()) {
                    *feed = None;
                }
            }
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Live {
            lines: Mutex::new(VecDeque::new()),
            feed: Mutex::new(None),
            last: Mutex::new(None),
            runs: Mutex::new(0),
            claude: Mutex::new(None),
            file: Mutex::new(None),
            claude_session_id: Mutex::new(None),
            registry: None,
            usage: Mutex::new(Usage::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_and_cost_add_up_across_processes() {
        let mut u = Usage::default();
        u.add(Some(0.01));
        u.add(Some(0.03));
        // A new process of the CLI: its total starts again.
        u.add(Some(0.005));
        u.add(None);
        assert_eq!(u.turns, 4);
        assert!((u.cost_usd - 0.035).abs() < 1e-9, "{u:?}");
        let result = r#"{"type":"result","session_id":"s1","total_cost_usd":0.25}"#;
        assert_eq!(read_line(result), (Some("s1".into()), Some(Some(0.25))));
        assert_eq!(read_line(r#"{"type":"system","session_id":"s1"}"#).1, None);
        assert_eq!(read_line("plain text"), (None, None));
    }
}
