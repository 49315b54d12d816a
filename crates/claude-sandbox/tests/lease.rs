//! Leases, grants and releases on this machine's kernel and filesystem (needs root, as the
//! feature does). Uids come from 3,900,000 up, which no user of this machine has.
#![expect(
    clippy::unwrap_used,
    reason = "helpers fail the test loudly on unexpected errors"
)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use claude_proc::{spawn, ExitReason, OutputEvent, OutputMode, ProcessConfig};
use claude_sandbox::{Error, Level, SandboxConfig, SessionSandbox, UidRange};

fn config(level: Level, first: u32, count: u32, leases: &Path) -> SandboxConfig {
    let mut c = SandboxConfig::default();
    c.level = level;
    c.uid_range = UidRange::new(first, first + count - 1).unwrap();
    c.lease_dir = leases.to_path_buf();
    c
}

/// A working directory under a world-searchable parent.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sbx-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(dir.path().join("existing"), "tenant data\n").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn run_in(
    sandbox: Arc<SessionSandbox>,
    dir: &Path,
    script: &str,
) -> (Vec<String>, ExitReason) {
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", script])
        .cwd(dir)
        .stdout(OutputMode::lines())
        .hook(sandbox)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut lines = Vec::new();
    while let Some(e) = out.recv().await {
        if let OutputEvent::Line(l) = e {
            lines.push(String::from_utf8_lossy(&l).into_owned());
        }
    }
    (lines, child.wait().await.unwrap().reason)
}

#[tokio::test]
async fn a_session_uses_its_workdir_for_its_life_and_nothing_of_it_is_left_after() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let leases = tempfile::tempdir().unwrap();
    let dir = workdir();
    for level in [Level::User, Level::Sandbox] {
        let first = 3_900_000 + level as u32 * 10;
        std::fs::write(dir.path().join("existing"), "tenant data\n").unwrap();
        let sandbox = Arc::new(
            SessionSandbox::start(&config(level, first, 1, leases.path()), dir.path())
                .unwrap()
                .unwrap(),
        );
        assert_eq!(sandbox.uid(), first);
        // Closed to other users while the session runs.
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o007, 0);
        let (out, reason) = run_in(
            Arc::clone(&sandbox),
            dir.path(),
            "id -u; cat existing; echo more >> existing && echo appended; echo new > created && echo created; \
             (setsid sleep 1000 &) ; echo spawned",
        )
        .await;
        assert_eq!(reason, ExitReason::Exited { code: 0 }, "{out:?}");
        assert_eq!(
            out,
            [
                first.to_string(),
                "tenant data".into(),
                "appended".into(),
                "created".into(),
                "spawned".into()
            ]
        );
        assert!(sandbox.release(), "every process of the uid ended");
        assert!(claude_sandbox_processes(first).is_empty());
        let created = std::fs::metadata(dir.path().join("created")).unwrap();
        assert_eq!(
            created.uid(),
            0,
            "what the session created is given to the owner"
        );
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().mode() & 0o777,
            0o755,
            "mode restored"
        );
        assert!(
            xattr::get(dir.path().join("existing"), "system.posix_acl_access")
                .unwrap()
                .is_none(),
            "ACL removed"
        );
        std::fs::remove_file(dir.path().join("created")).unwrap();
    }
}

fn claude_sandbox_processes(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
                })
            })
        })
        .collect()
}

#[test]
fn a_leased_uid_is_not_given_twice_and_an_exhausted_range_says_so() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let leases = tempfile::tempdir().unwrap();
    let dir = workdir();
    let c = config(Level::User, 3_900_100, 2, leases.path());
    let a = SessionSandbox::start(&c, dir.path()).unwrap().unwrap();
    let b = SessionSandbox::start(&c, dir.path()).unwrap().unwrap();
    assert_ne!(a.uid(), b.uid());
    let err = SessionSandbox::start(&c, dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::RangeExhausted { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("3900100-3900101"), "{err}");
    drop(a);
    let c2 = SessionSandbox::start(&c, dir.path()).unwrap().unwrap();
    assert_ne!(c2.uid(), b.uid());
}

