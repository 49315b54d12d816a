//! # claude-health
//!
//! procfs-based monitoring, probes and hang detection for supervised processes.
//!
//! **Status: not implemented yet.** This crate exists so the workspace has its final shape; its
//! capability is tracked in issue #4 and nothing here should be relied on until then.
