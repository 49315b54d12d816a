//! Typed stream-json messages printed by the Claude CLI, parsed tolerantly: unknown fields are
//! ignored, unknown message types are kept as [`StreamMessage::Unknown`].

use serde::Deserialize;

use crate::error::Error;

/// One line of the CLI's stream-json output.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamMessage {
    /// `{"type":"system",...}`, e.g. `subtype: "init"`.
    System(SystemMessage),
    /// `{"type":"assistant",...}`.
    Assistant(AssistantMessage),
    /// `{"type":"user",...}` (tool results echoed back).
    User(UserMessage),
    /// `{"type":"result",...}`: the end of a turn.
    Result(ResultMessage),
    /// `{"type":"rate_limit_event",...}`.
    RateLimitEvent(RateLimitEvent),
    /// A control request from the CLI to us (e.g. a permission prompt).
    ControlRequest(ControlRequest),
    /// A reply to one of our control requests.
    ControlResponse(ControlResponse),
    /// The CLI withdrew one of its control requests (`control_cancel_request`).
    ControlCancel {
        /// The id of the withdrawn request.
        request_id: String,
    },
    /// A type this version does not know.
    Unknown {
        /// The `type` field.
        kind: String,
    },
}

/// `system` messages.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct SystemMessage {
    /// `init`, or others.
    pub subtype: String,
    /// The session id.
    pub session_id: Option<String>,
    /// The model in use.
    pub model: Option<String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// The tools offered.
    pub tools: Vec<String>,
    /// Where the API credential came from (`ANTHROPIC_API_KEY`, `none`, ...).
    #[serde(rename = "apiKeySource")]
    pub api_key_source: Option<String>,
    /// The CLI's version.
    pub claude_code_version: Option<String>,
    /// `api_retry`: the HTTP status of the failed API call (401, 429, 529, ...).
    pub error_status: Option<u16>,
    /// `api_retry`: the error class (`authentication_failed`, ...).
    pub error: Option<String>,
    /// `api_retry`: this attempt's number.
    pub attempt: Option<u32>,
    /// `api_retry`: how many retries the CLI allows itself (`CLAUDE_CODE_MAX_RETRIES`).
    pub max_retries: Option<u32>,
    /// `api_retry`: the delay before the next attempt.
    pub retry_delay_ms: Option<u64>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
}

/// A content block of an assistant message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentBlock {
    /// Text.
    Text(String),
    /// A tool call.
    ToolUse {
        /// The call id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// Another block type (thinking, ...).
    Other {
        /// Its `type`.
        kind: String,
    },
}

/// `assistant` messages.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct AssistantMessage {
    /// The session id.
    pub session_id: Option<String>,
    /// The API message id.
    pub id: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// Content blocks.
    pub content: Vec<ContentBlock>,
    /// Why the model stopped, if it did.
    pub stop_reason: Option<String>,
}

impl AssistantMessage {
    /// All text blocks joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// `user` messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct UserMessage {
    /// The session id.
    pub session_id: Option<String>,
}

/// `result` messages: one per turn.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ResultMessage {
    /// `success`, `error_max_turns`, `error_during_execution`, ...
    pub subtype: String,
    /// Whether the turn failed.
    pub is_error: bool,
    /// The final text.
    pub result: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// The cost of the session so far, in USD.
    pub total_cost_usd: Option<f64>,
    /// Turns in the session.
    pub num_turns: Option<u32>,
    /// Wall time of the turn.
    pub duration_ms: Option<u64>,
    /// Time spent waiting on the API.
    pub duration_api_ms: Option<u64>,
    /// The HTTP status of a failed API call (401, 429, 529...), when the CLI reports one.
    pub api_error_status: Option<u16>,
    /// Why the turn ended (`completed`, ...).
    pub terminal_reason: Option<String>,
    /// Token counts.
    pub usage: Usage,
}

impl ResultMessage {
    /// Whether the CLI failed before any turn and without asking the API
    /// (`error_during_execution`, no turns, no API time): what 2.1.328 answers when the
    /// conversation it was to resume cannot be loaded ("No conversation found").
    pub fn failed_before_turn(&self) -> bool {
        self.is_error
            && self.subtype == "error_during_execution"
            && self.num_turns == Some(0)
            && self.duration_api_ms == Some(0)
    }
}

