//! The spawn extension point for upper layers (limits, auth).
//!
//! A hook runs in the parent before the child exists and describes what the child must do
//! between clone and exec as plain data ([`ChildSetup`]): set rlimits, write bytes to
//! pre-opened files (for example `0` to a `cgroup.procs`), receive file descriptors, get
//! variables, change its nice value. The child only executes that data with raw system calls, so
//! no Rust closure runs after clone and the spawn stays on the `CLONE_VM | CLONE_VFORK` path
//! (no page-table copy of a large parent: see the crate docs, "Spawning").

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::error::HookError;
use crate::status::{RawExit, StopCause};

/// A resource limit the child can be given with `setrlimit` before exec.
///
/// `RLIMIT_AS` is deliberately absent: the Claude CLI reserves ~33x its RSS in address space and
/// aborts under any useful address-space limit; memory limits belong to cgroups or RSS watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rlimit {
    /// Open files (`RLIMIT_NOFILE`).
    OpenFiles,
    /// Processes of the user (`RLIMIT_NPROC`).
    Processes,
    /// Core file size (`RLIMIT_CORE`).
    CoreSize,
    /// CPU seconds (`RLIMIT_CPU`): SIGXCPU at the soft limit, SIGKILL at the hard one.
    CpuSeconds,
    /// Largest file the process may write (`RLIMIT_FSIZE`).
    FileSize,
}

impl Rlimit {
    pub(crate) fn raw(self) -> libc::c_int {
        // The libc constants are `__rlimit_resource_t` (u32) on glibc; they are small.
        let raw = match self {
            Rlimit::OpenFiles => libc::RLIMIT_NOFILE,
            Rlimit::Processes => libc::RLIMIT_NPROC,
            Rlimit::CoreSize => libc::RLIMIT_CORE,
            Rlimit::CpuSeconds => libc::RLIMIT_CPU,
            Rlimit::FileSize => libc::RLIMIT_FSIZE,
        };
        raw as libc::c_int
    }
}

/// One step the child performs between clone and exec, in the order added.
#[derive(Debug)]
pub(crate) enum ChildAction {
    Rlimit {
        resource: libc::c_int,
        soft: u64,
        hard: u64,
    },
    Write {
        fd: OwnedFd,
        bytes: Vec<u8>,
    },
    Nice(i32),
}

/// The filesystem a sandboxed child sees (see [`ChildSetup::sandbox`]): the host's mounts,
/// read-only and without setuid, with private, hidden and writable directories on top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsView {
    /// Directories the child may write, bound at the same path (the rest is read-only).
    pub writable: Vec<PathBuf>,
    /// Directories replaced by an empty, private, writable tmpfs (`/tmp`, `/dev/shm`).
    pub private: Vec<PathBuf>,
    /// Directories replaced by an empty, read-only, mode-0 tmpfs (other sessions' state).
    pub hidden: Vec<PathBuf>,
    /// Files bound read-only at the same path after the private and hidden directories are in
    /// place (the target of an `/etc/resolv.conf` link that lives under a private `/run`).
    pub read_only: Vec<PathBuf>,
    /// Host files shown read-only in place of another path: (source, path in the view), for
    /// example a session's own `/etc/hosts`.
    pub replaced: Vec<(PathBuf, PathBuf)>,
}

/// The child's own namespaces: mount (showing an [`FsView`]), PID (the child is its init and
/// the program its first child: when the init dies the kernel ends the rest), IPC and UTS;
/// and optionally a network namespace given by descriptor.
#[derive(Debug)]
pub(crate) struct SandboxSetup {
    pub(crate) view: FsView,
    pub(crate) net: Option<OwnedFd>,
}

/// What hooks ask the child to do before exec. Built in the parent; executed by the child with
/// async-signal-safe system calls only.
#[derive(Debug, Default)]
pub struct ChildSetup {
    pub(crate) actions: Vec<ChildAction>,
    pub(crate) fds: Vec<(OwnedFd, i32)>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) identity: Option<(u32, u32)>,
    pub(crate) no_new_privs: bool,
    pub(crate) sandbox: Option<SandboxSetup>,
}

impl ChildSetup {
    /// Set a resource limit in the child (`soft <= hard`; `u64::MAX` is unlimited).
    pub fn set_rlimit(&mut self, limit: Rlimit, soft: u64, hard: u64) {
        self.actions.push(ChildAction::Rlimit {
            resource: limit.raw(),
            soft,
            hard,
        });
    }

    /// Have the child write `bytes` to `file` (opened by the hook in the parent) before exec.
    /// Writing `"0"` to an open `cgroup.procs` places the child in that cgroup before it runs.
    pub fn write_on_start(&mut self, file: OwnedFd, bytes: impl Into<Vec<u8>>) {
        self.actions.push(ChildAction::Write {
            fd: file,
            bytes: bytes.into(),
        });
    }

    /// Give the child `fd` as descriptor number `target` (3 or more), for example a pipe holding
    /// a token for `CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR`.
    pub fn pass_fd(&mut self, fd: OwnedFd, target: i32) -> Result<(), HookError> {
        if target < 3 {
            return Err(format!("target descriptor {target} would replace stdio").into());
        }
        if self.fds.iter().any(|(_, t)| *t == target) {
            return Err(format!("target descriptor {target} is given twice").into());
        }
        self.fds.push((fd, target));
        Ok(())
    }

