//! Applying limits to a spawn through claude-proc's hook, without the fork trap: the cgroups are
//! created and configured in the parent; the child only writes `0` to their `cgroup.procs` and
//! sets rlimits and its nice value between clone and exec.

use std::sync::Arc;
use std::time::Duration;

use claude_health::Signals;
use claude_proc::{
    Child, ChildSetup, ExitInfo, HookError, HookInstance, RawExit, Rlimit, SpawnHook, StopCause,
    Stopper, TreeUsage,
};

use crate::cgroup::{Cgroup, Controller};
use crate::cgroup_v1::CgroupV1Root;
use crate::cgroup_v2::{create_v2, kill_all, oom_kills, v2_settings, CgroupV2Root};
use crate::error::{Error, Result};
use crate::limits::{LimitKind, LimitReport, Mechanism, ResourceLimits};
use crate::plan::plan;
use crate::soft::{SoftEnforcer, SoftLimits};

/// Which families of mechanisms the hook may choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimitMode {
    /// cgroup v2, else cgroup v1, else the soft enforcer (memory, CPU, disk IO).
    #[default]
    Auto,
    /// cgroups only: a limit without a usable controller is unenforceable.
    Cgroup,
    /// The soft enforcer for memory, CPU and disk IO; no cgroups at all (max_pids then needs
    /// `RLIMIT_NPROC`, which works only for a non-root user).
    Soft,
}

impl LimitMode {
    /// Every mode.
    pub const ALL: [LimitMode; 3] = [LimitMode::Auto, LimitMode::Cgroup, LimitMode::Soft];

    /// The name in settings and reports (`auto`, `cgroup`, `soft`).
    pub fn name(self) -> &'static str {
        match self {
            LimitMode::Auto => "auto",
            LimitMode::Cgroup => "cgroup",
            LimitMode::Soft => "soft",
        }
    }
}

impl std::fmt::Display for LimitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to choose mechanisms.
#[derive(Debug, Clone)]
pub struct LimitOptions {
    /// Where the cgroup v1 hierarchies are (default: the system's).
    pub cgroup_v1: CgroupV1Root,
    /// A cgroup v2 parent (a delegated subtree) to create children in; preferred over v1 when
    /// it enables the needed controllers. `None`: v2 is not used.
    pub cgroup_v2: Option<CgroupV2Root>,
    /// The block device (`MAJ:MIN`, a whole disk; see [`block_device_of`]) a disk IO limit
    /// applies to, for cgroup v2 `io.max` and v1 `blkio.throttle.*`. Without it, disk IO is
    /// left to the soft enforcer.
    pub io_device: Option<String>,
    /// Which mechanisms may be used.
    pub mode: LimitMode,
    /// Allow limits that nothing here can enforce; the report says `not-enforced` for them.
    pub best_effort: bool,
    /// The soft enforcer's sampling interval.
    pub soft_interval: Duration,
}

impl Default for LimitOptions {
    fn default() -> Self {
        LimitOptions {
            cgroup_v1: CgroupV1Root::system(),
            cgroup_v2: None,
            io_device: None,
            mode: LimitMode::Auto,
            best_effort: false,
            soft_interval: SoftLimits::default().interval,
        }
    }
}

/// The whole block device (`MAJ:MIN`) holding `path`, for [`LimitOptions::io_device`]: the disk
/// itself when the file system sits on a partition (throttling applies to whole disks).
/// `None` for file systems without a block device (tmpfs, overlay on another mount, NFS).
pub fn block_device_of(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let disk = if sys.join("partition").exists() {
        sys.canonicalize().ok()?.parent()?.join("dev")
    } else {
        sys.join("dev")
    };
    let text = std::fs::read_to_string(disk).ok()?;
    Some(text.trim().to_owned())
}

/// A spawn hook enforcing [`ResourceLimits`] (all but the timeout, which
/// [`run_with_timeout`] enforces). Limits the report assigns to [`Mechanism::UserSpace`] get a
/// [`SoftEnforcer`] per child, started when the child exists and ended with its tree.
#[derive(Debug, Clone)]
pub struct LimitsHook {
    limits: ResourceLimits,
    options: LimitOptions,
    report: LimitReport,
}

impl LimitsHook {
    /// Validate `limits`, choose a mechanism for each (the report says which), and fail if one
    /// cannot be enforced here unless `options.best_effort`.
    pub fn new(limits: ResourceLimits, options: LimitOptions) -> Result<LimitsHook> {
        limits.validate()?;
        let report = plan(&limits, &options)?;
        Ok(LimitsHook {
            limits,
            options,
            report,
        })
    }

    /// What enforces each limit.
    pub fn report(&self) -> &LimitReport {
        &self.report
    }

