//! What the stand-in does with a `POST /v1/messages`: scripted per credential, queued, or by
//! default.

use std::time::Duration;

/// How one messages request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// A normal reply: `text`, or with `None` a short deterministic echo of the last user
    /// message.
    Reply {
        /// The reply text.
        text: Option<String>,
    },
    /// `401` with an `authentication_error`, as for a revoked or expired credential.
    Unauthorized,
    /// `429` with a `rate_limit_error` and `retry-after`.
    RateLimited {
        /// The `retry-after` header, seconds.
        retry_after_secs: u64,
    },
    /// `529` with an `overloaded_error`.
    Overloaded,
    /// A normal streamed reply whose events are `delay` apart.
    SlowStream {
        /// The pause before each event.
        delay: Duration,
    },
    /// `message_start`, then nothing, forever (the connection stays open).
    Stall,
    /// A streamed reply that asks for the tool `name` with `input_json` (a JSON object). Used
    /// from the queue, it waits for a request that offers the tool: requests that do not (the
    /// CLI's side requests) get the default and leave it queued.
    ToolUse {
        /// The tool as the request's `tools` list names it (`Bash`, `mcp__server__tool`).
        name: String,
        /// Its input, a JSON object as text.
        input_json: String,
    },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Reply { text: None }
    }
}

impl Behaviour {
    /// A reply asking for the tool `name` with `input_json`.
    pub fn tool_use(name: impl Into<String>, input_json: impl Into<String>) -> Behaviour {
        Behaviour::ToolUse {
            name: name.into(),
            input_json: input_json.into(),
        }
    }

    /// The HTTP status this behaviour answers with.
    pub fn status(&self) -> u16 {
        match self {
            Behaviour::Unauthorized => 401,
            Behaviour::RateLimited { .. } => 429,
            Behaviour::Overloaded => 529,
            _ => 200,
        }
    }

    /// The error type and message of a non-200 answer.
    pub(crate) fn error(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Behaviour::Unauthorized => Some((
                "authentication_error",
                "invalid x-api-key or bearer token (stand-in)",
            )),
            Behaviour::RateLimited { .. } => Some(("rate_limit_error", "rate limited (stand-in)")),
            Behaviour::Overloaded => Some(("overloaded_error", "overloaded (stand-in)")),
            _ => None,
        }
    }
}
