//! The sandboxed child: a private filesystem view in its own mount namespace, and the init of
//! its own PID namespace.
//!
//! Prepared in the parent as C strings ([`SandboxPlan::prepare`]); the child (a copying clone
//! in new mount, PID, IPC and UTS namespaces) runs [`enter`] and then [`run_init`] with raw
//! system calls only. The view is built with the mount API: a recursive clone of `/` made
//! read-only and `nosuid` in one `mount_setattr`, tmpfs over the private and hidden
//! directories, clones of the writable directories taken *before* anything covers them, a
//! fresh `/proc`, then `pivot_root` and a lazy unmount of the old root.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::hook::SandboxSetup;

/// Where the child mounts a scratch tmpfs (in its own namespace only) to assemble the new root.
const STAGING: &CStr = c"/tmp";
/// The new root, inside the scratch tmpfs.
const NEW_ROOT: &str = "/tmp/.claude-proc-root";
/// Binds a view may have (the child keeps their descriptors in a fixed array).
pub(crate) const MAX_BINDS: usize = 32;

/// Steps the sandboxed child reports on failure (numbers continue the spawn's list).
pub(crate) const STEPS: &[&str] = &[
    "mount namespace (make / private)",
    "open_tree (clone a directory for the view)",
    "mount_setattr (read-only view)",
    "mount tmpfs",
    "move_mount (attach a directory to the view)",
    "mount /proc",
    "pivot_root",
    "setns (network namespace)",
    "setgroups/setgid/setuid",
    "prctl(PR_SET_NO_NEW_PRIVS)",
    "fork the program (namespace init)",
];
/// The number of the first step in [`STEPS`].
pub(crate) const FIRST_STEP: i32 = 100;
const STEP_PRIVATE: i32 = FIRST_STEP;
const STEP_OPEN_TREE: i32 = FIRST_STEP + 1;
const STEP_SETATTR: i32 = FIRST_STEP + 2;
const STEP_TMPFS: i32 = FIRST_STEP + 3;
const STEP_MOVE: i32 = FIRST_STEP + 4;
const STEP_PROC: i32 = FIRST_STEP + 5;
const STEP_PIVOT: i32 = FIRST_STEP + 6;
const STEP_SETNS: i32 = FIRST_STEP + 7;
pub(crate) const STEP_IDENTITY: i32 = FIRST_STEP + 8;
pub(crate) const STEP_NO_NEW_PRIVS: i32 = FIRST_STEP + 9;
pub(crate) const STEP_FORK: i32 = FIRST_STEP + 10;

/// A directory or file of the host bound into the view.
#[derive(Debug)]
struct Bind {
    source: CString,
    /// Directories to create (in a tmpfs) up to the mount point; failures are ignored.
    dirs: Vec<CString>,
    /// For a file: the empty file to create as its mount point.
    file: bool,
    target: CString,
    writable: bool,
}

/// A tmpfs mounted over a directory of the view.
#[derive(Debug)]
struct Tmpfs {
    target: CString,
    flags: libc::c_ulong,
    data: CString,
}

/// The sandbox, as the child needs it.
#[derive(Debug)]
pub(crate) struct SandboxPlan {
    binds: Vec<Bind>,
    tmpfs: Vec<Tmpfs>,
    root: CString,
    proc_target: CString,
    net: Option<OwnedFd>,
    /// This process's argument and environment areas (`/proc/self/stat` fields 48-51): the
    /// init, a copy of this process that never execs, blanks its copies so `/proc/1/cmdline`
    /// shows a name instead of the manager's command line.
    areas: [(usize, usize); 2],
    /// A pidfd of this process: the child checks it after arming its parent-death signal
    /// (`getppid` says 0 across a PID namespace).
    pub(crate) parent: OwnedFd,
}

fn cstr(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidSandboxPath {
        path: PathBuf::from(std::ffi::OsStr::from_bytes(bytes)),
        problem: "contains a NUL byte",
    })
}

