//! # claude-auth
//!
//! Credentials and tokens for Claude Code sessions (OAuth token, API key), refresh, safe storage.
//!
//! **Status: not implemented yet.** This crate exists so the workspace has its final shape; its
//! capability is tracked in issue #3 and nothing here should be relied on until then.
