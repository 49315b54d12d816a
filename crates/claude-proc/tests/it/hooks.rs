//! The spawn extension point: rlimits, descriptors, cgroup placement, exit attribution.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use claude_proc::{
    spawn, ChildSetup, Error, ExitReason, HookError, HookInstance, ProcessConfig, RawExit, Rlimit,
    SpawnHook, StopCause,
};

use crate::support::*;

pub(crate) type Prepare = Box<dyn Fn(&mut ChildSetup) -> Result<(), HookError> + Send + Sync>;

/// A hook built from a closure over `ChildSetup`, counting its lifecycle calls.
pub(crate) struct TestHook {
    prepare: Prepare,
    enforced: Option<StopCause>,
    cleanups: Arc<AtomicUsize>,
    spawned: Arc<Mutex<Vec<u32>>>,
}

struct TestInstance {
    enforced: Option<StopCause>,
    cleanups: Arc<AtomicUsize>,
    spawned: Arc<Mutex<Vec<u32>>>,
}

impl SpawnHook for TestHook {
    fn name(&self) -> &str {
        "test-hook"
    }
    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        (self.prepare)(setup)?;
        Ok(Box::new(TestInstance {
            enforced: self.enforced.clone(),
            cleanups: Arc::clone(&self.cleanups),
            spawned: Arc::clone(&self.spawned),
        }))
    }
}

