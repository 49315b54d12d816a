//! # claude-limits
//!
//! Resource limits for supervised process trees that are really enforced, and a report of what
//! enforces each one.
//!
//! ## Theory of operation
//!
//! [`ResourceLimits`] are validated (finite, positive, above sane minimums), then
//! [`LimitsHook::new`] chooses a mechanism per limit and fails for a limit nothing here can
//! enforce, unless best effort was allowed, in which case the [`LimitReport`] says
//! `not-enforced` and why. The hook plugs into claude-proc's spawn path: for each spawn it
//! creates one cgroup per needed controller beneath this process's own cgroup, writes the
//! limits, and hands the child the open `cgroup.procs` files, which the child writes `0` into
//! before exec, so it never runs outside its cgroups and the spawn stays on the
//! `CLONE_VM | CLONE_VFORK` path. When the leader ends, a memory cgroup's OOM kill count turns
//! a SIGKILL into a `memory` limit exit; when the tree is gone the cgroups are removed.
//! [`run_with_timeout`] enforces the wall-clock limit with the stop sequence.
//!
//! For hosts without usable cgroups, [`SoftEnforcer`] enforces [`SoftLimits`] from user space:
//! tree RSS over the limit runs the stop sequence with cause `memory`; CPU and storage IO over
//! their rates are throttled by stopping the whole tree (SIGSTOP) until a token bucket has
//! refilled (SIGCONT), and the tree is always continued when the enforcer goes away.
//!
//! | limit | mechanism here (auto mode, in order of preference) |
//! |---|---|
//! | memory | cgroup v2 `memory.max` + `memory.high` + `memory.swap.max` (OOM kills from `memory.events`), v1 `memory.limit_in_bytes` (+ `memsw`; OOM kills from `memory.oom_control`), the soft enforcer |
//! | cpu | cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the soft enforcer |
//! | disk IO | cgroup v2 `io.max` (with [`LimitOptions::io_device`]); v1 `blkio.throttle.*` for direct IO plus the soft enforcer for buffered IO; the soft enforcer |
//! | pids | cgroup v2 or v1 `pids.max`; `RLIMIT_NPROC` for a non-root user (counts all of the user's processes) |
//! | open files, CPU time, file size, core size | `RLIMIT_NOFILE`, `RLIMIT_CPU`, `RLIMIT_FSIZE`, `RLIMIT_CORE` |
//! | nice | `setpriority` |
//! | timeout | a timer running the stop sequence ([`run_with_timeout`]) |
//!
//! [`LimitMode::Cgroup`] allows cgroups only and [`LimitMode::Soft`] none. Limits the report
//! assigns to [`Mechanism::UserSpace`] get a [`SoftEnforcer`] per child, started by the hook
//! when the child exists and ended with its tree. Exits are attributed to the limit that caused
//! them: `memory` (an OOM kill, or the soft limit's stop), `pids` (a refused fork, then a failed
//! exit), `cpu_time` (SIGXCPU), `file_size` (SIGXFSZ), `timeout`.
//!
//! Never `RLIMIT_AS` for memory: the Claude CLI reserves ~33x its RSS in address space and
//! aborts under any useful address-space limit.
//!
//! ## Caveats
//!
//! The child joins its cgroups by writing `0` to `cgroup.procs` between clone and exec rather
//! than through `CLONE_INTO_CGROUP` (ARCHITECTURE.md says why); it never runs outside them.
//! cgroup v1 cannot attribute page-cache writeback, so blkio alone (cgroup mode) throttles
//! direct IO only. The real cgroup v2 limit test needs a v2 hierarchy with controllers and skips
//! elsewhere, saying why; the v2 placement, `cgroup.kill` and removal run on any v2 mount,
//! including the controller-less one of hybrid hosts.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use claude_limits::{LimitOptions, LimitsHook, ResourceLimits};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = ResourceLimits { max_memory: Some(2 << 30), max_cpu: Some(1.5), ..Default::default() };
//! let hook = LimitsHook::new(limits, LimitOptions::default())?;
//! println!("{:?}", hook.report());
//! let config = claude_proc::ProcessConfig::builder("claude").arg("-p").arg("hi")
//!     .hook(Arc::new(hook))
//!     .build()?;
//! let mut child = claude_proc::spawn(&config).await?;
//! let exit = claude_limits::run_with_timeout(&mut child, std::time::Duration::from_secs(600)).await?;
//! println!("{}", exit.reason);
//! # Ok(())
//! # }
//! ```

mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
mod error;
mod hook;
mod host;
mod limits;
mod plan;
mod soft;

pub use cgroup_v1::CgroupV1Root;
pub use cgroup_v2::{system_v2_parent, v2_controllers, v2_settings, CgroupV2Root};
pub use error::{Error, Result};
pub use hook::{
    block_device_of, run_with_timeout, LimitMode, LimitOptions, LimitsForRun, LimitsHook,
};
pub use limits::{Enforcement, LimitKind, LimitReport, Mechanism, ResourceLimits};
pub use soft::{SoftEnforcer, SoftLimits};