    /// The limits the report assigns to the soft enforcer, if any.
    pub fn soft_limits(&self) -> Option<SoftLimits> {
        let soft = |kind| self.report.uses(kind, Mechanism::UserSpace);
        let limits = SoftLimits {
            max_memory: self.limits.max_memory.filter(|_| soft(LimitKind::Memory)),
            max_cpu: self.limits.max_cpu.filter(|_| soft(LimitKind::Cpu)),
            max_disk_io: self.limits.max_disk_io.filter(|_| soft(LimitKind::DiskIo)),
            interval: self.options.soft_interval,
        };
        (limits.max_memory.is_some() || limits.max_cpu.is_some() || limits.max_disk_io.is_some())
            .then_some(limits)
    }

    fn cgroups(&self, setup: &mut ChildSetup, created: &mut Vec<Cgroup>) -> Result<()> {
        let l = &self.limits;
        let on = |kind, mechanism| self.report.uses(kind, mechanism);
        if let Some(root) = self.options.cgroup_v2.as_ref().filter(|_| {
            self.report
                .entries
                .iter()
                .any(|e| e.mechanism == Mechanism::CgroupV2)
        }) {
            let settings = v2_settings(l, self.options.io_device.as_deref());
            created.push(create_v2(root, &settings)?);
        }
        // (file, value, only if the file exists)
        type Settings = Vec<(&'static str, String, bool)>;
        let mut make = |controller: Controller, kind: LimitKind, settings: Settings| {
            if !on(kind, Mechanism::CgroupV1) {
                return Ok(());
            }
            let Some(parent) = self.options.cgroup_v1.own_dir(controller.v1_name()) else {
                return Ok(());
            };
            // Pushed before configuring, so a failed write still gets it removed.
            created.push(Cgroup::create(controller, &parent)?);
            if let Some(cg) = created.last() {
                for (file, value, optional) in settings {
                    if !optional || cg.read(file).is_some() {
                        cg.write(file, &value)?;
                    }
                }
            }
            Ok::<(), Error>(())
        };
        if let Some(bytes) = l.max_memory {
            make(
                Controller::Memory,
                LimitKind::Memory,
                vec![
                    ("memory.limit_in_bytes", bytes.to_string(), false),
                    // Present with swap accounting: swap must not bypass the limit.
                    ("memory.memsw.limit_in_bytes", bytes.to_string(), true),
                ],
            )?;
        }
        if let Some(cores) = l.max_cpu {
            let period = 100_000u64;
            let quota = ((cores * period as f64).round() as u64).max(1000);
            make(
                Controller::Cpu,
                LimitKind::Cpu,
                vec![
                    ("cpu.cfs_period_us", period.to_string(), false),
                    ("cpu.cfs_quota_us", quota.to_string(), false),
                ],
            )?;
        }
        if let Some(max) = l.max_pids {
            make(
                Controller::Pids,
                LimitKind::Pids,
                vec![("pids.max", max.to_string(), false)],
            )?;
        }
        if let (Some(rate), Some(device)) = (l.max_disk_io, self.options.io_device.as_deref()) {
            let rule = format!("{device} {rate}");
            make(
                Controller::Blkio,
                LimitKind::DiskIo,
                vec![
                    ("blkio.throttle.read_bps_device", rule.clone(), false),
                    ("blkio.throttle.write_bps_device", rule, false),
                ],
            )?;
        }
        for cg in created.iter() {
            setup.write_on_start(cg.procs_for_child()?, "0");
        }
        Ok(())
    }
}

/// The per-spawn part: the cgroups of one child and what its exit can be attributed to.
struct Applied {
    cgroups: Vec<Cgroup>,
    cpu_time: bool,
    file_size: bool,
    soft: Option<SoftLimits>,
    signals: Option<Arc<Signals>>,
    enforcer: Option<SoftEnforcer>,
}

impl HookInstance for Applied {
    fn spawned(&mut self, _pid: u32, stopper: &Stopper) {
        if let Some(limits) = self.soft.take() {
            self.enforcer = Some(SoftEnforcer::start_reporting(
                stopper.clone(),
                limits,
                self.signals.take(),
            ));
        }
    }

    fn tree_members(&self) -> Vec<u32> {
        self.cgroups.iter().flat_map(Cgroup::members).collect()
    }

    /// The cgroups' accounting of the whole tree: CPU time (`cpuacct.usage` where cpuacct is
    /// mounted with cpu, `cpu.stat` on v2) and peak memory (`memory.max_usage_in_bytes`,
    /// `memory.peak`).
    fn usage(&self) -> TreeUsage {
        let mut usage = TreeUsage::default();
        for c in &self.cgroups {
            let (cpu, memory) = match c.controller {
                Controller::Cpu => (c.number("cpuacct.usage").map(Duration::from_nanos), None),
                Controller::Memory => (None, c.number("memory.max_usage_in_bytes")),
                Controller::Unified => (
                    c.keyed("cpu.stat", "usage_usec").map(Duration::from_micros),
                    c.number("memory.peak"),
                ),
                _ => (None, None),
            };
            usage = usage.max(TreeUsage::new(cpu, memory));
        }
        usage
    }

