//! Sessions of ordinary programs: the cap, restarts, timeouts, limits, hangs, events.

use std::time::{Duration, Instant};

use claude_manager::proc::{Backoff, RestartMode};
use claude_manager::{
    EventKind, ExitKind, HealthSpec, ManagerConfig, ProcessManager, SessionSpec, SessionState,
};

use crate::SERIAL;

fn sh(name: &str, script: &str) -> SessionSpec {
    SessionSpec::command(name, "/bin/sh", ["-c", script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_bounds_live_processes_and_queued_starts_wait() {
    let manager = ProcessManager::new(ManagerConfig {
        max_live: 4,
        ..Default::default()
    });
    let mut handles: Vec<_> = (0..8)
        .map(|i| manager.start(sh(&format!("s{i}"), "sleep 0.3")).unwrap())
        .collect();
    let start = Instant::now();
    let mut peak = 0;
    let mut peak_queued = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let list = manager.list();
        let live = list.iter().filter(|s| s.state.pid().is_some()).count();
        let queued = list
            .iter()
            .filter(|s| s.state == SessionState::Queued)
            .count();
        peak = peak.max(live);
        peak_queued = peak_queued.max(queued);
        if list.iter().all(|s| s.state == SessionState::Finished) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    for h in &mut handles {
        let report = h.wait().await.unwrap();
        assert_eq!(report.reason, ExitKind::Exited);
        assert_eq!(report.code, Some(0));
    }
    assert_eq!(peak, 4, "at most 4 live at once, and the cap was used");
    assert!(
        peak_queued >= 3,
        "starts beyond the cap queued ({peak_queued})"
    );
    // Two waves of 0.3 s.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    let m = manager.metrics();
    assert_eq!((m.sessions_started, m.runs_started), (8, 8));
    assert_eq!(m.exits.get("exited"), Some(&8));
}

#[tokio::test]
async fn a_failing_program_is_restarted_then_given_up() {
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut spec = sh("flaky", "exit 3");
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.max_restarts = 2;
    spec.restart.backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        ..Backoff::default()
    };
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Exited);
    assert_eq!((report.code, report.restarts), (Some(3), 2));
    assert!(
        report.detail.contains("gave up after 2 restarts in 5 min"),
        "{}",
        report.detail
    );
    // A program that does not exist is not retried.
    let mut spec = SessionSpec::command("missing", "/nonexistent/program", Vec::<String>::new());
    spec.restart.mode = RestartMode::Always;
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::SpawnFailed);
    assert_eq!((report.code, report.restarts), (Some(127), 0));
}

