//! Process creation with `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on one long-lived thread.
//!
//! Why not `std::process::Command`: any `pre_exec` closure (needed for the parent-death signal,
//! cgroup placement and rlimits) moves std to fork+exec, which copies the parent's page tables:
//! ~39 ms per spawn from a 1 GiB parent against ~0.75 ms for posix_spawn. This is what
//! posix_spawn itself does (glibc uses the same clone flags), plus the few steps we need.
//!
//! Why one thread: the parent-death signal fires when the *thread* that created the child exits.
//! The spawner thread is started once and never exits, so children die with the process, not
//! with a tokio worker that happened to spawn them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, OnceLock};

use crate::error::{Error, Result};
use crate::hook::{ChildAction, SandboxSetup};
use crate::sys::fds::{close_inherited_on_exec, dup_above, fd_ceiling};
use crate::sys::sandbox::{self, high_pipe, read_failure, set_nonblocking, SandboxPlan};

/// How one of the child's standard descriptors is set up.
#[derive(Debug)]
pub(crate) enum StdFd {
    /// Keep the parent's.
    Inherit,
    /// Duplicate this descriptor onto it.
    Fd(OwnedFd),
}

/// Everything the child needs, prepared in the parent.
#[derive(Debug)]
pub(crate) struct SpawnRequest {
    pub(crate) program: CString,
    pub(crate) argv: Vec<CString>,
    pub(crate) envp: Vec<CString>,
    pub(crate) cwd: Option<CString>,
    pub(crate) stdio: [StdFd; 3],
    pub(crate) extra_fds: Vec<(OwnedFd, i32)>,
    pub(crate) actions: Vec<ChildAction>,
    pub(crate) new_session: bool,
    /// Skip the parent-death signal (the watchdog must outlive a killed manager).
    pub(crate) survive_parent: bool,
    /// Put the child's process group in the foreground of stdin's terminal before exec.
    pub(crate) foreground_terminal: bool,
    /// Run as this uid and gid, without supplementary groups.
    pub(crate) identity: Option<(u32, u32)>,
    pub(crate) no_new_privs: bool,
    /// The program opened by the manager, executed through the descriptor when the child's
    /// identity cannot reach its path.
    pub(crate) program_fd: Option<OwnedFd>,
    pub(crate) sandbox: Option<SandboxSetup>,
}

/// A created child.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    /// For a sandboxed child (the init of its own PID namespace): where the init writes the
    /// program's wait status before it exits.
    pub(crate) status: Option<OwnedFd>,
}

type Reply = tokio::sync::oneshot::Sender<Result<Spawned>>;

struct Job {
    request: SpawnRequest,
    reply: Reply,
}

fn spawner() -> Result<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("claude-proc-spawner".into())
                .spawn(move || spawner_thread(rx))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
        .ok_or(Error::SpawnerGone)
}

/// Spawn through the spawner thread.
pub(crate) async fn spawn(request: SpawnRequest) -> Result<Spawned> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    spawner()?
        .send(Job { request, reply })
        .map_err(|_| Error::SpawnerGone)?;
    rx.await.map_err(|_| Error::SpawnerGone)?
}

const CHILD_STACK: usize = 128 * 1024;

fn spawner_thread(rx: mpsc::Receiver<Job>) {
    // This thread never handles signals: block them all once, so the child starts with every
    // signal blocked and cannot run a parent handler before it has reset them.
    // SAFETY: plain libc calls on a local, zero-initialised sigset.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let mut stack = vec![0u8; CHILD_STACK];
    while let Ok(Job { request, reply }) = rx.recv() {
        let result = spawn_now(request, &mut stack);
        let _ = reply.send(result);
    }
}

/// Steps the child reports on failure.
const STEPS: &[&str] = &[
    "none",
    "setsid/setpgid",
    "prctl(PR_SET_PDEATHSIG)",
    "parent check",
    "setrlimit",
    "write (hook)",
    "setpriority",
    "close_range",
    "dup2",
    "chdir",
    "execve",
];
const STEP_PGID: i32 = 1;
const STEP_PDEATHSIG: i32 = 2;
const STEP_PARENT: i32 = 3;
const STEP_RLIMIT: i32 = 4;
const STEP_WRITE: i32 = 5;
const STEP_NICE: i32 = 6;
const STEP_CLOSE: i32 = 7;
const STEP_DUP: i32 = 8;
const STEP_CHDIR: i32 = 9;
const STEP_EXEC: i32 = 10;

