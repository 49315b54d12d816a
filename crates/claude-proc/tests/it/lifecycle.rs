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

/// The run's CPU time includes what the descendants the leader reaped used: here a busy loop
/// one level down, ended by the kernel (SIGXCPU) once it has used one second of CPU, so the
/// amount does not depend on how busy the machine is (the tick-sampled user and system times
/// the run reports came to 943 ms for that second on a loaded machine, hence 800).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_counts_reaped_descendants() {
    let config = sh("sh -c 'ulimit -t 1; while :; do :; done'; exit 0")
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    let cpu = info.cpu_time.expect("cpu time read from the zombie");
    assert!(
        cpu >= Duration::from_millis(800) && cpu <= info.wall + Duration::from_millis(50),
        "cpu {cpu:?} over wall {:?}",
        info.wall
    );
    // An idle run used almost none.
    let info = spawn(&sh("sleep 0.2").build().unwrap())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(
        info.cpu_time.unwrap() < Duration::from_millis(100),
        "{info:?}"
    );
}

/// The run's peak RSS comes from the kernel at reap, not from samples: a 0.4-second burst of
/// about 100 MB in a grandchild the leader reaped (dash doubles its buffer past the 50 MB it
/// reads) is seen although nothing sampled it; a run that holds nothing peaks in single
/// megabytes.
#[tokio::test]
async fn peak_rss_counts_a_short_burst_in_a_reaped_descendant() {
    const MB: u64 = 1_000_000;
    // The leader is created sharing this process's memory and the kernel charges its exec with
    // that memory's peak; a run only shows a peak above ours, so the burst must exceed it.
    let own = own_peak_bytes();
    let burst_bytes = (50 * MB).max(2 * own);
    let burst = sh(&format!(
        r#"sh -c 'x=$(head -c {burst_bytes} /dev/zero | tr "\0" a)'; exit 0"#
    ))
    .build()
    .unwrap();
    let info = spawn(&burst).await.unwrap().wait().await.unwrap();
    assert!(info.reason.success(), "{info:?}");
    let peak = info
        .max_rss_bytes
        .expect("a burst above our own peak is reported");
    assert!(
        (burst_bytes..burst_bytes * 4 + 100 * MB).contains(&peak),
        "peak {peak} bytes for a {burst_bytes}-byte burst (own peak {own})"
    );
    // An idle run must not report this test process's memory as its own.
    let idle = spawn(&sh("sleep 0.1").build().unwrap())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    if let Some(peak) = idle.max_rss_bytes {
        assert!(peak < 10 * MB, "idle peak {peak} bytes (own peak {own})");
    }
}

/// This test process's peak resident set in bytes.
fn own_peak_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}
