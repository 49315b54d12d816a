//! The stop sequence and whole-tree guarantees.

use std::time::{Duration, Instant};

use claude_proc::{spawn, Child, ExitReason, StatusKind, StopCause};

use crate::support::*;

/// A child that ignores SIGTERM, returned once its trap is in place.
async fn term_ignoring_child(grace: Duration) -> claude_proc::Child {
    let config = sh("trap '' TERM; echo ready; while :; do sleep 0.05; done")
        .stdout(lines())
        .grace(grace)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    assert_eq!(read_lines(&mut out, 1).await, vec!["ready"]);
    child
}

#[tokio::test]
async fn term_ignoring_child_is_killed_at_the_grace_deadline() {
    let mut child = term_ignoring_child(Duration::from_millis(300)).await;
    let start = Instant::now();
    let info = child.stop_with(StopCause::Timeout).await.unwrap();
    let took = start.elapsed();
    assert_eq!(
        info.reason,
        ExitReason::KilledAfterGrace {
            cause: StopCause::Timeout
        }
    );
    // Not before the grace period, and not long after it.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(!alive(child.pid()));
}

/// A second request (a second Ctrl-C) cuts the grace period short: the tree is killed at
/// once, not 30 s later; a kill with no stop under way kills at once too.
#[tokio::test]
async fn a_kill_request_cuts_the_grace_period_short() {
    /// Waits for the child and checks it was killed for `cause` within 3 s of `start`.
    async fn killed_at_once(mut child: Child, start: Instant, cause: StopCause) {
        let info = child.wait().await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(info.reason, ExitReason::Killed { cause });
        assert!(!alive(child.pid()));
    }
    let child = term_ignoring_child(Duration::from_secs(30)).await;
    let start = Instant::now();
    child.request_stop(StopCause::Requested);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        alive(child.pid()),
        "the child ignores SIGTERM: still in its grace period"
    );
    child.request_kill(StopCause::Requested);
    killed_at_once(child, start, StopCause::Requested).await;
    let child = term_ignoring_child(Duration::from_secs(30)).await;
    let start = Instant::now();
    child.request_kill(StopCause::Timeout);
    killed_at_once(child, start, StopCause::Timeout).await;
}

/// A grace period too long to add to the clock is a long wait, not a panic.
#[tokio::test]
async fn an_enormous_grace_period_does_not_overflow() {
    let config = sh("sleep 30").grace(Duration::MAX).build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let info = child.stop().await.unwrap();
    assert!(
        matches!(info.reason, ExitReason::Stopped { .. }),
        "{:?}",
        info.reason
    );
}

#[tokio::test]
async fn term_respecting_child_stops_within_grace() {
    let config = sh("sleep 30")
        .grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let start = Instant::now();
    let info = child.stop().await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    match info.reason {
        ExitReason::Stopped { cause, .. } => assert_eq!(cause, StopCause::Requested),
        other => panic!("{other:?}"),
    }
}

/// A grandchild that calls setsid (leaves the process group) and ignores SIGTERM.
const SETSID_GRANDCHILD: &str = "setsid sh -c 'trap \"\" TERM; echo $$; exec sleep 1000' & wait";

#[tokio::test]
async fn setsid_grandchild_is_killed_with_the_tree() {
    let config = sh(SETSID_GRANDCHILD)
        .stdout(lines())
        .grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let grandchild: u32 = read_lines(&mut out, 1).await[0].parse().unwrap();
    assert!(alive(grandchild));
    let info = child.stop().await.unwrap();
    assert!(info.reason.cause().is_some());
    assert!(
        !alive(grandchild),
        "setsid grandchild {grandchild} survived the stop"
    );
    assert!(!alive(child.pid()));
}

