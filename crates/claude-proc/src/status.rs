//! The lifecycle state machine: statuses, the transition table, exit reasons and events.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result};
use crate::limit::LimitKind;

/// The status of a supervised process, with the data each status carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessStatus {
    /// Not running and not going to run (the initial status, and the end of supervision).
    Stopped,
    /// Being spawned: hooks run, the child is created.
    Starting,
    /// Running with this leader pid.
    Running {
        /// The leader's pid.
        pid: u32,
    },
    /// The stop sequence is under way.
    Stopping {
        /// The leader's pid.
        pid: u32,
    },
    /// The whole tree is gone; why the leader ended.
    Exited {
        /// Why it ended.
        reason: ExitReason,
    },
    /// The child could not be started.
    Failed {
        /// The spawn error, rendered (errors are not `Clone`).
        error: String,
    },
    /// Waiting before the next restart attempt.
    BackingOff {
        /// Which restart this will be (1 = first restart).
        attempt: u32,
        /// How long the wait is.
        delay: Duration,
    },
}

/// The data-less kind of a [`ProcessStatus`], used by the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusKind {
    /// See [`ProcessStatus::Stopped`].
    Stopped,
    /// See [`ProcessStatus::Starting`].
    Starting,
    /// See [`ProcessStatus::Running`].
    Running,
    /// See [`ProcessStatus::Stopping`].
    Stopping,
    /// See [`ProcessStatus::Exited`].
    Exited,
    /// See [`ProcessStatus::Failed`].
    Failed,
    /// See [`ProcessStatus::BackingOff`].
    BackingOff,
}

impl StatusKind {
    /// Every kind, in declaration order.
    pub const ALL: [StatusKind; 7] = [
        StatusKind::Stopped,
        StatusKind::Starting,
        StatusKind::Running,
        StatusKind::Stopping,
        StatusKind::Exited,
        StatusKind::Failed,
        StatusKind::BackingOff,
    ];

    /// The transition table: whether `self -> to` is allowed.
    ///
    /// ```text
    /// Stopped    -> Starting
    /// Starting   -> Running | Failed
    /// Running    -> Stopping | Exited
    /// Stopping   -> Exited
    /// Exited     -> Starting | BackingOff | Stopped
    /// Failed     -> Starting | BackingOff | Stopped
    /// BackingOff -> Starting | Stopped
    /// ```
    pub const fn can_transition_to(self, to: StatusKind) -> bool {
        use StatusKind::*;
        matches!(
            (self, to),
            (Stopped, Starting)
                | (Starting, Running)
                | (Starting, Failed)
                | (Running, Stopping)
                | (Running, Exited)
                | (Stopping, Exited)
                | (Exited, Starting)
                | (Exited, BackingOff)
                | (Exited, Stopped)
                | (Failed, Starting)
                | (Failed, BackingOff)
                | (Failed, Stopped)
                | (BackingOff, Starting)
                | (BackingOff, Stopped)
        )
    }

    /// Whether a process in this status may have live processes.
    pub const fn is_live(self) -> bool {
        matches!(
            self,
            StatusKind::Starting | StatusKind::Running | StatusKind::Stopping
        )
    }
}

impl ProcessStatus {
    /// The data-less kind of this status.
    pub fn kind(&self) -> StatusKind {
        match self {
            ProcessStatus::Stopped => StatusKind::Stopped,
            ProcessStatus::Starting => StatusKind::Starting,
            ProcessStatus::Running { .. } => StatusKind::Running,
            ProcessStatus::Stopping { .. } => StatusKind::Stopping,
            ProcessStatus::Exited { .. } => StatusKind::Exited,
            ProcessStatus::Failed { .. } => StatusKind::Failed,
            ProcessStatus::BackingOff { .. } => StatusKind::BackingOff,
        }
    }

    /// The leader pid, while there is one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ProcessStatus::Running { pid } | ProcessStatus::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// How a process ended by itself, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawExit {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if a signal ended it.
    pub signal: Option<i32>,
}