/// `path` under the new root.
fn inside(path: &Path) -> Result<CString> {
    let mut bytes = NEW_ROOT.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    cstr(&bytes)
}

/// Every ancestor of `path` (and `path` itself with `include_self`) under the new root.
fn dirs_to(path: &Path, include_self: bool) -> Result<Vec<CString>> {
    let mut out = Vec::new();
    let mut at = PathBuf::from("/");
    let parts: Vec<Component<'_>> = path.components().skip(1).collect();
    let keep = if include_self {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    for part in parts.into_iter().take(keep) {
        at.push(part);
        out.push(inside(&at)?);
    }
    Ok(out)
}

/// The canonical form of a path the view names, which must exist.
fn existing(path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::InvalidSandboxPath {
            path: path.to_path_buf(),
            problem: "is not absolute",
        });
    }
    std::fs::canonicalize(path).map_err(|_| Error::InvalidSandboxPath {
        path: path.to_path_buf(),
        problem: "does not exist",
    })
}

impl SandboxPlan {
    /// Check and prepare `setup`'s view: writable and read-only paths must exist; private and
    /// hidden directories that do not exist on this host are skipped.
    pub(crate) fn prepare(setup: SandboxSetup) -> Result<Self> {
        let SandboxSetup { view, net } = setup;
        let mut tmpfs = Vec::new();
        let tmpfs_kinds = [
            (&view.private, 0, c"mode=1777"),
            (&view.hidden, libc::MS_RDONLY, c"mode=000"),
        ];
        let private: Vec<PathBuf> = view
            .private
            .iter()
            .filter_map(|p| existing(p).ok())
            .collect();
        for (paths, flags, data) in tmpfs_kinds {
            for path in paths {
                let Ok(path) = existing(path) else { continue };
                // Under a private directory it is hidden already (and its mount point is gone).
                let covered = private.iter().any(|p| path != *p && path.starts_with(p));
                if !path.is_dir() || covered {
                    continue;
                }
                tmpfs.push(Tmpfs {
                    target: inside(&path)?,
                    flags: flags | libc::MS_NOSUID | libc::MS_NODEV,
                    data: data.to_owned(),
                });
            }
        }
        let mut binds = Vec::new();
        let bind_kinds = [(&view.writable, true), (&view.read_only, false)];
        for (paths, writable) in bind_kinds {
            for path in paths {
                let path = existing(path)?;
                let file = !path.is_dir();
                binds.push(Bind {
                    source: cstr(path.as_os_str().as_bytes())?,
                    dirs: dirs_to(&path, !file)?,
                    file,
                    target: inside(&path)?,
                    writable,
                });
            }
        }
        for (source, target) in &view.replaced {
            let source = existing(source)?;
            let target = existing(target)?;
            binds.push(Bind {
                source: cstr(source.as_os_str().as_bytes())?,
                dirs: dirs_to(&target, false)?,
                file: !source.is_dir(),
                target: inside(&target)?,
                writable: false,
            });
        }
        if binds.len() > MAX_BINDS {
            return Err(Error::InvalidSandboxPath {
                path: PathBuf::from("/"),
                problem: "the view has more than 32 bound paths",
            });
        }
        // A bind inside another lands on top of it: shorter targets first.
        binds.sort_by_key(|b| b.target.as_bytes().len());
        tmpfs.sort_by_key(|t| t.target.as_bytes().len());
        Ok(SandboxPlan {
            binds,
            tmpfs,
            root: cstr(NEW_ROOT.as_bytes())?,
            proc_target: inside(Path::new("/proc"))?,
            net,
            areas: own_areas().unwrap_or_default(),
            parent: super::pidfd::open(std::process::id())
                .map_err(|e| Error::os("open a pidfd of this process", e))?,
        })
    }
}

