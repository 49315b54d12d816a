//! One run of a process: spawn, the monitor task, the handle.

use std::ffi::{CString, OsString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{OutputMode, ProcessConfig, StdinMode, TREE_MARKER_VAR};
use crate::error::{Error, Result};
use crate::hook::{ChildSetup, HookInstance};
use crate::output::{start_reader, Framing, OutputReceiver, Tail};
use crate::status::{ExitReason, ProcessStatus, StatusCell, StatusEvent, StopCause};
use crate::stdin::ChildStdin;
use crate::stop::Monitor;
use crate::sys::spawn::{SpawnRequest, StdFd};
use crate::sys::tree::{ProcRoot, TreeId};

/// How a run ended, with what the caller needs to report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The leader's pid.
    pub pid: u32,
    /// Why it ended.
    pub reason: ExitReason,
    /// The last bytes of stderr (lossy UTF-8; empty unless stderr was piped).
    pub stderr_tail: String,
    /// When the child was created.
    pub started_at: SystemTime,
    /// When the whole tree was gone and the leader reaped.
    pub ended_at: SystemTime,
    /// Monotonic run time, spawn to reap.
    pub wall: Duration,
    /// CPU time (user + system) of the leader and of the descendants it reaped, from the
    /// kernel's accounting when the leader is reaped; `None` if it could not be reaped here.
    /// Descendants reaped by someone else (orphans adopted by a subreaper or init) are not
    /// included.
    pub cpu_time: Option<Duration>,
    /// The highest resident set size of the leader, or of any descendant it reaped, over the
    /// whole run (the kernel's accounting, read when the leader is reaped: nothing between
    /// samples is missed). A peak of single processes, not of the tree's sum; `None` if the
    /// leader could not be reaped here, or if the peak was no higher than this process's own
    /// at spawn time: the leader is created sharing this process's memory, the kernel charges
    /// its exec with that memory's peak, and the two cannot be told apart.
    pub max_rss_bytes: Option<u64>,
    /// The whole tree's use as a hook measured it (a cgroup's accounting: killed and orphaned
    /// descendants included); empty without such a hook.
    pub tree: crate::hook::TreeUsage,
}

impl ExitInfo {
    /// `Ok` for exit code 0, otherwise [`Error::ChildFailed`] with the stderr tail attached.
    pub fn into_result(self) -> Result<()> {
        if self.reason.success() {
            Ok(())
        } else {
            Err(Error::ChildFailed {
                pid: self.pid,
                reason: self.reason,
                stderr_tail: self.stderr_tail,
            })
        }
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    Stop(StopCause),
    /// SIGKILL the tree now, also in the middle of a stop sequence's grace period.
    Kill(StopCause),
}

/// A running (or finished) child and its tree.
///
/// Dropping the handle kills the whole tree with SIGKILL and reaps it; stop it first for a
/// graceful end. See the crate docs, "Caveats".
#[derive(Debug)]
pub struct Child {
    pid: u32,
    cell: Arc<StatusCell>,
    cmd: mpsc::UnboundedSender<Command>,
    exit: watch::Receiver<Option<ExitInfo>>,
    stdin: Option<ChildStdin>,
    stdout: Option<OutputReceiver>,
    stderr: Option<OutputReceiver>,
    stop_probe: StopProbe,
}

impl Child {
    /// The leader's pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The current status.
    pub fn status(&self) -> ProcessStatus {
        self.cell.get()
    }

    /// A `watch` of the status.
    pub fn watch_status(&self) -> watch::Receiver<ProcessStatus> {
        self.cell.subscribe()
    }

    /// Every transition from now on, timestamped.
    pub fn events(&self) -> broadcast::Receiver<StatusEvent> {
        self.cell.events()
    }

    /// The stdin writer (with [`StdinMode::Piped`]); `None` after the first call.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The stdout receiver (with `Lines` or `Chunks`); `None` after the first call.
    pub fn take_stdout(&mut self) -> Option<OutputReceiver> {
        self.stdout.take()
    }

    /// The stderr receiver (with `Lines` or `Chunks`); `None` after the first call.
    pub fn take_stderr(&mut self) -> Option<OutputReceiver> {
        self.stderr.take()
    }

    /// Wait until the whole tree is gone and the leader reaped.
    pub async fn wait(&mut self) -> Result<ExitInfo> {
        let pid = self.pid;
        let info = self
            .exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::MonitorGone { pid })?;
        info.clone().ok_or(Error::MonitorGone { pid })
    }

