//! cgroup v2 (unified hierarchy or a delegated subtree): one cgroup per spawn beneath a parent
//! whose `cgroup.subtree_control` enables the needed controllers.
//!
//! The parent is configuration (the cgroup root): under v2's "no internal processes" rule a
//! process cannot sit in a cgroup whose children have controllers, so the manager is given a
//! delegated subtree (systemd `Delegate=yes`, a container's own cgroup) rather than its own
//! cgroup.

use std::path::{Path, PathBuf};

use crate::cgroup::{Cgroup, Controller};
use crate::error::Result;
use crate::limits::ResourceLimits;

/// A v2 parent cgroup for the children of this manager.
#[derive(Debug, Clone)]
pub struct CgroupV2Root {
    parent: PathBuf,
}

impl CgroupV2Root {
    /// Children are created beneath `parent` (a directory of a v2 hierarchy).
    pub fn new(parent: impl Into<PathBuf>) -> Self {
        CgroupV2Root {
            parent: parent.into(),
        }
    }

    /// The parent directory.
    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// Whether `controller` is enabled for children of the parent (`cgroup.subtree_control`).
    pub fn enables(&self, controller: &str) -> bool {
        std::fs::read_to_string(self.parent.join("cgroup.subtree_control"))
            .is_ok_and(|t| t.split_whitespace().any(|c| c == controller))
    }
}

/// The files and values a v2 cgroup gets for `limits`, in the order written. `io` needs the
/// device (`MAJ:MIN`) the IO limit applies to.
pub fn v2_settings(
    limits: &ResourceLimits,
    io_device: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(cores) = limits.max_cpu {
        let period = 100_000u64;
        let quota = ((cores * period as f64).round() as u64).max(1000);
        out.push(("cpu.max", format!("{quota} {period}")));
    }
    if let Some(bytes) = limits.max_memory {
        // Reclaim pressure a little before the hard limit, and no swap to escape through.
        out.push(("memory.high", (bytes / 10 * 9).to_string()));
        out.push(("memory.max", bytes.to_string()));
        out.push(("memory.swap.max", "0".to_owned()));
    }
    if let Some(max) = limits.max_pids {
        out.push(("pids.max", max.to_string()));
    }
    if let (Some(rate), Some(device)) = (limits.max_disk_io, io_device) {
        out.push(("io.max", format!("{device} rbps={rate} wbps={rate}")));
    }
    out
}

/// The controllers `limits` need.
pub fn v2_controllers(limits: &ResourceLimits, io: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if limits.max_cpu.is_some() {
        out.push("cpu");
    }
    if limits.max_memory.is_some() {
        out.push("memory");
    }
    if limits.max_pids.is_some() {
        out.push("pids");
    }
    if io && limits.max_disk_io.is_some() {
        out.push("io");
    }
    out
}

/// Create a child cgroup under `root` and write `settings`; removed again if a write fails.
pub(crate) fn create_v2(
    root: &CgroupV2Root,
    settings: &[(&'static str, String)],
) -> Result<Cgroup> {
    let cg = Cgroup::create(Controller::Unified, root.parent())?;
    for (file, value) in settings {
        if let Err(e) = cg.write(file, value) {
            cg.remove();
            return Err(e);
        }
    }
    Ok(cg)
}

/// OOM kills recorded in `memory.events`.
pub(crate) fn oom_kills(cg: &Cgroup) -> u64 {
    cg.counter("memory.events", "oom_kill")
}

/// Kill every process of the cgroup at once (`cgroup.kill`, Linux 5.14+).
pub(crate) fn kill_all(cg: &Cgroup) -> Result<()> {
    cg.write("cgroup.kill", "1")
}

/// Check a parent is usable for `controllers`, naming what is missing.
pub(crate) fn check_parent(root: &CgroupV2Root, controllers: &[&str]) -> Result<(), String> {
    if !root.parent().join("cgroup.procs").exists() {
        return Err(format!(
            "{} is not a cgroup v2 directory",
            root.parent().display()
        ));
    }
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !root.enables(c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}/cgroup.subtree_control does not enable {}",
            root.parent().display(),
            missing.join(", ")
        ))
    }
}