/// Why a stop was requested: supplied by whoever asks for the stop (the user or an upper layer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopCause {
    /// The user or the supervisor asked for a stop.
    Requested,
    /// A wall-clock timeout ran out.
    Timeout,
    /// A resource limit was breached (or its enforcer ended the process).
    LimitExceeded {
        /// Which limit.
        limit: LimitKind,
    },
    /// Health checks judged the process unhealthy.
    Unhealthy {
        /// The reasons, rendered.
        reason: String,
    },
    /// Hang detection found no progress while work was in flight.
    Hung,
    /// The process failed to authenticate; retrying with the same credential is pointless.
    AuthFailed,
    /// Anything else an upper layer wants to record.
    Other {
        /// The reason, rendered.
        reason: String,
    },
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCause::Requested => f.write_str("stop requested"),
            StopCause::Timeout => f.write_str("timeout"),
            StopCause::LimitExceeded { limit } => write!(f, "{limit} limit exceeded"),
            StopCause::Unhealthy { reason } => write!(f, "unhealthy: {reason}"),
            StopCause::Hung => f.write_str("hung"),
            StopCause::AuthFailed => f.write_str("authentication failed"),
            StopCause::Other { reason } => f.write_str(reason),
        }
    }
}

/// Why a supervised process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// It exited by itself with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal nobody in this crate sent ended it.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// The stop sequence ended it before the grace deadline (stdin close or SIGTERM).
    Stopped {
        /// Why the stop was asked for.
        cause: StopCause,
        /// How the leader ended.
        exit: RawExit,
    },
    /// It outlived the grace period and was killed with SIGKILL.
    KilledAfterGrace {
        /// Why the stop was asked for.
        cause: StopCause,
    },
    /// It was killed with SIGKILL at once, without (the rest of) a grace period: a forced stop.
    Killed {
        /// Why the kill was asked for.
        cause: StopCause,
    },
    /// An enforcer outside this crate ended it (for example a cgroup OOM kill), as a hook said.
    Enforced {
        /// What the enforcer did.
        cause: StopCause,
        /// How the leader ended.
        exit: RawExit,
    },
}

impl ExitReason {
    /// True for exit code 0 only.
    pub fn success(&self) -> bool {
        matches!(self, ExitReason::Exited { code: 0 })
    }

    /// The stop cause, if the process was ended by a stop or an enforcer.
    pub fn cause(&self) -> Option<&StopCause> {
        match self {
            ExitReason::Stopped { cause, .. }
            | ExitReason::KilledAfterGrace { cause }
            | ExitReason::Killed { cause }
            | ExitReason::Enforced { cause, .. } => Some(cause),
            ExitReason::Exited { .. } | ExitReason::Signaled { .. } => None,
        }
    }
}

/// The name of signal `n` (`SIGTERM`), for the signals a supervised process meets.
pub fn signal_name(n: i32) -> Option<&'static str> {
    Some(match n {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// `signal 11 (SIGSEGV)`.
fn signal_text(n: i32) -> String {
    match signal_name(n) {
        Some(name) => format!("signal {n} ({name})"),
        None => format!("signal {n}"),
    }
}

impl fmt::Display for RawExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => write!(f, "ended by {}", signal_text(signal)),
            (None, None) => f.write_str("ended"),
        }
    }
}

impl ExitReason {
    /// How the process ended, without why a stop was asked for (the caller reports that):
    /// `exited with code 3`, `killed by signal 11 (SIGSEGV)`, `exited with code 0 when asked to
    /// stop`, `killed with SIGKILL after the grace period`.
    pub fn how(&self) -> String {
        match self {
            ExitReason::Exited { code } => format!("exited with code {code}"),
            ExitReason::Signaled {
                signal,
                core_dumped,
            } => format!(
                "killed by {}{}",
                signal_text(*signal),
                if *core_dumped { ", core dumped" } else { "" }
            ),
            ExitReason::Stopped { exit, .. } => format!("{exit} when asked to stop"),
            ExitReason::KilledAfterGrace { .. } => {
                "killed with SIGKILL after the grace period".into()
            }
            ExitReason::Killed { .. } => "killed with SIGKILL at once".into(),
            ExitReason::Enforced { exit, .. } => exit.to_string(),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited { code } => write!(f, "exited with code {code}"),
            ExitReason::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_text(*signal))?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ExitReason::Stopped { cause, .. } => write!(f, "stopped ({cause})"),
            ExitReason::KilledAfterGrace { cause } => {
                write!(f, "killed after the grace period ({cause})")
            }
            ExitReason::Killed { cause } => write!(f, "killed at once ({cause})"),
            ExitReason::Enforced { cause, .. } => write!(f, "ended by enforcer ({cause})"),
        }
    }
}

