//! The foreground loop of `run` and `claude`: copy each run's stdout (Claude's passes through
//! claude-pm), write `--events`, draw the status line, and turn signals and a vanished reader
//! into stops.
//!
//! - SIGINT, SIGTERM and SIGHUP ask for the graceful stop (stdin closed, SIGTERM, grace,
//!   SIGKILL); a second one kills the tree at once.
//! - When the reader of claude-pm's stdout goes away (`claude-pm claude ... | head -1`), the
//!   tree is stopped at once, as a shell pipeline would end `run`'s child by SIGPIPE, and the
//!   exit status is 141; nothing more is read for a reader that is gone.
//! - A write error on the `--events` sink is reported on stderr once; the session goes on and
//!   the exit status is the session's (the events file is appended to, never truncated).
//! - Job control as a shell does it (`terminal.rs`): the run's group gets the terminal; a
//!   child stopped by `SIGTSTP`, `SIGTTIN` or `SIGTTOU` stops claude-pm too, and `SIGCONT`
//!   continues both; a `SIGTSTP` sent to claude-pm goes to the child's group.

use std::io::Write;
use std::time::Instant;

use claude_manager::proc::{OutputEvent, StopProbe};
use claude_manager::{EventKind, ManagerEvent, SessionHandle, SessionReport};
use tokio::sync::{broadcast, mpsc};

use crate::output::tell;
use crate::status_line::StatusLine;
use crate::terminal::{continue_group, signal_group, stop_self, Terminal};
use nix::sys::signal::Signal;

/// Where `--events` go.
pub(crate) enum EventSink {
    Stderr,
    File {
        path: String,
        file: std::fs::File,
        failed: bool,
    },
}

