//! Applying limits to a spawn through claude-proc's hook, without the fork trap: the cgroups are
//! created and configured in the parent; the child only writes `0` to their `cgroup.procs` and
//! sets rlimits and its nice value between clone and exec.

use std::time::Duration;

use claude_proc::{
    Child, ChildSetup, ExitInfo, HookError, HookInstance, RawExit, Rlimit, SpawnHook, StopCause,
};

use crate::cgroup_v1::{Cgroup, CgroupV1Root};
use crate::cgroup_v2::{
    check_parent, create_v2, kill_all, oom_kills, v2_controllers, v2_settings, CgroupV2Root,
};
use crate::error::{Error, Result};
use crate::limits::{LimitKind, LimitReport, Mechanism, ResourceLimits};

/// How to choose mechanisms.
#[derive(Debug, Clone)]
pub struct LimitOptions {
    /// Where the cgroup v1 hierarchies are (default: the system's).
    pub cgroup_v1: CgroupV1Root,
    /// A cgroup v2 parent (a delegated subtree) to create children in; preferred over v1 when
    /// it enables the needed controllers. `None`: v2 is not used.
    pub cgroup_v2: Option<CgroupV2Root>,
    /// The block device (`MAJ:MIN`) a disk IO limit applies to, for cgroup v2 `io.max`.
    pub io_device: Option<String>,
    /// Allow limits that nothing here can enforce; the report says `not-enforced` for them.
    pub best_effort: bool,
}

impl Default for LimitOptions {
    fn default() -> Self {
        LimitOptions {
            cgroup_v1: CgroupV1Root::system(),
            cgroup_v2: None,
            io_device: None,
            best_effort: false,
        }
    }
}

/// A spawn hook enforcing [`ResourceLimits`] (all but the timeout, which
/// [`run_with_timeout`] enforces).
#[derive(Debug, Clone)]
pub struct LimitsHook {
    limits: ResourceLimits,
    options: LimitOptions,
    report: LimitReport,
}