/// The child's view: raw pointers and plain slices only.
struct ChildPlan<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    new_session: bool,
    survive_parent: bool,
    foreground_terminal: bool,
    parent: libc::pid_t,
    /// (source, target): sources are all above every target, so order does not matter.
    moves: &'a [(RawFd, RawFd)],
    rlimits: &'a [(libc::c_int, u64, u64)],
    writes: &'a [(RawFd, *const u8, usize)],
    nice: Option<i32>,
    identity: Option<(u32, u32)>,
    no_new_privs: bool,
    program_fd: RawFd,
    sandbox: Option<&'a SandboxPlan>,
    /// With a copying clone (a sandbox), where the child reports a failed step: the step and
    /// errno as two native-endian `i32`; end-of-file means the program was executed.
    err_fd: RawFd,
    /// The write end of [`Spawned::status`], or -1.
    status_fd: RawFd,
    /// The soft descriptor limit: the highest descriptor the fallback marks, if `close_range`
    /// is missing (kernels before 5.11).
    fd_ceiling: RawFd,
    err_step: AtomicI32,
    err_errno: AtomicI32,
}

/// Every descriptor the child gets, duplicated above every target so dup2 in the child never
/// clobbers one: the duplicates (held until the child has exec'd) and the (source, target) moves.
#[expect(
    clippy::type_complexity,
    reason = "two lists built together, returned once"
)]
fn descriptor_moves(
    stdio: [StdFd; 3],
    extra_fds: Vec<(OwnedFd, RawFd)>,
) -> Result<(Vec<OwnedFd>, Vec<(RawFd, RawFd)>)> {
    let max_target = extra_fds.iter().map(|(_, t)| *t).max().unwrap_or(2).max(2);
    let floor = max_target + 1;
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut moves: Vec<(RawFd, RawFd)> = Vec::new();
    let stdio_moves = stdio
        .into_iter()
        .enumerate()
        .filter_map(|(target, fd)| match fd {
            StdFd::Inherit => None,
            StdFd::Fd(fd) => Some((fd, target as i32)),
        });
    for (fd, target) in stdio_moves.chain(extra_fds) {
        let high = dup_above(&fd, floor)?;
        moves.push((high.as_raw_fd(), target));
        held.push(high);
    }
    Ok((held, moves))
}

/// Rlimits, control-file writes and the nice value, as the child's plain slices need them.
#[expect(clippy::type_complexity, reason = "the child plan's three raw lists")]
fn child_actions(
    actions: &[ChildAction],
) -> (
    Vec<(libc::c_int, u64, u64)>,
    Vec<(RawFd, *const u8, usize)>,
    Option<i32>,
) {
    let mut rlimits = Vec::new();
    let mut writes = Vec::new();
    let mut nice = None;
    for action in actions {
        match action {
            ChildAction::Rlimit {
                resource,
                soft,
                hard,
            } => rlimits.push((*resource, *soft, *hard)),
            ChildAction::Write { fd, bytes } => {
                writes.push((fd.as_raw_fd(), bytes.as_ptr(), bytes.len()))
            }
            ChildAction::Nice(n) => nice = Some(*n),
        }
    }
    (rlimits, writes, nice)
}

