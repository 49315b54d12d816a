//! cgroup v1 (hybrid and legacy hosts): one cgroup per spawn and controller, beneath this
//! process's own cgroup of that controller, created before the child runs and removed after
//! its tree is gone.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use procfs_core::{FromRead, ProcessCGroup, ProcessCGroups};

use crate::error::{Error, Result};

/// Where the v1 hierarchies are mounted and where this process sits in them.
#[derive(Debug, Clone)]
pub struct CgroupV1Root {
    mount: PathBuf,
    /// This process's entries of `/proc/self/cgroup` (parsed by `procfs-core`; a malformed
    /// file counts as no cgroups, so every controller reads as unavailable).
    self_cgroup: Vec<ProcessCGroup>,
}

impl CgroupV1Root {
    /// `/sys/fs/cgroup` and `/proc/self/cgroup`.
    pub fn system() -> Self {
        CgroupV1Root {
            mount: PathBuf::from("/sys/fs/cgroup"),
            self_cgroup: parse_self_cgroup(
                &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            ),
        }
    }

    /// A root at `mount` with `self_cgroup` as the content of `/proc/self/cgroup` (tests).
    pub fn new(mount: impl Into<PathBuf>, self_cgroup: impl Into<String>) -> Self {
        CgroupV1Root {
            mount: mount.into(),
            self_cgroup: parse_self_cgroup(&self_cgroup.into()),
        }
    }

    /// This process's cgroup directory of `controller`, if that hierarchy is mounted here.
    pub fn own_dir(&self, controller: &str) -> Option<PathBuf> {
        let rel = self
            .self_cgroup
            .iter()
            .find(|entry| entry.controllers.iter().any(|c| c == controller))
            .map(|entry| entry.pathname.as_str())?;
        let dir = self
            .mount
            .join(controller)
            .join(rel.trim_start_matches('/'));
        dir.join("cgroup.procs").exists().then_some(dir)
    }
}

fn parse_self_cgroup(text: &str) -> Vec<ProcessCGroup> {
    ProcessCGroups::from_read(text.as_bytes())
        .map(|groups| groups.0)
        .unwrap_or_default()
}

/// One created cgroup of one controller.
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub(crate) controller: &'static str,
    pub(crate) dir: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cgroup {
    /// Create `claude-<pid>-<n>` under `parent`. A directory of that name left by a killed
    /// manager that had the same pid is removed if empty (a cgroup without processes), or
    /// skipped for the next number: stale state never blocks a start.
    pub(crate) fn create(controller: &'static str, parent: &Path) -> Result<Cgroup> {
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
    fn own_dir_follows_proc_self_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory/svc/abc");
        std::fs::create_dir_all(&memory).unwrap();
        std::fs::write(memory.join("cgroup.procs"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("cpu")).unwrap();
        std::fs::write(dir.path().join("cpu/cgroup.procs"), "").unwrap();
        let root = CgroupV1Root::new(dir.path(), "4:memory:/svc/abc\n1:cpu,cpuacct:/\n0::/\n");
        assert_eq!(root.own_dir("memory"), Some(memory));
        assert_eq!(root.own_dir("cpu"), Some(dir.path().join("cpu")));
        assert_eq!(root.own_dir("pids"), None);
    }

    #[test]
    fn counters_and_writes_on_a_fake_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroup::create("memory", dir.path()).unwrap();
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
