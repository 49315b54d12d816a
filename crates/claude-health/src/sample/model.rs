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
