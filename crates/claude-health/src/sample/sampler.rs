//! The sampler: a process and its descendants from `/proc`, once ([`Sampler::tree`]) or
//! repeatedly with files kept open ([`TreeWatch`]).

use std::fmt;
use std::time::{Duration, Instant};

use super::model::{Fields, ProcState, ProcessSample, Totals, TreeSample};
use super::parse::{context_switches, io_bytes};
use super::procdir::{parse_pids, PidDir, PidFile, ProcRoot};
use crate::error::{Error, Result};

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
        // The stat fields are taken out before the buffer is read into again.
        let (ppid, name, state, ticks, rss_pages, threads) = {
            let stat = claude_proc::parse_proc_stat(dir.read(PidFile::Stat)?).map_err(|e| {
                Error::Parse {
                    path: self.root.file(pid, "stat"),
                    why: e.to_string(),
                }
            })?;
            (
                stat.ppid,
                String::from_utf8_lossy(stat.comm).into_owned(),
                stat.state,
                stat.utime.saturating_add(stat.stime),
                stat.rss_pages,
                stat.num_threads,
            )
        };
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
        Ok(ProcessSample {
            pid,
            ppid,
            name,
            state: ProcState::from_char(state),
            cpu_time: Duration::from_nanos(
                ticks.saturating_mul(1_000_000_000) / self.ticks_per_sec.max(1),
            ),
            rss_bytes: rss_pages.saturating_mul(self.page_size),
            threads,
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

#[cfg(test)]
mod tests;
