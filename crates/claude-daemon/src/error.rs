//! The one error type of this crate, and the HTTP status each variant answers with.

/// Everything that can go wrong in `claude-daemon`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request or definition field is wrong.
    #[error("{field}: {why}")]
    Field {
        /// The field, as the request spells it.
        field: String,
        /// What is wrong.
        why: String,
    },

    /// The daemon's own settings are wrong.
    #[error(transparent)]
    Settings(claude_manager::Error),

    /// No session has this name.
    #[error("no session named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },

    /// A session of this name exists.
    #[error("a session named {name:?} exists")]
    Exists {
        /// The name.
        name: String,
    },

    /// The manager refused to start the session (a limit or an isolation it cannot give,
    /// a missing binary).
    #[error("cannot start {name:?}: {why}")]
    Refused {
        /// The session.
        name: String,
        /// Why, for people.
        why: String,
    },

    /// The request does not fit the session's state or kind.
    #[error("{why}")]
    Conflict {
        /// Why, for people.
        why: String,
    },

    /// The daemon is draining and takes no new sessions.
    #[error("the daemon is draining and takes no new sessions")]
    Draining,

    /// The config file is unreadable or malformed.
    #[error("{path}: {why}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },

    /// A socket or file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// The daemon answered a client with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The daemon's message (and field).
        message: String,
    },
}

impl Error {
    /// The HTTP status a response with this error carries.
    pub fn status(&self) -> u16 {
        match self {
            Error::Field { .. } | Error::Refused { .. } => 400,
            Error::NotFound { .. } => 404,
            Error::Exists { .. } | Error::Conflict { .. } => 409,
            Error::Draining => 503,
            Error::Api { status, .. } => *status,
            _ => 500,
        }
    }

    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