impl EventSink {
    pub(crate) fn open(target: &str) -> Result<EventSink, String> {
        if target == "-" {
            return Ok(EventSink::Stderr);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .map(|file| EventSink::File {
                path: target.to_owned(),
                file,
                failed: false,
            })
            .map_err(|e| format!("invalid --events: {target:?} ({e})"))
    }

    fn write(&mut self, event: &ManagerEvent) {
        let line = format!("{}\n", event.to_json());
        match self {
            EventSink::Stderr => crate::output::stderr_raw(line.as_bytes()),
            EventSink::File { failed: true, .. } => {}
            EventSink::File { path, file, failed } => {
                if let Err(e) = file.write_all(line.as_bytes()) {
                    *failed = true;
                    tell!("claude-pm: cannot write events to {path}: {e}; the session goes on, later events are lost");
                }
            }
        }
    }

    pub(crate) fn is_stderr(&self) -> bool {
        matches!(self, EventSink::Stderr)
    }
}

/// How the loop ended.
pub(crate) struct Ended {
    /// The session's report, if it came.
    pub(crate) report: Option<SessionReport>,
    /// The reader of our stdout went away (exit 141).
    pub(crate) reader_gone: bool,
}

/// The signals the loop answers, registered before the session starts: a signal that came
/// between the spawn and the loop would otherwise end claude-pm with its default action and
/// leave the tree unstopped.
pub(crate) struct PumpSignals {
    stop: SignalSet<(), 3>,
    jobs: SignalSet<Job, 3>,
}

impl PumpSignals {
    /// Registers SIGINT, SIGTERM and SIGHUP (stop) and SIGCHLD, SIGTSTP and SIGCONT (job
    /// control).
    pub(crate) fn register() -> Self {
        PumpSignals {
            stop: SignalSet::new([(libc::SIGINT, ()), (libc::SIGTERM, ()), (libc::SIGHUP, ())]),
            jobs: SignalSet::new([
                (libc::SIGCHLD, Job::Child),
                (libc::SIGTSTP, Job::Suspend),
                (libc::SIGCONT, Job::Continue),
            ]),
        }
    }
}

/// Drive the session to its end.
pub(crate) async fn pump(
    signals: PumpSignals,
    handle: &mut SessionHandle,
    events: &mut broadcast::Receiver<ManagerEvent>,
    mut sink: Option<EventSink>,
    mut status: Option<StatusLine>,
    forward_stdout: bool,
    mut terminal: Option<Terminal>,
) -> Ended {
    let started = Instant::now();
    let PumpSignals {
        stop: mut signals,
        mut jobs,
    } = signals;
    // The live run's leader (its pid is its process group) and what stopped it.
    let mut current: Option<(u32, StopProbe)> = None;
    let (gone_tx, mut gone) = mpsc::unbounded_channel::<()>();
    let mut copy: Option<tokio::task::JoinHandle<()>> = None;
    let mut runs_open = true;
    let mut report = None;
    let mut stops = 0u32;
    let mut reader_gone = false;
    loop {
        tokio::select! {
            // Runs first: a run is published before the exit event, and its stdout must be taken
            // before the exit event ends this loop, or a quick child's output would be dropped
            // (an unbiased select lost it about once in 300 runs).
            biased;
            run = handle.next_run(), if runs_open => match run {
                Some(mut run) => {
                    if let Some(out) = run.stdout.take().filter(|_| forward_stdout) {
                        let previous = copy.take();
                        copy = Some(tokio::spawn(copy_stdout(out, previous, gone_tx.clone())));
                    }
                    current = Some((run.pid, run.stop_probe.clone()));
                    // A stop that came before the run was known (its SIGCHLD went unanswered).
                    job_control(Job::Child, current.as_ref(), terminal.as_mut());
                }
                None => runs_open = false,
            },
            job = jobs.next() => job_control(job, current.as_ref(), terminal.as_mut()),
            Some(()) = gone.recv(), if !reader_gone => {
                reader_gone = true;
                handle.request_stop();
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(sink) = sink.as_mut() {
                        sink.write(&event);
                    }
                    if let Some(line) = status.as_mut() {
                        line.show(&event, started);
                    }
                    if let EventKind::Exit(r) = event.kind {
                        report = Some(r);
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = signals.next() => {
                stops += 1;
                if stops == 1 {
                    handle.request_stop();
                } else {
                    handle.kill();
                }
            }
        }
    }
    if let Some(line) = status.as_mut() {
        line.clear();
    }
    drop(terminal);
    if let Some(copy) = copy {
        let _ = copy.await;
    }
    let report = match report {
        Some(r) => Some(r),
        None => handle.wait().await.ok(),
    };
    Ended {
        report,
        reader_gone,
    }
}

/// Copy one run's stdout to ours (after the previous run's copy ended); on a write error (the
/// reader is gone, the disk is full) tell the loop, remember the error, and read no more.
async fn copy_stdout(
    mut out: claude_manager::proc::OutputReceiver,
    previous: Option<tokio::task::JoinHandle<()>>,
    gone: mpsc::UnboundedSender<()>,
) {
    if let Some(p) = previous {
        let _ = p.await;
    }
    while let Some(event) = out.recv().await {
        let bytes = match event {
            OutputEvent::Line(mut l) => {
                l.push(b'\n');
                l
            }
            OutputEvent::Oversized { mut fragment, end } => {
                if end {
                    fragment.push(b'\n');
                }
                fragment
            }
            OutputEvent::Unterminated(b) | OutputEvent::Chunk(b) => b,
            _ => Vec::new(),
        };
        if !crate::output::stdout_bytes(&bytes) {
            let _ = gone.send(());
            return;
        }
    }
}

/// A job-control signal to claude-pm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// A child changed state (it may have been stopped).
    Child,
    /// claude-pm was asked to suspend.
    Suspend,
    /// claude-pm was continued.
    Continue,
}

/// A few signals as one stream, each delivery tagged with what it means to the caller.
struct SignalSet<T, const N: usize>([(Option<tokio::signal::unix::Signal>, T); N]);

impl<T: Copy, const N: usize> SignalSet<T, N> {
    /// Registers each signal (one that cannot be registered is never delivered).
    fn new(signals: [(libc::c_int, T); N]) -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        SignalSet(signals.map(|(number, tag)| (signal(SignalKind::from_raw(number)).ok(), tag)))
    }

    /// The tag of the next signal delivered (pending forever if none could be registered).
    async fn next(&mut self) -> T {
        std::future::poll_fn(|cx| {
            for (slot, tag) in &mut self.0 {
                if let Some(signal) = slot {
                    match signal.poll_recv(cx) {
                        std::task::Poll::Ready(Some(())) => return std::task::Poll::Ready(*tag),
                        // The stream ended: nothing more can come from it.
                        std::task::Poll::Ready(None) => *slot = None,
                        std::task::Poll::Pending => {}
                    }
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Whether the leader is stopped by job control.
fn job_stopped(probe: &StopProbe) -> bool {
    matches!(
        probe.stopped_by(),
        Some(libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
    )
}

/// Act on a job-control signal as a shell would (see the module docs).
fn job_control(job: Job, current: Option<&(u32, StopProbe)>, terminal: Option<&mut Terminal>) {
    match (job, current) {
        (Job::Suspend, Some((group, _))) => signal_group(*group, Signal::SIGTSTP),
        (Job::Suspend, None) => stop_self(),
        (Job::Child, Some((group, probe))) if job_stopped(probe) => match terminal {
            Some(t) => {
                t.suspend();
                t.resume(*group);
            }
            None => {
                stop_self();
                continue_group(*group);
            }
        },
        (Job::Continue, Some((group, probe))) if job_stopped(probe) => match terminal {
            Some(t) => t.resume(*group),
            None => continue_group(*group),
        },
        _ => {}
    }
}
