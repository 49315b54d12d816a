//! Sampling a process and all its descendants from `/proc`.
//!
//! IO (reading files under an injectable root) is separate from parsing (`procfs-core`'s
//! `FromRead` over bytes), so fixture directories and property tests exercise the same parsers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procfs_core::process::Io;
use procfs_core::FromRead;

use crate::error::{Error, Result};

/// The `/proc` to read; tests point it at a directory of fixture files.
#[derive(Debug, Clone)]
pub struct ProcRoot(PathBuf);

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot(PathBuf::from("/proc"))
    }
}

impl ProcRoot {
    /// A root at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProcRoot(path.into())
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        self.0.join(pid.to_string()).join(name)
    }

    /// First-level children of `pid` over all its threads.
    fn children(&self, pid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(self.0.join(pid.to_string()).join("task")) else {
            return out;
        };
        for task in tasks.filter_map(|t| t.ok()) {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        out
    }
}

/// An open `/proc/<pid>` directory: files inside are opened relative to it, so the pid is
/// looked up once per sample instead of once per file.
struct PidDir {
    pid: u32,
    dir: std::fs::File,
    path: PathBuf,
}

impl PidDir {
    fn open(root: &ProcRoot, pid: u32) -> Result<PidDir> {
        let path = root.0.join(pid.to_string());
        match std::fs::File::open(&path) {
            Ok(dir) => Ok(PidDir { pid, dir, path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ProcessGone { pid }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Read `name` (relative) with one `openat` and, for small files, one `read`.
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd};
        let gone = |source: std::io::Error| match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => Error::ProcessGone { pid: self.pid },
            _ => Error::Read {
                path: self.path.join(name),
                source,
            },
        };
        let c_name = std::ffi::CString::new(name).map_err(|_| Error::Parse {
            path: self.path.join(name),
            why: "file name with NUL".into(),
        })?;
        // SAFETY: openat on a directory descriptor we own, with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(gone(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut buf = vec![0u8; 4096];
        let n = file.read(&mut buf).map_err(gone)?;
        buf.truncate(n);
        if n == 4096 {
            file.read_to_end(&mut buf).map_err(gone)?;
        }
        Ok(buf)
    }
}

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

/// Reads process samples. Never sends a signal.
#[derive(Debug, Clone)]
pub struct Sampler {
    root: ProcRoot,
    ticks_per_sec: u64,
    page_size: u64,
    fields: Fields,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(ProcRoot::default())
    }
}

impl Sampler {
    /// A sampler over `root`.
    pub fn new(root: ProcRoot) -> Self {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Sampler {
            root,
            ticks_per_sec: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
            page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
            fields: Fields::ALL,
        }
    }

    /// Read only `fields` besides `stat` (fields not read are `None` or zero).
    pub fn with_fields(mut self, fields: Fields) -> Self {
        self.fields = fields;
        self
    }

    /// Sample one process. [`Error::ProcessGone`] if it does not exist.
    pub fn process(&self, pid: u32) -> Result<ProcessSample> {
        self.sample_one(pid).map(|(sample, _)| sample)
    }

    fn sample_one(&self, pid: u32) -> Result<(ProcessSample, PidDir)> {
        let dir = PidDir::open(&self.root, pid)?;
        let stat_bytes = dir.read("stat")?;
        let stat = parse_stat(&stat_bytes, &self.root.file(pid, "stat"))?;
        let fields = self.fields;
        let switches = fields
            .switches
            .then(|| dir.read("status").ok())
            .flatten()
            .map(|b| context_switches(&b))
            .unwrap_or_default();
        let io = fields
            .io
            .then(|| dir.read("io").ok())
            .flatten()
            .and_then(|b| Io::from_read(&b[..]).ok());
        let open_fds = fields
            .fds
            .then(|| std::fs::read_dir(self.root.file(pid, "fd")).ok())
            .flatten()
            .map(|d| d.count() as u64);
        let wchan = fields
            .wchan
            .then(|| dir.read("wchan").ok())
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
        let ticks = stat.utime.saturating_add(stat.stime);
        let sample = ProcessSample {
            pid,
            ppid: stat.ppid,
            name: stat.comm.clone(),
            state: ProcState::from_char(stat.state),
            cpu_time: Duration::from_nanos(
                ticks.saturating_mul(1_000_000_000) / self.ticks_per_sec.max(1),
            ),
            rss_bytes: stat.rss_pages.saturating_mul(self.page_size),
            threads: stat.num_threads,
            open_fds,
            read_bytes: io.as_ref().map(|io| io.read_bytes),
            write_bytes: io.as_ref().map(|io| io.write_bytes),
            voluntary_switches: switches.0,
            involuntary_switches: switches.1,
            wchan,
        };
        Ok((sample, dir))
    }

