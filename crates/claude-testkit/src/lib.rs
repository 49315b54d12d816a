//! # claude-testkit
//!
//! A stand-in for the Anthropic API on 127.0.0.1, for tests and the demo: the real `claude`
//! CLI talks to it through `ANTHROPIC_BASE_URL` with no account and no network. Plus
//! [`pinned_cli`], which finds or installs the pinned real CLI.
//!
//! ## Theory of operation
//!
//! [`StandInApi::start`] binds an ephemeral port on 127.0.0.1 and serves, with hyper:
//!
//! - `POST /v1/messages`: streamed (server-sent events in the order the CLI expects) or one
//!   JSON message; the reply echoes the prompt (`pong` for `ping`) unless scripted;
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": N}`;
//! - `POST /v1/oauth/token`: the refresh grant with rotating, single-use refresh tokens
//!   (a spent or unknown one gets `invalid_grant`).
//!
//! What a messages request gets is a [`Behaviour`]: per credential ([`StandInApi::respond_to`]),
//! else `401` for an access token this stand-in issued that has expired, else the next queued
//! one ([`StandInApi::enqueue`]), else the default ([`StandInApi::set_default`]). Behaviours:
//! a normal reply, `401`, `429` with `retry-after`, `529`, a slow stream, and a stream that
//! stalls forever after `message_start`. Every request is recorded as a [`Call`] with the
//! credential it carried ([`AuthSeen`]: `x-api-key` or `Bearer`), redacted in `Debug`.
//!
//! ## Caveats
//!
//! Dropping the [`StandInApi`] stops the server and every connection, stalled ones included.
//! The stand-in answers what the pinned CLI sends; it is not a model of the whole API.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), claude_testkit::Error> {
//! use claude_testkit::{Behaviour, StandInApi};
//! let api = StandInApi::start().await?;
//! api.respond_to("sk-ant-api03-revoked-key-000000", Behaviour::Unauthorized);
//! println!("ANTHROPIC_BASE_URL={}", api.base_url());
//! // ... run `claude -p ping` against it ...
//! for call in api.calls() {
//!     println!("{} -> {} ({:?})", call.route, call.status, call.auth);
//! }
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod cli;
mod error;
mod reply;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use behaviour::Behaviour;
pub use cli::{cli_cache_dir, offline_env, pinned_cli, CLAUDE_CLI_VERSION};
pub use error::{Error, Result};
pub use state::{AuthSeen, Call, Login};

use state::State;

/// For a test that needs root (uids, namespaces): whether this process is root. Under
/// `CLAUDE_PM_STRICT` (set by `cargo xtask ci`: on our machines nothing may skip) a test run
/// without root fails here instead of skipping.
pub fn running_as_root() -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1)?.parse::<u32>().ok())
        });
    let root = euid == Some(0);
    assert!(
        root || std::env::var_os("CLAUDE_PM_STRICT").is_none(),
        "this test needs root, and CLAUDE_PM_STRICT forbids skipping it"
    );
    root
}

/// The stand-in API server. Dropping it stops the server.
#[derive(Debug)]
pub struct StandInApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandInApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandInApi {
    /// Listen on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Result<StandInApi> {
        StandInApi::start_on(0).await
    }

    /// Listen on `port` of 127.0.0.1 (0: any free port).
    pub async fn start_on(port: u16) -> Result<StandInApi> {
        let bind = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| Error::Bind {
                addr: bind.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: bind.to_string(),
            source,
        })?;
        let state = Arc::new(Mutex::new(State {
            token_lifetime: Duration::from_secs(8 * 3600),
            ..State::default()
        }));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&state)));
        tracing::info!(%addr, "stand-in API listening");
        Ok(StandInApi { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OAuth token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("http://{}/v1/oauth/token", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// What requests get when nothing more specific applies (initially a normal reply).
    pub fn set_default(&self, behaviour: Behaviour) {
        self.with(|s| s.default = behaviour);
    }

    /// Requests carrying `credential` (an API key or a bearer token) get `behaviour`.
    pub fn respond_to(&self, credential: &str, behaviour: Behaviour) {
        self.with(|s| s.by_credential.insert(credential.to_owned(), behaviour));
    }

    /// The next messages request without a per-credential script gets `behaviour` (first in,
    /// first out).
    pub fn enqueue(&self, behaviour: Behaviour) {
        self.with(|s| s.queue.push_back(behaviour));
    }

    /// Every request answered so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone()).unwrap_or_default()
    }

    /// The messages requests answered so far.
    pub fn message_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route == "POST /v1/messages")
            .collect()
    }

    /// The answers of tools (`tool_result` blocks) the CLI sent in all messages requests so
    /// far, in order.
    pub fn tool_results(&self) -> Vec<String> {
        self.message_calls()
            .into_iter()
            .flat_map(|c| c.tool_results)
            .collect()
    }

    /// The base64 lengths of the images of all messages requests so far, in order.
    pub fn image_data_lengths(&self) -> Vec<usize> {
        self.message_calls()
            .into_iter()
            .flat_map(|c| c.image_data_lengths)
            .collect()
    }

    /// Whether messages were requested and every request carried `auth`. False when no request
    /// came, so a test asserting it cannot pass vacuously.
    pub fn every_message_call_used(&self, auth: &AuthSeen) -> bool {
        let calls = self.message_calls();
        !calls.is_empty() && calls.iter().all(|c| c.auth.as_ref() == Some(auth))
    }

    /// Issue a login whose access token expires after `lifetime` (zero: already expired)
    /// and whose refresh token the token endpoint accepts once. Refreshed access tokens live
    /// for [`StandInApi::set_token_lifetime`].
    pub fn issue_login(&self, lifetime: Duration) -> Option<Login> {
        self.with(|s| s.issue(lifetime))
    }

    /// How long access tokens issued by a refresh live (default 8 hours, like the real ones).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.with(|s| s.token_lifetime = lifetime);
    }

    /// Refresh grants answered successfully so far.
    pub fn refreshes(&self) -> u64 {
        self.with(|s| s.refreshes).unwrap_or(0)
    }
}
