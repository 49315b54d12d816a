//! The monitor task of one run: waits for the exit or a stop request, runs the stop sequence,
//! makes sure the whole tree is gone, reaps, reports.
//!
//! The leader is reaped last: until then its pid (and so its process-group id) cannot be
//! reused, which makes `kill(-pgid)` safe for the whole sequence.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::child::{Command, ExitInfo};
use crate::config::StopPolicy;
use crate::error::{Error, Result};
use crate::hook::{HookInstance, TreeUsage};
use crate::output::Tail;
use crate::status::{ExitReason, ProcessStatus, RawExit, StatusCell, StopCause};
use crate::stdin::ChildStdin;
use crate::sys::pidfd;
use crate::sys::tree::{self, Member, ProcRoot, TreeId};

/// The next request from the handle; pending forever once the handle is gone and the channel
/// drained (the caller took `None` already).
async fn next_command(cmd: &mut Option<mpsc::UnboundedReceiver<Command>>) -> Option<Command> {
    match cmd {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next kill request; stop requests meanwhile are ignored (one is under way).
async fn next_kill(cmd: &mut Option<mpsc::UnboundedReceiver<Command>>) {
    loop {
        match next_command(cmd).await {
            Some(Command::Kill(_)) => return,
            Some(Command::Stop(_)) => {}
            None => *cmd = None,
        }
    }
}

/// Until the leader exits: its pidfd becomes readable then and stays so (no clearing).
/// Pending forever without a pidfd.
async fn leader_exited(pidfd: Option<&AsyncFd<OwnedFd>>) {
    match pidfd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => std::future::pending().await,
    }
}

/// How often the tree is rescanned while waiting for descendants to go.
const POLL: Duration = Duration::from_millis(10);
/// How long the exit report waits for the stderr reader to reach end-of-file.
const READER_DRAIN: Duration = Duration::from_millis(200);
/// Rounds of scan-and-SIGKILL before giving up on a tree that keeps forking.
const KILL_ROUNDS: usize = 200;

pub(crate) struct Monitor {
    pid: u32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// A sandboxed leader is the init of its own PID namespace: the program's wait status
    /// arrives here, and the kernel ends the namespace's processes when the leader dies.
    status: Option<OwnedFd>,
    /// The program's exit as the init reported it, once read.
    program_exit: std::sync::Mutex<Option<RawExit>>,
    tree: TreeId,
    proc_root: ProcRoot,
    hooks: Vec<Box<dyn HookInstance>>,
    cell: Arc<StatusCell>,
    stdin: Option<ChildStdin>,
    stop: StopPolicy,
    readers: Vec<JoinHandle<()>>,
    tail: Option<Tail>,
    started_at: SystemTime,
    started: Instant,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    adopted: Vec<u32>,
    /// Members seen by scans (pid, start time), to recognise their zombies later.
    seen: Vec<(u32, u64)>,
    done: bool,
    /// Requests from the handle; a kill arriving during the stop sequence cuts it short.
    cmd: Option<mpsc::UnboundedReceiver<Command>>,
    /// This process's own peak resident set (KiB) just after the spawn. The leader was
    /// created sharing our memory (`CLONE_VM`) and the kernel charges its exec with that
    /// memory's peak, so a leader's `ru_maxrss` at or below this is ours, not its own.
    manager_peak_kib: i64,
}

/// How a wait of the stop sequence ended.
enum Waited {
    Done,
    Deadline,
    /// A kill was requested meanwhile.
    Killed,
}

/// `d` from now, saturating (see [`crate::instant_after`]).
fn later(d: Duration) -> Instant {
    Instant::from_std(crate::time::instant_after(Instant::now().into_std(), d))
}

impl Monitor {
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor for one internal struct"
    )]
    pub(crate) fn new(
        pid: u32,
        pidfd: OwnedFd,
        status: Option<OwnedFd>,
        tree: TreeId,
        proc_root: ProcRoot,
        hooks: Vec<Box<dyn HookInstance>>,
        cell: Arc<StatusCell>,
        stop: StopPolicy,
        started_at: SystemTime,
        started: Instant,
        exit_tx: watch::Sender<Option<ExitInfo>>,
    ) -> Result<Self> {
        let mut monitor = Monitor {
            pid,
            pidfd: None,
            status,
            program_exit: std::sync::Mutex::new(None),
            tree,
            proc_root,
            hooks,
            cell,
            stdin: None,
            stop,
            readers: Vec::new(),
            tail: None,
            started_at,
            started,
            exit_tx,
            adopted: Vec::new(),
            seen: Vec::new(),
            done: false,
            cmd: None,
            manager_peak_kib: own_peak_rss_kib(),
        };
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open as long as it lives.
        match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) } {
            Ok(fd) => monitor.pidfd = Some(fd),
            Err(e) => {
                let (pidfd, error) = e.into_parts();
                let _ = pidfd::send_signal(&pidfd, libc::SIGKILL);
                tree::signal_group(pid, libc::SIGKILL);
                crate::sys::spawn::reap_blocking(&pidfd);
                tree::forget_leader(pid);
                monitor.done = true;
                for hook in &mut monitor.hooks {
                    hook.cleanup();
                }
                return Err(Error::os("register a pidfd with the runtime", error));
            }
        }
        Ok(monitor)
    }

    pub(crate) fn attach(
        &mut self,
        stdin: Option<ChildStdin>,
        readers: Vec<JoinHandle<()>>,
        tail: Option<Tail>,
    ) {
        self.stdin = stdin;
        self.readers = readers;
        self.tail = tail;
    }

    /// A second descriptor for the leader's pidfd (for a [`crate::StopProbe`]).
    pub(crate) fn duplicate_pidfd(&self) -> Result<OwnedFd> {
        self.pidfd
            .as_ref()
            .ok_or(Error::MonitorGone { pid: self.pid })?
            .get_ref()
            .try_clone()
            .map_err(|e| Error::os("duplicate the pidfd", e))
    }

    async fn exited(&self) {
        leader_exited(self.pidfd.as_ref()).await;
    }

    fn peek_exit(&self) -> RawExit {
        let status = self
            .pidfd
            .as_ref()
            .and_then(|fd| pidfd::try_wait(fd.get_ref()).ok().flatten());
        let program = status.and_then(|_| {
            let mut cached = self.program_exit.lock().ok()?;
            if cached.is_none() {
                *cached = self
                    .status
                    .as_ref()
                    .and_then(crate::sys::sandbox::read_status);
            }
            *cached
        });
        program.or(status).unwrap_or(RawExit {
            code: None,
            signal: Some(libc::SIGKILL),
        })
    }

    pub(crate) async fn run(mut self, cmd: mpsc::UnboundedReceiver<Command>) {
        enum Wake {
            Exited,
            Stop(StopCause),
            Kill(StopCause),
            Dropped,
        }
        let mut cmd = Some(cmd);
        let wake = tokio::select! {
            biased;
            () = self.exited() => Wake::Exited,
            command = next_command(&mut cmd) => match command {
                Some(Command::Stop(cause)) => Wake::Stop(cause),
                Some(Command::Kill(cause)) => Wake::Kill(cause),
                None => Wake::Dropped,
            },
        };
        self.cmd = cmd;
        let reason = match wake {
            Wake::Exited => self.on_exit().await,
            Wake::Stop(cause) => self.stop_sequence(cause).await,
            Wake::Kill(cause) => self.kill_now(cause).await,
            Wake::Dropped => {
                let _ = self.cell.set(ProcessStatus::Stopping { pid: self.pid });
                self.kill_all().await;
                let exit = self.peek_exit();
                ExitReason::Stopped {
                    cause: StopCause::Other {
                        reason: "handle dropped".into(),
                    },
                    exit,
                }
            }
        };
        self.finish(reason).await;
    }

    async fn kill_now(&mut self, cause: StopCause) -> ExitReason {
        let _ = self.cell.set(ProcessStatus::Stopping { pid: self.pid });
        tracing::warn!(pid = self.pid, %cause, "killing the tree at once");
        self.kill_all().await;
        ExitReason::Killed { cause }
    }

    /// The leader ended by itself: how, attributed to an enforcer if a hook says so.
    fn on_exit_reason(&mut self) -> ExitReason {
        let exit = self.peek_exit();
        let cause = self.hooks.iter_mut().find_map(|h| h.exited(&exit));
        match (cause, exit) {
            (Some(cause), exit) => ExitReason::Enforced { cause, exit },
            (
                None,
                RawExit {
                    code: Some(code), ..
                },
            ) => ExitReason::Exited { code },
            (None, RawExit { signal, .. }) => ExitReason::Signaled {
                signal: signal.unwrap_or(0),
                core_dumped: self
                    .pidfd
                    .as_ref()
                    .is_some_and(|fd| pidfd::core_dumped(fd.get_ref())),
            },
        }
    }

    /// The leader ended by itself.
    async fn on_exit(&mut self) -> ExitReason {
        let reason = self.on_exit_reason();
        // Descendants that outlive the leader are part of the session: end them too.
        if !self.tree_empty() {
            let _ = self.cell.set(ProcessStatus::Stopping { pid: self.pid });
            self.signal_tree(libc::SIGTERM);
            if !self.wait_tree_empty(later(self.stop.grace)).await {
                self.kill_all().await;
            }
        }
        reason
    }

    /// Wait for the leader's exit until `deadline`, or until a kill is requested.
    async fn wait_exit_until(&mut self, deadline: Instant) -> Waited {
        tokio::select! {
            biased;
            () = leader_exited(self.pidfd.as_ref()) => Waited::Done,
            () = tokio::time::sleep_until(deadline) => Waited::Deadline,
            () = next_kill(&mut self.cmd) => Waited::Killed,
        }
    }

    /// Close stdin, wait; SIGTERM the tree, wait the grace period; SIGKILL the tree. A kill
    /// request at any wait skips to the SIGKILL.
    async fn stop_sequence(&mut self, cause: StopCause) -> ExitReason {
        let _ = self.cell.set(ProcessStatus::Stopping { pid: self.pid });
        tracing::info!(pid = self.pid, %cause, "stopping");
        let stdin_closed = self.stdin.as_ref().is_some_and(ChildStdin::try_close);
        if stdin_closed && !self.stop.stdin_wait.is_zero() {
            match self.wait_exit_until(later(self.stop.stdin_wait)).await {
                Waited::Done => {
                    let exit = self.peek_exit();
                    // The leader left cleanly; give the rest of the tree the grace period.
                    if !self.tree_empty() {
                        self.signal_tree(libc::SIGTERM);
                        if !self.wait_tree_empty(later(self.stop.grace)).await {
                            self.kill_all().await;
                        }
                    }
                    return ExitReason::Stopped { cause, exit };
                }
                Waited::Killed => return self.kill_now(cause).await,
                Waited::Deadline => {}
            }
        }
        self.signal_tree(libc::SIGTERM);
        let deadline = later(self.stop.grace);
        match self.wait_exit_until(deadline).await {
            Waited::Done => {
                let exit = self.peek_exit();
                if !self.wait_tree_empty(deadline).await {
                    tracing::warn!(pid = self.pid, "descendants outlived the grace period");
                    self.kill_all().await;
                }
                ExitReason::Stopped { cause, exit }
            }
            Waited::Killed => self.kill_now(cause).await,
            Waited::Deadline => {
                tracing::warn!(pid = self.pid, "grace period over, killing the tree");
                self.kill_all().await;
                ExitReason::KilledAfterGrace { cause }
            }
        }
    }

    /// No member left, confirmed by a second scan (the kernel's `children` lists can miss an
    /// entry while the set changes under the reader).
    fn tree_empty(&mut self) -> bool {
        self.members().is_empty() && self.members().is_empty()
    }

    fn members(&mut self) -> Vec<Member> {
        if self.status.is_some() && self.peek_leader_gone() {
            // The namespace died with its init: nothing of the tree can be left.
            return Vec::new();
        }
        let extra: Vec<u32> = self.hooks.iter().flat_map(|h| h.tree_members()).collect();
        let members = self.proc_root.scan(&self.tree, &extra, tree::self_pid());
        let me = tree::self_pid();
        for m in &members {
            if m.ppid == me && !self.adopted.contains(&m.pid) {
                self.adopted.push(m.pid);
            }
            if self.seen.len() < 4096 && !self.seen.contains(&(m.pid, m.start)) {
                self.seen.push((m.pid, m.start));
            }
        }
        members
    }

    /// Signal the group, the leader and every member. A SIGTERM is followed by SIGCONT, so a
    /// tree held stopped (a throttling enforcer, a debugger) gets to act on it within the grace
    /// period instead of waiting for SIGKILL.
    fn signal_tree(&mut self, signal: i32) {
        let signals: &[i32] = if signal == libc::SIGTERM {
            &[libc::SIGTERM, libc::SIGCONT]
        } else {
            std::slice::from_ref(&signal)
        };
        let members = self.members();
        for &sig in signals {
            tree::signal_group(self.pid, sig);
            if let Some(fd) = &self.pidfd {
                let _ = pidfd::send_signal(fd.get_ref(), sig);
            }
            for member in &members {
                self.proc_root.signal(member, sig);
            }
        }
    }

    /// Wait until no member is left (the leader excluded) or the deadline passes (or a kill
    /// is requested).
    async fn wait_tree_empty(&mut self, deadline: Instant) -> bool {
        loop {
            if self.tree_empty() {
                return true;
            }
            let kill = matches!(
                self.cmd.as_mut().map(mpsc::UnboundedReceiver::try_recv),
                Some(Ok(Command::Kill(_)))
            );
            if kill || Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    fn peek_leader_gone(&self) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(|fd| pidfd::try_wait(fd.get_ref()).ok().flatten().is_some())
    }

    /// SIGKILL until nothing is left, then wait for the leader's exit. A sandboxed tree ends
    /// at once with its namespace's init: one signal, no scan.
    async fn kill_all(&mut self) {
        if self.status.is_some() {
            if let Some(fd) = &self.pidfd {
                let _ = pidfd::send_signal(fd.get_ref(), libc::SIGKILL);
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.exited()).await;
            return;
        }
        for _ in 0..KILL_ROUNDS {
            self.signal_tree(libc::SIGKILL);
            if self.tree_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // SIGKILL cannot be ignored: the leader exits promptly (unless stuck in D state).
        let _ = tokio::time::timeout(Duration::from_secs(10), self.exited()).await;
    }

    async fn finish(&mut self, reason: ExitReason) {
        // Orphans adopted after the last scan (their parent died first) are zombies of ours
        // now; reaped while the leader still holds the process-group id.
        for pid in self.proc_root.adopted_zombies(&self.tree, &self.seen) {
            tree::reap_adopted(pid);
        }
        // As a subreaper, also the orphan zombies of trees that finished earlier.
        if crate::sys::SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) {
            for pid in self.proc_root.orphan_zombies() {
                if pid != self.pid {
                    tree::reap_adopted(pid);
                }
            }
        }
        // The kernel's accounting of the leader and the descendants it reaped comes with the
        // reap: the run's CPU time and peak RSS.
        let usage = self
            .pidfd
            .as_ref()
            .and_then(|fd| pidfd::reap_with_usage(fd.get_ref()));
        tree::forget_leader(self.pid);
        for pid in std::mem::take(&mut self.adopted) {
            tree::reap_adopted(pid);
        }
        // The tree is gone, so every write end is closed: readers reach end-of-file now unless a
        // consumer is slow; do not let a slow consumer delay the exit report for long.
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(READER_DRAIN, async {
            for r in readers {
                let _ = r.await;
            }
        })
        .await;
        // A hook's accounting of the whole tree (a cgroup's), read before it is removed.
        let tree = self
            .hooks
            .iter()
            .map(|h| h.usage())
            .fold(TreeUsage::default(), TreeUsage::max);
        for hook in &mut self.hooks {
            hook.cleanup();
        }
        self.done = true;
        let info = ExitInfo {
            pid: self.pid,
            reason: reason.clone(),
            stderr_tail: self.tail.as_ref().map(Tail::text).unwrap_or_default(),
            started_at: self.started_at,
            ended_at: SystemTime::now(),
            wall: self.started.elapsed(),
            cpu_time: usage.map(|u| timeval(u.ru_utime) + timeval(u.ru_stime)),
            max_rss_bytes: usage.and_then(|u| tree_peak_bytes(u.ru_maxrss, self.manager_peak_kib)),
            tree,
        };
        tracing::info!(pid = self.pid, %reason, "exited");
        let _ = self.cell.set(ProcessStatus::Exited { reason });
        self.exit_tx.send_replace(Some(info));
    }
}

