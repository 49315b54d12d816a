//! `ResourceLimits`, their validation, and the report of what enforces each one.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// Limits for one supervised process tree. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceLimits {
    /// CPU in cores (0.5 = half of one core), over the whole tree.
    pub max_cpu: Option<f64>,
    /// Memory in bytes, over the whole tree.
    pub max_memory: Option<u64>,
    /// Storage IO in bytes per second.
    pub max_disk_io: Option<u64>,
    /// Wall-clock time before the stop sequence.
    pub timeout: Option<Duration>,
    /// Processes (and threads) in the tree.
    pub max_pids: Option<u64>,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub max_open_files: Option<u64>,
    /// Nice value, -20 (most favoured) to 19.
    pub nice: Option<i32>,
    /// CPU time per process (`RLIMIT_CPU`, whole seconds, rounded up): SIGXCPU at the limit,
    /// SIGKILL two seconds later. Unlike `max_cpu` (a rate), this ends the process.
    pub max_cpu_time: Option<Duration>,
    /// Largest file a process may write (`RLIMIT_FSIZE`): writes beyond it fail and raise
    /// SIGXFSZ.
    pub max_file_size: Option<u64>,
    /// Largest core dump (`RLIMIT_CORE`); `Some(0)` turns core dumps off.
    pub max_core_size: Option<u64>,
}

impl ResourceLimits {
    /// Check every value: finite, positive, above a sane minimum. Errors name the limit.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: String, why: &'static str| {
            Err(Error::InvalidLimit { field, value, why })
        };
        if let Some(cpu) = self.max_cpu {
            if !cpu.is_finite() || cpu < 0.01 {
                return bad(
                    "max_cpu",
                    cpu.to_string(),
                    "must be a number of cores >= 0.01",
                );
            }
        }
        if let Some(memory) = self.max_memory {
            if memory < 16 << 20 {
                return bad("max_memory", memory.to_string(), "must be at least 16 MiB");
            }
        }
        if let Some(io) = self.max_disk_io {
            if io < 4096 {
                return bad(
                    "max_disk_io",
                    io.to_string(),
                    "must be at least 4096 bytes/s",
                );
            }
        }
        if let Some(timeout) = self.timeout {
            if timeout.is_zero() {
                return bad("timeout", format!("{timeout:?}"), "must be positive");
            }
        }
        if let Some(pids) = self.max_pids {
            if pids == 0 {
                return bad("max_pids", "0".into(), "must be at least 1");
            }
        }
        if let Some(files) = self.max_open_files {
            if files < 16 {
                return bad("max_open_files", files.to_string(), "must be at least 16");
            }
        }
        if let Some(nice) = self.nice {
            if !(-20..=19).contains(&nice) {
                return bad("nice", nice.to_string(), "must be within -20..=19");
            }
        }
        if let Some(cpu_time) = self.max_cpu_time {
            if cpu_time.is_zero() {
                return bad("max_cpu_time", format!("{cpu_time:?}"), "must be positive");
            }
        }
        if let Some(size) = self.max_file_size {
            if size < 4096 {
                return bad(
                    "max_file_size",
                    size.to_string(),
                    "must be at least 4096 bytes",
                );
            }
        }
        Ok(())
    }
}

/// One kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// `max_cpu`.
    Cpu,
    /// `max_memory`.
    Memory,
    /// `max_disk_io`.
    DiskIo,
    /// `timeout`.
    Timeout,
    /// `max_pids`.
    Pids,
    /// `max_open_files`.
    OpenFiles,
    /// `nice`.
    Nice,
    /// `max_cpu_time`.
    CpuTime,
    /// `max_file_size`.
    FileSize,
    /// `max_core_size`.
    CoreSize,
}

impl LimitKind {
    /// The name used in reports, errors and stop causes (`memory`, `pids`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Cpu => "cpu",
            LimitKind::Memory => "memory",
            LimitKind::DiskIo => "disk_io",
            LimitKind::Timeout => "timeout",
            LimitKind::Pids => "pids",
            LimitKind::OpenFiles => "open_files",
            LimitKind::Nice => "nice",
            LimitKind::CpuTime => "cpu_time",
            LimitKind::FileSize => "file_size",
            LimitKind::CoreSize => "core_size",
        }
    }
}

