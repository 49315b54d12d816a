//! Choosing what enforces each limit on this host: the [`LimitReport`] a [`crate::LimitsHook`]
//! then applies, and the very report `doctor` shows (one code path, so they cannot differ).

use crate::cgroup_v2::{check_parent, v2_controllers};
use crate::error::{Error, Result};
use crate::hook::{LimitMode, LimitOptions};
use crate::host::{writable, Host as HostBounds};
use crate::limits::{LimitKind, LimitReport, Mechanism, ResourceLimits};

/// What this host and these options allow.
struct Host<'a> {
    options: &'a LimitOptions,
    cgroups: bool,
    soft: bool,
    v2: bool,
    io_device: bool,
}

impl Host<'_> {
    /// Whether a v1 cgroup of `controller` can be made here: mounted, and this process's own
    /// cgroup of it writable by this user (a non-root user usually cannot).
    fn v1(&self, controller: &str) -> bool {
        self.cgroups
            && self
                .options
                .cgroup_v1
                .own_dir(controller)
                .is_some_and(|dir| writable(&dir))
    }

    fn no_cgroup(&self, controller: &str) -> String {
        match self.options.mode {
            LimitMode::Soft => "cgroups are off (soft mode)".to_owned(),
            _ => format!("no writable cgroup `{controller}` controller for this process"),
        }
    }

    /// Record `kind` as not enforced, or fail unless best effort was allowed.
    fn unenforceable(&self, report: &mut LimitReport, kind: LimitKind, why: String) -> Result<()> {
        if !self.options.best_effort {
            return Err(Error::Unenforceable { limit: kind, why });
        }
        report.push(kind, Mechanism::NotEnforced, Some(why));
        Ok(())
    }
}

/// Choose a mechanism for every limit in `limits` (validated by the caller).
pub(crate) fn plan(limits: &ResourceLimits, options: &LimitOptions) -> Result<LimitReport> {
    let cgroups = options.mode != LimitMode::Soft;
    let io_device = options.io_device.is_some();
    let v2 = cgroups
        && options.cgroup_v2.as_ref().is_some_and(|root| {
            check_parent(root, &v2_controllers(limits, io_device)).is_ok()
                && writable(root.parent())
        });
    let host = Host {
        options,
        cgroups,
        soft: options.mode != LimitMode::Cgroup,
        v2,
        io_device,
    };
    let mut report = LimitReport::default();
    if limits.max_memory.is_some() {
        memory_or_cpu(&host, &mut report, LimitKind::Memory, "memory")?;
    }
    if limits.max_cpu.is_some() {
        memory_or_cpu(&host, &mut report, LimitKind::Cpu, "cpu")?;
    }
    if limits.max_disk_io.is_some() {
        disk_io(&host, &mut report)?;
    }
    if limits.max_pids.is_some() {
        pids(&host, &mut report)?;
    }
    for (kind, requested, mechanism) in [
        (
            LimitKind::OpenFiles,
            limits.max_open_files.is_some(),
            Mechanism::Rlimit,
        ),
        (
            LimitKind::CpuTime,
            limits.max_cpu_time.is_some(),
            Mechanism::Rlimit,
        ),
        (
            LimitKind::FileSize,
            limits.max_file_size.is_some(),
            Mechanism::Rlimit,
        ),
        (
            LimitKind::CoreSize,
            limits.max_core_size.is_some(),
            Mechanism::Rlimit,
        ),
        (
            LimitKind::Nice,
            limits.nice.is_some(),
            Mechanism::Setpriority,
        ),
        (
            LimitKind::Timeout,
            limits.timeout.is_some(),
            Mechanism::Timer,
        ),
    ] {
        if requested {
            report.push(kind, mechanism, None);
        }
    }
    Ok(report)
}

/// Memory and CPU: a cgroup (v2, else v1), else the soft enforcer.
fn memory_or_cpu(
    host: &Host<'_>,
    report: &mut LimitReport,
    kind: LimitKind,
    controller: &str,
) -> Result<()> {
    if host.v2 {
        report.push(kind, Mechanism::CgroupV2, None);
    } else if host.v1(controller) {
        report.push(kind, Mechanism::CgroupV1, None);
    } else if host.soft {
        report.push(kind, Mechanism::UserSpace, None);
    } else {
        host.unenforceable(report, kind, host.no_cgroup(controller))?;
    }
    Ok(())
}

/// Disk IO: v2 `io.max` with a device; v1 blkio throttles direct IO only (v1 cannot attribute
/// page-cache writeback), so the soft enforcer covers buffered IO beside it.
fn disk_io(host: &Host<'_>, report: &mut LimitReport) -> Result<()> {
    let kind = LimitKind::DiskIo;
    if host.v2 && host.io_device {
        report.push(kind, Mechanism::CgroupV2, None);
        return Ok(());
    }
    let blkio = host.io_device && host.v1("blkio");
    if blkio {
        let note = if host.soft {
            "direct IO; buffered IO through the soft enforcer"
        } else {
            "direct IO only: v1 cannot throttle page-cache writeback"
        };
        report.push(kind, Mechanism::CgroupV1, Some(note.to_owned()));
    }
    if host.soft {
        report.push(kind, Mechanism::UserSpace, None);
    } else if !blkio {
        let why = match host.io_device {
            true => host.no_cgroup("blkio"),
            false => "no io_device given for io.max / blkio".to_owned(),
        };
        host.unenforceable(report, kind, why)?;
    }
    Ok(())
}

/// Pids: a cgroup, else `RLIMIT_NPROC` for a user who is not root (root is exempt).
fn pids(host: &Host<'_>, report: &mut LimitReport) -> Result<()> {
    let kind = LimitKind::Pids;
    if host.v2 {
        report.push(kind, Mechanism::CgroupV2, None);
    } else if host.v1("pids") {
        report.push(kind, Mechanism::CgroupV1, None);
    } else if !HostBounds::current().root {
        let note = "RLIMIT_NPROC counts every process of the user, not only this tree";
        report.push(kind, Mechanism::Rlimit, Some(note.to_owned()));
    } else {
        let why = format!(
            "{}, and root is exempt from RLIMIT_NPROC",
            host.no_cgroup("pids")
        );
        host.unenforceable(report, kind, why)?;
    }
    Ok(())
}