/// `arg_start..arg_end` and `env_start..env_end` of this process.
fn own_areas() -> Option<[(usize, usize); 2]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // The first field after the command's name is field 3.
    let field = |n: usize| rest.split_whitespace().nth(n - 3)?.parse::<usize>().ok();
    let areas = [(field(48)?, field(49)?), (field(50)?, field(51)?)];
    areas.iter().all(|(a, b)| a < b).then_some(areas)
}

/// The init's name in `/proc/1/cmdline`.
const INIT_NAME: &[u8] = b"claude-proc-init\0";

/// Blank the argument and environment areas of this (copied) process and name it.
///
/// # Safety
/// Only in the init, whose memory is its own copy; the areas are the stack pages the kernel
/// placed the arguments and environment in.
unsafe fn blank_areas(areas: &[(usize, usize); 2]) {
    for &(start, end) in areas {
        if start == 0 || end <= start {
            continue;
        }
        // SAFETY: the range is mapped and writable in this process (the caller's contract).
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
    }
    let (start, end) = areas[0];
    if start != 0 && end - start >= INIT_NAME.len() {
        // SAFETY: as above, within the argument area.
        unsafe {
            std::ptr::copy_nonoverlapping(INIT_NAME.as_ptr(), start as *mut u8, INIT_NAME.len())
        };
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A detached, recursive clone of `path` with `set` and `clear` applied, or -1.
///
/// # Safety
/// Raw system calls on a C string; async-signal-safe.
unsafe fn clone_tree(path: &CStr, set: u64, clear: u64, recursive: bool) -> Result<RawFd, i32> {
    // SAFETY: open_tree and mount_setattr with valid strings and a struct we own.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        ) as RawFd;
        if fd < 0 {
            return Err(STEP_OPEN_TREE);
        }
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clear,
            propagation: libc::MS_PRIVATE,
            userns_fd: 0,
        };
        let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if rc != 0 {
            return Err(STEP_SETATTR);
        }
        Ok(fd)
    }
}

/// Enter the view: on failure, the step (errno is left set).
///
/// # Safety
/// Only in the sandboxed child (its own mount namespace), between clone and exec.
pub(crate) unsafe fn enter(plan: &SandboxPlan) -> Result<(), i32> {
    // SAFETY: raw mount system calls on strings the parent prepared; the namespace is ours.
    unsafe {
        let none = std::ptr::null::<libc::c_char>();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(STEP_PRIVATE);
        }
        let root = clone_tree(c"/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, true)?;
        // Every bound directory is cloned before the scratch tmpfs or any private one can
        // cover it.
        let mut fds = [-1 as RawFd; MAX_BINDS];
        for (slot, bind) in fds.iter_mut().zip(&plan.binds) {
            let (set, clear) = if bind.writable {
                (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY)
            } else {
                (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0)
            };
            *slot = clone_tree(&bind.source, set, clear, false)?;
        }
        if libc::mount(
            c"tmpfs".as_ptr(),
            STAGING.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        ) != 0
        {
            return Err(STEP_TMPFS);
        }
        libc::mkdir(plan.root.as_ptr(), 0o700);
        move_into(root, &plan.root)?;
        for t in &plan.tmpfs {
            if libc::mount(
                c"tmpfs".as_ptr(),
                t.target.as_ptr(),
                c"tmpfs".as_ptr(),
                t.flags,
                t.data.as_ptr().cast(),
            ) != 0
            {
                return Err(STEP_TMPFS);
            }
        }
        for (fd, bind) in fds.iter().zip(&plan.binds) {
            for dir in &bind.dirs {
                libc::mkdir(dir.as_ptr(), 0o755);
            }
            if bind.file {
                let f = libc::open(
                    bind.target.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                );
                if f >= 0 {
                    libc::close(f);
                }
            }
            move_into(*fd, &bind.target)?;
        }
        let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            plan.proc_target.as_ptr(),
            c"proc".as_ptr(),
            proc_flags,
            std::ptr::null(),
        ) != 0
        {
            return Err(STEP_PROC);
        }
        if libc::chdir(plan.root.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err(STEP_PIVOT);
        }
        if let Some(net) = &plan.net {
            if libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(STEP_SETNS);
            }
        }
        Ok(())
    }
}

