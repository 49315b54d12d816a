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

/// The `session_id` of a stream-json line that has one.
fn session_id_of(line: &str) -> Option<String> {
    if !line.contains("\"session_id\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("session_id")?.as_str().map(str::to_owned)
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
        if let Some(id) = session_id_of(&text) {
            live.note_session_id(&id);
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
        }
    }
}
