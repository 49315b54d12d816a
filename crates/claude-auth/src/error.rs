//! The one error type of this crate. No variant ever holds a secret.

use std::path::PathBuf;

use crate::credential::CredentialKind;

/// Everything that can go wrong in `claude-auth`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No source had a credential.
    #[error("no credential found (looked in: {looked})")]
    NoCredential {
        /// The sources consulted, in order.
        looked: String,
    },

    /// A credential's text does not fit its kind (prefix or characters).
    #[error("{kind} is malformed: {why}")]
    Malformed {
        /// What it was supposed to be.
        kind: CredentialKind,
        /// What is wrong (never the value itself).
        why: String,
    },

    /// The credential has expired.
    #[error("{kind} expired {ago_secs} s ago")]
    Expired {
        /// Its kind.
        kind: CredentialKind,
        /// How long ago.
        ago_secs: u64,
    },

    /// This source cannot refresh (environment and static values are what they are).
    #[error("the {source_name} source cannot refresh a credential")]
    RefreshUnsupported {
        /// The source.
        source_name: String,
    },

    /// The credentials file could not be read or written.
    #[error("failed to {op} {path:?}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The credentials file is not what the CLI writes.
    #[error("credentials file {path:?} is invalid: {why}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong: bad JSON, a missing field, a wrong type.
        why: String,
    },

    /// A remote validation hook rejected the credential.
    #[error("credential rejected by {check}: {why}")]
    Rejected {
        /// The check's name.
        check: String,
        /// Its reason.
        why: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