    /// First-level children: one `children` file for a single-threaded process (opened relative
    /// to its directory), every thread's otherwise.
    fn children(&self, dir: &PidDir, threads: u64) -> Vec<u32> {
        if threads == 1 {
            if let Ok(bytes) = dir.read(&format!("task/{}/children", dir.pid)) {
                return String::from_utf8_lossy(&bytes)
                    .split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .collect();
            }
        }
        self.root.children(dir.pid)
    }

    /// Sample `root_pid` and every descendant (found through the kernel's `children` lists).
    /// Processes that vanish while being read are skipped; [`Error::ProcessGone`] only if the
    /// root itself is gone.
    pub fn tree(&self, root_pid: u32) -> Result<TreeSample> {
        let at = Instant::now();
        let (root, dir) = self.sample_one(root_pid)?;
        let mut queue = self.children(&dir, root.threads);
        let mut processes = vec![root];
        let mut seen = vec![root_pid];
        while let Some(pid) = queue.pop() {
            if seen.contains(&pid) {
                continue;
            }
            seen.push(pid);
            match self.sample_one(pid) {
                Ok((sample, dir)) => {
                    queue.extend(self.children(&dir, sample.threads));
                    processes.push(sample);
                }
                Err(Error::ProcessGone { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        let totals = processes.iter().fold(Totals::default(), |mut t, p| {
            t.processes += 1;
            t.cpu_time += p.cpu_time;
            t.rss_bytes += p.rss_bytes;
            t.threads += p.threads;
            t.open_fds += p.open_fds.unwrap_or(0);
            t.read_bytes += p.read_bytes.unwrap_or(0);
            t.write_bytes += p.write_bytes.unwrap_or(0);
            t.voluntary_switches += p.voluntary_switches;
            t.involuntary_switches += p.involuntary_switches;
            t
        });
        Ok(TreeSample {
            at,
            processes,
            totals,
        })
    }
}

/// The fields of `/proc/<pid>/stat` the sampler uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The pid.
    pub pid: u32,
    /// The command name, lossy UTF-8 (a process can set any bytes with `PR_SET_NAME`).
    pub comm: String,
    /// The state letter.
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// User time in clock ticks.
    pub utime: u64,
    /// System time in clock ticks.
    pub stime: u64,
    /// Threads.
    pub num_threads: u64,
    /// Start time in clock ticks since boot.
    pub starttime: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parse `/proc/<pid>/stat` bytes. Hand-written: procfs-core 0.17's parser panics on a command
/// name holding invalid UTF-8 or a `)` before the `(`, which any child can produce
/// (`PR_SET_NAME`); the property test below found both.
pub fn parse_stat(bytes: &[u8], path: &Path) -> Result<Stat> {
    let bad = |why: &str| Error::Parse {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    let open = bytes
        .iter()
        .position(|b| *b == b'(')
        .ok_or_else(|| bad("no '('"))?;
    let close = bytes
        .iter()
        .rposition(|b| *b == b')')
        .ok_or_else(|| bad("no ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let pid = std::str::from_utf8(bytes.get(..open).unwrap_or_default())
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| bad("no pid"))?;
    let comm = String::from_utf8_lossy(bytes.get(open + 1..close).unwrap_or_default()).into_owned();
    let rest = std::str::from_utf8(bytes.get(close + 1..).unwrap_or_default())
        .map_err(|_| bad("fields after the name are not UTF-8"))?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |i: usize, name: &str| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| bad(&format!("field {name} missing or not a number")))
    };
    let state = fields
        .first()
        .and_then(|f| f.chars().next())
        .ok_or_else(|| bad("no state"))?;
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: u32::try_from(field(1, "ppid")?).map_err(|_| bad("ppid out of range"))?,
        utime: field(11, "utime")?,
        stime: field(12, "stime")?,
        num_threads: field(17, "num_threads")?,
        starttime: field(19, "starttime")?,
        rss_pages: field(21, "rss")?,
    })
}

/// The voluntary and involuntary context-switch counts from `/proc/<pid>/status` bytes
/// (zero where a line is missing). Only these two lines are read: procfs-core's `Status`
/// rejects a file that lacks any of its ~40 fields.
pub fn context_switches(status: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(status);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        value("voluntary_ctxt_switches:"),
        value("nonvoluntary_ctxt_switches:"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(
        dir: &Path,
        pid: u32,
        ppid: u32,
        state: char,
        utime: u64,
        rss_pages: u64,
        children: &[u32],
    ) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
        std::fs::create_dir_all(d.join("fd")).unwrap();
        for fd in 0..3 {
            std::fs::write(d.join("fd").join(fd.to_string()), "").unwrap();
        }
        std::fs::write(
            d.join("stat"),
            format!("{pid} (worker (x)) {state} {ppid} {pid} {pid} 0 -1 4194560 10 0 0 0 {utime} 50 0 0 20 0 3 0 1000 100000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("status"),
            format!("Name:\tworker\nState:\t{state} (x)\nPid:\t{pid}\nPPid:\t{ppid}\nThreads:\t3\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n"),
        )
        .unwrap();
        std::fs::write(d.join("io"), "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n").unwrap();
        std::fs::write(d.join("wchan"), "do_select").unwrap();
        let list: Vec<String> = children.iter().map(u32::to_string).collect();
        std::fs::write(
            d.join("task").join(pid.to_string()).join("children"),
            list.join(" "),
        )
        .unwrap();
    }

    #[test]
    fn fixture_tree_is_summed_and_a_vanished_child_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), 10, 1, 'S', 100, 256, &[11, 12, 99]);
        fixture(dir.path(), 11, 10, 'R', 200, 512, &[13]);
        fixture(dir.path(), 12, 10, 'Z', 0, 0, &[]);
        fixture(dir.path(), 13, 11, 'D', 50, 128, &[]);
        // 99 is listed as a child but has no directory: it exited meanwhile.
        let sampler = Sampler::new(ProcRoot::new(dir.path()));
        let tree = sampler.tree(10).unwrap();
        assert_eq!(tree.totals.processes, 4);
        let ticks = sampler.ticks_per_sec;
        let expected_ticks = (100 + 50) + (200 + 50) + 50 + (50 + 50);
        assert_eq!(
            tree.totals.cpu_time,
            Duration::from_nanos(expected_ticks * 1_000_000_000 / ticks)
        );
        assert_eq!(tree.totals.rss_bytes, (256 + 512 + 128) * sampler.page_size);
        assert_eq!(tree.totals.read_bytes, 4 * 4096);
        assert_eq!(tree.totals.voluntary_switches, 28);
        assert_eq!(tree.totals.open_fds, 12);
        let root = tree.root().unwrap();
        assert_eq!(root.name, "worker (x)");
        assert_eq!(root.wchan.as_deref(), Some("do_select"));
        let states: Vec<ProcState> = tree.processes.iter().map(|p| p.state).collect();
        assert!(states.contains(&ProcState::Zombie) && states.contains(&ProcState::DiskSleep));
        assert!(matches!(
            sampler.tree(42),
            Err(Error::ProcessGone { pid: 42 })
        ));
    }

