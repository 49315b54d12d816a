//! Sampling a process and all its descendants from `/proc`.
//!
//! IO (reading files under an injectable root) is separate from parsing (`procfs-core`'s
//! `FromRead` over bytes), so fixture directories and property tests exercise the same parsers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The `/proc` to read; tests point it at a directory of fixture files.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    path: PathBuf,
    /// Whether `path` is a real procfs (whose `fd/` directory reports its entry count as size).
    procfs: bool,
}

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot::new("/proc")
    }
}

impl ProcRoot {
    /// A root at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let procfs = is_procfs(&path);
        ProcRoot { path, procfs }
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        self.path.join(pid.to_string()).join(name)
    }

    /// First-level children of `pid` over all its threads.
    fn children(&self, pid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(self.path.join(pid.to_string()).join("task")) else {
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

/// The whole content of `handle` from offset 0 with `pread` into `buf` (grown as needed, never
/// shrunk, so steady-state reads allocate nothing); one call for a small file.
fn read_from_start(handle: &std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = handle.read_at(buf.get_mut(len..).unwrap_or_default(), len as u64)?;
        len += n;
        // procfs hands out a small file whole: a short read is the end.
        if n == 0 || len < buf.len() {
            return Ok(len);
        }
    }
}

fn is_procfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs with a valid C string and a buffer the kernel fills on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), fs.as_mut_ptr()) };
    // SAFETY: statfs returned 0, so it filled the buffer.
    rc == 0 && unsafe { fs.assume_init() }.f_type == libc::PROC_SUPER_MAGIC
}

/// The files a sample reads from `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
enum PidFile {
    Stat = 0,
    Status = 1,
    Io = 2,
    Wchan = 3,
    /// The main thread's `task/<pid>/children`.
    Children = 4,
}

/// An open `/proc/<pid>` directory: files inside are opened relative to it, so the pid is
/// looked up once instead of once per file. A [`TreeWatch`] also keeps the files it reads open
/// and re-reads them with `pread` at offset 0 (procfs regenerates the content on every read):
/// one system call per file per sample instead of three. The directory descriptor pins the
/// process: after it exits, reads fail with `ESRCH` even if the pid is reused.
struct PidDir {
    pid: u32,
    dir: std::fs::File,
    path: PathBuf,
    /// Files kept open for re-reading, by [`PidFile`] (all `None` unless `keep`).
    kept: [Option<std::fs::File>; 5],
    keep: bool,
    /// Where files are read to.
    buf: Vec<u8>,
}