/// `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` running [`child_main`] over `plan` on
/// `stack`; returns when the child has exec'd or exited.
fn clone_child(plan: &ChildPlan<'_>, stack: &mut [u8]) -> Result<(libc::pid_t, OwnedFd)> {
    let flags = if plan.sandbox.is_some() {
        // A copy, not a shared address space: the child stays on as the namespace's init.
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS
    } else {
        libc::CLONE_VM | libc::CLONE_VFORK
    } | libc::CLONE_PIDFD
        | libc::SIGCHLD;
    let stack_top = {
        let top = stack.as_mut_ptr_range().end as usize;
        (top & !15) as *mut libc::c_void
    };
    let mut pidfd: libc::c_int = -1;
    // SAFETY: the child runs `child_main` on its own stack, either inside our address space
    // while this thread is suspended (CLONE_VFORK) until it execs or exits, or in a copy of
    // it; `plan` and everything it points to outlive that. `child_main` only makes
    // async-signal-safe system calls.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack_top,
            flags,
            plan as *const ChildPlan<'_> as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    if pid < 0 {
        return Err(Error::last_os("clone a child process"));
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new, owned descriptor here.
    Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

fn spawn_now(request: SpawnRequest, stack: &mut [u8]) -> Result<Spawned> {
    let SpawnRequest {
        program,
        argv,
        envp,
        cwd,
        stdio,
        extra_fds,
        actions,
        new_session,
        survive_parent,
        foreground_terminal,
        identity,
        no_new_privs,
        program_fd,
        sandbox,
    } = request;

    let (held, moves) = descriptor_moves(stdio, extra_fds)?;
    let (rlimits, writes, nice) = child_actions(&actions);
    let sandbox = sandbox.map(SandboxPlan::prepare).transpose()?;
    // Both pipes' child ends sit above every target, like the moved descriptors.
    let floor = moves.iter().map(|&(_, t)| t).max().unwrap_or(2) + 1;
    let (err_pipe, status_pipe) = match &sandbox {
        Some(_) => (Some(high_pipe(floor)?), Some(high_pipe(floor)?)),
        None => (None, None),
    };

    let (argv_ptrs, envp_ptrs) = (null_terminated(&argv), null_terminated(&envp));

    let plan = ChildPlan {
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        new_session,
        survive_parent,
        foreground_terminal,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        moves: &moves,
        rlimits: &rlimits,
        writes: &writes,
        nice,
        identity,
        no_new_privs,
        program_fd: program_fd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        sandbox: sandbox.as_ref(),
        err_fd: err_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        status_fd: status_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        fd_ceiling: fd_ceiling(),
        err_step: AtomicI32::new(0),
        err_errno: AtomicI32::new(0),
    };

    let (pid, pidfd) = clone_child(&plan, stack)?;
    drop(held);
    let (mut step, mut errno) = (
        plan.err_step.load(Ordering::SeqCst),
        plan.err_errno.load(Ordering::SeqCst),
    );
    let status = match (err_pipe, status_pipe) {
        (Some((err_read, err_write)), Some((status_read, status_write))) => {
            drop((err_write, status_write));
            (step, errno) = read_failure(&err_read);
            set_nonblocking(&status_read);
            Some(status_read)
        }
        _ => None,
    };
    if step != 0 {
        if sandbox.is_some() {
            // The init may have forked the program that failed: end the namespace.
            let _ = crate::sys::pidfd::send_signal(&pidfd, libc::SIGKILL);
        }
        // The child has called _exit: reap it so it does not stay a zombie.
        reap_blocking(&pidfd);
        return Err(spawn_error(&program, step, errno));
    }
    Ok(Spawned {
        pid: pid as u32,
        pidfd,
        status,
    })
}

/// A C array of pointers to `strings`, null-terminated.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The error of a child that reported a failed `step`.
fn spawn_error(program: &CString, step: i32, errno: i32) -> Error {
    let mut step_name = step_name(step);
    if step == STEP_EXEC && errno == libc::ENOENT && file_exists(program) {
        // The kernel says ENOENT for a file that is there when its `#!` interpreter (or
        // its ELF loader) is missing: say so rather than confuse.
        step_name = "execve of a program whose #! interpreter or loader is missing";
    }
    Error::Spawn {
        program: std::path::PathBuf::from(program.to_string_lossy().into_owned()),
        step: step_name,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn step_name(step: i32) -> &'static str {
    let sandboxed = step
        .checked_sub(sandbox::FIRST_STEP)
        .and_then(|i| sandbox::STEPS.get(usize::try_from(i).ok()?));
    sandboxed
        .or_else(|| STEPS.get(usize::try_from(step).ok()?))
        .copied()
        .unwrap_or("setup")
}

/// Whether `path` names an existing file.
fn file_exists(path: &CString) -> bool {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(path.as_bytes())).exists()
}

pub(crate) fn reap_blocking(pidfd: &OwnedFd) {
    // SAFETY: waitid on a pidfd we own with a zeroed siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED,
        );
    }
}

fn fail(plan: &ChildPlan<'_>, step: i32) -> ! {
    // SAFETY: errno location of this (shared) thread; write and _exit are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        if plan.err_fd >= 0 {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&step.to_ne_bytes());
            buf[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(plan.err_fd, buf.as_ptr().cast(), buf.len());
        }
        plan.err_errno.store(errno, Ordering::SeqCst);
        plan.err_step.store(step, Ordering::SeqCst);
        libc::_exit(127)
    }
}