    #[test]
    fn a_hostile_command_name_is_read_not_fatal() {
        let mut line = b"77 (".to_vec();
        line.extend_from_slice(&[0xff, 0xfe, b')', b' ', b'(']);
        line.extend_from_slice(b") R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 2 0 9 100 33 0\n");
        let stat = parse_stat(&line, Path::new("stat")).unwrap();
        assert_eq!(
            (
                stat.pid,
                stat.state,
                stat.utime,
                stat.stime,
                stat.num_threads,
                stat.rss_pages
            ),
            (77, 'R', 5, 6, 2, 33)
        );
        assert!(stat.comm.contains(") ("));
    }

    #[test]
    fn a_garbled_stat_is_a_parse_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), 10, 1, 'S', 1, 1, &[]);
        std::fs::write(dir.path().join("10").join("stat"), "10 (x) S").unwrap();
        match Sampler::new(ProcRoot::new(dir.path())).process(10) {
            Err(e @ Error::Parse { .. }) => assert!(e.to_string().contains("10/stat")),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_stat(&bytes, Path::new("stat"));
            let _ = context_switches(&bytes);
            let _ = Io::from_read(&bytes[..]);
        }

        #[test]
        fn stat_lines_with_any_name_parse(name in "[ -~]{0,15}", pid in 1i32..4_000_000, ticks in 0u64..1_000_000) {
            let line = format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {ticks} {ticks} 0 0 20 0 1 0 5 100 10 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
            let stat = parse_stat(line.as_bytes(), Path::new("stat")).unwrap();
            prop_assert_eq!(stat.pid, pid as u32);
            prop_assert_eq!(stat.utime, ticks);
            prop_assert_eq!(stat.comm, name);
        }
    }
}
