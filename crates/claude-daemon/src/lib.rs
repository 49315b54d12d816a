//! `claude-pm serve`: one daemon owning sessions through a [`claude_manager::ProcessManager`],
//! its HTTP/1.1 + JSON API on a Unix socket (peer credentials checked), the config file's
//! `[[session]]` tables, and the wire types the server and `claude-pm`'s operator commands
//! share ([`wire`]), so the two cannot drift.
//!
//! Endpoints (sessions by name): `POST /v1/sessions` (a definition: `name`, one of `command`
//! / `claude`, then setting keys), `GET /v1/sessions`, `GET /v1/sessions/{name}`,
//! `GET /v1/sessions/{name}/logs` (the last [`daemon::KEPT_LINES`] output lines),
//! `GET /v1/sessions/{name}/history` (CPU, memory and processes over the last 15 minutes in
//! 5-second steps, and the last state changes), `POST /v1/sessions/{name}/stop`,
//! `POST /v1/sessions/{name}/restart`,
//! `DELETE /v1/sessions/{name}`, `/healthz`, `/readyz`, `/metrics`. Errors are
//! `{"error": ..., "field": ...}` with a 4xx status.

mod client;
mod config;
mod daemon;
mod error;
mod events;
mod history;
mod live;
mod logfile;
mod registry;
mod reload;
mod server;
mod throttle;
mod turns;
mod views;
mod web;
pub mod wire;

pub use client::{Client, Method};
pub use config::{definition_file, load, DaemonConfig};
pub use daemon::{Daemon, KEPT_LINES};
pub use error::{Error, Result};
pub use events::{Samples, KEPT_EVENTS};
pub use history::{
    HistoryPoint, HistoryView, StateChange, HISTORY_STATES, HISTORY_STEPS, HISTORY_STEP_SECS,
};
pub use logfile::KEPT_FILES;
pub use registry::{registry_path, Registry};
pub use server::{
    bind, default_state_dir, router, serve, serve_tcp, socket_path, Access, EVENT_SEQ_HEADER,
    MAX_BODY,
};
pub use throttle::{WRONG_TOKENS_ALLOWED, WRONG_TOKEN_PAUSE};
pub use web::{COOKIE, SIGN_IN_LIFETIME};