impl PidDir {
    fn open(root: &ProcRoot, pid: u32, keep: bool) -> Result<PidDir> {
        let path = root.path.join(pid.to_string());
        match std::fs::File::open(&path) {
            Ok(dir) => Ok(PidDir {
                pid,
                dir,
                path,
                kept: Default::default(),
                keep,
                buf: Vec::new(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ProcessGone { pid }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn name(&self, file: PidFile) -> String {
        match file {
            PidFile::Stat => "stat".into(),
            PidFile::Status => "status".into(),
            PidFile::Io => "io".into(),
            PidFile::Wchan => "wchan".into(),
            PidFile::Children => format!("task/{}/children", self.pid),
        }
    }

    fn error(&self, name: &str, source: std::io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => Error::ProcessGone { pid: self.pid },
            _ => Error::Read {
                path: self.path.join(name),
                source,
            },
        }
    }

    /// Open `name` relative to the directory.
    fn open_at(&self, name: &str) -> Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
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
            return Err(self.error(name, std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }

    /// Read `file` into the directory's buffer, reusing a kept descriptor (and keeping a new
    /// one when `keep`); the bytes stay valid until the next read.
    fn read(&mut self, file: PidFile) -> Result<&[u8]> {
        let slot = file as usize;
        let mut fresh = None;
        if self.kept.get(slot).is_some_and(Option::is_none) {
            let handle = self.open_at(&self.name(file))?;
            match self.kept.get_mut(slot) {
                Some(kept) if self.keep => *kept = Some(handle),
                _ => fresh = Some(handle),
            }
        }
        let handle = fresh
            .as_ref()
            .or_else(|| self.kept.get(slot).and_then(Option::as_ref));
        let len = match handle.map(|h| read_from_start(h, &mut self.buf)) {
            Some(Ok(len)) => len,
            Some(Err(e)) => return Err(self.error(&self.name(file), e)),
            None => return Err(Error::ProcessGone { pid: self.pid }),
        };
        Ok(self.buf.get(..len).unwrap_or_default())
    }

    /// Open descriptors: the size the kernel reports for `fd/` (Linux 6.2 and later), else a
    /// listing of it.
    fn count_fds(&self, procfs: bool) -> Option<u64> {
        use std::os::fd::AsRawFd;
        if !procfs {
            return std::fs::read_dir(self.path.join("fd"))
                .ok()
                .map(|d| d.count() as u64);
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat on our directory descriptor with a valid C string and a buffer the
        // kernel fills on success.
        let rc = unsafe { libc::fstatat(self.dir.as_raw_fd(), c"fd".as_ptr(), st.as_mut_ptr(), 0) };
        if rc == 0 {
            // SAFETY: fstatat returned 0, so it filled the buffer.
            let size = unsafe { st.assume_init() }.st_size;
            if size > 0 {
                return u64::try_from(size).ok();
            }
        }
        std::fs::read_dir(self.path.join("fd"))
            .ok()
            .map(|d| d.count() as u64)
    }
}

fn parse_pids(bytes: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(bytes)
        .split_ascii_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
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
        let mut dir = PidDir::open(&self.root, pid, false)?;
        self.sample_one(&mut dir)
    }

    /// Sample `root_pid` and every descendant (found through the kernel's `children` lists).
    /// Processes that vanish while being read are skipped; [`Error::ProcessGone`] only if the
    /// root itself is gone. Opens every file afresh; [`Sampler::watch`] is cheaper for
    /// repeated samples of the same tree.
    pub fn tree(&self, root_pid: u32) -> Result<TreeSample> {
        self.walk(root_pid, &mut Vec::new(), false)
    }

    /// A [`TreeWatch`] over `root_pid`: repeated samples that keep each process's files open.
    pub fn watch(&self, root_pid: u32) -> TreeWatch {
        TreeWatch {
            sampler: self.clone(),
            root_pid,
            open: Vec::new(),
        }
    }

    fn sample_one(&self, dir: &mut PidDir) -> Result<ProcessSample> {
        let pid = dir.pid;
        let stat = stat_fields(dir.read(PidFile::Stat)?).map_err(|why| Error::Parse {
            path: self.root.file(pid, "stat"),
            why,
        })?;
        let fields = self.fields;
        let switches = match fields.switches {
            true => dir
                .read(PidFile::Status)
                .map(context_switches)
                .unwrap_or_default(),
            false => (0, 0),
        };
        let io = match fields.io {
            true => dir.read(PidFile::Io).ok().and_then(io_bytes),
            false => None,
        };
        let open_fds = fields
            .fds
            .then(|| dir.count_fds(self.root.procfs))
            .flatten();
        let wchan = match fields.wchan {
            true => dir
                .read(PidFile::Wchan)
                .ok()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned()),
            false => None,
        };
        let ticks = stat.utime.saturating_add(stat.stime);
        Ok(ProcessSample {
            pid,
            ppid: stat.ppid,
            name: stat.comm,
            state: ProcState::from_char(stat.state),
            cpu_time: Duration::from_nanos(
                ticks.saturating_mul(1_000_000_000) / self.ticks_per_sec.max(1),
            ),
            rss_bytes: stat.rss_pages.saturating_mul(self.page_size),
            threads: stat.num_threads,
            open_fds,
            read_bytes: io.map(|(read, _)| read),
            write_bytes: io.map(|(_, write)| write),
            voluntary_switches: switches.0,
            involuntary_switches: switches.1,
            wchan,
        })
    }

    /// First-level children: the main thread's `children` list for a single-threaded process,
    /// every thread's otherwise.
    fn children(&self, dir: &mut PidDir, threads: u64) -> Vec<u32> {
        if threads == 1 {
            if let Ok(bytes) = dir.read(PidFile::Children) {
                return parse_pids(bytes);
            }
        }
        self.root.children(dir.pid)
    }

    /// Sample `pid` through `open` (reusing its directory when kept), reopening once when a
    /// kept directory belongs to a process that has exited (its pid may have been reused).
    fn sample_kept(
        &self,
        pid: u32,
        open: &mut Vec<PidDir>,
        keep: bool,
    ) -> Result<(ProcessSample, Vec<u32>)> {
        let attempt = |open: &mut Vec<PidDir>| -> Result<(ProcessSample, Vec<u32>)> {
            let index = match open.iter().position(|d| d.pid == pid) {
                Some(index) => index,
                None => {
                    open.push(PidDir::open(&self.root, pid, keep)?);
                    open.len() - 1
                }
            };
            let dir = open.get_mut(index).ok_or(Error::ProcessGone { pid })?;
            let sample = self.sample_one(dir)?;
            let children = self.children(dir, sample.threads);
            Ok((sample, children))
        };
        match attempt(open) {
            Err(Error::ProcessGone { .. }) if keep && forget(open, pid) => attempt(open),
            other => other,
        }
    }

    fn walk(&self, root_pid: u32, open: &mut Vec<PidDir>, keep: bool) -> Result<TreeSample> {
        let at = Instant::now();
        let (root, mut queue) = match self.sample_kept(root_pid, open, keep) {
            Ok(found) => found,
            Err(e) => {
                open.clear();
                return Err(e);
            }
        };
        let mut processes = vec![root];
        let mut seen = vec![root_pid];
        while let Some(pid) = queue.pop() {
            if seen.contains(&pid) {
                continue;
            }
            seen.push(pid);
            match self.sample_kept(pid, open, keep) {
                Ok((sample, children)) => {
                    queue.extend(children);
                    processes.push(sample);
                }
                Err(Error::ProcessGone { .. }) => {
                    forget(open, pid);
                }
                Err(other) => return Err(other),
            }
        }
        // Processes no longer in the tree release their descriptors.
        open.retain(|d| seen.contains(&d.pid));
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

/// Drop `pid`'s directory from `open`; whether there was one.
fn forget(open: &mut Vec<PidDir>, pid: u32) -> bool {
    let before = open.len();
    open.retain(|d| d.pid != pid);
    open.len() != before
}

/// Repeated samples of one tree that keep each process's `/proc` files open between samples
/// and re-read them with one `pread` each (a third of the system calls of [`Sampler::tree`];
/// see BENCHMARKS.md). Holds up to six descriptors per process in the tree (its directory
/// and the files its [`Fields`] need); they are released when the process leaves the tree or
/// the watch is dropped. If descriptors run out, the sample reports the error and the watch
/// keeps working on the next try.
pub struct TreeWatch {
    sampler: Sampler,
    root_pid: u32,
    open: Vec<PidDir>,
}

impl fmt::Debug for TreeWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeWatch")
            .field("root_pid", &self.root_pid)
            .field("open", &self.open.len())
            .finish()
    }
}

impl TreeWatch {
    /// Sample the tree now; the same contract as [`Sampler::tree`].
    pub fn sample(&mut self) -> Result<TreeSample> {
        let result = self.sampler.walk(self.root_pid, &mut self.open, true);
        if let Err(Error::Read { source, .. }) = &result {
            if source.raw_os_error() == Some(libc::EMFILE) {
                // Give the descriptors back; the next sample opens what it needs afresh.
                self.open.clear();
            }
        }
        result
    }

    /// The root pid.
    pub fn pid(&self) -> u32 {
        self.root_pid
    }

    /// Descriptors held now (directories and kept files).
    pub fn descriptors(&self) -> usize {
        self.open
            .iter()
            .map(|d| 1 + d.kept.iter().flatten().count())
            .sum()
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
    stat_fields(bytes).map_err(|why| Error::Parse {
        path: path.to_path_buf(),
        why,
    })
}

/// [`parse_stat`] without the path (built only for an error): one pass over the fields, no
/// allocation besides the name.
fn stat_fields(bytes: &[u8]) -> std::result::Result<Stat, String> {
    let open = bytes.iter().position(|b| *b == b'(').ok_or("no '('")?;
    let close = bytes.iter().rposition(|b| *b == b')').ok_or("no ')'")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let pid = std::str::from_utf8(bytes.get(..open).unwrap_or_default())
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or("no pid")?;
    let comm = String::from_utf8_lossy(bytes.get(open + 1..close).unwrap_or_default()).into_owned();
    let rest = std::str::from_utf8(bytes.get(close + 1..).unwrap_or_default())
        .map_err(|_| "fields after the name are not UTF-8")?;
    // Fields after the name, counted from 0 (state); the ones we keep, by index.
    const WANTED: [(usize, &str); 6] = [
        (1, "ppid"),
        (11, "utime"),
        (12, "stime"),
        (17, "num_threads"),
        (19, "starttime"),
        (21, "rss"),
    ];
    let mut values = [None::<u64>; 6];
    let mut state = None;
    for (i, field) in rest.split_ascii_whitespace().enumerate().take(22) {
        if i == 0 {
            state = field.chars().next();
        } else if let Some(slot) = WANTED.iter().position(|(at, _)| *at == i) {
            if let Some(value) = values.get_mut(slot) {
                *value = field.parse::<u64>().ok();
            }
        }
    }
    let state = state.ok_or("no state")?;
    let value = |slot: usize| -> std::result::Result<u64, String> {
        values.get(slot).copied().flatten().ok_or_else(|| {
            let name = WANTED.get(slot).map_or("?", |(_, n)| n);
            format!("field {name} missing or not a number")
        })
    };
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: u32::try_from(value(0)?).map_err(|_| "ppid out of range")?,
        utime: value(1)?,
        stime: value(2)?,
        num_threads: value(3)?,
        starttime: value(4)?,
        rss_pages: value(5)?,
    })
}

/// The storage bytes read and written from `/proc/<pid>/io` bytes (`read_bytes`,
/// `write_bytes`); `None` unless both are there. Hand-written: `procfs-core`'s `Io` builds a
/// hash map of all seven lines per call, a sixth of a watched sample's cost (BENCHMARKS.md).
pub fn io_bytes(io: &[u8]) -> Option<(u64, u64)> {
    let (mut read, mut write) = (None, None);
    for line in io.split(|b| *b == b'\n') {
        let value = |prefix: &[u8]| {
            line.strip_prefix(prefix)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(v) = value(b"read_bytes:") {
            read = Some(v);
        } else if let Some(v) = value(b"write_bytes:") {
            write = Some(v);
        }
    }
    Some((read?, write?))
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
    fn a_watch_rereads_kept_files_and_drops_what_left() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), 10, 1, 'S', 100, 256, &[11]);
        fixture(dir.path(), 11, 10, 'S', 10, 1, &[]);
        let sampler = Sampler::new(ProcRoot::new(dir.path()));
        let mut watch = sampler.watch(10);
        let first = watch.sample().unwrap();
        assert_eq!(first.totals.processes, 2);
        // Directory + stat, status, io, wchan for each (the fixtures have three threads, so
        // their children are listed per thread, not through a kept file).
        assert_eq!(watch.descriptors(), 10);
        // New content is seen through the kept descriptors; the child left the tree.
        fixture(dir.path(), 10, 1, 'R', 300, 256, &[]);
        let second = watch.sample().unwrap();
        assert_eq!(second.totals.processes, 1);
        assert_eq!(second.root().unwrap().state, ProcState::Running);
        assert_eq!(
            second.totals.cpu_time,
            Duration::from_nanos((300 + 50) * 1_000_000_000 / sampler.ticks_per_sec)
        );
        assert_eq!(second.totals, sampler.tree(10).unwrap().totals);
        assert_eq!(watch.descriptors(), 5);
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
            let _ = io_bytes(&bytes);
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
