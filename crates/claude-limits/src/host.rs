//! What this host and this process allow: the bounds a limit is checked against before any
//! spawn, so a value the kernel would refuse between clone and exec (`EINVAL`, `EPERM`) is a
//! clear error up front instead of a failed start.

use std::sync::OnceLock;

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
        let rlimit_nice = i32::try_from(soft_limit(libc::RLIMIT_NICE).min(40)).unwrap_or(0);
        Host {
            cpus: u32::try_from(cpus).ok().filter(|n| *n > 0).unwrap_or(1),
            pid_max: number("/proc/sys/kernel/pid_max", 4_194_304),
            root,
            nofile_hard: hard_limit(libc::RLIMIT_NOFILE),
            nr_open: number("/proc/sys/fs/nr_open", 1 << 20),
            cpu_hard: hard_limit(libc::RLIMIT_CPU),
            fsize_hard: hard_limit(libc::RLIMIT_FSIZE),
            core_hard: hard_limit(libc::RLIMIT_CORE),
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

fn rlimit(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe {
        libc::getrlimit(resource, &mut lim);
    }
    lim
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    rlimit(resource).rlim_max
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> u64 {
    rlimit(resource).rlim_cur
}

/// Whether this process may create entries in `dir` (a cgroup parent): write and search
/// permission for the effective user.
pub(crate) fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: faccessat with a valid C string and no other pointers.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}