    /// The exit, if the run has ended.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// The run's exit as it becomes known (for a session attached to this child).
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// Ask for the stop sequence without waiting: close stdin, SIGTERM the tree, wait the grace
    /// period, SIGKILL the tree, reap. A second request while one runs is ignored.
    pub fn request_stop(&self, cause: StopCause) {
        let _ = self.cmd.send(Command::Stop(cause));
    }

    /// SIGKILL the whole tree now, without a grace period; during a stop sequence this cuts its
    /// wait short (a second Ctrl-C). The exit is [`crate::ExitReason::Killed`].
    pub fn request_kill(&self, cause: StopCause) {
        let _ = self.cmd.send(Command::Kill(cause));
    }

    /// A handle that tells whether the leader is stopped and by which signal.
    pub fn stop_probe(&self) -> StopProbe {
        self.stop_probe.clone()
    }

    /// A cheap, clonable handle that can ask for the stop sequence from elsewhere (an
    /// enforcer task, a timer). It does not keep the child alive: dropping the [`Child`] still
    /// kills the tree.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            pid: self.pid,
            cmd: self.cmd.downgrade(),
        }
    }

    /// Stop gracefully and wait for the end. Cancellation-safe: dropping this future does not
    /// interrupt the stop sequence, which runs in the monitor task.
    pub async fn stop(&mut self) -> Result<ExitInfo> {
        self.stop_with(StopCause::Requested).await
    }

    /// Like [`Child::stop`], recording why (timeout, limit, unhealthy...).
    pub async fn stop_with(&mut self, cause: StopCause) -> Result<ExitInfo> {
        self.request_stop(cause);
        self.wait().await
    }
}

/// Tells whether a child's leader is stopped, and by which signal: a job-control stop
/// (`SIGTSTP`, `SIGTTIN`, `SIGTTOU`) or `SIGSTOP`, which `/proc`'s `T` state cannot tell apart.
/// Clonable; holds a duplicate of the leader's pidfd, so it never names a recycled pid.
#[derive(Debug, Clone)]
pub struct StopProbe {
    pid: u32,
    pidfd: Arc<OwnedFd>,
}

impl StopProbe {
    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The signal that stopped the leader, while it is stopped; `None` while it runs or once
    /// it has exited.
    pub fn stopped_by(&self) -> Option<i32> {
        crate::sys::pidfd::stop_signal(&self.pidfd)
    }
}

/// Asks a [`Child`]'s monitor for the stop sequence (see [`Child::stopper`]).
#[derive(Debug, Clone)]
pub struct Stopper {
    pid: u32,
    cmd: mpsc::WeakUnboundedSender<Command>,
}

impl Stopper {
    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Request the stop sequence with `cause`; false if the child's handle is already gone.
    pub fn request_stop(&self, cause: StopCause) -> bool {
        self.cmd
            .upgrade()
            .is_some_and(|cmd| cmd.send(Command::Stop(cause)).is_ok())
    }

    /// Request an immediate SIGKILL of the tree ([`Child::request_kill`]).
    pub fn request_kill(&self, cause: StopCause) -> bool {
        self.cmd
            .upgrade()
            .is_some_and(|cmd| cmd.send(Command::Kill(cause)).is_ok())
    }
}

/// Spawn `config` and start monitoring it. Must be called within a tokio runtime.
pub async fn spawn(config: &ProcessConfig) -> Result<Child> {
    spawn_in(config, Arc::new(StatusCell::new())).await
}

pub(crate) async fn spawn_in(config: &ProcessConfig, cell: Arc<StatusCell>) -> Result<Child> {
    cell.set(ProcessStatus::Starting)?;
    match start(config, &cell).await {
        Ok(child) => Ok(child),
        Err(error) => {
            let _ = cell.set(ProcessStatus::Failed {
                error: error.to_string(),
            });
            Err(error)
        }
    }
}

fn next_marker() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{:08x}", std::process::id(), n, fastrand::u32(..))
}

fn cstring(bytes: Vec<u8>, index: usize) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidArgument { index })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors or fails.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::last_os("create a pipe"));
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(|e| Error::os("open /dev/null", e))?;
    Ok(OwnedFd::from(file))
}

fn output_fd(mode: OutputMode) -> Result<(StdFd, Option<OwnedFd>)> {
    Ok(match mode {
        OutputMode::Inherit => (StdFd::Inherit, None),
        OutputMode::Null => (StdFd::Fd(dev_null(true)?), None),
        _ => {
            let (read, write) = pipe()?;
            (StdFd::Fd(write), Some(read))
        }
    })
}

