//! What this host and this process allow: the bounds a limit is checked against before any
//! spawn, so a value the kernel would refuse between clone and exec (`EINVAL`, `EPERM`) is a
//! clear error up front instead of a failed start.

use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, Resource};

/// The host's and this process's bounds, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Host {
    /// Online CPUs.
    pub(crate) cpus: u32,
    /// `kernel.pid_max`.
    pub(crate) pid_max: u64,
    /// Whether this process runs as root (may raise hard limits, lower nice values).
    pub(crate) root: bool,
    /// This process's hard `RLIMIT_NOFILE`.
    pub(crate) nofile_hard: u64,
    /// `fs.nr_open`: no process may have more descriptors, root included.
    pub(crate) nr_open: u64,
    /// This process's hard `RLIMIT_CPU`, `RLIMIT_FSIZE`, `RLIMIT_CORE` (`u64::MAX`: unlimited).
    pub(crate) cpu_hard: u64,
    pub(crate) fsize_hard: u64,
    pub(crate) core_hard: u64,
    /// The lowest nice value this process may give a child.
    pub(crate) nice_floor: i32,
}

impl Host {
    /// This host, read once per process.
    pub(crate) fn current() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(Host::read)
    }

    fn read() -> Host {
        // SAFETY: sysconf, geteuid and getpriority take no pointers.
        let (cpus, root, nice) = unsafe {
            (
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
                libc::geteuid() == 0,
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        };
        let number = |path: &str, default: u64| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(default)
        };
        // RLIMIT_NICE allows nice values down to 20 - its soft limit.
        let rlimit_nice = i32::try_from(soft_limit(Resource::RLIMIT_NICE).min(40)).unwrap_or(0);
        Host {
            cpus: u32::try_from(cpus).ok().filter(|n| *n > 0).unwrap_or(1),
            pid_max: number("/proc/sys/kernel/pid_max", 4_194_304),
            root,
            nofile_hard: hard_limit(Resource::RLIMIT_NOFILE),
            nr_open: number("/proc/sys/fs/nr_open", 1 << 20),
            cpu_hard: hard_limit(Resource::RLIMIT_CPU),
            fsize_hard: hard_limit(Resource::RLIMIT_FSIZE),
            core_hard: hard_limit(Resource::RLIMIT_CORE),
            nice_floor: if root {
                -20
            } else {
                nice.min(20 - rlimit_nice)
            },
        }
    }

    /// The most a child may get of an rlimit whose hard limit here is `hard`: anything for root
    /// (up to `cap`), no more than the hard limit for anyone else.
    pub(crate) fn rlimit_ceiling(&self, hard: u64, cap: u64) -> u64 {
        if self.root {
            cap
        } else {
            hard.min(cap)
        }
    }
}

fn hard_limit(resource: Resource) -> u64 {
    getrlimit(resource).map_or(libc::RLIM_INFINITY, |(_, hard)| hard)
}

fn soft_limit(resource: Resource) -> u64 {
    getrlimit(resource).map_or(libc::RLIM_INFINITY, |(soft, _)| soft)
}

/// Whether this process may create entries in `dir` (a cgroup parent): write and search
/// permission for the effective user.
pub(crate) fn writable(dir: &std::path::Path) -> bool {
    use nix::fcntl::AtFlags;
    use nix::unistd::{faccessat, AccessFlags};
    faccessat(
        None,
        dir,
        AccessFlags::W_OK | AccessFlags::X_OK,
        AtFlags::AT_EACCESS,
    )
    .is_ok()
}