#[test]
fn bad_configuration_is_refused_naming_the_problem() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let leases = tempfile::tempdir().unwrap();
    let dir = workdir();
    // uid 65534 (nobody) exists on every Debian machine.
    let err = SessionSandbox::start(
        &config(Level::User, 65_000, 1000, leases.path()),
        dir.path(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::RangeOverlapsUsers { id: 65534, .. }),
        "{err}"
    );
    let err = SessionSandbox::start(
        &config(Level::User, 3_900_200, 1, leases.path()),
        Path::new("/no/such/dir"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
    for (dir, says) in [("/", "root directory"), ("/proc/self", "kernel or runtime")] {
        let err = SessionSandbox::start(
            &config(Level::User, 3_900_200, 1, leases.path()),
            Path::new(dir),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::WorkdirNotAllowed { .. }) && err.to_string().contains(says),
            "{err}"
        );
    }
    let hidden = tempfile::tempdir().unwrap();
    std::fs::set_permissions(hidden.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(hidden.path().join("work")).unwrap();
    let err = SessionSandbox::start(
        &config(Level::User, 3_900_200, 1, leases.path()),
        &hidden.path().join("work"),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::WorkdirUnreachable { .. }) && err.to_string().contains("mode 700"),
        "{err}"
    );
}

/// A manager killed with SIGKILL leaves its lease file's record (and its lock goes with its
/// descriptors): the next session given the uid finds the record and undoes it first.
#[test]
fn what_a_killed_manager_left_is_undone_by_the_next_lease() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let leases = tempfile::tempdir().unwrap();
    let dir = workdir();
    let uid = 3_900_300;
    let c = config(Level::User, uid, 1, leases.path());
    let first = SessionSandbox::start(&c, dir.path()).unwrap().unwrap();
    let home = tempfile::tempdir().unwrap().keep();
    first.adopt_home(&home).unwrap();
    std::fs::write(dir.path().join("left"), "x").unwrap();
    std::os::unix::fs::chown(dir.path().join("left"), Some(uid), Some(uid)).unwrap();
    // What SIGKILL does to the lease: the lock is gone, nothing was undone.
    std::mem::forget(first);
    let lease_file = leases.path().join(uid.to_string());
    let text = std::fs::read_to_string(&lease_file).unwrap();
    assert!(text.contains("workdir") && text.contains("home"), "{text}");
    // Forgetting kept the descriptor (and its lock) open in this process: drop the lock the
    // way the kernel does when the holder dies.
    unlock_all(&lease_file);
    let second = SessionSandbox::start(&c, dir.path()).unwrap().unwrap();
    assert_eq!(second.uid(), uid);
    assert!(!home.exists(), "the killed session's home was removed");
    assert_eq!(std::fs::metadata(dir.path().join("left")).unwrap().uid(), 0);
    drop(second);
    assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o755);
}

/// Close every descriptor of this process open on `file`.
fn unlock_all(file: &Path) {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t == file) {
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: closing a descriptor leaked on purpose above; nothing else uses it.
            unsafe { nix::libc::close(fd) };
        }
    }
}

/// A sandboxed session started while another lives does not see the other's working
/// directory at all (an empty, unreadable mount over it), only its own.
#[tokio::test]
async fn a_live_sessions_workdir_is_hidden_from_a_later_sandbox() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let leases = tempfile::tempdir().unwrap();
    // Outside /tmp (which the sandbox makes private anyway) so only the hiding can hide it;
    // removed with the test.
    let in_var = || {
        let dir = tempfile::Builder::new()
            .prefix("claude-sandbox-test-")
            .tempdir_in("/var/lib")
            .unwrap();
        std::fs::write(dir.path().join("existing"), "tenant data\n").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    };
    let (a_dir, b_dir, state) = (in_var(), in_var(), in_var());
    let mut c = config(Level::Sandbox, 3_900_400, 2, leases.path());
    let _a = SessionSandbox::start(&c, a_dir.path()).unwrap().unwrap();
    // The manager's own state directory (world-readable here, so only the hiding hides it).
    c.hidden.push(state.path().to_path_buf());
    let b = Arc::new(SessionSandbox::start(&c, b_dir.path()).unwrap().unwrap());
    let script = format!(
        "ls -A {a} 2>/dev/null | wc -l; stat -c %a {a}; cat existing; \
         ls -A {s} 2>/dev/null | wc -l; stat -c %a {s}",
        a = a_dir.path().display(),
        s = state.path().display()
    );
    let (out, reason) = run_in(Arc::clone(&b), b_dir.path(), &script).await;
    assert_eq!(reason, ExitReason::Exited { code: 0 }, "{out:?}");
    assert_eq!(
        out,
        ["0", "0", "tenant data", "0", "0"],
        "the other's directory and the manager's state are empty mode-0 mounts"
    );
    // Without the hiding the same listing sees the state's file (the probe is real).
    let plain = Arc::new(
        SessionSandbox::start(
            &config(Level::User, 3_900_410, 1, leases.path()),
            b_dir.path(),
        )
        .unwrap()
        .unwrap(),
    );
    let listing = format!("ls -A {} | wc -l", state.path().display());
    let (out, _) = run_in(plain, b_dir.path(), &listing).await;
    assert_eq!(out, ["1"]);
}