    fn exited(&mut self, exit: &RawExit) -> Option<StopCause> {
        let limit = |limit| Some(StopCause::LimitExceeded { limit });
        let oom = self.cgroups.iter().any(|c| match c.controller {
            Controller::Memory => c.counter("memory.oom_control", "oom_kill") > 0,
            Controller::Unified => oom_kills(c) > 0,
            _ => false,
        });
        if oom && exit.signal == Some(libc::SIGKILL) {
            return limit(LimitKind::Memory);
        }
        if self.cpu_time && exit.signal == Some(libc::SIGXCPU) {
            return limit(LimitKind::CpuTime);
        }
        if self.file_size && exit.signal == Some(libc::SIGXFSZ) {
            return limit(LimitKind::FileSize);
        }
        // A fork refused by pids.max does not kill anything; the leader failing after one
        // did is attributed to the limit.
        let refused = self.cgroups.iter().any(|c| match c.controller {
            Controller::Pids | Controller::Unified => c.counter("pids.events", "max") > 0,
            _ => false,
        });
        let failed = exit.code.is_some_and(|c| c != 0) || exit.signal.is_some();
        if refused && failed {
            return limit(LimitKind::Pids);
        }
        None
    }

    fn cleanup(&mut self) {
        // Ends the enforcer and continues anything it held stopped.
        self.enforcer = None;
        for cg in &self.cgroups {
            // The tree is gone by now; on v2, `cgroup.kill` ends anything that slipped past.
            if cg.controller == Controller::Unified && !cg.members().is_empty() {
                let _ = kill_all(cg);
            }
            cg.remove();
        }
    }
}

/// A [`LimitsHook`] for one run whose health monitor reads `signals` (see
/// [`LimitsHook::for_run`]).
#[derive(Debug, Clone)]
pub struct LimitsForRun {
    hook: Arc<LimitsHook>,
    signals: Arc<Signals>,
}

impl SpawnHook for LimitsForRun {
    fn name(&self) -> &str {
        "claude-limits"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        self.hook
            .prepare_run(setup, Some(Arc::clone(&self.signals)))
    }
}

impl LimitsHook {
    /// This hook for one run whose health monitor reads `signals`: the soft enforcer tells it
    /// while it holds the tree stopped, so throttling is not taken for a fault.
    pub fn for_run(self: &Arc<Self>, signals: Arc<Signals>) -> LimitsForRun {
        LimitsForRun {
            hook: Arc::clone(self),
            signals,
        }
    }
}

impl SpawnHook for LimitsHook {
    fn name(&self) -> &str {
        "claude-limits"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        self.prepare_run(setup, None)
    }
}

impl LimitsHook {
    fn prepare_run(
        &self,
        setup: &mut ChildSetup,
        signals: Option<Arc<Signals>>,
    ) -> Result<Box<dyn HookInstance>, HookError> {
        let mut created = Vec::new();
        if let Err(e) = self.cgroups(setup, &mut created) {
            for cg in &created {
                cg.remove();
            }
            return Err(Box::new(e));
        }
        let l = &self.limits;
        if let Some(files) = l.max_open_files {
            setup.set_rlimit(Rlimit::OpenFiles, files, files);
        }
        if let Some(cpu) = l.max_cpu_time {
            let secs = cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0);
            setup.set_rlimit(Rlimit::CpuSeconds, secs, secs.saturating_add(2));
        }
        if let Some(size) = l.max_file_size {
            setup.set_rlimit(Rlimit::FileSize, size, size);
        }
        if let Some(size) = l.max_core_size {
            setup.set_rlimit(Rlimit::CoreSize, size, size);
        }
        if let Some(pids) = l
            .max_pids
            .filter(|_| self.report.uses(LimitKind::Pids, Mechanism::Rlimit))
        {
            setup.set_rlimit(Rlimit::Processes, pids, pids);
        }
        if let Some(nice) = l.nice {
            setup.set_nice(nice);
        }
        Ok(Box::new(Applied {
            cgroups: created,
            cpu_time: l.max_cpu_time.is_some(),
            file_size: l.max_file_size.is_some(),
            soft: self.soft_limits(),
            signals,
            enforcer: None,
        }))
    }
}

/// Wait for `child`, running its stop sequence with [`StopCause::Timeout`] once `timeout` has
/// passed since this call.
pub async fn run_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> claude_proc::Result<ExitInfo> {
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(result) => result,
        Err(_) => child.stop_with(StopCause::Timeout).await,
    }
}
