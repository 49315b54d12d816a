//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `claude-health`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process does not exist (any more): a normal outcome when sampling a tree.
    #[error("process {pid} is gone")]
    ProcessGone {
        /// The pid.
        pid: u32,
    },

    /// A `/proc` file could not be parsed.
    #[error("failed to parse {path:?}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },

    /// A `/proc` file could not be read for a reason other than the process being gone.
    #[error("failed to read {path:?}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