fn framing(mode: OutputMode) -> Framing {
    match mode {
        OutputMode::Lines { max_line } => Framing::Lines(max_line),
        OutputMode::Chunks => Framing::Chunks,
        _ => Framing::Discard,
    }
}

struct Hooks(Vec<Box<dyn HookInstance>>);

impl Hooks {
    fn cleanup(&mut self) {
        for hook in &mut self.0 {
            hook.cleanup();
        }
    }
}

async fn start(config: &ProcessConfig, cell: &Arc<StatusCell>) -> Result<Child> {
    let marker = next_marker();
    let mut setup = ChildSetup::default();
    let mut hooks = Hooks(Vec::new());
    for hook in &config.hooks {
        match hook.prepare(&mut setup) {
            Ok(instance) => hooks.0.push(instance),
            Err(source) => {
                hooks.cleanup();
                return Err(Error::Hook {
                    hook: hook.name().to_owned(),
                    source,
                });
            }
        }
    }
    match start_prepared(config, cell, marker, setup, &mut hooks).await {
        Ok(child) => Ok(child),
        Err(e) => {
            hooks.cleanup();
            Err(e)
        }
    }
}

/// The parent's ends of the child's piped stdio.
struct ParentEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// The child's environment: the configuration's, then the hooks' changes, then the tree marker.
fn child_envp(
    config: &ProcessConfig,
    marker: &str,
    hook_env: Vec<(OsString, Option<OsString>)>,
) -> Result<Vec<CString>> {
    let mut env = config.child_env(std::env::vars_os());
    for (name, value) in hook_env {
        env.retain(|(existing, _)| *existing != name);
        if let Some(value) = value {
            env.push((name, value));
        }
    }
    env.push((TREE_MARKER_VAR.into(), marker.into()));
    env.into_iter()
        .map(|(name, value)| {
            let mut entry: OsString = name;
            entry.push("=");
            entry.push(value);
            CString::new(entry.into_vec()).map_err(|_| Error::InvalidEnvValue {
                name: String::from("(from a hook)"),
            })
        })
        .collect()
}

/// The program opened by the manager, for a child that may not reach its path: another
/// identity (a binary under root's 0700 home) or a sandbox that does not show it (under the
/// host's /tmp). The child executes the descriptor only if its own exec is refused.
fn open_program(config: &ProcessConfig, needed: bool) -> Result<Option<OwnedFd>> {
    if !needed {
        return Ok(None);
    }
    let fd = nix::fcntl::open(
        &config.program,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::os("open the program for the child", e.into()))?;
    // SAFETY: open returned a new descriptor we own.
    Ok(Some(unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    }))
}

/// Everything the spawner thread needs, as data, and the parent's pipe ends.
fn spawn_request(
    config: &ProcessConfig,
    marker: &str,
    setup: ChildSetup,
) -> Result<(SpawnRequest, ParentEnds)> {
    let ChildSetup {
        actions,
        fds,
        env: hook_env,
        identity,
        no_new_privs,
        sandbox,
    } = setup;
    let program_fd = open_program(config, identity.is_some() || sandbox.is_some())?;
    let envp = child_envp(config, marker, hook_env)?;
    let program = cstring(config.program.clone().into_os_string().into_vec(), 0)?;
    let mut argv = vec![program.clone()];
    for (i, arg) in config.args.iter().enumerate() {
        argv.push(cstring(arg.clone().into_vec(), i + 1)?);
    }
    // A sandboxed child starts at the new root: without a working directory of its own it
    // gets the manager's, as an unsandboxed child would.
    let cwd_dir = match (&config.cwd, &sandbox) {
        (None, Some(_)) => std::env::current_dir().ok(),
        (cwd, _) => cwd.clone(),
    };
    let cwd = match &cwd_dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Error::MissingCwd { path: dir.clone() });
            }
            Some(cstring(dir.clone().into_os_string().into_vec(), 0)?)
        }
        None => None,
    };
    let (stdin_fd, stdin) = match config.stdin {
        StdinMode::Inherit => (StdFd::Inherit, None),
        StdinMode::Null => (StdFd::Fd(dev_null(false)?), None),
        StdinMode::Piped => {
            let (read, write) = pipe()?;
            (StdFd::Fd(read), Some(write))
        }
    };
    let (stdout_fd, stdout) = output_fd(config.stdout)?;
    let (stderr_fd, stderr) = output_fd(config.stderr)?;
    let request = SpawnRequest {
        program,
        argv,
        envp,
        cwd,
        stdio: [stdin_fd, stdout_fd, stderr_fd],
        extra_fds: fds,
        actions,
        new_session: config.new_session,
        survive_parent: config.survive_parent,
        foreground_terminal: config.foreground_terminal && config.stdin == StdinMode::Inherit,
        identity,
        no_new_privs,
        program_fd,
        sandbox,
    };
    Ok((
        request,
        ParentEnds {
            stdin,
            stdout,
            stderr,
        },
    ))
}

