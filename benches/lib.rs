//! Shared pieces of the criterion benchmarks (see `benches/*.rs` and BENCHMARKS.md).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use claude_proc::{ChildSetup, HookError, HookInstance, Rlimit, SpawnHook};

/// A hook doing what `claude-limits` will do on every spawn: set rlimits and a nice value, and
/// place the child in a cgroup by writing `0` to an open `cgroup.procs` before exec.
#[derive(Debug)]
pub struct LimitsLikeHook {
    procs: PathBuf,
}

impl LimitsLikeHook {
    /// Use `procs` (a `cgroup.procs` file, or `/dev/null` where no cgroup can be made).
    pub fn new(procs: PathBuf) -> Self {
        LimitsLikeHook { procs }
    }
}

struct Nothing;
impl HookInstance for Nothing {}

impl SpawnHook for LimitsLikeHook {
    fn name(&self) -> &str {
        "limits-like"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        let file = std::fs::OpenOptions::new().write(true).open(&self.procs)?;
        setup.write_on_start(OwnedFd::from(file), "0");
        setup.set_rlimit(Rlimit::OpenFiles, 4096, 4096);
        setup.set_rlimit(Rlimit::CoreSize, 0, 0);
        setup.set_nice(1);
        Ok(Box::new(Nothing))
    }
}

/// A cgroup v1 memory cgroup beneath this process's own, removed on drop; `None` where the
/// hierarchy is missing or not writable.
#[derive(Debug)]
pub struct BenchCgroup(PathBuf);

impl BenchCgroup {
    /// Create it.
    pub fn create() -> Option<Self> {
        let own = claude_limits::CgroupV1Root::system().own_dir("memory")?;
        let dir = own.join(format!("claude-proc-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(BenchCgroup(dir))
    }

    /// Its `cgroup.procs`.
    pub fn procs(&self) -> PathBuf {
        self.0.join("cgroup.procs")
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
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
