//! cgroup v1 (hybrid and legacy hosts): where this process sits in each controller's hierarchy.
//! One cgroup per spawn and controller is created beneath it ([`crate::cgroup::Cgroup`]) before
//! the child runs and removed after its tree is gone.

use std::path::PathBuf;

use procfs_core::{FromRead, ProcessCGroup, ProcessCGroups};

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
}