/// Whether a real, writable v2 hierarchy with controllers exists at `/sys/fs/cgroup/unified` or
/// `/sys/fs/cgroup`; the reason when not (for tests that must say why they skip).
pub fn system_v2_parent() -> Result<CgroupV2Root, String> {
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let root = CgroupV2Root::new(mount);
        let controllers = std::fs::read_to_string(Path::new(mount).join("cgroup.controllers"));
        match controllers {
            Ok(c) if !c.trim().is_empty() => return Ok(root),
            Ok(_) => {
                return Err(format!(
                    "{mount} is a cgroup v2 hierarchy without controllers (hybrid mode: they are on v1)"
                ))
            }
            Err(_) => continue,
        }
    }
    Err("no cgroup v2 hierarchy is mounted".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own cgroup in the real v2 hierarchy, or why there is none.
    fn own_v2_cgroup() -> Result<PathBuf, String> {
        let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this process is in no cgroup v2 hierarchy")?;
        for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let dir = Path::new(mount).join(rel.trim_start_matches('/'));
            // A v2 directory (the root cgroup has no cgroup.kill of its own; children do).
            if dir.join("cgroup.procs").exists() && dir.join("cgroup.max.depth").exists() {
                return Ok(dir);
            }
        }
        Err("no cgroup v2 hierarchy is mounted".into())
    }

    /// Kills and removes the cgroup even when the test fails.
    struct Cleanup(Cgroup);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = kill_all(&self.0);
            self.0.remove();
        }
    }

    /// Places the child into a cgroup before it execs.
    struct Place(std::sync::Arc<Cleanup>);

    struct Placed;

    impl claude_proc::HookInstance for Placed {}

    impl claude_proc::SpawnHook for Place {
        fn name(&self) -> &str {
            "place"
        }

        fn prepare(
            &self,
            setup: &mut claude_proc::ChildSetup,
        ) -> Result<Box<dyn claude_proc::HookInstance>, claude_proc::HookError> {
            setup.write_on_start(self.0 .0.procs_for_child()?, "0");
            Ok(Box::new(Placed))
        }
    }

    /// The v2 code path on the real kernel, which needs no controller: a cgroup created beneath
    /// our own, the child in it before it runs, its whole tree listed, killed at once with
    /// `cgroup.kill`, and the cgroup removed. Runs on hybrid hosts too (the unified mount).
    #[tokio::test]
    async fn real_v2_placement_kill_and_removal() {
        let parent = match own_v2_cgroup() {
            Ok(dir) => dir,
            Err(why) => {
                assert!(std::env::var_os("CLAUDE_PM_STRICT").is_none(), "{why}");
                eprintln!("skipping the real cgroup v2 placement test: {why}");
                return;
            }
        };
        let cg = std::sync::Arc::new(Cleanup(
            create_v2(&CgroupV2Root::new(&parent), &[]).unwrap(),
        ));
        let dir = cg.0.dir.clone();
        assert!(
            dir.join("cgroup.kill").exists(),
            "this kernel has no cgroup.kill (Linux 5.14+)"
        );
        let config = claude_proc::ProcessConfig::builder("/bin/sh")
            .args(["-c", "sleep 100 & sleep 100 & echo ready; wait"])
            .stdout(claude_proc::OutputMode::lines())
            .hook(std::sync::Arc::new(Place(std::sync::Arc::clone(&cg))))
            .build()
            .unwrap();
        let mut child = claude_proc::spawn(&config).await.unwrap();
        let mut out = child.take_stdout().unwrap();
        assert!(matches!(
            out.recv().await,
            Some(claude_proc::OutputEvent::Line(_))
        ));
        let members = cg.0.members();
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(members.contains(&child.pid()));
        let started = std::time::Instant::now();
        kill_all(&cg.0).unwrap();
        let info = child.wait().await.unwrap();
        assert!(
            matches!(
                info.reason,
                claude_proc::ExitReason::Signaled {
                    signal: libc::SIGKILL,
                    ..
                }
            ),
            "{:?}",
            info.reason
        );
        while !cg.0.members().is_empty() {
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(config);
        drop(cg);
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }

    /// A fake v2 parent: a directory with the interface files a kernel would show.
    fn fake_parent(enabled: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu io memory pids").unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), enabled).unwrap();
        dir
    }

    #[test]
    fn every_file_written_with_its_value() {
        let limits = ResourceLimits {
            max_cpu: Some(1.5),
            max_memory: Some(1000 << 20),
            max_pids: Some(64),
            max_disk_io: Some(5 << 20),
            ..ResourceLimits::default()
        };
        let settings = v2_settings(&limits, Some("254:0"));
        assert_eq!(
            settings,
            vec![
                ("cpu.max", "150000 100000".to_owned()),
                ("memory.high", ((1000u64 << 20) / 10 * 9).to_string()),
                ("memory.max", (1000u64 << 20).to_string()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "64".to_owned()),
                ("io.max", format!("254:0 rbps={0} wbps={0}", 5u64 << 20)),
            ]
        );
        let parent = fake_parent("cpu io memory pids");
        let root = CgroupV2Root::new(parent.path());
        assert!(check_parent(&root, &v2_controllers(&limits, true)).is_ok());
        let cg = create_v2(&root, &settings).unwrap();
        for (file, value) in &settings {
            assert_eq!(
                &std::fs::read_to_string(cg.dir.join(file)).unwrap(),
                value,
                "{file}"
            );
        }
        std::fs::write(
            cg.dir.join("memory.events"),
            "low 0\nhigh 3\nmax 2\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&cg), 1);
        kill_all(&cg).unwrap();
        assert_eq!(
            std::fs::read_to_string(cg.dir.join("cgroup.kill")).unwrap(),
            "1"
        );
    }

    #[test]
    fn a_parent_without_the_controllers_is_named() {
        let parent = fake_parent("cpu");
        let root = CgroupV2Root::new(parent.path());
        let why = check_parent(&root, &["cpu", "memory", "pids"]).unwrap_err();
        assert!(why.ends_with("does not enable memory, pids"), "{why}");
        let none = CgroupV2Root::new("/nonexistent/cgroup");
        assert!(check_parent(&none, &["cpu"])
            .unwrap_err()
            .contains("not a cgroup v2 directory"));
    }

    #[test]
    fn a_failed_write_removes_the_new_cgroup() {
        let parent = fake_parent("memory");
        let root = CgroupV2Root::new(parent.path());
        // A file the kernel would not have: the write fails and nothing is left behind.
        let err = create_v2(&root, &[("no-such-dir/memory.max", "100".to_owned())]).unwrap_err();
        assert!(matches!(err, crate::Error::WriteControl { .. }));
        let children: Vec<_> = std::fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(children.is_empty());
    }
}
