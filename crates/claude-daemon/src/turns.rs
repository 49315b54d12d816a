//! `POST /v1/sessions/{name}/turns`: a user turn for a stream-json Claude session, its
//! messages streamed back as NDJSON as the CLI prints them, ending with the result.
//!
//! A turn that lands on a run which fails before any turn (2.1.328 resuming a conversation it
//! cannot load: `error_during_execution`, no turns, no API time, then exit) is sent once more
//! to the session's next run (the manager starts that one with a new conversation), after a
//! `{"type": "retry"}` record; a turn whose CLI ends before the result ends with
//! `{"type": "error"}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use claude_manager::proc::{ClaudeSession, ContentBlock, SessionEvent, StreamMessage};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::events::ChannelBody;

/// One event of a turn as the record streamed back.
fn record(event: &SessionEvent) -> Value {
    match event {
        SessionEvent::Message(StreamMessage::System(m)) => {
            json!({"type": "system", "subtype": m.subtype, "session_id": m.session_id})
        }
        SessionEvent::Message(StreamMessage::Assistant(m)) => {
            let tools: Vec<&str> = m
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            json!({"type": "assistant", "text": m.text(), "tool_uses": tools, "session_id": m.session_id})
        }
        SessionEvent::Message(StreamMessage::User(_)) => json!({"type": "user"}),
        SessionEvent::Message(StreamMessage::Result(r)) => json!({
            "type": "result", "subtype": r.subtype, "is_error": r.is_error, "result": r.result,
            "session_id": r.session_id, "num_turns": r.num_turns, "total_cost_usd": r.total_cost_usd,
            "api_error_status": r.api_error_status,
        }),
        SessionEvent::Message(StreamMessage::RateLimitEvent(_)) => {
            json!({"type": "rate_limit_event"})
        }
        SessionEvent::Message(StreamMessage::ControlRequest(_)) => {
            json!({"type": "control_request"})
        }
        SessionEvent::Message(StreamMessage::ControlResponse(_)) => {
            json!({"type": "control_response"})
        }
        SessionEvent::Message(StreamMessage::Unknown { kind }) => json!({"type": kind}),
        SessionEvent::Message(_) => json!({"type": "other"}),
        SessionEvent::Malformed { error, .. } => json!({"type": "malformed", "error": error}),
        SessionEvent::Oversized { bytes } => json!({"type": "oversized", "bytes": bytes}),
        _ => json!({"type": "other"}),
    }
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// How long a turn waits for the session's next run after its run failed before the turn.
const NEXT_RUN_WAIT: Duration = Duration::from_secs(30);
/// How long a run that failed before the turn gets to end its output.
const END_WAIT: Duration = Duration::from_secs(10);

/// How one run took the turn.
enum Took {
    /// The result (or an error record) was sent.
    Answered,
    /// The output ended before the result.
    Ended,
    /// The run failed before any turn: its result record, not sent yet.
    FailedBeforeTurn(Value),
}

/// Send `text` to `session` and stream what follows until the result.
async fn take_turn(
    daemon: &Daemon,
    name: &str,
    session: &mut ClaudeSession,
    text: &str,
    tx: &mpsc::Sender<Bytes>,
) -> Took {
    if let Err(e) = session.send_user(text).await {
        let _ = tx
            .send(line(&json!({"type": "error", "error": e.to_string()})))
            .await;
        return Took::Answered;
    }
    while let Some(event) = session.next_event().await {
        let id = match &event {
            SessionEvent::Message(StreamMessage::System(m)) => m.session_id.as_deref(),
            SessionEvent::Message(StreamMessage::Result(r)) => r.session_id.as_deref(),
            _ => None,
        };
        if let Some(id) = id {
            daemon.note_session_id(name, id);
        }
        if let SessionEvent::Message(StreamMessage::Result(r)) = &event {
            if r.failed_before_turn() {
                return Took::FailedBeforeTurn(record(&event));
            }
            daemon.note_result(name, r.total_cost_usd);
            let _ = tx.send(line(&record(&event))).await;
            return Took::Answered;
        }
        let _ = tx.send(line(&record(&event))).await;
    }
    Took::Ended
}

/// Send `text` as a user turn and stream what follows until the result (on the next run once,
/// if this one fails before any turn); the session is handed back afterwards, also when the
/// reader goes away.
async fn run_turn(
    daemon: Arc<Daemon>,
    name: String,
    mut session: ClaudeSession,
    runs: u32,
    text: String,
    tx: mpsc::Sender<Bytes>,
) {
    let mut retried = false;
    loop {
        match take_turn(&daemon, &name, &mut session, &text, &tx).await {
            Took::Answered => break,
            Took::Ended => {
                // The CLI exited, was killed, or hung and was stopped: the reader is told,
                // not left with a stream that just stops.
                let why = "the session's process ended before the turn's result; the manager starts it again as its restart policy says";
                let _ = tx.send(line(&json!({"type": "error", "error": why}))).await;
                break;
            }
            Took::FailedBeforeTurn(result) => {
                let _ = tokio::time::timeout(END_WAIT, async {
                    while session.next_event().await.is_some() {}
                })
                .await;
                let next = if retried {
                    None
                } else {
                    daemon.next_claude(&name, runs, NEXT_RUN_WAIT).await
                };
                let Some(next) = next else {
                    let _ = tx.send(line(&result)).await;
                    return;
                };
                retried = true;
                let why = "the run failed before the turn (a conversation it could not resume); the turn goes to the next run";
                let _ = tx
                    .send(line(
                        &json!({"type": "retry", "why": why, "failed": result}),
                    ))
                    .await;
                session = next;
            }
        }
    }
    daemon.give_back(&name, session);
}

impl Daemon {
    /// Start a turn of `name`'s stream-json Claude session: the body streams its records.
    pub(crate) fn turn(self: &Arc<Self>, name: &str, text: String) -> Result<ChannelBody> {
        let (session, runs) = self.take_claude(name)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_turn(
            Arc::clone(self),
            name.to_owned(),
            session,
            runs,
            text,
            tx,
        ));
        Ok(ChannelBody(rx))
    }

    /// The Claude session of `name`'s first run after its `runs`-th, once it has started;
    /// `None` if none starts within `wait` or the session is finished or deleted.
    async fn next_claude(&self, name: &str, runs: u32, wait: Duration) -> Option<ClaudeSession> {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            {
                let sessions = self.lock();
                let session = sessions.get(name)?;
                let started = session.live.runs.lock().map_or(0, |r| *r);
                if started > runs {
                    let next = session.live.claude.lock().ok().and_then(|mut c| c.take());
                    if next.is_some() {
                        return next;
                    }
                }
                if *session.done.borrow() {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

/// The turn request's body: `{"text": "..."}`.
pub(crate) fn turn_text(body: &[u8]) -> Result<String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::Field {
        field: "(body)".into(),
        why: format!("not JSON: {e}"),
    })?;
    let object = value.as_object().ok_or_else(|| Error::Field {
        field: "(body)".into(),
        why: "must be a JSON object".into(),
    })?;
    if let Some(key) = object.keys().find(|k| k.as_str() != "text") {
        return Err(Error::Field {
            field: key.clone(),
            why: "unknown field".into(),
        });
    }
    match object.get("text") {
        Some(Value::String(t)) if !t.trim().is_empty() => Ok(t.clone()),
        Some(Value::String(_)) => Err(Error::Field {
            field: "text".into(),
            why: "is empty".into(),
        }),
        Some(_) => Err(Error::Field {
            field: "text".into(),
            why: "must be a string".into(),
        }),
        None => Err(Error::Field {
            field: "text".into(),
            why: "is required".into(),
        }),
    }
}
