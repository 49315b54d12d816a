//! # claude-auth
//!
//! Credentials for Claude Code sessions: where they come from, how they are checked, refreshed,
//! stored and handed to a child, and how they never leak. The manager is the one place that holds
//! and refreshes a login; children get only what they need.
//!
//! ## Theory of operation
//!
//! A [`TokenManager`] yields a [`Credential`] (kind, [`Secret`], expiry). Sources: one
//! environment variable ([`EnvSource`]), a fixed value ([`StaticSource`]), a helper command
//! ([`HelperSource`], the CLI's `apiKeyHelper`: cached for a TTL, its run time limited), the
//! CLI's credentials file read as is ([`FileSource`]) or kept fresh ([`OAuthTokenManager`]).
//! [`TokenChain::cli_precedence`] asks them in the CLI's documented order and reports which
//! one won, redacted. [`Checked`] adds a [`RemoteCheck`] to any source.
//!
//! **Refresh.** [`OAuthTokenManager`] serves a cached token lock-free while it is fresh. Within
//! [`RefreshConfig::skew`] of expiry (default 5 minutes) one task refreshes while the others
//! wait for its result (single-flight). The request is made while the credentials file is
//! locked, after re-reading it: if another manager process refreshed meanwhile, its token is
//! used and the single-use refresh token is not spent twice. Timeouts, connection errors, 429
//! and 5xx are retried with jittered exponential backoff; `invalid_grant` ([`Error::InvalidGrant`])
//! and other refusals are final.
//!
//! **Storage.** The credentials file is read tolerantly (unknown fields are kept and written
//! back) and updated under an exclusive `flock` on a sibling lock file, with a re-read, a 0600
//! temporary file, fsync, rename and a directory fsync: a crash leaves the old file or the new
//! one, never a torn one.
//!
//! **Hand-over.** [`CredentialHook`] is a `claude-proc` spawn hook: it removes every competing
//! credential variable ([`AUTH_VARS`]) from the child and hands over exactly one, by variable or
//! by descriptor (`CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR`), so the secret need not sit in
//! `/proc/<pid>/environ`. [`write_child_config_dir`] gives a child its own `CLAUDE_CONFIG_DIR`
//! whose login has no refresh token, so the child never rotates the shared login.
//!
//! ## What it deliberately does not do
//!
//! It never logs a secret and never puts one in an error or a `Debug` string ([`Secret`]
//! formats as `[redacted]` and is zeroized on drop). It never spawns a process except through
//! `claude-proc`. It does not decide when to restart a child after an auth failure: that is the
//! facade's orchestration.
//!
//! ## Caveats
//!
//! The file store's calls block (file IO, `flock`); async callers get them through
//! `spawn_blocking` inside the sources. A manager killed after the endpoint rotated the refresh
//! token but before the file was renamed loses that rotation: the endpoint has consumed the old
//! token and the new one was never stored (the file itself stays valid). Secrets passed as
//! variables are copied into the child's environment block by the spawn and are not zeroized
//! there; prefer [`Delivery::Fd`].
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use claude_auth::{CredentialHook, Delivery, RefreshConfig, TokenChain, TokenManager};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let refresh = RefreshConfig::new("https://auth.example.test/v1/oauth/token", "my-client-id");
//! let chain = TokenChain::cli_precedence(&|k| std::env::var_os(k), None, Some(refresh))?;
//! let credential = chain.get_token().await?;
//! println!("using {:?}", chain.report()); // source and kind, secret redacted
//! let config = claude_proc::ProcessConfig::builder("claude")
//!     .arg("-p").arg("hello")
//!     .hook(Arc::new(CredentialHook::new(credential, Delivery::Fd(3))))
//!     .build()?;
//! # Ok(())
//! # }
//! ```

mod check;
mod credential;
mod error;
mod handover;
mod helper;
mod refresh;
mod secret;
mod source;
mod store;

pub use check::{Checked, RemoteCheck};
pub use credential::{validate_format, Credential, CredentialKind, AUTH_VARS};
pub use error::{Error, Result};
pub use handover::{CredentialHook, Delivery};
pub use helper::HelperSource;
pub use refresh::{OAuthTokenManager, RefreshConfig};
pub use secret::Secret;
pub use source::{EnvSource, FileSource, SourceReport, StaticSource, TokenChain, TokenManager};
pub use store::{write_child_config_dir, CredentialsFile, OAuthLogin};
