//! `--isolation` through the binary: the CLI where the session's uid cannot reach it, bad
//! settings refused before anything starts, and a SIGKILLed claude-pm whose leftovers do not
//! block the next start. Needs root (as the feature does).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use claude_manager::proc::{spawn, EnvPolicy, OutputEvent, OutputMode, ProcessConfig};
use claude_testkit::{offline_env, pinned_cli, StandInApi};

use crate::cli::{code, pm, pm_in};

/// A directory under the test target (world-searchable parents), mode `mode`.
fn dir_with_mode(prefix: &str, mode: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_where_the_sessions_uid_cannot_reach_it_still_runs() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let _serial = crate::SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let cli = pinned_cli().await.unwrap();
    // Like ~/.local/bin/claude under root's 0700 home: the file is executable by anyone, a
    // parent is not searchable.
    let private = dir_with_mode("private-bin-", 0o700);
    let real = std::fs::canonicalize(&cli).unwrap();
    let linked = private.path().join("claude");
    std::fs::hard_link(&real, &linked).unwrap();
    let mut env: Vec<(&str, String)> = offline_env(&api.base_url())
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    env.push(("CLAUDE_PM_CLAUDE_BIN", linked.display().to_string()));
    env.push((
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-isolated-cli-0000000000".into(),
    ));
    // Isolation grants the session its working directory: give it one of its own.
    let work = dir_with_mode("cli-work-", 0o755);
    for level in ["user", "sandbox"] {
        let (out, err, exit) = pm_in(
            Some(work.path()),
            &[
                "claude",
                "--isolation",
                level,
                "--uid-range",
                "3920000-3920009",
                "--",
                "-p",
                "ping",
                "--output-format",
                "json",
            ],
            &env,
        )
        .await;
        assert_eq!(code(&exit), 0, "{level}: {err}");
        assert!(
            out.join("").contains("\"result\":\"pong\""),
            "{level}: {out:?}"
        );
    }
    // A program the session's uid may not execute at all is refused, naming it.
    let program = private.path().join("true");
    std::fs::copy("/bin/true", &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700)).unwrap();
    let shown = program.display().to_string();
    let (_, err, exit) = pm_in(
        Some(work.path()),
        &[
            "run",
            "--isolation",
            "user",
            "--uid-range",
            "3920000-3920009",
            "--",
            &shown,
        ],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 126, "{err}");
    assert!(
        err.contains(&shown) && err.contains("Permission denied"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_isolation_settings_are_refused_before_anything_starts() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let touch = format!("touch {}", ran.display());
    for (args, env, says) in [
        (
            vec!["--network", "api"],
            vec![],
            "network = api needs isolation = sandbox",
        ),
        (
            vec!["--isolation", "sandbox", "--network", "api"],
            vec![("ANTHROPIC_BASE_URL", "http://bad host:80".to_owned())],
            "invalid API URL",
        ),
        (
            vec!["--isolation", "user", "--uid-range", "65000-65600"],
            vec![],
            "overlaps the existing user \"nobody\"",
        ),
        (
            vec!["--isolation", "jail"],
            vec![],
            "must be none, user or sandbox",
        ),
        (vec!["--network", "wifi"], vec![], "must be host or api"),
        (
            vec!["--isolation", "user", "--uid-range", "5-9"],
            vec![],
            "belong to the system",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(args.iter().copied());
        all.extend(["--", "sh", "-c", &touch]);
        let (_, err, exit) = pm(&all, &env).await;
        assert_eq!(code(&exit), 125, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!ran.exists(), "{args:?} started the program");
    }
}

/// claude-pm killed with SIGKILL while an isolated session runs: the watchdog ends the tree,
/// the lease's lock goes with the process, and the next claude-pm given the same single uid
/// starts, after undoing what the first left (the workdir's ACL entry and file ownership).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_claude_pm_leaves_nothing_that_blocks_the_next_start() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let uid = 3_920_100u32;
    let range = format!("{uid}-{uid}");
    let work = dir_with_mode("killed-", 0o755);
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args([
            "run",
            "--isolation",
            "user",
            "--uid-range",
            &range,
            "--",
            "sh",
            "-c",
            "echo x > created; echo started; exec sleep 1000",
        ])
        .cwd(work.path())
        .env_policy(EnvPolicy::Inherit)
        .stdout(OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    assert!(matches!(out.recv().await, Some(OutputEvent::Line(l)) if l == b"started"));
    assert!(
        acl_names(work.path(), uid),
        "the session's ACL entry is in place"
    );
    // SIGKILL to claude-pm alone (its tree is the watchdog's to end).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait().await;
    let (_, err, exit) = pm_in(
        Some(work.path()),
        &[
            "run",
            "--isolation",
            "user",
            "--uid-range",
            &range,
            "--",
            "id",
            "-u",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 0, "the next start was blocked: {err}");
    // The second session's release took back everything: nothing under the uid is left.
    assert!(!acl_names(work.path(), uid));
    assert_eq!(
        std::fs::metadata(work.path().join("created"))
            .unwrap()
            .uid(),
        0
    );
    assert_eq!(
        std::fs::metadata(work.path()).unwrap().mode() & 0o777,
        0o755
    );
    for _ in 0..100 {
        if !uid_has_processes(uid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!uid_has_processes(uid));
}

/// Whether `path`'s ACL has an entry naming `uid`.
fn acl_names(path: &Path, uid: u32) -> bool {
    let Ok(Some(acl)) = xattr::get(path, "system.posix_acl_access") else {
        return false;
    };
    acl.get(4..).unwrap_or_default().chunks_exact(8).any(|e| {
        u16::from_le_bytes([e[0], e[1]]) == 2 && u32::from_le_bytes([e[4], e[5], e[6], e[7]]) == uid
    })
}

fn uid_has_processes(uid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
            s.lines().any(|l| {
                l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
            })
        })
    })
}
