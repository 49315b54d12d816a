//! # claude-testkit
//!
//! A stand-in Anthropic API for tests and the demo.
//!
//! **Status: not implemented yet.** This crate exists so the workspace has its final shape; its
//! capability is tracked in issue #6 and nothing here should be relied on until then.