/// `rate_limit_event` messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct RateLimitEvent {
    /// The session id.
    pub session_id: Option<String>,
}

/// A control request the CLI sends to us.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ControlRequest {
    /// Its id, to answer.
    pub request_id: String,
    /// The request's subtype (`can_use_tool`, ...).
    pub subtype: String,
    /// The request object as JSON text.
    pub request_json: String,
}

/// The CLI's reply to one of our control requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ControlResponse {
    /// The id of our request.
    pub request_id: String,
    /// Whether it succeeded (`subtype: "success"`).
    pub success: bool,
    /// The inner `response` object as JSON text (`{}` if absent).
    pub response_json: String,
    /// The error message when it failed.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct RawAssistant {
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    message: RawApiMessage,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawApiMessage {
    id: Option<String>,
    model: Option<String>,
    content: Vec<serde_json::Value>,
    stop_reason: Option<String>,
}

fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_owned)
}

fn malformed(kind: &str, e: serde_json::Error) -> Error {
    Error::MalformedMessage {
        kind: Some(kind.to_owned()),
        detail: e.to_string(),
    }
}

/// Parse one line of stream-json output.
///
/// Errors are [`Error::MalformedMessage`]: not JSON, no string `type`, or a known type whose
/// fields have the wrong shape.
pub fn parse_line(line: &[u8]) -> Result<StreamMessage, Error> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| Error::MalformedMessage {
            kind: None,
            detail: format!("not JSON: {e}"),
        })?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| Error::MalformedMessage {
            kind: None,
            detail: "no string \"type\" field".into(),
        })?
        .to_owned();
    let msg = match kind.as_str() {
        "system" => {
            StreamMessage::System(serde_json::from_value(value).map_err(|e| malformed(&kind, e))?)
        }
        "assistant" => {
            let raw: RawAssistant =
                serde_json::from_value(value).map_err(|e| malformed(&kind, e))?;
            let content = raw
                .message
                .content
                .iter()
                .map(|block| match block.get("type").and_then(|t| t.as_str()) {
                    Some("text") => {
                        ContentBlock::Text(str_field(block, "text").unwrap_or_default())
                    }
                    Some("tool_use") => ContentBlock::ToolUse {
                        id: str_field(block, "id").unwrap_or_default(),
                        name: str_field(block, "name").unwrap_or_default(),
                    },
                    other => ContentBlock::Other {
                        kind: other.unwrap_or("").to_owned(),
                    },
                })
                .collect();
            StreamMessage::Assistant(AssistantMessage {
                session_id: raw.session_id,
                id: raw.message.id,
                model: raw.message.model,
                content,
                stop_reason: raw.message.stop_reason,
            })
        }
        "user" => {
            StreamMessage::User(serde_json::from_value(value).map_err(|e| malformed(&kind, e))?)
        }
        "result" => {
            StreamMessage::Result(serde_json::from_value(value).map_err(|e| malformed(&kind, e))?)
        }
        "rate_limit_event" => StreamMessage::RateLimitEvent(
            serde_json::from_value(value).map_err(|e| malformed(&kind, e))?,
        ),
        "control_request" => {
            let request = value.get("request").cloned().unwrap_or_default();
            StreamMessage::ControlRequest(ControlRequest {
                request_id: str_field(&value, "request_id").unwrap_or_default(),
                subtype: str_field(&request, "subtype").unwrap_or_default(),
                request_json: request.to_string(),
            })
        }
        "control_response" => {
            let Some(response) = value.get("response") else {
                return Err(Error::MalformedMessage {
                    kind: Some(kind),
                    detail: "no \"response\" object".into(),
                });
            };
            let request_id =
                str_field(response, "request_id").ok_or_else(|| Error::MalformedMessage {
                    kind: Some(kind.clone()),
                    detail: "no \"request_id\"".into(),
                })?;
            let success = str_field(response, "subtype").as_deref() == Some("success");
            StreamMessage::ControlResponse(ControlResponse {
                request_id,
                success,
                response_json: response
                    .get("response")
                    .map_or_else(|| "{}".to_owned(), |r| r.to_string()),
                error: str_field(response, "error"),
            })
        }
        "control_cancel_request" => StreamMessage::ControlCancel {
            request_id: str_field(&value, "request_id").unwrap_or_default(),
        },
        _ => StreamMessage::Unknown { kind },
    };
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_shapes_the_cli_prints() {
        let retry = br#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":506,"error_status":401,"error":"authentication_failed","session_id":"s"}"#;
        match parse_line(retry).unwrap() {
            StreamMessage::System(s) => {
                assert_eq!(
                    (
                        s.subtype.as_str(),
                        s.error_status,
                        s.attempt,
                        s.error.as_deref()
                    ),
                    (
                        "api_retry",
                        Some(401),
                        Some(1),
                        Some("authentication_failed")
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        let init = br#"{"type":"system","subtype":"init","session_id":"s1","cwd":"/tmp","model":"m","tools":["Bash"],"apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.328","new_field":{"x":1}}"#;
        match parse_line(init).unwrap() {
            StreamMessage::System(s) => {
                assert_eq!(s.subtype, "init");
                assert_eq!(s.api_key_source.as_deref(), Some("ANTHROPIC_API_KEY"));
                assert_eq!(s.tools, vec!["Bash"]);
            }
            other => panic!("{other:?}"),
        }
        let asst = br#"{"type":"assistant","message":{"id":"msg_1","model":"m","content":[{"type":"text","text":"po"},{"type":"text","text":"ng"},{"type":"thinking"}]},"session_id":"s1"}"#;
        match parse_line(asst).unwrap() {
            StreamMessage::Assistant(a) => assert_eq!(a.text(), "pong"),
            other => panic!("{other:?}"),
        }
        let result = br#"{"type":"result","subtype":"success","is_error":false,"result":"pong","session_id":"s1","total_cost_usd":0.001,"num_turns":1,"duration_ms":12,"api_error_status":null,"terminal_reason":"completed","usage":{"input_tokens":5,"output_tokens":3}}"#;
        match parse_line(result).unwrap() {
            StreamMessage::Result(r) => {
                assert_eq!(r.result.as_deref(), Some("pong"));
                assert_eq!(r.usage.output_tokens, 3);
                assert_eq!(r.api_error_status, None);
            }
            other => panic!("{other:?}"),
        }
        let resp = br#"{"type":"control_response","response":{"subtype":"success","request_id":"req_1","response":{"commands":[]}}}"#;
        match parse_line(resp).unwrap() {
            StreamMessage::ControlResponse(r) => {
                assert!(r.success);
                assert_eq!(r.request_id, "req_1");
                assert_eq!(r.response_json, r#"{"commands":[]}"#);
            }
            other => panic!("{other:?}"),
        }
        let err = br#"{"type":"control_response","response":{"subtype":"error","request_id":"req_2","error":"unknown subtype"}}"#;
        match parse_line(err).unwrap() {
            StreamMessage::ControlResponse(r) => {
                assert!(!r.success);
                assert_eq!(r.error.as_deref(), Some("unknown subtype"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_line(br#"{"type":"brand_new","x":1}"#).unwrap(),
            StreamMessage::Unknown {
                kind: "brand_new".into()
            }
        );
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        let err = |line: &[u8]| match parse_line(line) {
            Err(Error::MalformedMessage { kind, detail }) => (kind, detail),
            other => panic!("expected a malformed-message error, got {other:?}"),
        };
        assert!(err(b"not json").1.starts_with("not JSON"));
        assert_eq!(err(b"[1,2]").0, None);
        assert_eq!(err(br#"{"type":5}"#).0, None);
        assert_eq!(
            err(br#"{"type":"result","is_error":"yes"}"#).0.as_deref(),
            Some("result")
        );
        assert_eq!(
            err(br#"{"type":"control_response"}"#).0.as_deref(),
            Some("control_response")
        );
    }

    proptest! {
        #[test]
        fn parse_line_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_line(&bytes);
        }

        #[test]
        fn parse_line_never_panics_on_json_like(s in r#"\{"type":"(system|assistant|result|user|control_response|control_request)"(,"[a-z_]{1,12}":("[a-z]*"|[0-9]{1,5}|null|true|\[\]|\{\}))*\}"#) {
            let _ = parse_line(s.as_bytes());
        }
    }
}