/// One observed transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// Wall-clock time of the transition.
    pub at: SystemTime,
    /// The status before.
    pub from: ProcessStatus,
    /// The status after.
    pub to: ProcessStatus,
}

/// The current status plus every transition, observable two ways: a `watch` of the current
/// status and a broadcast of timestamped events. All transitions go through [`StatusCell::set`],
/// which enforces the table.
#[derive(Debug)]
pub(crate) struct StatusCell {
    // The mutex serialises check-and-set so two writers cannot both pass the table check.
    lock: Mutex<()>,
    watch: watch::Sender<ProcessStatus>,
    events: broadcast::Sender<StatusEvent>,
}

/// How many events a slow subscriber may fall behind before it sees `Lagged` (a run makes a
/// handful; the buffer is allocated whole per process, so a fleet pays for every slot).
const EVENT_CAPACITY: usize = 32;

impl StatusCell {
    pub(crate) fn new() -> Self {
        let (watch, _) = watch::channel(ProcessStatus::Stopped);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        StatusCell {
            lock: Mutex::new(()),
            watch,
            events,
        }
    }

    pub(crate) fn get(&self) -> ProcessStatus {
        self.watch.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ProcessStatus> {
        self.watch.subscribe()
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<StatusEvent> {
        self.events.subscribe()
    }

    /// Move to `to` if the table allows it.
    pub(crate) fn set(&self, to: ProcessStatus) -> Result<()> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from = self.watch.borrow().clone();
        if !from.kind().can_transition_to(to.kind()) {
            return Err(Error::InvalidTransition {
                from: from.kind(),
                to: to.kind(),
            });
        }
        tracing::debug!(from = ?from.kind(), to = ?to.kind(), "status transition");
        self.watch.send_replace(to.clone());
        // No subscribers is fine: the watch still holds the status.
        let _ = self.events.send(StatusEvent {
            at: SystemTime::now(),
            from,
            to,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The reference model: the allowed edges written out independently of `can_transition_to`.
    fn model() -> HashSet<(StatusKind, StatusKind)> {
        use StatusKind::*;
        [
            (Stopped, Starting),
            (Starting, Running),
            (Starting, Failed),
            (Running, Stopping),
            (Running, Exited),
            (Stopping, Exited),
            (Exited, Starting),
            (Exited, BackingOff),
            (Exited, Stopped),
            (Failed, Starting),
            (Failed, BackingOff),
            (Failed, Stopped),
            (BackingOff, Starting),
            (BackingOff, Stopped),
        ]
        .into_iter()
        .collect()
    }

    fn status_of(kind: StatusKind) -> ProcessStatus {
        match kind {
            StatusKind::Stopped => ProcessStatus::Stopped,
            StatusKind::Starting => ProcessStatus::Starting,
            StatusKind::Running => ProcessStatus::Running { pid: 1 },
            StatusKind::Stopping => ProcessStatus::Stopping { pid: 1 },
            StatusKind::Exited => ProcessStatus::Exited {
                reason: ExitReason::Exited { code: 0 },
            },
            StatusKind::Failed => ProcessStatus::Failed { error: "x".into() },
            StatusKind::BackingOff => ProcessStatus::BackingOff {
                attempt: 1,
                delay: Duration::from_millis(1),
            },
        }
    }

    #[test]
    fn table_matches_model_exhaustively() {
        let model = model();
        for from in StatusKind::ALL {
            for to in StatusKind::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    model.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn cell_follows_the_model(steps in proptest::collection::vec(0usize..7, 0..64)) {
            let cell = StatusCell::new();
            let mut events = cell.events();
            let watch = cell.subscribe();
            let model = model();
            let mut current = StatusKind::Stopped;
            let mut accepted = 0;
            for step in steps {
                let to = StatusKind::ALL[step];
                let result = cell.set(status_of(to));
                if model.contains(&(current, to)) {
                    prop_assert!(result.is_ok());
                    current = to;
                    accepted += 1;
                } else {
                    let is_invalid = matches!(result, Err(Error::InvalidTransition { from, to: t }) if from == current && t == to);
                    prop_assert!(is_invalid);
                }
                prop_assert_eq!(cell.get().kind(), current);
                prop_assert_eq!(watch.borrow().kind(), current);
            }
            let mut seen = 0;
            while let Ok(event) = events.try_recv() {
                prop_assert!(model.contains(&(event.from.kind(), event.to.kind())));
                seen += 1;
            }
            prop_assert_eq!(seen, accepted);
        }
    }
}
