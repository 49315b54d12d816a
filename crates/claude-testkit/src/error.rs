//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `claude-testkit`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding the listening socket failed.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The pinned CLI could not be found or installed.
    #[error("failed to get the pinned claude CLI {version} under {dir}: {why}")]
    Cli {
        /// The version wanted.
        version: &'static str,
        /// Where it is cached.
        dir: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
