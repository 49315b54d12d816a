//! `ResourceLimits`, their validation, and the report of what enforces each one.

use std::fmt;
use std::time::Duration;

pub use claude_proc::LimitKind;

use crate::error::{Error, Result};
use crate::host::Host;

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

    /// Check every value: finite, positive, above a sane minimum, and within what this host
    /// and this process can give a child (the CPUs there are, `kernel.pid_max`, the hard
    /// limits a non-root process cannot raise, the nice values it may not lower to). Errors
    /// name the limit and the bound.
    pub fn validate(&self) -> Result<()> {
        self.validate_on(Host::current())
    }

    pub(crate) fn validate_on(&self, host: &Host) -> Result<()> {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let checks = [
            (
                LimitKind::Cpu,
                self.max_cpu.map(|c| (c.to_string(), check_cpu(c, host))),
            ),
            (
                LimitKind::Memory,
                self.max_memory
                    .map(|m| (m.to_string(), at_least(m, Self::MIN_MEMORY, size))),
            ),
            (
                LimitKind::DiskIo,
                self.max_disk_io.map(|r| {
                    (
                        r.to_string(),
                        at_least(r, Self::MIN_DISK_IO, |b| format!("{} per second", size(b))),
                    )
                }),
            ),
            (
                LimitKind::Timeout,
                self.timeout.map(|t| (millis(t), positive(t))),
            ),
            (
                LimitKind::Pids,
                self.max_pids.map(|p| (p.to_string(), check_pids(p, host))),
            ),
            (
                LimitKind::OpenFiles,
                self.max_open_files
                    .map(|n| (n.to_string(), check_open_files(n, host))),
            ),
            (
                LimitKind::Nice,
                self.nice.map(|n| (n.to_string(), check_nice(n, host))),
            ),
            (
                LimitKind::CpuTime,
                self.max_cpu_time.map(|t| {
                    (
                        millis(t),
                        positive(t).or_else(|| below_hard(secs(t), host.cpu_hard, host, "seconds")),
                    )
                }),
            ),
            (
                LimitKind::FileSize,
                self.max_file_size.map(|b| {
                    (
                        b.to_string(),
                        at_least(b, Self::MIN_FILE_SIZE, size)
                            .or_else(|| below_hard(b, host.fsize_hard, host, "bytes")),
                    )
                }),
            ),
            (
                LimitKind::CoreSize,
                self.max_core_size
                    .map(|b| (b.to_string(), below_hard(b, host.core_hard, host, "bytes"))),
            ),
        ];
        for (limit, checked) in checks {
            if let Some((value, Some(why))) = checked {
                return Err(Error::InvalidLimit { limit, value, why });
            }
        }
        Ok(())
    }
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn positive(d: Duration) -> Option<String> {
    d.is_zero().then(|| "must be positive".to_owned())
}

fn at_least(value: u64, min: u64, show: fn(u64) -> String) -> Option<String> {
    (value < min).then(|| format!("must be at least {}", show(min)))
}

fn check_cpu(cores: f64, host: &Host) -> Option<String> {
    if !cores.is_finite() || cores < ResourceLimits::MIN_CPU {
        return Some(format!(
            "must be a number of cores >= {}",
            ResourceLimits::MIN_CPU
        ));
    }
    (cores > f64::from(host.cpus))
        .then(|| format!("must be at most {}, the CPUs of this host", host.cpus))
}

fn check_pids(pids: u64, host: &Host) -> Option<String> {
    if pids < ResourceLimits::MIN_PIDS {
        return Some(format!("must be at least {}", ResourceLimits::MIN_PIDS));
    }
    (pids > host.pid_max).then(|| {
        format!(
            "must be at most {}, this host's kernel.pid_max",
            host.pid_max
        )
    })
}

fn check_open_files(files: u64, host: &Host) -> Option<String> {
    if files < ResourceLimits::MIN_OPEN_FILES {
        return Some(format!(
            "must be at least {}",
            ResourceLimits::MIN_OPEN_FILES
        ));
    }
    if files > host.nr_open {
        return Some(format!(
            "must be at most {}, this host's fs.nr_open",
            host.nr_open
        ));
    }
    below_hard(files, host.nofile_hard, host, "descriptors")
}

fn check_nice(nice: i32, host: &Host) -> Option<String> {
    if !ResourceLimits::NICE.contains(&nice) {
        return Some(format!(
            "must be within {}..={}",
            ResourceLimits::NICE.start(),
            ResourceLimits::NICE.end()
        ));
    }
    (nice < host.nice_floor).then(|| {
        format!(
            "must be at least {}: a lower nice value needs root (or RLIMIT_NICE)",
            host.nice_floor
        )
    })
}

/// A non-root process cannot give a child more than its own hard limit.
fn below_hard(value: u64, hard: u64, host: &Host, unit: &str) -> Option<String> {
    let ceiling = host.rlimit_ceiling(hard, u64::MAX);
    (value > ceiling).then(|| {
        format!(
            "must be at most {ceiling} {unit}, this process's hard limit (only root may raise it)"
        )
    })
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