/// The caller's stdin writer and output receivers over the parent's ends; the reader tasks
/// and the stderr tail are handed to the monitor.
fn attach_streams(
    config: &ProcessConfig,
    pid: u32,
    ends: ParentEnds,
    monitor: &mut Monitor,
) -> Result<(
    Option<ChildStdin>,
    Option<OutputReceiver>,
    Option<OutputReceiver>,
)> {
    let tail = config
        .stderr
        .is_piped()
        .then(|| Tail::new(config.stderr_tail));
    let stdin = match ends.stdin {
        Some(fd) => Some(ChildStdin::new(
            pid,
            tokio::net::unix::pipe::Sender::from_owned_fd(fd)
                .map_err(|e| Error::os("register the stdin pipe", e))?,
        )),
        None => None,
    };
    let mut readers = Vec::new();
    let mut take_reader = |fd: Option<OwnedFd>, mode: OutputMode, tail: Option<Tail>| {
        let Some(fd) = fd else {
            return Ok(None);
        };
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
            .map_err(|e| Error::os("register an output pipe", e))?;
        let (rx, task) = start_reader(receiver, framing(mode), tail, config.output_buffer);
        readers.push(task);
        Ok::<_, Error>(rx)
    };
    let stdout = take_reader(ends.stdout, config.stdout, None)?;
    let stderr = take_reader(ends.stderr, config.stderr, tail.clone())?;
    monitor.attach(stdin.clone(), readers, tail);
    Ok((stdin, stdout, stderr))
}

async fn start_prepared(
    config: &ProcessConfig,
    cell: &Arc<StatusCell>,
    marker: String,
    setup: ChildSetup,
    hooks: &mut Hooks,
) -> Result<Child> {
    let (request, ends) = spawn_request(config, &marker, setup)?;
    // While a spawn is between clone and the leader's registration, a subreaper's sweep of
    // orphan zombies must not take the new leader for an orphan.
    let in_flight = crate::sys::tree::SpawnInFlight::enter();
    let spawned = crate::sys::spawn::spawn(request).await?;
    let pid = spawned.pid;
    crate::sys::tree::register_leader(pid);
    drop(in_flight);
    let started_at = SystemTime::now();
    let started = tokio::time::Instant::now();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let stopper = Stopper {
        pid,
        cmd: cmd_tx.downgrade(),
    };
    for hook in &mut hooks.0 {
        hook.spawned(pid, &stopper);
    }
    tracing::info!(pid, program = ?config.program, "spawned");

    let proc_root = ProcRoot::default();
    let tree = TreeId {
        leader: pid,
        leader_start: proc_root.start_time(pid).unwrap_or(0),
        marker: format!("{TREE_MARKER_VAR}={marker}").into_bytes(),
    };

    // From here the monitor owns the child: on any error below, dropping it kills the tree.
    let (exit_tx, exit_rx) = watch::channel(None);
    let mut monitor = Monitor::new(
        pid,
        spawned.pidfd,
        spawned.status,
        tree,
        proc_root,
        std::mem::take(&mut hooks.0),
        Arc::clone(cell),
        config.stop,
        started_at,
        started,
        exit_tx,
    )?;
    let stop_probe = StopProbe {
        pid,
        pidfd: Arc::new(monitor.duplicate_pidfd()?),
    };
    let (stdin, stdout, stderr) = attach_streams(config, pid, ends, &mut monitor)?;
    cell.set(ProcessStatus::Running { pid })?;
    tokio::spawn(monitor.run(cmd_rx));

    Ok(Child {
        pid,
        cell: Arc::clone(cell),
        cmd: cmd_tx,
        exit: exit_rx,
        stdin,
        stdout,
        stderr,
        stop_probe,
    })
}
