//! A child under its own identity and in its own namespaces ([`ChildSetup::run_as`],
//! [`ChildSetup::sandbox`]): what the program sees and what the stop ends. Needs root.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use claude_proc::{spawn, ChildSetup, ExitReason, FsView};

use crate::hooks::{hook, TestHook};
use crate::support::*;

/// A uid and gid no user of this machine has (checked below).
const UID: u32 = 3_999_001;

fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert!(!passwd.contains(&format!(":{UID}:")), "uid {UID} is taken");
        return true;
    }
    require_capability("root (uids and namespaces)");
    false
}

fn view(workdir: &Path) -> FsView {
    let mut view = FsView::default();
    view.writable.push(workdir.to_path_buf());
    view.private.push("/tmp".into());
    view.private.push("/dev/shm".into());
    view
}

fn sandboxed(workdir: &Path) -> impl Fn(&mut ChildSetup) -> Result<(), claude_proc::HookError> {
    let view = view(workdir);
    move |setup: &mut ChildSetup| {
        setup.run_as(UID, UID);
        setup.no_new_privileges();
        setup.sandbox(view.clone(), None);
        Ok(())
    }
}

/// Run `sh -c script` in `dir` with `h`; its stdout lines and exit. The working directory is
/// given: the manager's own (the crate's directory) may be hidden by the view (a checkout
/// under /tmp is).
async fn sh_in(dir: &Path, script: &str, h: TestHook) -> (Vec<String>, claude_proc::ExitInfo) {
    let config = sh(script)
        .cwd(dir)
        .stdout(lines())
        .hook(Arc::new(h))
        .build()
        .unwrap();
    output_of(&config).await
}

/// A directory the test uid may use (the tempdir's parent is world-searchable).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("ns-").tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(UID), Some(UID)).unwrap();
    dir
}

#[tokio::test]
async fn run_as_gives_the_uid_no_groups_and_no_new_privileges() {
    if !root_or_skip() {
        return;
    }
    let h = hook(|setup: &mut ChildSetup| {
        setup.run_as(UID, UID);
        setup.no_new_privileges();
        Ok(())
    });
    let (out, exit) = sh_in(
        Path::new("/"),
        "id -u; id -g; id -G; grep NoNewPrivs /proc/self/status | tr -d '\\t'",
        h,
    )
    .await;
    assert_eq!(exit.reason, ExitReason::Exited { code: 0 }, "{out:?}");
    let want = [UID.to_string(), UID.to_string(), UID.to_string()];
    assert_eq!(out[..3], want, "no supplementary groups: {out:?}");
    assert_eq!(out[3], "NoNewPrivs:1");
}

#[tokio::test]
async fn the_sandbox_shows_its_own_processes_a_read_only_host_and_private_tmp() {
    if !root_or_skip() {
        return;
    }
    let dir = workdir();
    let host_tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "cd {w}; echo pid=$$; echo procs=$(cd /proc && echo [0-9]*); \
         touch /etc/claude-proc-probe 2>/dev/null && echo etc=writable || echo etc=read-only; \
         echo x > /tmp/private && echo tmp=ok; \
         ls {host_tmp} 2>/dev/null && echo host-tmp=visible || echo host-tmp=hidden; \
         echo kept > {w}/out && echo work=ok",
        w = dir.path().display(),
        host_tmp = host_tmp.path().display(),
    );
    let (out, exit) = sh_in(dir.path(), &script, hook(sandboxed(dir.path()))).await;
    assert_eq!(exit.reason, ExitReason::Exited { code: 0 }, "{out:?}");
    // The program is the second process of its namespace, after the init; the listing's
    // subshell is the only other.
    assert_eq!(out[0], "pid=2", "{out:?}");
    assert!(out[1] == "procs=1 2 3" || out[1] == "procs=1 2", "{out:?}");
    assert_eq!(
        out[2..],
        ["etc=read-only", "tmp=ok", "host-tmp=hidden", "work=ok"]
    );
    assert!(!Path::new("/tmp/private").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "kept\n"
    );
}

#[tokio::test]
async fn the_programs_exit_is_reported_not_the_inits() {
    if !root_or_skip() {
        return;
    }
    let dir = workdir();
    let (_, exit) = sh_in(dir.path(), "exit 7", hook(sandboxed(dir.path()))).await;
    assert_eq!(exit.reason, ExitReason::Exited { code: 7 });
    let (_, exit) = sh_in(dir.path(), "kill -SEGV $$", hook(sandboxed(dir.path()))).await;
    assert!(
        matches!(exit.reason, ExitReason::Signaled { signal, .. } if signal == libc::SIGSEGV),
        "{}",
        exit.reason
    );
}

