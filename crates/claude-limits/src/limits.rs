//! `ResourceLimits`, their validation, and the report of what enforces each one.

use std::fmt;
use std::time::Duration;

pub use claude_proc::LimitKind;

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
    /// The smallest CPU limit, in cores (a CFS quota of 1 ms per 100 ms period).
    pub const MIN_CPU: f64 = 0.01;
    /// The smallest memory limit: below it not even a shell starts under a cgroup.
    pub const MIN_MEMORY: u64 = 16 << 20;
    /// The smallest disk IO rate, bytes per second (one page per second).
    pub const MIN_DISK_IO: u64 = 4096;
    /// The smallest process limit.
    pub const MIN_PIDS: u64 = 1;
    /// The fewest open files: stdio, a few libraries and the loader.
    pub const MIN_OPEN_FILES: u64 = 16;
    /// The nice values the kernel takes.
    pub const NICE: std::ops::RangeInclusive<i32> = -20..=19;
    /// The smallest file-size limit (one page).
    pub const MIN_FILE_SIZE: u64 = 4096;

    /// Check every value: finite, positive, above a sane minimum. Errors name the limit.
    pub fn validate(&self) -> Result<()> {
        let check = |kind: LimitKind, value: Option<String>, why: Option<String>| match why {
            Some(why) => Err(Error::InvalidLimit {
                limit: kind,
                value: value.unwrap_or_default(),
                why,
            }),
            None => Ok(()),
        };
        let below = |what: &str| format!("must be at least {what}");
        if let Some(cpu) = self.max_cpu {
            let bad = !cpu.is_finite() || cpu < Self::MIN_CPU;
            check(
                LimitKind::Cpu,
                Some(cpu.to_string()),
                bad.then(|| format!("must be a number of cores >= {}", Self::MIN_CPU)),
            )?;
        }
        if let Some(memory) = self.max_memory {
            check(
                LimitKind::Memory,
                Some(memory.to_string()),
                (memory < Self::MIN_MEMORY).then(|| below(&size(Self::MIN_MEMORY))),
            )?;
        }
        if let Some(io) = self.max_disk_io {
            check(
                LimitKind::DiskIo,
                Some(io.to_string()),
                (io < Self::MIN_DISK_IO)
                    .then(|| below(&format!("{} per second", size(Self::MIN_DISK_IO)))),
            )?;
        }
        if let Some(timeout) = self.timeout {
            check(
                LimitKind::Timeout,
                Some(format!("{} ms", timeout.as_millis())),
                timeout.is_zero().then(|| "must be positive".to_owned()),
            )?;
        }
        if let Some(pids) = self.max_pids {
            check(
                LimitKind::Pids,
                Some(pids.to_string()),
                (pids < Self::MIN_PIDS).then(|| below(&Self::MIN_PIDS.to_string())),
            )?;
        }
        if let Some(files) = self.max_open_files {
            check(
                LimitKind::OpenFiles,
                Some(files.to_string()),
                (files < Self::MIN_OPEN_FILES).then(|| below(&Self::MIN_OPEN_FILES.to_string())),
            )?;
        }
        if let Some(nice) = self.nice {
            check(
                LimitKind::Nice,
                Some(nice.to_string()),
                (!Self::NICE.contains(&nice)).then(|| {
                    format!(
                        "must be within {}..={}",
                        Self::NICE.start(),
                        Self::NICE.end()
                    )
                }),
            )?;
        }
        if let Some(cpu_time) = self.max_cpu_time {
            check(
                LimitKind::CpuTime,
                Some(format!("{} ms", cpu_time.as_millis())),
                cpu_time.is_zero().then(|| "must be positive".to_owned()),
            )?;
        }
        if let Some(bytes) = self.max_file_size {
            check(
                LimitKind::FileSize,
                Some(bytes.to_string()),
                (bytes < Self::MIN_FILE_SIZE).then(|| below(&size(Self::MIN_FILE_SIZE))),
            )?;
        }
        Ok(())
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

/// A byte count as people read it: `16 MiB`, `4 KiB`, `1500 bytes`.
pub(crate) fn size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// One limit and one mechanism that enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enforcement {
    /// The limit.
    pub limit: LimitKind,
    /// What enforces it.
    pub mechanism: Mechanism,
    /// Where the enforcement is partial or absent: how, or why not.
    pub note: Option<String>,
}

/// Which mechanism enforces each requested limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitReport {
    /// One entry per requested limit and mechanism (a limit enforced two ways has two
    /// entries, in the order chosen).
    pub entries: Vec<Enforcement>,
}

impl LimitReport {
    pub(crate) fn push(&mut self, limit: LimitKind, mechanism: Mechanism, note: Option<String>) {
        self.entries.push(Enforcement {
            limit,
            mechanism,
            note,
        });
    }

    /// Whether `mechanism` enforces `kind` (possibly besides another one).
    pub fn uses(&self, kind: LimitKind, mechanism: Mechanism) -> bool {
        self.entries
            .iter()
            .any(|e| e.limit == kind && e.mechanism == mechanism)
    }

    /// The (first) mechanism for `kind`, if it was requested.
    pub fn mechanism(&self, kind: LimitKind) -> Option<Mechanism> {
        self.entries
            .iter()
            .find(|e| e.limit == kind)
            .map(|e| e.mechanism)
    }

    /// Whether a limit of `kind` was requested.
    pub fn has(&self, kind: LimitKind) -> bool {
        self.entries.iter().any(|e| e.limit == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_limit() {
        let field = |l: ResourceLimits| match l.validate() {
            Err(Error::InvalidLimit { limit, .. }) => limit.name(),
            other => panic!("{other:?}"),
        };
        let base = ResourceLimits::default();
        assert!(base.validate().is_ok());
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(f64::NAN),
                ..base
            }),
            "cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(-1.0),
                ..base
            }),
            "cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_cpu: Some(f64::INFINITY),
                ..base
            }),
            "cpu"
        );
        assert_eq!(
            field(ResourceLimits {
                max_memory: Some(1024),
                ..base
            }),
            "memory"
        );
        assert_eq!(
            field(ResourceLimits {
                max_disk_io: Some(1),
                ..base
            }),
            "disk_io"
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
            "pids"
        );
        assert_eq!(
            field(ResourceLimits {
                max_open_files: Some(3),
                ..base
            }),
            "open_files"
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
            "cpu_time"
        );
        assert_eq!(
            field(ResourceLimits {
                max_file_size: Some(10),
                ..base
            }),
            "file_size"
        );
        assert!(ok.validate().is_ok());
    }
}
