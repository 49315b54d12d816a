//! # claude-limits
//!
//! rlimit and cgroup limits, user-space soft limits and timeouts for supervised processes.
//!
//! **Status: not implemented yet.** This crate exists so the workspace has its final shape; its
//! capability is tracked in issue #5 and nothing here should be relied on until then.
