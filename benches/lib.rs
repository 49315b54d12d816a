//! Shared pieces of the criterion benchmarks (see `benches/*.rs` and BENCHMARKS.md).

use std::sync::Arc;
use std::time::Duration;

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

/// `n` children of `config`, spawned one after the other.
pub async fn spawn_all(config: &claude_proc::ProcessConfig, n: usize) -> Vec<claude_proc::Child> {
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        match claude_proc::spawn(config).await {
            Ok(child) => children.push(child),
            Err(e) => panic!("a spawn failed: {e}"),
        }
    }
    children
}

/// Stop every child at once (each its full stop sequence, concurrently) and return how long
/// until all are gone.
pub async fn stop_all(children: Vec<claude_proc::Child>) -> Duration {
    let start = std::time::Instant::now();
    let handles: Vec<_> = children
        .into_iter()
        .map(|mut child| tokio::spawn(async move { child.stop().await }))
        .collect();
    for h in handles {
        match h.await {
            Ok(Ok(_)) => {}
            other => panic!("a stop failed: {other:?}"),
        }
    }
    start.elapsed()
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

/// CPU time this process used (user + system, all threads) while `secs` seconds of wall-clock
/// time passed: for `iter_custom`, so a bench reports CPU per wall second.
pub fn cpu_over_wall_seconds(secs: u64) -> Duration {
    fn cpu() -> Duration {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage fills the buffer for RUSAGE_SELF and cannot fail with it.
        let usage = unsafe {
            libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
            usage.assume_init()
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
    let before = cpu();
    std::thread::sleep(Duration::from_secs(secs));
    cpu().saturating_sub(before)
}