#[tokio::test]
async fn a_timeout_stops_the_tree_and_reports_124() {
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut spec = sh("slow", "sleep 100 & sleep 100; wait");
    spec.limits.timeout = Some(Duration::from_millis(300));
    let mut h = manager.start(spec).unwrap();
    let run = h.next_run().await.unwrap();
    let report = h.wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Timeout);
    assert!(report.wall >= Duration::from_millis(300) && report.wall < Duration::from_secs(2));
    assert!(crate::gone(run.pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_killed_and_reported_as_a_memory_limit() {
    let _serial = SERIAL.lock().await;
    let manager = ProcessManager::new(ManagerConfig::default());
    // dd fills one 600 MiB buffer: far over 200 MiB.
    let mut spec = SessionSpec::command(
        "hog",
        "/bin/dd",
        ["if=/dev/zero", "of=/dev/null", "bs=600M", "count=1"],
    );
    spec.limits.max_memory = Some(200 << 20);
    spec.stderr = claude_manager::proc::OutputMode::Null;
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::MemoryLimit, "{report:?}");
    assert_eq!(report.signal, Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_process_with_work_in_flight_is_hung_after_the_threshold_not_before() {
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut spec = sh("silent", "sleep 100");
    spec.health = Some(HealthSpec {
        interval: Duration::from_millis(100),
        hang_after: Some(Duration::from_millis(1500)),
        ..HealthSpec::default()
    });
    let mut h = manager.start(spec).unwrap();
    let run = h.next_run().await.unwrap();
    run.signals.set_in_flight(true);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(h.state().pid().is_some(), "stopped before the threshold");
    let report = h.wait().await.unwrap();
    let took = start.elapsed();
    assert_eq!(report.reason, ExitKind::Hung, "{report:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(crate::gone(run.pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_the_whole_story_as_json() {
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut events = manager.subscribe();
    let mut spec = sh("story", "sleep 0.35; exit 5");
    spec.health = Some(HealthSpec {
        interval: Duration::from_millis(100),
        ..HealthSpec::default()
    });
    spec.limits.max_pids = Some(50);
    let mut h = manager.start(spec).unwrap();
    let report = h.wait().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e.to_json());
    }
    for e in &seen {
        assert!(
            e["event"].is_string() && e["ts"].as_f64().unwrap() > 1.7e9,
            "{e}"
        );
        assert_eq!(e["session"], "story");
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"state") && kinds.contains(&"sample") && kinds.contains(&"limit"),
        "{kinds:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(last["event"], "exit");
    assert_eq!(last["reason"], "exited");
    assert_eq!(last["code"], 5);
    assert!(last["wall_seconds"].as_f64().unwrap() >= 0.35);
    for key in ["signal", "cpu_seconds", "max_rss_bytes", "restarts"] {
        assert!(last.get(key).is_some(), "{key} missing in {last}");
    }
    assert!(report.max_rss_bytes > 0);
    let limit = seen.iter().find(|e| e["event"] == "limit").unwrap();
    assert_eq!(
        (limit["limit"].as_str(), limit["action"].as_str()),
        (Some("pids"), Some("applied"))
    );
    assert!(matches!(manager.list()[0].state, SessionState::Finished));
    let health = seen.iter().find(|e| e["event"] == "health").unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["summary"], "healthy", "{health}");
    assert!(matches!(
        EventKind::Health(claude_manager::health::HealthStatus::Healthy),
        EventKind::Health(_)
    ));
}

#[tokio::test]
async fn a_stop_request_and_a_dropped_handle_both_end_the_tree() {
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut h = manager.start(sh("stop-me", "sleep 100")).unwrap();
    let run = h.next_run().await.unwrap();
    let report = h.stop().await.unwrap();
    assert_eq!(report.reason, ExitKind::Stopped);
    assert!(crate::gone(run.pid));
    let mut h = manager.start(sh("drop-me", "sleep 100")).unwrap();
    let pid = h.next_run().await.unwrap().pid;
    drop(h);
    let start = Instant::now();
    while !crate::gone(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "dropped handle left {pid} running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_restart_request_ends_the_run_and_starts_another_whatever_the_policy() {
    let manager = ProcessManager::new(ManagerConfig::default());
    // The policy is `never`: only the explicit request may start a second run.
    let mut h = manager.start(sh("restart-me", "sleep 100")).unwrap();
    let first = h.next_run().await.unwrap();
    h.restart();
    let second = h.next_run().await.unwrap();
    assert_eq!(second.number, 2);
    assert_ne!(second.pid, first.pid);
    assert!(crate::gone(first.pid));
    let report = h.stop().await.unwrap();
    assert_eq!((report.reason, report.restarts), (ExitKind::Stopped, 1));
    assert!(crate::gone(second.pid));
}

/// A burst of at least 50 MB that lasts well under a second, shorter than the 5-second health
/// interval: the report's peak still shows it (the kernel's figure at reap), where sampling
/// alone saw at most the shell's few megabytes. The burst is sized above this test process's
/// own peak, which the kernel charges to a leader created sharing its memory and which
/// claude-proc therefore does not report as the run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peak_rss_includes_a_burst_no_sample_saw() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_kib: u64 = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    let burst = 50_000_000_u64.max(2 * 1024 * own_kib);
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut spec = sh(
        "burst",
        &format!(r#"sh -c 'x=$(head -c {burst} /dev/zero | tr "\0" a)'; exit 0"#),
    );
    spec.health = Some(HealthSpec {
        interval: Duration::from_secs(5),
        ..HealthSpec::default()
    });
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Exited, "{report:?}");
    assert!(
        report.max_rss_bytes >= burst,
        "peak {} bytes for a {burst}-byte burst",
        report.max_rss_bytes
    );
}
