//! What a demanding user tried against the binary (issue 12): each test failed before its fix.

use std::time::{Duration, Instant};

use claude_manager::proc::{spawn, EnvPolicy, OutputEvent, OutputMode, ProcessConfig};

use crate::cli::{code, pm};

/// `bash -c SCRIPT` with claude-pm as `$0`; its stdout and stderr together, and its status.
async fn bash(script: &str, env: &[(&str, &str)]) -> (String, i32) {
    let mut b = ProcessConfig::builder("/bin/bash")
        .args(["-c", script, env!("CARGO_BIN_EXE_claude-pm")])
        .env_policy(EnvPolicy::Inherit)
        .env_remove("CLAUDE_PM_LOG")
        .stdout(OutputMode::lines())
        .stderr(OutputMode::lines())
        .grace(Duration::from_secs(5));
    for (k, v) in env {
        b = b.env(k, v);
    }
    let mut child = spawn(&b.build().unwrap()).await.unwrap();
    let read = |mut rx: claude_manager::proc::OutputReceiver| async move {
        let mut text = String::new();
        while let Some(e) = rx.recv().await {
            if let OutputEvent::Line(l) | OutputEvent::Unterminated(l) = e {
                text.push_str(&String::from_utf8_lossy(&l));
                text.push('\n');
            }
        }
        text
    };
    let (out, err) = tokio::join!(
        read(child.take_stdout().unwrap()),
        read(child.take_stderr().unwrap())
    );
    let text = out + &err;
    let exit = child.wait().await.unwrap();
    (text, code(&exit))
}

/// A key long enough to pass the format check.
const KEY: &str = "sk-ant-api03-edges-0000000000000000000000";

/// Every duration from every source is bounded when read (a huge one used to panic and leave
/// claude-pm deaf to signals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enormous_duration_is_refused_when_read_not_a_panic() {
    let (_, err, exit) = pm(
        &["run", "--timeout=18446744073709551615s", "--", "true"],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(
        err.contains("at most 365 days") && !err.contains("panicked"),
        "{err}"
    );
    let (_, err, exit) = pm(
        &["run", "--", "true"],
        &[("CLAUDE_PM_GRACE", "18446744073709551615s".into())],
    )
    .await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(err.contains("CLAUDE_PM_GRACE"), "{err}");
}

