//! The one error type of this crate.

use std::path::PathBuf;

use claude_proc::LimitKind;

/// Everything that can go wrong in `claude-limits`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit value is unusable.
    #[error("invalid {limit} limit {value}: {why}")]
    InvalidLimit {
        /// The limit.
        limit: LimitKind,
        /// The value given, as text.
        value: String,
        /// What is wrong.
        why: String,
    },

    /// A limit cannot be enforced on this host and best effort was not allowed.
    #[error("{limit} limit cannot be enforced here: {why}")]
    Unenforceable {
        /// The limit.
        limit: LimitKind,
        /// Why (no writable cgroup with the controller, ...).
        why: String,
    },

    /// Writing a cgroup control file failed.
    #[error("failed to write {value:?} to {path:?}")]
    WriteControl {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Creating or opening a cgroup failed.
    #[error("failed to {op} {path:?}")]
    Cgroup {
        /// What was being done.
        op: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