impl HookInstance for TestInstance {
    fn spawned(&mut self, pid: u32, _stopper: &claude_proc::Stopper) {
        self.spawned.lock().unwrap().push(pid);
    }
    fn exited(&mut self, _exit: &RawExit) -> Option<StopCause> {
        self.enforced.clone()
    }
    fn cleanup(&mut self) {
        self.cleanups.fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) fn hook(
    prepare: impl Fn(&mut ChildSetup) -> Result<(), HookError> + Send + Sync + 'static,
) -> TestHook {
    TestHook {
        prepare: Box::new(prepare),
        enforced: None,
        cleanups: Arc::default(),
        spawned: Arc::default(),
    }
}

/// Run `sh -c script` with `h`; its stdout lines and exit.
pub(crate) async fn sh_with(script: &str, h: TestHook) -> (Vec<String>, claude_proc::ExitInfo) {
    let config = sh(script)
        .stdout(lines())
        .hook(Arc::new(h))
        .build()
        .unwrap();
    output_of(&config).await
}

#[tokio::test]
async fn rlimits_and_nice_are_applied_before_exec() {
    let h = hook(|setup| {
        setup.set_rlimit(Rlimit::OpenFiles, 77, 77);
        setup.set_rlimit(Rlimit::CoreSize, 0, 0);
        setup.set_nice(7);
        Ok(())
    });
    let cleanups = Arc::clone(&h.cleanups);
    let (lines, info) = sh_with("ulimit -n; ulimit -c; cut -d' ' -f19 /proc/self/stat", h).await;
    assert!(info.reason.success());
    assert_eq!(lines, vec!["77", "0", "7"]);
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_secret_is_handed_over_by_descriptor_not_environment() {
    let h = hook(|setup| {
        let (read, write) = std::io::pipe()?;
        let mut write = write;
        write.write_all(b"sk-ant-oat01-by-fd")?;
        drop(write);
        setup.pass_fd(OwnedFd::from(read), 3)?;
        setup.set_env("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR", "3");
        Ok(())
    });
    let (lines, _) = sh_with("cat <&3; echo; env | grep -c sk-ant || true", h).await;
    assert_eq!(lines, vec!["sk-ant-oat01-by-fd", "0"]);
}

#[tokio::test]
async fn a_failing_hook_aborts_the_spawn_and_starts_nothing() {
    let first = hook(|_| Ok(()));
    let first_cleanups = Arc::clone(&first.cleanups);
    let failing = hook(|_| Err("cgroup root is not writable".into()));
    let config = sh("echo should-not-run")
        .hook(Arc::new(first))
        .hook(Arc::new(failing))
        .build()
        .unwrap();
    match spawn(&config).await {
        Err(e @ Error::Hook { .. }) => {
            assert_eq!(e.to_string(), "spawn hook test-hook failed");
            let source = std::error::Error::source(&e).unwrap().to_string();
            assert_eq!(source, "cgroup root is not writable");
        }
        other => panic!("{other:?}"),
    }
    // The hook that had prepared was cleaned up.
    assert_eq!(first_cleanups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hook_can_attribute_an_exit_to_its_enforcer() {
    let mut h = hook(|_| Ok(()));
    h.enforced = Some(StopCause::LimitExceeded {
        limit: claude_proc::LimitKind::Memory,
    });
    let spawned = Arc::clone(&h.spawned);
    let config = sh("kill -KILL $$").hook(Arc::new(h)).build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    assert_eq!(
        info.reason,
        ExitReason::Enforced {
            cause: StopCause::LimitExceeded {
                limit: claude_proc::LimitKind::Memory
            },
            exit: RawExit {
                code: None,
                signal: Some(9)
            }
        }
    );
    assert_eq!(*spawned.lock().unwrap(), vec![child.pid()]);
}

/// The cgroup v1 memory hierarchy of this process, if it exists and is writable here.
fn own_v1_memory_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    })?;
    let dir = PathBuf::from("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

/// Removes the test cgroup however the test ends.
struct CgroupGuard(PathBuf);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
async fn a_hook_places_the_child_in_a_cgroup_before_exec() {
    let Some(own) = own_v1_memory_cgroup() else {
        require_capability("a cgroup v1 memory hierarchy under /sys/fs/cgroup/memory");
        return;
    };
    let name = format!("claude-proc-test-{}", std::process::id());
    let dir = own.join(&name);
    if let Err(e) = std::fs::create_dir(&dir) {
        require_capability(&format!(
            "a writable cgroup beneath {} ({e})",
            own.display()
        ));
        return;
    }
    let _guard = CgroupGuard(dir.clone());
    let procs = dir.join("cgroup.procs");
    let h = hook(move |setup| {
        let file = std::fs::OpenOptions::new().write(true).open(&procs)?;
        setup.write_on_start(OwnedFd::from(file), "0");
        Ok(())
    });
    // The very first thing the program does is print its cgroup: it must already be the new one.
    let config = ProcessConfig::builder("/bin/cat")
        .arg("/proc/self/cgroup")
        .stdout(lines())
        .hook(Arc::new(h))
        .build()
        .unwrap();
    let (lines, info) = output_of(&config).await;
    assert!(info.reason.success());
    let memory = lines.iter().find(|l| l.contains(":memory:")).unwrap();
    assert!(memory.ends_with(&format!("/{name}")), "{memory}");
}

#[tokio::test]
async fn a_file_size_rlimit_stops_a_writer_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let h = hook(|setup| {
        setup.set_rlimit(Rlimit::FileSize, 4096, 4096);
        Ok(())
    });
    let script = format!(
        "head -c 100000 /dev/zero > {0}; echo $?; wc -c < {0}",
        file.display()
    );
    let (lines, _) = sh_with(&script, h).await;
    // head dies of SIGXFSZ (128 + 25) with exactly the limit written.
    assert_eq!(lines, vec!["153", "4096"]);
}

#[tokio::test]
async fn descriptors_this_process_inherited_never_reach_the_child() {
    // Descriptors without close-on-exec, as a job server or a harness leaves them: one at the
    // lowest free number and one far above it.
    // SAFETY: plain open/fcntl/close on descriptors this test owns.
    let (low, high) = unsafe {
        let low = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        assert!(low >= 3, "open failed");
        let high = libc::fcntl(low, libc::F_DUPFD, 200);
        assert!(high >= 200, "fcntl failed");
        (low, high)
    };
    let h = hook(|setup| {
        let (read, _write) = std::io::pipe()?;
        setup.pass_fd(OwnedFd::from(read), 5)?;
        Ok(())
    });
    // `test -e` is a shell builtin: it opens nothing that could be mistaken for a leak.
    let script = format!(
        "for fd in 3 5 {low} {high}; do if [ -e /proc/self/fd/$fd ]; then echo $fd open; else echo $fd closed; fi; done"
    );
    let (lines, _) = sh_with(&script, h).await;
    // SAFETY: closing the descriptors opened above.
    unsafe {
        libc::close(low);
        libc::close(high);
    }
    let expected_low = if low == 5 { "open" } else { "closed" };
    assert_eq!(
        lines,
        vec![
            "3 closed".to_string(),
            "5 open".to_string(),
            format!("{low} {expected_low}"),
            format!("{high} closed"),
        ]
    );
}