/// A closed or full stdout is an exit status, never a panic (101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_or_full_stdout_is_an_exit_status_not_a_panic() {
    // The reader is gone before doctor writes a byte.
    let (text, _) = bash(
        "{ sleep 0.3; \"$0\" doctor; echo \"status $?\" >&2; } | true",
        &[],
    )
    .await;
    assert!(
        text.contains("status 141") && !text.contains("panicked"),
        "{text}"
    );
    let (text, _) = bash("\"$0\" doctor >/dev/full; echo \"status $?\"", &[]).await;
    assert!(
        text.contains("cannot write to stdout: No space left on device")
            && text.contains("status 1"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// When the reader of `claude`'s stdout goes away, the tree is stopped at once and claude-pm
/// exits 141, as `run`'s child would end by SIGPIPE (it used to spin at 100 % CPU forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_stops_when_the_reader_of_its_output_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("endless-{}", std::process::id());
    let fake = dir.path().join("claude");
    std::fs::write(&fake, format!("#!/bin/sh\nexec yes {marker}\n")).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let started = Instant::now();
    let (text, _) = bash(
        "\"$0\" claude | head -1; echo \"status ${PIPESTATUS[0]}\"",
        &[
            ("CLAUDE_PM_CLAUDE_BIN", fake.to_str().unwrap()),
            ("ANTHROPIC_API_KEY", KEY),
        ],
    )
    .await;
    assert!(
        text.contains(&marker) && text.contains("status 141"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Nothing of the tree is left.
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
        .count();
    assert_eq!(left, 0);
}

/// The soft enforcer's own SIGSTOPs are throttling, not a fault: a busy loop under 0.3 CPUs in
/// soft mode runs until its timeout (it used to end after 1-2 s as "unhealthy: stopped").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_enforcers_stops_are_not_judged_unhealthy() {
    let _serial = crate::SERIAL.lock().await;
    let (_, err, exit) = pm(
        &[
            "run",
            "--limits",
            "soft",
            "--cpus",
            "0.3",
            "--timeout",
            "3s",
            "--health-interval",
            "100ms",
            "--",
            "sh",
            "-c",
            "while :; do :; done",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 124, "{err}");
    assert!(!err.contains("unhealthy"), "{err}");
}

/// Kernel refusals are caught up front with the bound named (they used to fail the spawn with
/// 126 and no cause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_beyond_what_the_host_allows_are_refused_naming_the_bound() {
    for (flag, value, bound) in [
        ("--cpus", "1e9", "CPUs of this host"),
        ("--pids", "4194305", "kernel.pid_max"),
        ("--nofile", "100000000", "fs.nr_open"),
    ] {
        let (_, err, exit) = pm(&["run", flag, value, "--", "true"], &[]).await;
        assert_eq!(code(&exit), 125, "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(bound), "{err}");
    }
}

/// As a user who is not root: limits go to what this user can enforce (the soft enforcer,
/// RLIMIT_NPROC), not to cgroups it cannot write (it used to fail with 126 after a `limit
/// applied` event); doctor says the same; and what only root may do is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_is_not_root_gets_what_it_can_enforce() {
    // A uid no account has (61000-61999 are unassigned here).
    let as_user = "setpriv --reuid 61000 --regid 61000 --clear-groups";
    let (text, status) = bash(
        &format!("{as_user} \"$0\" run --events - --memory 100M --pids 50 -- true"),
        &[],
    )
    .await;
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains(r#""limit":"memory","mechanism":"soft""#)
            && text.contains(r#""limit":"pids","mechanism":"rlimit""#),
        "{text}"
    );
    let (text, _) = bash(
        &format!("{as_user} \"$0\" doctor --json --memory 100M"),
        &[("CLAUDE_PM_CLAUDE_BIN", "/bin/true")],
    )
    .await;
    assert!(
        text.contains(r#""mechanism":"soft""#) && !text.contains("cgroup-v1"),
        "{text}"
    );
    for (flag, value, why) in [
        ("--nice", "-5", "needs root"),
        ("--nofile", "30000", "hard limit"),
    ] {
        let (text, status) = bash(
            &format!("ulimit -Hn 20000; {as_user} \"$0\" run {flag} {value} -- true"),
            &[],
        )
        .await;
        assert_eq!(status, 125, "{flag} {value}: {text}");
        assert!(text.contains(flag) && text.contains(why), "{text}");
    }
}

/// A stop claude-pm makes follows the contract whatever the child answers: a hung child that
/// traps SIGTERM and exits 0 is still 143 (it used to exit 0). `--hang-after` means something
/// for `run` too: no output, CPU or IO for that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_run_is_stopped_and_reads_143_whatever_the_child_answers() {
    async fn run_watched(script: &str) -> (String, claude_manager::proc::ExitInfo) {
        let args = [
            "run",
            "--hang-after",
            "1s",
            "--health-interval",
            "100ms",
            "--",
            "sh",
            "-c",
            script,
        ];
        let (_, err, exit) = pm(&args, &[]).await;
        (err, exit)
    }
    let started = Instant::now();
    let (err, exit) = run_watched("trap 'exit 0' TERM; sleep 30 & wait").await;
    assert_eq!(code(&exit), 143, "{err}");
    assert!(err.contains("hung"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A program that works (CPU) is not hung.
    let (err, exit) = run_watched("i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done").await;
    assert_eq!(code(&exit), 0, "{err}");
}

/// The CPU time of a tree whose members were killed by the timeout counts them (it read 0.001 s
/// for two busy loops of 3 s): from the samples without a cgroup, from the cgroup with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_seconds_count_the_killed_members_of_the_tree() {
    let _serial = crate::SERIAL.lock().await;
    for extra in [&[][..], &["--cpus", "2"][..]] {
        let mut args = vec![
            "run",
            "--events",
            "-",
            "--timeout",
            "3s",
            "--health-interval",
            "200ms",
        ];
        args.extend_from_slice(extra);
        args.extend([
            "--",
            "sh",
            "-c",
            "(while :; do :; done) & (while :; do :; done) & wait",
        ]);
        let (_, err, exit) = pm(&args, &[]).await;
        assert_eq!(code(&exit), 124, "{err}");
        let exit_event = err
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "exit")
            .unwrap();
        let cpu = exit_event["cpu_seconds"].as_f64().unwrap();
        assert!(
            cpu >= 2.0,
            "{extra:?}: {cpu} s of CPU for two 3 s busy loops"
        );
    }
}

/// A malformed key is refused before anything runs, saying what is wrong with it (it used to
/// exit 1 blaming a refresh); doctor reports the same and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_refused_up_front_saying_why() {
    let env = [
        ("ANTHROPIC_API_KEY", "hello".to_owned()),
        ("CLAUDE_PM_CLAUDE_BIN", "/bin/true".to_owned()),
    ];
    let (_, err, exit) = pm(&["claude", "--", "-p", "hi"], &env).await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(
        err.contains("length 5") && !err.contains("refresh"),
        "{err}"
    );
    let (out, _, exit) = pm(&["doctor", "--json"], &env).await;
    assert_eq!(code(&exit), 1);
    assert!(out.join("").contains("length 5"), "{out:?}");
}

/// Doctor fails when the main job cannot run here, with errors in fields of their own, and a
/// binary that only prints a version is not taken for Claude Code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_without_a_real_claude_or_a_credential() {
    let env = [
        ("CLAUDE_PM_CLAUDE_BIN", "/bin/echo".to_owned()),
        ("ANTHROPIC_API_KEY", KEY.to_owned()),
    ];
    let (out, _, exit) = pm(&["doctor", "--json"], &env).await;
    assert_eq!(code(&exit), 1);
    let v: serde_json::Value = serde_json::from_str(&out.join("\n")).unwrap();
    assert!(v["claude"]["version"].is_null(), "{v}");
    assert!(
        v["claude"]["error"]
            .as_str()
            .unwrap()
            .contains("not Claude Code"),
        "{v}"
    );
    let env = [
        ("CLAUDE_PM_CLAUDE_BIN", "/nonexistent/claude".to_owned()),
        ("ANTHROPIC_API_KEY", String::new()),
        ("CLAUDE_CODE_OAUTH_TOKEN", String::new()),
        ("HOME", "/nonexistent".to_owned()),
    ];
    let (_, _, exit) = pm(&["doctor"], &env).await;
    assert_eq!(code(&exit), 1);
}

/// Arguments pass through byte for byte (a non-UTF-8 one used to be refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_pass_through_as_bytes() {
    let (text, status) = bash("\"$0\" run -- printf '%s' $'caf\\xe9' | od -An -tx1", &[]).await;
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("63 61 66 e9"), "{text}");
}