#[tokio::test]
async fn a_failed_exec_inside_the_sandbox_names_the_step() {
    if !root_or_skip() {
        return;
    }
    let dir = workdir();
    let config = claude_proc::ProcessConfig::builder("/bin/true")
        .hook(Arc::new(hook(move |setup: &mut ChildSetup| {
            let mut view = FsView::default();
            view.writable.push("/no/such/dir".into());
            setup.sandbox(view, None);
            Ok(())
        })))
        .build()
        .unwrap();
    let err = spawn(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("/no/such/dir") && err.contains("does not exist"),
        "{err}"
    );
    drop(dir);
}

/// The program's pid in the host's namespace whose command line contains `needle`.
fn host_pids_with(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with(b"sleep\0") && String::from_utf8_lossy(&c).contains(needle)
            })
        })
        .collect()
}

/// A process that leaves its group and session and clears its environment escapes a
/// scan-based stop (demonstrated without the sandbox); in the sandbox the stop ends it with
/// the namespace.
#[tokio::test]
async fn the_stop_ends_an_escaped_process_with_the_namespace() {
    if !root_or_skip() {
        return;
    }
    let dir = workdir();
    for sandbox in [false, true] {
        let needle = format!("{}.{}", 900 + u32::from(sandbox), std::process::id());
        let script = format!(
            "env -i setsid sh -c 'sleep {needle} & exit' </dev/null >/dev/null 2>&1; echo ready; sleep 1000"
        );
        let d = dir.path().to_path_buf();
        let h = hook(move |setup: &mut ChildSetup| {
            if sandbox {
                sandboxed(&d)(setup)?;
            }
            Ok(())
        });
        let config = sh(&script)
            .cwd(dir.path())
            .stdout(lines())
            .hook(Arc::new(h))
            .build()
            .unwrap();
        let mut child = spawn(&config).await.unwrap();
        let mut out = child.take_stdout().unwrap();
        assert_eq!(read_lines(&mut out, 1).await, ["ready"]);
        let mut escaped = Vec::new();
        for _ in 0..100 {
            escaped = host_pids_with(&needle);
            if !escaped.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(escaped.len(), 1, "the escapee started");
        child.stop().await.unwrap();
        let left = gone_within(escaped[0], Duration::from_secs(2)).await;
        if sandbox {
            assert!(left, "the sandbox's stop ended the escapee");
        } else {
            assert!(
                !left,
                "without the sandbox the escapee survives the stop (the probe is real)"
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(escaped[0] as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A setuid-root binary raises an unprivileged program to euid 0 unless `no_new_privs` is
/// set (or, in the sandbox, the view is `nosuid`): the attempt succeeds without the
/// protection, so its failure with it is real.
#[tokio::test]
async fn a_setuid_binary_gives_root_only_without_no_new_privs() {
    if !root_or_skip() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("suid-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = dir.path().join("id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let script = format!("{} -u", suid.display());
    for (no_new_privs, sandbox, want) in [
        (false, false, "0".to_owned()),
        (true, false, UID.to_string()),
        (false, true, UID.to_string()),
    ] {
        let d = dir.path().to_path_buf();
        let h = hook(move |setup: &mut ChildSetup| {
            setup.run_as(UID, UID);
            if no_new_privs {
                setup.no_new_privileges();
            }
            if sandbox {
                setup.sandbox(view(&d), None);
            }
            Ok(())
        });
        let (out, _) = sh_in(dir.path(), &script, h).await;
        assert_eq!(
            out,
            [want],
            "no_new_privs {no_new_privs}, sandbox {sandbox}"
        );
    }
}

/// A program under the host's /tmp, which the sandbox's private /tmp hides, still runs:
/// executed through the descriptor the manager opened.
#[tokio::test]
async fn a_program_the_view_hides_runs_through_the_managers_descriptor() {
    if !root_or_skip() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let host_tmp = tempfile::Builder::new()
        .prefix("hidden-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(host_tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = host_tmp.path().join("true");
    std::fs::copy("/bin/true", &program).unwrap();
    let dir = workdir();
    let config = claude_proc::ProcessConfig::builder(&program)
        .cwd(dir.path())
        .hook(Arc::new(hook(sandboxed(dir.path()))))
        .build()
        .unwrap();
    let exit = spawn(&config).await.unwrap().wait().await.unwrap();
    assert_eq!(exit.reason, ExitReason::Exited { code: 0 });
}
