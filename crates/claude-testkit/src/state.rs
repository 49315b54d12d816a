//! What the stand-in remembers: scripts, recorded calls, and the OAuth tokens it issued.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::behaviour::Behaviour;

/// The credential a request carried.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthSeen {
    /// `x-api-key: <key>`.
    ApiKey(String),
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl AuthSeen {
    /// The credential itself, whichever header carried it.
    pub fn credential(&self) -> &str {
        match self {
            AuthSeen::ApiKey(v) | AuthSeen::Bearer(v) => v,
        }
    }
}

impl fmt::Debug for AuthSeen {
    /// Redacted: the kind and the length, never the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthSeen::ApiKey(v) => write!(f, "ApiKey([redacted; {} chars])", v.len()),
            AuthSeen::Bearer(v) => write!(f, "Bearer([redacted; {} chars])", v.len()),
        }
    }
}

/// One request the stand-in answered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call {
    /// Method and path without the query (`POST /v1/messages`).
    pub route: String,
    /// The credential, if any.
    pub auth: Option<AuthSeen>,
    /// The `model` of a messages request.
    pub model: Option<String>,
    /// Whether a streamed reply was asked for.
    pub stream: bool,
    /// The status answered.
    pub status: u16,
    /// The `anthropic-beta` header.
    pub beta: Option<String>,
    /// The text of every user message of a messages request, in order (the conversation the
    /// CLI sent: a resumed session sends its earlier turns again).
    pub user_texts: Vec<String>,
    /// The names of the tools a messages request offered.
    pub tools: Vec<String>,
    /// The `tool_result` blocks of the last user message, as text (what a tool answered).
    pub tool_results: Vec<String>,
    /// The length of the base64 data of every image block of the request.
    pub image_data_lengths: Vec<usize>,
}

/// A login the stand-in issued: an access token that expires and a single-use refresh token.
#[derive(Clone)]
pub struct Login {
    /// `sk-ant-oat01-...`.
    pub access_token: String,
    /// `sk-ant-ort01-...`.
    pub refresh_token: String,
    /// When the access token expires, epoch milliseconds.
    pub expires_at_ms: u64,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) default: Behaviour,
    pub(crate) queue: VecDeque<Behaviour>,
    pub(crate) by_credential: HashMap<String, Behaviour>,
    pub(crate) calls: Vec<Call>,
    /// Access token -> expiry (epoch ms) for tokens this stand-in issued.
    pub(crate) access: HashMap<String, u64>,
    /// Refresh tokens not yet spent.
    pub(crate) refresh: HashMap<String, Duration>,
    pub(crate) issued: u64,
    pub(crate) refreshes: u64,
    pub(crate) token_lifetime: Duration,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    /// What answers a messages request carrying `auth`: a per-credential script first, then
    /// an issued token that has expired (401, as the real API does), then the queue (a queued
    /// tool call only for a request that offers the tool), then the default.
    pub(crate) fn behaviour_for(
        &mut self,
        auth: Option<&AuthSeen>,
        offered: &[String],
    ) -> Behaviour {
        if let Some(auth) = auth {
            if let Some(b) = self.by_credential.get(auth.credential()) {
                return b.clone();
            }
            if let Some(expiry) = self.access.get(auth.credential()) {
                if *expiry <= now_ms() {
                    return Behaviour::Unauthorized;
                }
            }
        }
        if let Some(Behaviour::ToolUse { name, .. }) = self.queue.front() {
            if !offered.contains(name) {
                return self.default.clone();
            }
        }
        self.queue
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }

    /// Issue a new login whose access token lives `lifetime`.
    pub(crate) fn issue(&mut self, lifetime: Duration) -> Login {
        self.issued += 1;
        let n = self.issued;
        let login = Login {
            access_token: format!("sk-ant-oat01-standin-access-{n:04}-{}", nonce()),
            refresh_token: format!("sk-ant-ort01-standin-refresh-{n:04}-{}", nonce()),
            expires_at_ms: now_ms()
                .saturating_add(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX)),
        };
        self.access
            .insert(login.access_token.clone(), login.expires_at_ms);
        self.refresh
            .insert(login.refresh_token.clone(), self.token_lifetime);
        login
    }

    /// Spend `refresh_token` for a new login; `None` if it is unknown or already spent.
    pub(crate) fn refresh(&mut self, refresh_token: &str) -> Option<Login> {
        let lifetime = self.refresh.remove(refresh_token)?;
        self.refreshes += 1;
        Some(self.issue(lifetime))
    }
}

/// A few random hex digits so tokens of different stand-ins never collide.
fn nonce() -> String {
    format!("{:08x}", fastrand::u32(..))
}