/// This process's peak resident set in KiB (0 if it cannot be read).
fn own_peak_rss_kib() -> i64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.max_rss())
}

/// The tree's peak in bytes from the reaped leader's `ru_maxrss` (KiB): `None` when it does
/// not exceed the manager's own peak at spawn time, which the kernel may have charged to the
/// leader's exec (see [`Monitor::manager_peak_kib`]) and which cannot be told apart.
fn tree_peak_bytes(maxrss_kib: i64, manager_peak_kib: i64) -> Option<u64> {
    if maxrss_kib <= manager_peak_kib {
        return None;
    }
    u64::try_from(maxrss_kib)
        .ok()
        .map(|k| k.saturating_mul(1024))
}

/// A rusage time as a duration (negative fields, which the kernel never reports, as zero).
fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

impl Drop for Monitor {
    /// The runtime dropped the monitor before it finished (shutdown): kill and reap synchronously.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        tree::signal_group(self.pid, libc::SIGKILL);
        if let Some(fd) = &self.pidfd {
            let _ = pidfd::send_signal(fd.get_ref(), libc::SIGKILL);
        }
        for _ in 0..KILL_ROUNDS {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            for m in &members {
                self.proc_root.signal(m, libc::SIGKILL);
            }
        }
        if let Some(fd) = self.pidfd.take() {
            let fd = fd.into_inner();
            crate::sys::spawn::reap_blocking(&fd);
        }
        tree::forget_leader(self.pid);
        for pid in std::mem::take(&mut self.adopted) {
            tree::reap_adopted(pid);
        }
        for hook in &mut self.hooks {
            hook.cleanup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tree_peak_bytes;

    #[test]
    fn a_peak_no_higher_than_the_managers_own_is_not_reported() {
        assert_eq!(tree_peak_bytes(80_000, 80_000), None);
        assert_eq!(tree_peak_bytes(1_000, 80_000), None);
        assert_eq!(tree_peak_bytes(80_001, 80_000), Some(80_001 * 1024));
        assert_eq!(tree_peak_bytes(-1, -5), None);
        assert_eq!(tree_peak_bytes(i64::MAX, 0), Some(u64::MAX));
    }
}
