//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `claude-manager`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a bad value; `key` names it as its source spells it: `memory in
    /// /etc/claude-pm.toml`, `CLAUDE_PM_MEMORY`, or `--memory`.
    #[error("invalid {key}: {value:?} ({why})")]
    Config {
        /// Where the value came from, by name.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong.
        why: String,
    },

    /// The config file could not be read.
    #[error("failed to read the config file {path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid TOML or has an unknown key.
    #[error("{path}: {why}")]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// What the parser said (line and key included).
        why: String,
    },

    /// The limits cannot be applied here.
    #[error(transparent)]
    Limits(#[from] claude_limits::Error),

    /// The isolation cannot be given (host, uid range, working directory).
    #[error(transparent)]
    Sandbox(#[from] claude_sandbox::Error),

    /// A process-level failure.
    #[error(transparent)]
    Process(#[from] claude_proc::Error),

    /// A credential could not be obtained.
    #[error(transparent)]
    Auth(#[from] claude_auth::Error),

    /// The manager is shutting down and takes no new sessions.
    #[error("the manager is shutting down")]
    ShuttingDown,

    /// No pooled session was ready in time.
    #[error("no pooled session was ready within {:.1} s{}", .waited.as_secs_f64(), last_failure(.last_error.as_deref()))]
    PoolTimeout {
        /// How long the caller waited.
        waited: std::time::Duration,
        /// Why the last session the pool started did not become ready, if one failed.
        last_error: Option<String>,
    },

    /// The pool was closed.
    #[error("the session pool is closed")]
    PoolClosed,

    /// The session's task ended without a report (the runtime is shutting down).
    #[error("session {name} ended without a report")]
    SessionGone {
        /// The session.
        name: String,
    },
}

fn last_failure(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| format!(" (the last start failed: {e})"))
}

/// An error and every cause under it, as one line for people (`failed to start "x": execve
/// failed: Exec format error (os error 8)`); a cause whose text the line already holds is not
/// repeated.
pub fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