/// A write error on the events sink is reported, not swallowed; the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_written_are_reported() {
    let (_, err, exit) = pm(&["run", "--events", "/dev/full", "--", "true"], &[]).await;
    assert_eq!(code(&exit), 0, "{err}");
    assert!(
        err.contains("cannot write events to /dev/full: No space left on device"),
        "{err}"
    );
}

/// SIGHUP stops the tree gracefully, like SIGTERM (it used to kill claude-pm outright, with no
/// exit event); a second signal kills the tree at once instead of waiting out the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_gracefully_and_a_second_signal_forces() {
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args([
            "run",
            "--events",
            "-",
            "--grace",
            "60s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .env_policy(EnvPolicy::Inherit)
        .stdout(OutputMode::lines())
        .stderr(OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut err = child.take_stderr().unwrap();
    assert!(matches!(out.recv().await, Some(OutputEvent::Line(l)) if l == b"ready"));
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(child.pid() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(exit) = child.try_exit() {
        let mut text = String::new();
        while let Ok(Some(OutputEvent::Line(l))) =
            tokio::time::timeout(Duration::from_secs(1), err.recv()).await
        {
            text.push_str(&String::from_utf8_lossy(&l));
            text.push('\n');
        }
        panic!("the child ignores SIGTERM and should be in its grace, but {exit:?}: {text}");
    }
    let forced = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(child.pid() as i32, libc::SIGTERM) };
    let exit = child.wait().await.unwrap();
    assert!(
        forced.elapsed() < Duration::from_secs(5),
        "{:?}",
        forced.elapsed()
    );
    assert_eq!(code(&exit), 137);
    let mut events = String::new();
    while let Some(OutputEvent::Line(l)) = err.recv().await {
        events.push_str(&String::from_utf8_lossy(&l));
        events.push('\n');
    }
    assert!(events.contains(r#""event":"exit""#), "{events}");
}

/// Messages read as sentences: no nested repeats, errno kept, an empty program is a usage
/// error (it was 126).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_written_for_people() {
    let (_, err, exit) = pm(&["run", "--", ""], &[]).await;
    assert_eq!(code(&exit), 125, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_, err, exit) = pm(&["run", "--", script.to_str().unwrap()], &[]).await;
    assert_eq!(code(&exit), 126, "{err}");
    assert!(
        err.contains("#! interpreter or loader is missing failed: No such file or directory"),
        "{err}"
    );
    let (_, err, _) = pm(
        &[
            "run",
            "--max-restarts",
            "18446744073709551616",
            "--",
            "true",
        ],
        &[],
    )
    .await;
    assert!(err.contains("too large"), "{err}");
    let (text, _) = bash(
        "\"$0\" run -- sh -c 'sleep 5' & sleep 0.5; kill -TERM $!; wait $!",
        &[],
    )
    .await;
    assert!(text.contains("claude-pm: stopped: "), "{text}");
    assert!(!text.contains("stopped (stopped"), "{text}");
}
