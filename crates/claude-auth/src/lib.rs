//! # claude-auth
//!
//! Credentials for Claude Code sessions: where they come from, how they are checked, stored and
//! handed to a child, and how they never leak.
//!
//! ## Theory of operation
//!
//! A [`TokenManager`] yields a [`Credential`] (kind, [`Secret`], expiry). Sources: one
//! environment variable ([`EnvSource`]), a fixed value ([`StaticSource`]), the CLI's
//! credentials file ([`FileSource`] over [`CredentialsFile`]). [`TokenChain::cli_default`]
//! asks them in the CLI's documented precedence and reports which one won, redacted.
//!
//! The credentials file is read tolerantly (unknown fields are kept and written back) and
//! updated under an exclusive `flock` with a re-read, a 0600 temporary file, fsync and rename,
//! so concurrent managers never lose a rotated refresh token and a crash never tears the file.
//!
//! [`CredentialHook`] is a `claude-proc` spawn hook: it removes every competing credential
//! variable from the child and hands over exactly one, by variable or by descriptor
//! (`CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR`), so the secret need not sit in the child's
//! environment.
//!
//! ## Status
//!
//! Done: secrets, credentials, format and expiry validation, environment / static / file
//! sources, the chain with its report, the locked atomic file store, hand-over by variable and
//! descriptor. **Not yet (issue #3 continues):** OAuth refresh through the token endpoint
//! (single-flight, retry, `invalid_grant`), the helper-command source, per-child config
//! directories, the cached `get_token` and its benchmark.
//!
//! ## What it deliberately does not do
//!
//! It never logs a secret, never puts one in an error or a `Debug` string, and never spawns a
//! process except through `claude-proc`.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use claude_auth::{CredentialHook, Delivery, TokenChain, TokenManager};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let chain = TokenChain::cli_default(&|k| std::env::var_os(k));
//! let credential = chain.get_token().await?;
//! println!("using {:?}", chain.report()); // source and kind, secret redacted
//! let config = claude_proc::ProcessConfig::builder("claude")
//!     .arg("-p").arg("hello")
//!     .hook(Arc::new(CredentialHook::new(credential, Delivery::Fd(3))))
//!     .build()?;
//! # Ok(())
//! # }
//! ```

mod credential;
mod error;
mod handover;
mod helper;
mod refresh;
mod secret;
mod source;
mod store;

pub use credential::{validate_format, Credential, CredentialKind, AUTH_VARS};
pub use error::{Error, Result};
pub use handover::{CredentialHook, Delivery};
pub use helper::HelperSource;
pub use refresh::{OAuthTokenManager, RefreshConfig};
pub use secret::Secret;
pub use source::{EnvSource, FileSource, SourceReport, StaticSource, TokenChain, TokenManager};
pub use store::{write_child_config_dir, CredentialsFile, OAuthLogin};
