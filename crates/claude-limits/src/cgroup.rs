//! One created cgroup directory, v1 or v2: created per spawn under a parent, written, read,
//! handed to the child as an open `cgroup.procs`, and removed when the tree is gone.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The hierarchy a cgroup belongs to: one v1 controller, or the v2 unified hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Memory,
    Cpu,
    Pids,
    Blkio,
    /// cgroup v2: every controller in one directory.
    Unified,
}

impl Controller {
    /// The v1 hierarchy's name under the cgroup mount (`memory`, `cpu`, ...).
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
            Controller::Blkio => "blkio",
            Controller::Unified => "unified",
        }
    }
}

/// One created cgroup of one controller.
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub(crate) controller: Controller,
    pub(crate) dir: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cgroup {
    /// Create `claude-<pid>-<n>` under `parent`. A directory of that name left by a killed
    /// manager that had the same pid is removed if empty (a cgroup without processes), or
    /// skipped for the next number: stale state never blocks a start.
    pub(crate) fn create(controller: Controller, parent: &Path) -> Result<Cgroup> {
        let mut attempts = 0;
        loop {
            let dir = parent.join(format!(
                "claude-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Cgroup { controller, dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                    tracing::warn!(dir = %dir.display(), "stale cgroup of an earlier manager");
                    if std::fs::remove_dir(&dir).is_ok() && std::fs::create_dir(&dir).is_ok() {
                        return Ok(Cgroup { controller, dir });
                    }
                }
                Err(source) => {
                    return Err(Error::Cgroup {
                        op: "create the cgroup",
                        path: dir,
                        source,
                    })
                }
            }
        }
    }

    pub(crate) fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.dir.join(file);
        // `create` is a no-op on cgroupfs, where every interface file exists; it lets the
        // fake-cgroupfs tests run the same code against a plain directory.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|source| Error::WriteControl {
                path,
                value: value.to_owned(),
                source,
            })
    }

    pub(crate) fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    /// `cgroup.procs`, opened for the child to write `0` into before exec.
    pub(crate) fn procs_for_child(&self) -> Result<OwnedFd> {
        let path = self.dir.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|source| Error::Cgroup {
                op: "open",
                path,
                source,
            })
    }

    pub(crate) fn members(&self) -> Vec<u32> {
        self.read("cgroup.procs")
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// A file holding one number (`cpuacct.usage`, `memory.peak`); `None` if absent.
    pub(crate) fn number(&self, file: &str) -> Option<u64> {
        self.read(file).and_then(|t| t.trim().parse().ok())
    }

    /// `key N` from a flat-keyed file; `None` if the file or the key is absent.
    pub(crate) fn keyed(&self, file: &str, key: &str) -> Option<u64> {
        self.read(file).and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            })
        })
    }

    /// `key N` from a flat-keyed file (`memory.oom_control`, `pids.events`).
    pub(crate) fn counter(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Remove the (empty) cgroup; retries briefly while the kernel finishes the last exit.
    pub(crate) fn remove(&self) {
        for _ in 0..100 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        tracing::warn!(dir = %self.dir.display(), "cgroup could not be removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_writes_on_a_fake_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroup::create(Controller::Memory, dir.path()).unwrap();
        std::fs::write(
            cg.dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(cg.dir.join("memory.limit_in_bytes"), "").unwrap();
        assert_eq!(cg.counter("memory.oom_control", "oom_kill"), 2);
        assert_eq!(cg.counter("memory.oom_control", "missing"), 0);
        cg.write("memory.limit_in_bytes", "209715200").unwrap();
        assert_eq!(cg.read("memory.limit_in_bytes").unwrap(), "209715200");
        match cg.write("no/such.file", "1") {
            Err(e @ Error::WriteControl { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("\"1\"") && text.contains("no/such.file"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
