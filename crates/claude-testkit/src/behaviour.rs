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
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Reply { text: None }
    }
}

impl Behaviour {
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