/// What enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// The cgroup v2 hierarchy (`memory.max`, `cpu.max`, `pids.max`, `io.max`).
    CgroupV2,
    /// A cgroup v1 controller (`memory.limit_in_bytes`, `cpu.cfs_quota_us`, `pids.max`,
    /// `blkio.throttle.*`).
    CgroupV1,
    /// The [`crate::SoftEnforcer`] in user space (started per child by [`crate::LimitsHook`]).
    UserSpace,
    /// A resource limit set before exec.
    Rlimit,
    /// `setpriority` before exec.
    Setpriority,
    /// A timer that runs the stop sequence.
    Timer,
    /// Nothing: allowed only with best effort, and reported.
    NotEnforced,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::CgroupV2 => "cgroup-v2",
            Mechanism::CgroupV1 => "cgroup-v1",
            Mechanism::UserSpace => "soft",
            Mechanism::Rlimit => "rlimit",
            Mechanism::Setpriority => "setpriority",
            Mechanism::Timer => "timer",
            Mechanism::NotEnforced => "not-enforced",
        })
    }
}

/// Which mechanism enforces each requested limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitReport {
    /// One entry per requested limit and mechanism, with a note where the enforcement is
    /// partial or absent (a limit enforced two ways has two entries).
    pub entries: Vec<(LimitKind, Mechanism, Option<String>)>,
}

impl LimitReport {
    /// Whether `mechanism` enforces `kind` (possibly besides another one).
    pub fn uses(&self, kind: LimitKind, mechanism: Mechanism) -> bool {
        self.entries
            .iter()
            .any(|(k, m, _)| *k == kind && *m == mechanism)
    }

    /// The (first) mechanism for `kind`, if it was requested.
    pub fn mechanism(&self, kind: LimitKind) -> Option<Mechanism> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, m, _)| *m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_limit() {
        let field = |l: ResourceLimits| match l.validate() {
            Err(Error::InvalidLimit { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let base = ResourceLimits::default();
        assert!(base.validate().is_ok());
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(f64::NAN),
                ..base
            }),
            "max_cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(-1.0),
                ..base
            }),
            "max_cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(f64::INFINITY),
                ..base
            }),
            "max_cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_memory: Some(1024),
                ..base
            }),
            "max_memory"
        );
        assert_eq!(
            field(ResourceLimits {
                max_disk_io: Some(1),
                ..base
            }),
            "max_disk_io"
        );
        assert_eq!(
            field(ResourceLimits {
                timeout: Some(Duration::ZERO),
                ..base
            }),
            "timeout"
        );
        assert_eq!(
            field(ResourceLimits {
                max_pids: Some(0),
                ..base
            }),
            "max_pids"
        );
        assert_eq!(
            field(ResourceLimits {
                max_open_files: Some(3),
                ..base
            }),
            "max_open_files"
        );
        assert_eq!(
            field(ResourceLimits {
                nice: Some(20),
                ..base
            }),
            "nice"
        );
        let ok = ResourceLimits {
            max_cpu: Some(0.5),
            max_memory: Some(200 << 20),
            max_disk_io: Some(5 << 20),
            timeout: Some(Duration::from_secs(1)),
            max_pids: Some(20),
            max_open_files: Some(1024),
            nice: Some(10),
            max_cpu_time: Some(Duration::from_secs(60)),
            max_file_size: Some(1 << 30),
            max_core_size: Some(0),
        };
        assert_eq!(
            field(ResourceLimits {
                max_cpu_time: Some(Duration::ZERO),
                ..base
            }),
            "max_cpu_time"
        );
        assert_eq!(
            field(ResourceLimits {
                max_file_size: Some(10),
                ..base
            }),
            "max_file_size"
        );
        assert!(ok.validate().is_ok());
    }
}