impl LimitsHook {
    /// Validate `limits`, choose a mechanism for each, and fail if one cannot be enforced
    /// (unless `best_effort`). The report says what enforces what.
    pub fn new(limits: ResourceLimits, options: LimitOptions) -> Result<LimitsHook> {
        limits.validate()?;
        let mut report = LimitReport::default();
        let io_v2 = options.io_device.is_some();
        let v2 = options
            .cgroup_v2
            .as_ref()
            .filter(|root| check_parent(root, &v2_controllers(&limits, io_v2)).is_ok());
        if v2.is_some() {
            for (kind, requested) in [
                (LimitKind::Memory, limits.max_memory.is_some()),
                (LimitKind::Cpu, limits.max_cpu.is_some()),
                (LimitKind::Pids, limits.max_pids.is_some()),
                (LimitKind::DiskIo, limits.max_disk_io.is_some() && io_v2),
            ] {
                if requested {
                    report.entries.push((kind, Mechanism::CgroupV2, None));
                }
            }
        }
        let mut need = |kind: LimitKind,
                        requested: bool,
                        controller: Option<&str>,
                        fallback: Mechanism|
         -> Result<()> {
            if !requested || report.mechanism(kind) == Some(Mechanism::CgroupV2) {
                return Ok(());
            }
            let entry = match controller {
                Some(c) if options.cgroup_v1.own_dir(c).is_some() => {
                    (kind, Mechanism::CgroupV1, None)
                }
                Some(c) => {
                    let why = format!("no writable cgroup v1 `{c}` hierarchy for this process");
                    if !options.best_effort {
                        return Err(Error::Unenforceable {
                            limit: kind.name(),
                            why,
                        });
                    }
                    (kind, Mechanism::NotEnforced, Some(why))
                }
                None => (kind, fallback, None),
            };
            report.entries.push(entry);
            Ok(())
        };
        need(
            LimitKind::Memory,
            limits.max_memory.is_some(),
            Some("memory"),
            Mechanism::NotEnforced,
        )?;
        need(
            LimitKind::Cpu,
            limits.max_cpu.is_some(),
            Some("cpu"),
            Mechanism::NotEnforced,
        )?;
        need(
            LimitKind::Pids,
            limits.max_pids.is_some(),
            Some("pids"),
            Mechanism::NotEnforced,
        )?;
        need(
            LimitKind::OpenFiles,
            limits.max_open_files.is_some(),
            None,
            Mechanism::Rlimit,
        )?;
        need(
            LimitKind::Nice,
            limits.nice.is_some(),
            None,
            Mechanism::Setpriority,
        )?;
        need(
            LimitKind::Timeout,
            limits.timeout.is_some(),
            None,
            Mechanism::Timer,
        )?;
        if limits.max_disk_io.is_some() && report.mechanism(LimitKind::DiskIo).is_none() {
            let why =
                "disk IO throttling (blkio / io.max / soft) is not implemented yet".to_owned();
            if !options.best_effort {
                return Err(Error::Unenforceable {
                    limit: "disk_io",
                    why,
                });
            }
            report
                .entries
                .push((LimitKind::DiskIo, Mechanism::NotEnforced, Some(why)));
        }
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

    fn cgroups(&self, setup: &mut ChildSetup, created: &mut Vec<Cgroup>) -> Result<()> {
        let l = &self.limits;
        if let Some(root) = self.options.cgroup_v2.as_ref().filter(|_| {
            [
                LimitKind::Memory,
                LimitKind::Cpu,
                LimitKind::Pids,
                LimitKind::DiskIo,
            ]
            .iter()
            .any(|k| self.report.mechanism(*k) == Some(Mechanism::CgroupV2))
        }) {
            let settings = v2_settings(l, self.options.io_device.as_deref());
            created.push(create_v2(root, &settings)?);
        }
        let mut make = |controller: &'static str| -> Result<Option<usize>> {
            if self.report.mechanism(kind_of(controller)) != Some(Mechanism::CgroupV1) {
                return Ok(None);
            }
            let Some(parent) = self.options.cgroup_v1.own_dir(controller) else {
                return Ok(None);
            };
            created.push(Cgroup::create(controller, &parent)?);
            Ok(Some(created.len() - 1))
        };
        let memory = if l.max_memory.is_some() {
            make("memory")?
        } else {
            None
        };
        let cpu = if l.max_cpu.is_some() {
            make("cpu")?
        } else {
            None
        };
        let pids = if l.max_pids.is_some() {
            make("pids")?
        } else {
            None
        };
        if let (Some(i), Some(bytes)) = (memory, l.max_memory) {
            created[i].write("memory.limit_in_bytes", &bytes.to_string())?;
            // Without swap accounting the file is absent; with it, swap must not bypass the limit.
            if created[i].read("memory.memsw.limit_in_bytes").is_some() {
                created[i].write("memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
        }
        if let (Some(i), Some(cores)) = (cpu, l.max_cpu) {
            let period = 100_000u64;
            let quota = ((cores * period as f64).round() as u64).max(1000);
            created[i].write("cpu.cfs_period_us", &period.to_string())?;
            created[i].write("cpu.cfs_quota_us", &quota.to_string())?;
        }
        if let (Some(i), Some(max)) = (pids, l.max_pids) {
            created[i].write("pids.max", &max.to_string())?;
        }
        for cg in created.iter() {
            setup.write_on_start(cg.procs_for_child()?, "0");
        }
        Ok(())
    }
}

fn kind_of(controller: &str) -> LimitKind {
    match controller {
        "memory" => LimitKind::Memory,
        "cpu" => LimitKind::Cpu,
        _ => LimitKind::Pids,
    }
}

/// The per-spawn part: the cgroups of one child.
struct Applied {
    cgroups: Vec<Cgroup>,
}

impl HookInstance for Applied {
    fn tree_members(&self) -> Vec<u32> {
        self.cgroups.iter().flat_map(Cgroup::members).collect()
    }

    fn exited(&mut self, exit: &RawExit) -> Option<StopCause> {
        let oom = self.cgroups.iter().any(|c| match c.controller {
            "memory" => c.counter("memory.oom_control", "oom_kill") > 0,
            "unified" => oom_kills(c) > 0,
            _ => false,
        });
        (oom && exit.signal == Some(9)).then(|| StopCause::LimitExceeded {
            limit: "memory".into(),
        })
    }

    fn cleanup(&mut self) {
        for cg in &self.cgroups {
            // The tree is gone by now; on v2, `cgroup.kill` ends anything that slipped past.
            if cg.controller == "unified" && !cg.members().is_empty() {
                let _ = kill_all(cg);
            }
            cg.remove();
        }
    }
}

impl SpawnHook for LimitsHook {
    fn name(&self) -> &str {
        "claude-limits"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        let mut created = Vec::new();
        if let Err(e) = self.cgroups(setup, &mut created) {
            for cg in &created {
                cg.remove();
            }
            return Err(Box::new(e));
        }
        if let Some(files) = self.limits.max_open_files {
            setup.set_rlimit(Rlimit::OpenFiles, files, files);
        }
        if let Some(nice) = self.limits.nice {
            setup.set_nice(nice);
        }
        Ok(Box::new(Applied { cgroups: created }))
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
