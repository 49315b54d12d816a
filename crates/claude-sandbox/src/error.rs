//! The one error type of this crate.

use std::path::PathBuf;

use crate::level::{Level, UidRange};

/// Everything that can go wrong in `claude-sandbox`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The isolation level is not one of `none`, `user`, `sandbox`.
    #[error("invalid isolation {text:?}: expected none, user or sandbox")]
    InvalidLevel {
        /// The text given.
        text: String,
    },

    /// The network setting is not `host` or `api`.
    #[error("invalid network {text:?}: expected host or api")]
    InvalidNetwork {
        /// The text given.
        text: String,
    },

    /// The API URL cannot be used for `network = api`.
    #[error("invalid API URL {url:?} for network = api: {why}")]
    InvalidApiUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: &'static str,
    },

    /// `network = api` was asked for without the sandbox (it needs the mount namespace for
    /// its `/etc/hosts`).
    #[error("network = api needs isolation = sandbox")]
    NetworkNeedsSandbox,

    /// The session's network namespace or its forwarder could not be set up.
    #[error("{op}: {source}")]
    Network {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },

    /// A uid range cannot be parsed or is unusable.
    #[error("invalid uid range {text:?}: {why}")]
    InvalidRange {
        /// The text given.
        text: String,
        /// What is wrong.
        why: &'static str,
    },

    /// The uid range holds the id of an existing user or group.
    #[error("uid range {range} overlaps the existing {kind} {name:?} (id {id})")]
    RangeOverlapsUsers {
        /// The range.
        range: UidRange,
        /// `user` or `group`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its id.
        id: u32,
    },

    /// Every uid of the range is leased to a live session or used by a process.
    #[error("uid range {range} is exhausted: all {count} uids are leased or in use")]
    RangeExhausted {
        /// The range.
        range: UidRange,
        /// How many uids it holds.
        count: u32,
    },

    /// This host (or this manager's privileges) cannot give the level asked for.
    #[error("isolation {level} cannot be enforced here: {missing}")]
    Unsupported {
        /// The level asked for.
        level: Level,
        /// What is missing, for people.
        missing: String,
    },

    /// The session's working directory does not exist or is not a directory.
    #[error("working directory {path:?} does not exist or is not a directory")]
    MissingWorkdir {
        /// The directory.
        path: PathBuf,
    },

    /// The working directory cannot be granted to a session (the root, a system tree).
    #[error("working directory {path:?} cannot be given to an isolated session: {why}")]
    WorkdirNotAllowed {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },

    /// The session's uid could not reach its working directory through a parent directory.
    #[error(
        "the session's uid cannot reach {path:?}: {blocked:?} is not searchable by other users \
         (mode {mode:o}); choose a working directory whose parents are"
    )]
    WorkdirUnreachable {
        /// The working directory.
        path: PathBuf,
        /// The parent directory in the way.
        blocked: PathBuf,
        /// Its mode.
        mode: u32,
    },

    /// A file operation failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