    /// Set a variable in the child's environment (overrides the configuration's).
    pub fn set_env(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        self.env.push((name.into(), Some(value.into())));
    }

    /// Remove a variable from the child's environment (for example a competing credential).
    pub fn remove_env(&mut self, name: impl Into<OsString>) {
        self.env.push((name.into(), None));
    }

    /// Set the child's nice value (`setpriority`).
    pub fn set_nice(&mut self, nice: i32) {
        self.actions.push(ChildAction::Nice(nice));
    }

    /// Run the program as `uid`:`gid` with no supplementary groups. The change is the last
    /// step before exec, after every other action (cgroup writes need the manager's rights). If
    /// the uid cannot reach the program's path, it is executed through a descriptor the manager
    /// opened; a program file the uid may not execute fails the spawn naming its path.
    pub fn run_as(&mut self, uid: u32, gid: u32) {
        self.identity = Some((uid, gid));
    }

    /// Set `no_new_privs`: no exec of the child or its descendants gains privileges (setuid and
    /// setgid bits and file capabilities are ignored).
    pub fn no_new_privileges(&mut self) {
        self.no_new_privs = true;
    }

    /// Give the child its own mount, PID, IPC and UTS namespaces, with `view` as its
    /// filesystem and a fresh `/proc` showing only its own processes; with `net` (a network
    /// namespace descriptor, `/proc/<pid>/ns/net`) it also joins that network namespace.
    ///
    /// The child becomes the namespace's init: it starts the program as its only child,
    /// reaps orphans, forwards signals to the program and exits with its status, and the
    /// kernel ends every process left in the namespace when it does. Such a child is created
    /// by a copying clone rather than `CLONE_VM`, which costs a page-table copy of the
    /// manager. Needs `CAP_SYS_ADMIN` in the manager.
    pub fn sandbox(&mut self, view: FsView, net: Option<OwnedFd>) {
        self.sandbox = Some(SandboxSetup { view, net });
    }
}

/// An upper layer's hook into every spawn of a configuration.
///
/// [`SpawnHook::prepare`] is called once per spawn (so also once per restart) in the parent and
/// returns a per-spawn [`HookInstance`] that follows that child until its tree is gone.
pub trait SpawnHook: Send + Sync + 'static {
    /// A short name for errors and logs.
    fn name(&self) -> &str;

    /// Prepare one spawn: create what the child needs (a cgroup, a pipe holding a secret) and
    /// describe the child's part in `setup`. An error aborts the spawn; nothing is started.
    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError>;
}

/// The per-spawn part of a hook. Every method has a no-op default.
pub trait HookInstance: Send + Sync + 'static {
    /// The child exists with this pid (it may already have exec'd). `stopper` asks for its stop
    /// sequence, for enforcers that live as long as the instance (a soft limit, a timer); it
    /// does not keep the child alive.
    fn spawned(&mut self, _pid: u32, _stopper: &crate::Stopper) {}

    /// Processes this hook knows belong to the tree (for example the members of its cgroup);
    /// the stop sequence signals them in addition to what it finds in `/proc`.
    fn tree_members(&self) -> Vec<u32> {
        Vec::new()
    }

    /// The leader ended by itself: if an enforcer of this hook ended it (an OOM kill, say),
    /// return the cause so the exit is reported as [`crate::ExitReason::Enforced`].
    fn exited(&mut self, _exit: &RawExit) -> Option<StopCause> {
        None
    }

    /// The whole tree is gone: what this hook measured of it (a cgroup's CPU and memory
    /// accounting), read just before [`HookInstance::cleanup`].
    fn usage(&self) -> TreeUsage {
        TreeUsage::default()
    }

    /// The whole tree is gone: release what `prepare` created (remove the cgroup).
    fn cleanup(&mut self) {}
}

/// A whole tree's resource use as a hook measured it (a cgroup counts every process that was
/// ever in it, killed ones included), carried in [`crate::ExitInfo::tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TreeUsage {
    /// CPU time of the whole tree (`cpuacct.usage`, `cpu.stat`'s `usage_usec`).
    pub cpu_time: Option<std::time::Duration>,
    /// The tree's peak memory (`memory.max_usage_in_bytes`, `memory.peak`; page cache
    /// included, as the memory limit counts it).
    pub peak_memory_bytes: Option<u64>,
}

impl TreeUsage {
    /// What a hook measured: CPU time and peak memory, either unknown.
    pub fn new(cpu_time: Option<std::time::Duration>, peak_memory_bytes: Option<u64>) -> Self {
        TreeUsage {
            cpu_time,
            peak_memory_bytes,
        }
    }

    /// The larger of each figure of two measurements.
    pub fn max(self, other: TreeUsage) -> TreeUsage {
        TreeUsage {
            cpu_time: self.cpu_time.max(other.cpu_time),
            peak_memory_bytes: self.peak_memory_bytes.max(other.peak_memory_bytes),
        }
    }
}
