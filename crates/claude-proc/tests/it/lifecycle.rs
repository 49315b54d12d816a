//! Exit codes, signals, status transitions.

use std::time::Duration;

use claude_proc::{spawn, ExitReason, ProcessStatus, StatusKind};

use crate::support::*;

#[tokio::test]
async fn exit_code_is_reported() {
    let config = sh("exit 7").build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    assert_eq!(info.reason, ExitReason::Exited { code: 7 });
    assert_eq!(child.status().kind(), StatusKind::Exited);
}

#[tokio::test]
async fn signal_is_reported() {
    let config = sh("kill -SEGV $$").build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    assert!(
        matches!(info.reason, ExitReason::Signaled { signal: 11, .. }),
        "{:?}",
        info.reason
    );
}

#[tokio::test]
async fn stdout_lines_arrive() {
    let config = sh("echo one; echo two").stdout(lines()).build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    assert_eq!(read_lines(&mut out, 2).await, vec!["one", "two"]);
    assert!(child.wait().await.unwrap().reason.success());
}

#[tokio::test]
async fn transitions_are_observable() {
    let config = sh("sleep 30").build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut events = child.events();
    assert!(matches!(child.status(), ProcessStatus::Running { .. }));
    let info = child.stop().await.unwrap();
    assert!(
        matches!(info.reason, ExitReason::Stopped { .. }),
        "{:?}",
        info.reason
    );
    let first = events.recv().await.unwrap();
    assert_eq!(first.to.kind(), StatusKind::Stopping);
    let second = events.recv().await.unwrap();
    assert_eq!(second.to.kind(), StatusKind::Exited);
    assert!(gone_within(child.pid(), Duration::from_millis(100)).await);
}