#[tokio::test]
async fn orphaned_setsid_grandchild_is_killed_when_the_leader_exits() {
    // The leader exits at once; its setsid grandchild is orphaned to init and holds stdout.
    let config = sh("setsid sh -c 'echo $$; exec sleep 1000' & sleep 0.2; exit 3")
        .stdout(lines())
        .grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let grandchild: u32 = read_lines(&mut out, 1).await[0].parse().unwrap();
    let info = child.wait().await.unwrap();
    assert_eq!(info.reason, ExitReason::Exited { code: 3 });
    assert!(
        !alive(grandchild),
        "orphan {grandchild} outlived its session"
    );
    // Its stdout reached end-of-file: nothing holds the pipe any more.
    assert_eq!(out.recv().await, None);
}

#[tokio::test]
async fn dropping_the_handle_kills_the_tree() {
    let config = sh(SETSID_GRANDCHILD).stdout(lines()).build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let grandchild: u32 = read_lines(&mut out, 1).await[0].parse().unwrap();
    let leader = child.pid();
    let mut status = child.watch_status();
    drop(child);
    status
        .wait_for(|s| s.kind() == StatusKind::Exited)
        .await
        .unwrap();
    assert!(!alive(leader));
    assert!(!alive(grandchild));
    assert!(!is_zombie_child_of_us(leader));
}

#[tokio::test]
async fn stop_is_cancellation_safe() {
    let mut child = term_ignoring_child(Duration::from_millis(200)).await;
    // Start a stop and abandon it almost at once.
    let _ = tokio::time::timeout(Duration::from_millis(20), child.stop()).await;
    // The sequence goes on in the monitor and ends the tree anyway.
    let info = child.wait().await.unwrap();
    assert!(
        matches!(info.reason, ExitReason::KilledAfterGrace { .. }),
        "{:?}",
        info.reason
    );
    assert!(!alive(child.pid()));
}

#[tokio::test]
async fn stdin_close_ends_a_reader_gracefully() {
    let config = sh("cat >/dev/null; exit 0")
        .stdin(claude_proc::StdinMode::Piped)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let start = Instant::now();
    let info = child.stop().await.unwrap();
    // Ended by the stdin close, well before any SIGTERM would be needed.
    assert!(start.elapsed() < Duration::from_millis(900));
    match info.reason {
        ExitReason::Stopped { exit, .. } => assert_eq!(exit.code, Some(0)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_zombies_after_many_runs() {
    let mut pids = Vec::new();
    for i in 0..30 {
        let script = match i % 3 {
            0 => "exit 0",
            1 => "kill -KILL $$",
            _ => "sleep 0.01 & exit 1",
        };
        let config = sh(script).build().unwrap();
        let mut child = spawn(&config).await.unwrap();
        child.wait().await.unwrap();
        pids.push(child.pid());
    }
    for pid in pids {
        assert!(!is_zombie_child_of_us(pid), "{pid} left a zombie");
    }
}

#[tokio::test]
async fn a_child_ignoring_stdin_close_gets_sigterm_after_the_stdin_wait() {
    let config = sh("exec sleep 30")
        .stdin(claude_proc::StdinMode::Piped)
        .stdin_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let start = Instant::now();
    let info = child.stop().await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    match info.reason {
        ExitReason::Stopped { exit, .. } => assert_eq!(exit.signal, Some(libc::SIGTERM)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_consumer_that_never_reads_does_not_stall_the_exit_report() {
    // The child fills the pipe and blocks; nobody reads the receiver it was given.
    let config = claude_proc::ProcessConfig::builder("/usr/bin/yes")
        .stdout(lines())
        .output_buffer(1)
        .grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let _unread = child.take_stdout().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let info = tokio::time::timeout(Duration::from_secs(5), child.stop())
        .await
        .expect("exit report stalled behind an unread output channel")
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(info.reason.cause().is_some());
    assert!(!alive(child.pid()));
}

#[tokio::test]
async fn a_stopped_tree_still_stops_within_the_grace_period() {
    let config = sh("exec sleep 100")
        .grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(child.pid() as i32, libc::SIGSTOP) };
    let start = Instant::now();
    let info = child.stop().await.unwrap();
    // SIGTERM is followed by SIGCONT, so the stopped process acts on it at once.
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(info.reason, ExitReason::Stopped { .. }),
        "{:?}",
        info.reason
    );
}
