//! # claude-manager
//!
//! The facade users depend on: it re-exports the layered crates and will hold the
//! `ProcessManager` that composes them.
//!
//! **Status: only the re-exports exist.** The `ProcessManager` (credentials, limits and health
//! wired together) is tracked in issue #6.

pub use claude_auth as auth;
pub use claude_health as health;
pub use claude_limits as limits;
pub use claude_proc as proc;
