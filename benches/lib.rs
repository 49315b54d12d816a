//! Shared pieces of the criterion benchmarks (see `benches/*.rs` and BENCHMARKS.md).

use std::sync::Arc;

use claude_limits::{LimitOptions, LimitsHook, ResourceLimits};

/// The real `claude-limits` hook with what a Claude session typically gets: a memory limit and
/// a pids limit (one cgroup v1 each, created and removed per spawn), an open-files rlimit and a
/// nice value. Best effort, so it also runs where cgroups cannot be made (then rlimits only).
pub fn session_limits_hook() -> Arc<LimitsHook> {
    let limits = ResourceLimits {
        max_memory: Some(1 << 30),
        max_pids: Some(1000),
        max_open_files: Some(4096),
        nice: Some(1),
        ..ResourceLimits::default()
    };
    let options = LimitOptions {
        best_effort: true,
        ..LimitOptions::default()
    };
    match LimitsHook::new(limits, options) {
        Ok(hook) => Arc::new(hook),
        Err(e) => panic!("the session limits are valid: {e}"),
    }
}

/// Hold `bytes` of touched memory (the "large manager" of the fork-trap measurement).
pub fn hold_memory(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for i in (0..bytes).step_by(4096) {
        if let Some(b) = v.get_mut(i) {
            *b = 1;
        }
    }
    v
}
