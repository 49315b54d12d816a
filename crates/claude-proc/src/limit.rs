//! The kinds of resource limit, shared by every crate that sets, enforces or reports one.
//!
//! The enum lives here, in the base crate, because a limit crosses crate boundaries: claude-limits
//! enforces it and names it in [`crate::StopCause::LimitExceeded`], claude-manager classifies the
//! exit and reports it. No crate decides anything by a limit's name as text.

use std::fmt;

/// One kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LimitKind {
    /// CPU rate in cores.
    Cpu,
    /// Memory of the whole tree.
    Memory,
    /// Storage IO in bytes per second.
    DiskIo,
    /// Wall-clock time.
    Timeout,
    /// Processes (and threads) in the tree.
    Pids,
    /// Open files per process.
    OpenFiles,
    /// Nice value.
    Nice,
    /// CPU time per process.
    CpuTime,
    /// Largest file a process may write.
    FileSize,
    /// Largest core dump.
    CoreSize,
}

impl LimitKind {
    /// Every kind, in declaration order.
    pub const ALL: [LimitKind; 10] = [
        LimitKind::Cpu,
        LimitKind::Memory,
        LimitKind::DiskIo,
        LimitKind::Timeout,
        LimitKind::Pids,
        LimitKind::OpenFiles,
        LimitKind::Nice,
        LimitKind::CpuTime,
        LimitKind::FileSize,
        LimitKind::CoreSize,
    ];

    /// The name used in reports, events and errors (`memory`, `pids`, `cpu_time`, ...).
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

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
