//! What the facade and the enforcers tell the health monitor: work in flight, output seen, a
//! stop an enforcer holds, and the leader's stop probe for telling job control from a fault.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Inputs the facade feeds the monitor.
#[derive(Debug, Default)]
pub struct Signals {
    in_flight: AtomicBool,
    output: AtomicU64,
    /// Stops an enforcer holds (the soft limits' SIGSTOP duty cycle).
    held: AtomicU64,
    /// When an enforcer last let the tree go: a sample read just before may still show it
    /// stopped.
    released: Mutex<Option<Instant>>,
    /// Which signal stopped the leader, for telling job control from a fault.
    stop_probe: Mutex<Option<claude_proc::StopProbe>>,
}

/// Who stopped a stopped root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoppedBy {
    /// An enforcer of this manager (throttling): expected, not a fault.
    Enforcer,
    /// A job-control signal (`SIGTSTP`, `SIGTTIN`, `SIGTTOU`): suspended, not a fault.
    JobControl(i32),
    /// Anything else (`SIGSTOP` from outside, or unknown).
    Other,
    /// Running again by the time it was asked: a brief stop, no fault.
    Ended,
}

impl Signals {
    /// An enforcer stops (`true`) or continues (`false`) the tree: a stop it holds is no
    /// fault. Calls nest.
    pub fn set_held_stopped(&self, held: bool) {
        if held {
            self.held.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = self
                .held
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if let Ok(mut at) = self.released.lock() {
                *at = Some(Instant::now());
            }
        }
    }

    /// Whether an enforcer holds the tree now, or let it go a moment ago (a sample taken
    /// before that may still show the stop).
    fn enforcer_holds(&self) -> bool {
        self.held.load(Ordering::SeqCst) > 0
            || self
                .released
                .lock()
                .ok()
                .and_then(|at| *at)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    }

    /// Tell stops apart through the leader's [`claude_proc::StopProbe`].
    pub fn set_stop_probe(&self, probe: claude_proc::StopProbe) {
        if let Ok(mut slot) = self.stop_probe.lock() {
            *slot = Some(probe);
        }
    }

    /// Who stopped a root a sample saw stopped. The sample was read a moment ago, so the
    /// answer must not turn a stop that ended meanwhile, or one the enforcer held, into a
    /// fault: the enforcer is asked before and after the probe, and a leader the probe finds
    /// running again was stopped only briefly.
    pub(crate) fn stopped_by(&self) -> StoppedBy {
        if self.enforcer_holds() {
            return StoppedBy::Enforcer;
        }
        let probe = self.stop_probe.lock().ok().and_then(|p| p.clone());
        let Some(probe) = probe else {
            return StoppedBy::Other;
        };
        match probe.stopped_by() {
            Some(s @ (libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)) => StoppedBy::JobControl(s),
            _ if self.enforcer_holds() => StoppedBy::Enforcer,
            Some(_) => StoppedBy::Other,
            None => StoppedBy::Ended,
        }
    }

    /// Whether work (a turn) is in flight.
    pub fn set_in_flight(&self, yes: bool) {
        self.in_flight.store(yes, Ordering::Relaxed);
    }

    /// Count one unit of output (a line on stdout): progress.
    pub fn record_output(&self) {
        self.output.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether work is in flight now.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The output counted so far.
    pub(crate) fn output(&self) -> u64 {
        self.output.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The judgement of a stop a sample saw a moment ago: still stopped by SIGSTOP is a fault;
    /// running again is not; held by an enforcer (now or a moment ago) is not.
    #[tokio::test]
    async fn a_stop_is_a_fault_only_while_it_lasts_and_is_nobodys_we_know() {
        let config = claude_proc::ProcessConfig::builder("/bin/sleep")
            .arg("100")
            .build()
            .unwrap();
        let mut child = claude_proc::spawn(&config).await.unwrap();
        let signals = Signals::default();
        signals.set_stop_probe(child.stop_probe());
        let pid = child.pid() as i32;
        let send = |sig| {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(pid, sig) };
        };
        send(libc::SIGSTOP);
        while child.stop_probe().stopped_by().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(signals.stopped_by(), StoppedBy::Other);
        send(libc::SIGCONT);
        while child.stop_probe().stopped_by().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(signals.stopped_by(), StoppedBy::Ended);
        send(libc::SIGSTOP);
        while child.stop_probe().stopped_by().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        signals.set_held_stopped(true);
        assert_eq!(signals.stopped_by(), StoppedBy::Enforcer);
        // Let go a moment ago: a sample read before the release may still show the stop.
        signals.set_held_stopped(false);
        assert_eq!(signals.stopped_by(), StoppedBy::Enforcer);
        send(libc::SIGCONT);
        child.stop().await.unwrap();
    }
}
