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

    /// The login has no refresh token (a `claude setup-token` token cannot be refreshed).
    #[error("the login has no refresh token and cannot be refreshed")]
    NotRefreshable,

    /// The token endpoint answered `invalid_grant`: the login is gone (revoked, or its refresh
    /// token was already used). Retrying is pointless; a new login is needed.
    #[error("the token endpoint answered invalid_grant: the login must be renewed")]
    InvalidGrant,

    /// The token endpoint refused the request (a 4xx other than 429).
    #[error("the token endpoint refused the refresh with HTTP {status}{}", code_hint(.code))]
    RefreshRejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, when the reply had a plain one.
        code: Option<String>,
    },

    /// The token endpoint answered 200 with something that is not a token reply.
    #[error("the token endpoint's reply is unusable: {why}")]
    RefreshResponse {
        /// What is wrong with it (never its content).
        why: String,
    },

    /// Every attempt failed with a retryable error (timeout, connection, 429, 5xx).
    #[error("token refresh failed after {attempts} attempts, last: {last}")]
    RefreshFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },

    /// A helper command failed, timed out, or printed nothing usable.
    #[error("credential helper {program} failed: {why}")]
    Helper {
        /// The program.
        program: String,
        /// What went wrong (never its output).
        why: String,
    },

    /// A configuration value is unusable.
    #[error("invalid configuration: {field} {why}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
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

fn code_hint(code: &Option<String>) -> String {
    code.as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
