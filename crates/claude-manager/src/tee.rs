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
    /// 401 or 403: the credential is not accepted.
    Auth,
    /// 429 or 529: rate limited or overloaded.
    RateLimited,
}

fn trouble(status: Option<u16>) -> Option<ApiTrouble> {
    match status? {
        401 | 403 => Some(ApiTrouble::Auth),
        429 | 529 => Some(ApiTrouble::RateLimited),
        _ => None,
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
                Ok(StreamMessage::System(s)) if s.subtype == "init" => signals.set_in_flight(true),
                Ok(StreamMessage::Assistant(_)) => signals.set_in_flight(true),
                Ok(StreamMessage::Result(r)) => {
                    signals.set_in_flight(false);
                    if let Ok(mut o) = outcome.lock() {
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
