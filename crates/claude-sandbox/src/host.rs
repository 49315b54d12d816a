//! What this host, and this manager's privileges, can give; and each level's promises with
//! what enforces them, for `doctor` and the session's report.

use std::fmt;

use crate::level::Level;

/// A promise an isolation level makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Promise {
    /// The session runs under its own uid and gid, no supplementary groups.
    OwnUid,
    /// No exec gains privileges (setuid binaries, file capabilities).
    NoNewPrivileges,
    /// Only the session can enter its home and config directory.
    PrivateHome,
    /// The session may use its working directory; other uids get no new access to it.
    WorkdirAccess,
    /// Nothing of the session's processes is left after its end.
    NothingLeftBehind,
    /// The host's filesystem is read-only; only the session's directories are writable.
    ReadOnlyHost,
    /// Private `/tmp`, `/var/tmp`, `/dev/shm` and `/run`.
    PrivateTmp,
    /// Only its own processes exist for it (`/proc`, signals, ptrace).
    OwnProcesses,
    /// Its own System V IPC and POSIX message queues, and its own hostname.
    OwnIpcAndHostname,
}

/// What enforces a promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// `setresuid`/`setresgid`/`setgroups` before exec, the uid leased from the range.
    Setuid,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// Ownership and mode 0700.
    Mode0700,
    /// A POSIX ACL entry for the uid on the tree, taken back at the end.
    PosixAcl,
    /// Every process of the uid killed before the uid is released.
    UidSweep,
    /// The PID namespace: its init's death ends the rest.
    PidNamespace,
    /// A mount namespace with a read-only, `nosuid` view.
    MountNamespace,
    /// IPC and UTS namespaces.
    IpcUtsNamespaces,
}

impl fmt::Display for Promise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Promise::OwnUid => "own uid and gid",
            Promise::NoNewPrivileges => "no new privileges",
            Promise::PrivateHome => "private home and config directory",
            Promise::WorkdirAccess => "working directory access",
            Promise::NothingLeftBehind => "nothing left behind",
            Promise::ReadOnlyHost => "read-only host",
            Promise::PrivateTmp => "private /tmp, /var/tmp, /dev/shm, /run",
            Promise::OwnProcesses => "only its own processes",
            Promise::OwnIpcAndHostname => "own IPC and hostname",
        })
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Setuid => "setuid to a leased uid",
            Mechanism::NoNewPrivs => "no_new_privs",
            Mechanism::Mode0700 => "owner-only mode",
            Mechanism::PosixAcl => "POSIX ACL",
            Mechanism::UidSweep => "uid sweep at release",
            Mechanism::PidNamespace => "PID namespace",
            Mechanism::MountNamespace => "mount namespace",
            Mechanism::IpcUtsNamespaces => "IPC and UTS namespaces",
        })
    }
}

/// What this host and this manager can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostSupport {
    /// The manager runs as root (needed to switch uids and mount).
    pub root: bool,
    /// Mount, PID, IPC and UTS namespaces can be created (`/proc/sys/user/max_*_namespaces`).
    pub namespaces: bool,
    /// The kernel has `mount_setattr` (5.12 and later).
    pub mount_api: bool,
}

fn namespaces_allowed() -> bool {
    ["mnt", "pid", "ipc", "uts"].iter().all(|ns| {
        std::fs::read_to_string(format!("/proc/sys/user/max_{ns}_namespaces"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    })
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

impl HostSupport {
    /// Look at this host.
    pub fn probe() -> HostSupport {
        HostSupport {
            root: nix::unistd::geteuid().is_root(),
            namespaces: namespaces_allowed(),
            mount_api: kernel_at_least(5, 12),
        }
    }

    /// What is missing for `level`, for people; `None` when it can be enforced.
    pub fn missing(&self, level: Level) -> Option<String> {
        let mut missing = Vec::new();
        if level >= Level::User && !self.root {
            missing.push(
                "root: a manager that is not root cannot run sessions under other uids; an \
                 unprivileged user namespace would map only its own uid, which separates \
                 nothing between sessions of one manager",
            );
        }
        if level >= Level::Sandbox && !self.namespaces {
            missing.push("mount, PID, IPC and UTS namespaces (a max_*_namespaces sysctl is 0)");
        }
        if level >= Level::Sandbox && !self.mount_api {
            missing.push("the mount API of Linux 5.12 or later (mount_setattr)");
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// Each promise of `level` with what enforces it.
    pub fn promises(level: Level) -> Vec<(Promise, Mechanism)> {
        let mut out = Vec::new();
        if level >= Level::User {
            out.extend([
                (Promise::OwnUid, Mechanism::Setuid),
                (Promise::NoNewPrivileges, Mechanism::NoNewPrivs),
                (Promise::PrivateHome, Mechanism::Mode0700),
                (Promise::WorkdirAccess, Mechanism::PosixAcl),
                (Promise::NothingLeftBehind, Mechanism::UidSweep),
            ]);
        }
        if level >= Level::Sandbox {
            out.extend([
                (Promise::NothingLeftBehind, Mechanism::PidNamespace),
                (Promise::ReadOnlyHost, Mechanism::MountNamespace),
                (Promise::PrivateTmp, Mechanism::MountNamespace),
                (Promise::OwnProcesses, Mechanism::PidNamespace),
                (Promise::OwnIpcAndHostname, Mechanism::IpcUtsNamespaces),
            ]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that lacks something names it for the level that needs it, and only for that.
    #[test]
    fn what_a_host_lacks_is_named_for_the_level_that_needs_it() {
        let full = HostSupport {
            root: true,
            namespaces: true,
            mount_api: true,
        };
        assert_eq!(full.missing(Level::Sandbox), None);
        let unprivileged = HostSupport {
            root: false,
            ..full
        };
        let why = unprivileged.missing(Level::User).unwrap_or_default();
        assert!(
            why.contains("root") && why.contains("user namespace"),
            "{why}"
        );
        let no_ns = HostSupport {
            namespaces: false,
            ..full
        };
        assert_eq!(no_ns.missing(Level::User), None);
        let why = no_ns.missing(Level::Sandbox).unwrap_or_default();
        assert!(why.contains("namespaces"), "{why}");
        let old = HostSupport {
            mount_api: false,
            ..full
        };
        assert!(old
            .missing(Level::Sandbox)
            .unwrap_or_default()
            .contains("5.12"));
        assert_eq!(HostSupport::promises(Level::None), Vec::new());
        assert!(
            HostSupport::promises(Level::Sandbox).len() > HostSupport::promises(Level::User).len()
        );
    }

    /// This machine (root, namespaces, Linux 6.18) gives every level.
    #[test]
    fn this_host_gives_every_level() {
        let host = HostSupport::probe();
        if std::env::var_os("CLAUDE_PM_STRICT").is_some() {
            assert_eq!(host.missing(Level::Sandbox), None, "{host:?}");
        }
    }
}