/// The child side. Runs between clone and exec on the child stack; must not allocate, lock,
/// panic or touch anything but raw system calls.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildPlan` the parent keeps alive while suspended.
    let plan = unsafe { &*(arg as *const ChildPlan<'_>) };
    // SAFETY: every call below is an async-signal-safe system call on data prepared by the parent.
    unsafe {
        // Default dispositions for every signal: the parent's handlers must never run here, and
        // ignored signals (Rust ignores SIGPIPE) must not be inherited by the program.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }

        let grouped = if plan.new_session {
            libc::setsid() >= 0
        } else {
            libc::setpgid(0, 0) == 0
        };
        if !grouped {
            fail(plan, STEP_PGID);
        }
        for &(resource, soft, hard) in plan.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource as _, &lim) != 0 {
                fail(plan, STEP_RLIMIT);
            }
        }
        for &(fd, ptr, len) in plan.writes {
            if libc::write(fd, ptr as *const libc::c_void, len) < 0 {
                fail(plan, STEP_WRITE);
            }
        }
        if let Some(nice) = plan.nice {
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                fail(plan, STEP_NICE);
            }
        }
        if let Some(sandbox) = plan.sandbox {
            if let Err(step) = sandbox::enter(sandbox) {
                fail(plan, step);
            }
        }
        // Only stdio and the descriptors a hook passed reach the program: whatever this process
        // inherited without close-on-exec (a job server pipe, a harness's descriptors) is
        // marked close-on-exec here, before the moves, which clear the flag on their targets.
        if !close_inherited_on_exec(plan.fd_ceiling) {
            fail(plan, STEP_CLOSE);
        }
        for &(src, target) in plan.moves {
            if libc::dup2(src, target) < 0 {
                fail(plan, STEP_DUP);
            }
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
            fail(plan, STEP_CHDIR);
        }
        // Last, the identity: every step above may need the manager's rights (a cgroup's
        // files, mounts). A change of credentials clears the parent-death signal, so it is
        // armed after.
        if let Some((uid, gid)) = plan.identity {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                fail(plan, sandbox::STEP_IDENTITY);
            }
        }
        if plan.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(plan, sandbox::STEP_NO_NEW_PRIVS);
        }
        arm_parent_death(plan);
        if plan.foreground_terminal && libc::isatty(0) == 1 {
            // A background group may change the terminal's foreground group only with SIGTTOU
            // blocked (the mask is cleared for the program below). Not our controlling
            // terminal: nothing to take, not a failure.
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
            libc::tcsetpgrp(0, libc::getpid());
        }
        let step = if let Some(sandbox) = plan.sandbox {
            sandbox::run_init(sandbox, plan.status_fd, plan.err_fd, || exec_program(plan))
        } else {
            exec_program(plan)
        };
        fail(plan, step)
    }
}

/// Set the parent-death signal and check the parent did not die before it took effect.
///
/// # Safety
/// Only in the child; raw system calls.
unsafe fn arm_parent_death(plan: &ChildPlan<'_>) {
    if plan.survive_parent {
        return;
    }
    // SAFETY: prctl and getppid take no pointers; `exited` polls a pidfd we hold.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(plan, STEP_PDEATHSIG);
        }
        // The parent may have died before the prctl took effect: then nobody would signal us.
        // Across a PID namespace getppid says 0, so the sandbox asks the parent's pidfd.
        let gone = match plan.sandbox {
            Some(sandbox) => sandbox::exited(&sandbox.parent),
            None => libc::getppid() != plan.parent,
        };
        if gone {
            *libc::__errno_location() = libc::ESRCH;
            fail(plan, STEP_PARENT);
        }
    }
}

/// Clear the signal mask and exec the program, through the manager's descriptor when the
/// child's identity cannot reach its path or its view does not show it. Returns the failed
/// step.
///
/// # Safety
/// Only in the child, just before exec.
unsafe fn exec_program(plan: &ChildPlan<'_>) -> i32 {
    // SAFETY: raw system calls on pointers the parent prepared.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.program, plan.argv, plan.envp);
        // EACCES: a parent directory the identity may not search; ENOENT: a path the
        // sandbox's view hides (a binary under the host's /tmp).
        let errno = *libc::__errno_location();
        if (errno == libc::EACCES || errno == libc::ENOENT) && plan.program_fd >= 0 {
            libc::execveat(
                plan.program_fd,
                c"".as_ptr(),
                plan.argv as *const *mut libc::c_char,
                plan.envp as *const *mut libc::c_char,
                libc::AT_EMPTY_PATH,
            );
        }
        STEP_EXEC
    }
}
