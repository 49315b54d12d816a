//! `POST /v1/sessions/{name}/turns`: a user turn for a stream-json Claude session, its
//! messages streamed back as NDJSON as the CLI prints them, ending with the result.

use std::sync::Arc;

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

/// Send `text` as a user turn and stream what follows until the result; the session is
/// handed back afterwards, also when the reader goes away.
async fn run_turn(
    daemon: Arc<Daemon>,
    name: String,
    mut session: ClaudeSession,
    text: String,
    tx: mpsc::Sender<Bytes>,
) {
    if let Err(e) = session.send_user(&text).await {
        let _ = tx
            .send(line(&json!({"type": "error", "error": e.to_string()})))
            .await;
    } else {
        while let Some(event) = session.next_event().await {
            let done = matches!(event, SessionEvent::Message(StreamMessage::Result(_)));
            let id = match &event {
                SessionEvent::Message(StreamMessage::System(m)) => m.session_id.as_deref(),
                SessionEvent::Message(StreamMessage::Result(r)) => r.session_id.as_deref(),
                _ => None,
            };
            if let Some(id) = id {
                daemon.note_session_id(&name, id);
            }
            if let SessionEvent::Message(StreamMessage::Result(r)) = &event {
                daemon.note_result(&name, r.total_cost_usd);
            }
            let _ = tx.send(line(&record(&event))).await;
            if done {
                break;
            }
        }
    }
    daemon.give_back(&name, session);
}

impl Daemon {
    /// Start a turn of `name`'s stream-json Claude session: the body streams its records.
    pub(crate) fn turn(self: &Arc<Self>, name: &str, text: String) -> Result<ChannelBody> {
        let session = self.take_claude(name)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_turn(
            Arc::clone(self),
            name.to_owned(),
            session,
            text,
            tx,
        ));
        Ok(ChannelBody(rx))
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
