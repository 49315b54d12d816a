//! Watching a Claude child's stdout on its way to the caller: progress and in-flight work for
//! hang detection, the results' turns and cost, and API failures the manager acts on.

use std::sync::{Arc, Mutex};

use claude_health::Signals;
use claude_proc::{parse_line, OutputEvent, OutputReceiver, StreamMessage};
use tokio::sync::mpsc;

use crate::report::ClaudeOutcome;

/// An API failure the CLI reported (as a retry in progress or in its result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiTrouble {
    /// 401 or 403: the credential is not accepted (the HTTP status).
    Auth(u16),
    /// 429 or 529: rate limited or overloaded.
    RateLimited,
    /// The CLI failed before any turn and without asking the API (`error_during_execution`
    /// with no turn: what a resume of a conversation that is gone prints).
    FailedBeforeTurn,
}

fn trouble(status: Option<u16>) -> Option<ApiTrouble> {
    match status? {
        s @ (401 | 403) => Some(ApiTrouble::Auth(s)),
        429 | 529 => Some(ApiTrouble::RateLimited),
        _ => None,
    }
}

/// The HTTP status of an API error the CLI's debug log reports as it happens
/// (`... [ERROR] API error (attempt 1/11): 401 ...`).
pub(crate) fn api_error_status(line: &str) -> Option<u16> {
    let rest = line.split("API error (attempt ").nth(1)?;
    let status = rest.split_once("): ")?.1;
    status.get(..3)?.parse().ok()
}

/// The longest line of the debug log kept while waiting for its end; a longer one is dropped
/// (an API error line is a few hundred bytes).
const MAX_LOG_LINE: usize = 64 * 1024;

/// Follow the CLI's debug log at `path` (the manager asked for it through
/// `CLAUDE_CODE_DEBUG_LOGS_DIR`) and report every API error that calls for action, until the
/// task is aborted with its run. The file is opened once it exists and read from where the last
/// read ended.
pub(crate) async fn follow_api_log(
    path: std::path::PathBuf,
    trouble_tx: mpsc::UnboundedSender<ApiTrouble>,
) {
    use std::io::Read;
    let mut file = None;
    let mut partial = String::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        if file.is_none() {
            file = std::fs::File::open(&path).ok();
        }
        let mut fresh = Vec::new();
        if file
            .as_mut()
            .is_none_or(|f| f.read_to_end(&mut fresh).is_err())
        {
            continue;
        }
        partial.push_str(&String::from_utf8_lossy(&fresh));
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            if let Some(t) = trouble(api_error_status(&line)) {
                let _ = trouble_tx.send(t);
            }
        }
        if partial.len() > MAX_LOG_LINE {
            partial.clear();
        }
    }
}

/// Read `out` to its end; pass every event on to `forward` (if the caller still listens).
pub(crate) async fn tee(
    mut out: OutputReceiver,
    forward: Option<mpsc::Sender<OutputEvent>>,
    signals: Arc<Signals>,
    outcome: Arc<Mutex<ClaudeOutcome>>,
    trouble_tx: mpsc::UnboundedSender<ApiTrouble>,
) {
    let mut forward = forward;
    while let Some(event) = out.recv().await {
        signals.record_output();
        if let OutputEvent::Line(line) = &event {
            match parse_line(line) {
                Ok(StreamMessage::System(s)) if s.subtype == "api_retry" => {
                    if let Some(t) = trouble(s.error_status) {
                        let _ = trouble_tx.send(t);
                    }
                }
                Ok(StreamMessage::System(s)) if s.subtype == "init" => {
                    signals.set_in_flight(true);
                    if let (Some(id), Ok(mut o)) = (s.session_id, outcome.lock()) {
                        o.session_id = Some(id);
                    }
                }
                Ok(StreamMessage::Assistant(_)) => signals.set_in_flight(true),
                Ok(StreamMessage::Result(r)) => {
                    signals.set_in_flight(false);
                    if let Ok(mut o) = outcome.lock() {
                        if let Some(id) = &r.session_id {
                            o.session_id = Some(id.clone());
                        }
                        o.results += 1;
                        o.turns = o.turns.saturating_add(r.num_turns.unwrap_or(1));
                        o.cost_usd += r.total_cost_usd.unwrap_or(0.0);
                        o.is_error = r.is_error;
                        o.api_error_status = r.api_error_status;
                    }
                    if r.is_error {
                        if let Some(t) = trouble(r.api_error_status) {
                            let _ = trouble_tx.send(t);
                        }
                        if r.failed_before_turn() {
                            let _ = trouble_tx.send(ApiTrouble::FailedBeforeTurn);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(tx) = &forward {
            if tx.send(event).await.is_err() {
                // The caller stopped reading: keep draining so the child never blocks.
                forward = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn api_errors_are_read_from_the_debug_log() {
        let line =
            "2026-11-30T12:32:17.981Z [ERROR] API error (attempt 1/11): 401 401 {\"error\":{}}";
        assert_eq!(api_error_status(line), Some(401));
        assert_eq!(
            api_error_status("[ERROR] API error (attempt 3/11): 529 overloaded"),
            Some(529)
        );
        assert_eq!(api_error_status("[DEBUG] nothing to see"), None);
        assert_eq!(api_error_status("API error (attempt 1/11): x"), None);
        assert_eq!(trouble(api_error_status(line)), Some(ApiTrouble::Auth(401)));
    }

    proptest! {
        #[test]
        fn the_log_parser_never_panics(line in ".{0,120}") {
            let _ = api_error_status(&line);
        }
    }
}
