//! What a sample holds: one process, a tree and its sums, rates between two samples, and
//! which files a sample reads.

use std::time::{Duration, Instant};

/// Process state as `/proc/<pid>/stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcState {
    /// R: running or runnable.
    Running,
    /// S: interruptible sleep (waiting for an event: network, stdin, a timer).
    Sleeping,
    /// D: uninterruptible sleep (usually disk or a kernel wait).
    DiskSleep,
    /// Z: exited, not yet reaped.
    Zombie,
    /// T or t: stopped by a signal or traced.
    Stopped,
    /// I: idle kernel thread.
    Idle,
    /// X or anything else.
    Other(char),
}

impl ProcState {
    /// From the state letter.
    pub fn from_char(c: char) -> Self {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'Z' => ProcState::Zombie,
            'T' | 't' => ProcState::Stopped,
            'I' => ProcState::Idle,
            other => ProcState::Other(other),
        }
    }
}

/// One process at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    /// The pid.
    pub pid: u32,
    /// The parent's pid.
    pub ppid: u32,
    /// The command name (`comm`).
    pub name: String,
    /// State.
    pub state: ProcState,
    /// User plus system CPU time so far.
    pub cpu_time: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Open descriptors, where readable.
    pub open_fds: Option<u64>,
    /// Bytes read from storage, where readable (`/proc/<pid>/io`).
    pub read_bytes: Option<u64>,
    /// Bytes written to storage, where readable.
    pub write_bytes: Option<u64>,
    /// Voluntary context switches (waits).
    pub voluntary_switches: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary_switches: u64,
    /// The kernel function it waits in, where readable (`0` when running).
    pub wchan: Option<String>,
}

/// Sums over a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Processes sampled.
    pub processes: u64,
    /// CPU time of all of them.
    pub cpu_time: Duration,
    /// RSS of all of them (shared pages count once per process).
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Open descriptors (of those where readable).
    pub open_fds: u64,
    /// Storage bytes read.
    pub read_bytes: u64,
    /// Storage bytes written.
    pub write_bytes: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
}

/// A tree at one moment: the root first, then descendants.
#[derive(Debug, Clone)]
pub struct TreeSample {
    /// When it was taken (monotonic).
    pub at: Instant,
    /// Every process found.
    pub processes: Vec<ProcessSample>,
    /// Their sums.
    pub totals: Totals,
}

/// Rates between two samples of the same tree.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// CPU use in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Storage read rate, bytes per second.
    pub read_bytes_per_sec: f64,
    /// Storage write rate, bytes per second.
    pub write_bytes_per_sec: f64,
    /// Voluntary context switches per second.
    pub voluntary_per_sec: f64,
    /// Involuntary context switches per second.
    pub involuntary_per_sec: f64,
}

impl TreeSample {
    /// Rates since `earlier`. Counters of processes that exited in between are gone, so a
    /// shrinking counter counts as zero progress, not a negative one.
    pub fn rates_since(&self, earlier: &TreeSample) -> Rates {
        let secs = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        if secs <= 0.0 {
            return Rates::default();
        }
        let (now, then) = (&self.totals, &earlier.totals);
        let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Rates {
            cpu_percent: now.cpu_time.saturating_sub(then.cpu_time).as_secs_f64() / secs * 100.0,
            read_bytes_per_sec: per_sec(now.read_bytes, then.read_bytes),
            write_bytes_per_sec: per_sec(now.write_bytes, then.write_bytes),
            voluntary_per_sec: per_sec(now.voluntary_switches, then.voluntary_switches),
            involuntary_per_sec: per_sec(now.involuntary_switches, then.involuntary_switches),
        }
    }

    /// The root's sample, if the root was alive.
    pub fn root(&self) -> Option<&ProcessSample> {
        self.processes.first()
    }
}

/// Which optional files a sample reads (`stat` is always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// `status`: context switches.
    pub switches: bool,
    /// `io`: storage bytes.
    pub io: bool,
    /// `fd/`: open descriptors.
    pub fds: bool,
    /// `wchan`: the wait channel.
    pub wchan: bool,
}

impl Fields {
    /// Everything.
    pub const ALL: Fields = Fields {
        switches: true,
        io: true,
        fds: true,
        wchan: true,
    };
    /// What hang detection needs: `stat` and `io`.
    pub const MINIMAL: Fields = Fields {
        switches: false,
        io: true,
        fds: false,
        wchan: false,
    };
}

impl Default for Fields {
    fn default() -> Self {
        Fields::ALL
    }
}

/// The CPU time of every process a tree ever had, from repeated samples: a process that has
/// exited keeps the time it had at its last sample (what it used after that, at most one
/// interval's worth, is not seen). Unlike the kernel's accounting at reap, this counts
/// descendants reaped by someone else (orphans a subreaper or init collected), which is how a
/// killed tree's work is measured where no cgroup counts it.
#[derive(Debug, Clone, Default)]
pub struct CpuLedger {
    /// Each live process's CPU time at the last sample.
    last: std::collections::HashMap<u32, Duration>,
    /// What processes no longer in the tree had used.
    gone: Duration,
}

impl CpuLedger {
    /// Fold in a sample of the tree.
    pub fn observe(&mut self, sample: &TreeSample) {
        let mut now = std::collections::HashMap::with_capacity(sample.processes.len());
        for p in &sample.processes {
            match self.last.remove(&p.pid) {
                // The same pid with less CPU time is a new process: the old one is done.
                Some(before) if p.cpu_time < before => self.gone += before,
                _ => {}
            }
            now.insert(p.pid, p.cpu_time);
        }
        self.gone += self.last.values().sum::<Duration>();
        self.last = now;
    }

    /// The tree's CPU time so far.
    pub fn total(&self) -> Duration {
        self.gone + self.last.values().sum::<Duration>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(processes: &[(u32, u64)]) -> TreeSample {
        TreeSample {
            at: Instant::now(),
            processes: processes
                .iter()
                .map(|&(pid, secs)| ProcessSample {
                    pid,
                    ppid: 1,
                    name: "x".into(),
                    state: ProcState::Running,
                    cpu_time: Duration::from_secs(secs),
                    rss_bytes: 0,
                    threads: 1,
                    open_fds: None,
                    read_bytes: None,
                    write_bytes: None,
                    voluntary_switches: 0,
                    involuntary_switches: 0,
                    wchan: None,
                })
                .collect(),
            totals: Totals::default(),
        }
    }

    #[test]
    fn a_ledger_keeps_what_exited_processes_used() {
        let mut ledger = CpuLedger::default();
        ledger.observe(&tree(&[(10, 1), (11, 2)]));
        assert_eq!(ledger.total(), Duration::from_secs(3));
        // 11 exited (its 2 s stay), 12 appeared.
        ledger.observe(&tree(&[(10, 4), (12, 1)]));
        assert_eq!(ledger.total(), Duration::from_secs(7));
        // 12's pid now belongs to a new process (less CPU than before): both count.
        ledger.observe(&tree(&[(10, 4), (12, 0)]));
        assert_eq!(ledger.total(), Duration::from_secs(5 + 1 + 1));
        ledger.observe(&tree(&[]));
        assert_eq!(ledger.total(), Duration::from_secs(7));
    }
}