/// Attach the detached mount `fd` at `target` and close it.
///
/// # Safety
/// Raw system calls; async-signal-safe.
unsafe fn move_into(fd: RawFd, target: &CStr) -> Result<(), i32> {
    // SAFETY: move_mount of a descriptor we own onto a path string.
    unsafe {
        let rc = libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        libc::close(fd);
        if rc != 0 {
            return Err(STEP_MOVE);
        }
    }
    Ok(())
}

/// Whether the process behind `pidfd` has exited (its pidfd polls readable).
///
/// # Safety
/// A raw `poll`; async-signal-safe.
pub(crate) unsafe fn exited(pidfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own, without waiting.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// Be the namespace's init: start the program (`exec` runs in the new process and does not
/// return), then reap every child, forward every signal to the program, and exit with the
/// program's status once it ends (the raw wait status goes to `status_fd` first, so the
/// manager reports a signal as a signal). The kernel then ends what is left in the namespace.
///
/// # Safety
/// Only as PID 1 of the child's namespace, with every signal blocked; raw system calls only.
pub(crate) unsafe fn run_init(
    plan: &SandboxPlan,
    status_fd: RawFd,
    err_fd: RawFd,
    exec: impl Fn() -> i32,
) -> i32 {
    // SAFETY: raw fork (no atfork handlers: other threads' locks were copied held), waits,
    // kills and writes on descriptors we own.
    unsafe {
        let pid = libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t;
        if pid == 0 {
            return exec();
        }
        if pid < 0 {
            return STEP_FORK;
        }
        // The manager learns of a successful exec from end-of-file on the error pipe, and of
        // the program's end from end-of-file on its output: hold none of them, nor anything
        // else (a credential's pipe), only the status pipe.
        libc::close(err_fd);
        libc::syscall(
            libc::SYS_close_range,
            0u32,
            (status_fd - 1) as libc::c_uint,
            0u32,
        );
        libc::syscall(
            libc::SYS_close_range,
            (status_fd + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0u32,
        );
        blank_areas(&plan.areas);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        loop {
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig == libc::SIGCHLD {
                loop {
                    let mut status: libc::c_int = 0;
                    let got = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if got <= 0 {
                        break;
                    }
                    if got == pid {
                        let bytes = status.to_ne_bytes();
                        libc::write(status_fd, bytes.as_ptr().cast(), bytes.len());
                        let code = if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        };
                        libc::_exit(code);
                    }
                }
            } else if sig > 0 {
                libc::kill(pid, sig);
            }
        }
    }
}

/// The program's raw wait status the init wrote before exiting, as the exit to report.
pub(crate) fn read_status(fd: &OwnedFd) -> Option<crate::status::RawExit> {
    let mut bytes = [0u8; 4];
    // SAFETY: a non-blocking read into a buffer we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    if n != 4 {
        return None;
    }
    let status = libc::c_int::from_ne_bytes(bytes);
    Some(if libc::WIFEXITED(status) {
        crate::status::RawExit {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    } else {
        crate::status::RawExit {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    })
}

/// A pipe whose ends are close-on-exec, the write end at `floor` or above.
pub(crate) fn high_pipe(floor: RawFd) -> Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("create a pipe for the child", e.into()))?;
    Ok((read, super::fds::dup_above(&write, floor)?))
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

/// What a copying child wrote to its error pipe before end-of-file: (step, errno), or (0, 0)
/// once the program was executed.
pub(crate) fn read_failure(fd: &OwnedFd) -> (i32, i32) {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if got < buf.len() {
        return (0, 0);
    }
    let word = |i: usize| i32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    (word(0), word(4))
}
