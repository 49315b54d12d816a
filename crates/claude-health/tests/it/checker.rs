//! The periodic monitor against real processes: liveness, thresholds, hangs, probes, handlers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use claude_health::{
    Activity, HangConfig, HealthChecker, HealthMonitor, HealthReason, HealthStatus, MonitorConfig,
    Probe, ProbeRole, ProbeRunner, ProbeSpec, Sampler, Thresholds,
};
use claude_proc::{spawn, Child, ProcessConfig};

use crate::SERIAL;

async fn sh(script: &str) -> Child {
    spawn(
        &ProcessConfig::builder("/bin/sh")
            .args(["-c", script])
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
}

fn config(hang_after: Option<Duration>) -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_millis(50),
        thresholds: Thresholds::default(),
        hang: hang_after.map(|hang_after| HangConfig {
            hang_after,
            ..HangConfig::default()
        }),
        clock: None,
    }
}

async fn wait_status(
    m: &HealthMonitor,
    pred: impl Fn(&HealthStatus) -> bool,
    limit: Duration,
) -> HealthStatus {
    let mut rx = m.watch_status();
    let found = tokio::time::timeout(limit, rx.wait_for(|s| pred(s))).await;
    match found {
        Ok(status) => status.unwrap().clone(),
        Err(_) => panic!(
            "status did not arrive in {limit:?}; it is {}",
            m.watch_status().borrow().clone()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_is_unhealthy_and_handlers_fire_once_per_change_in_order() {
    let _serial = SERIAL.lock().await;
    let mut child = sh("exec sleep 100").await;
    let m = HealthMonitor::start(child.pid(), config(None), Sampler::default(), Vec::new());
    let seen: Arc<Mutex<Vec<(u8, String)>>> = Arc::default();
    for id in [1u8, 2] {
        let seen = Arc::clone(&seen);
        m.register_health_handler(Box::new(move |change| {
            seen.lock().unwrap().push((id, change.to.to_string()));
        }));
    }
    // Handlers run on their own task, after the status is published; whether they see the
    // first change (unknown -> healthy) depends on whether its dispatch came before their
    // registration, so the count starts once that change has settled.
    wait_status(&m, |s| *s == HealthStatus::Healthy, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.lock().unwrap().clear();
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(child.pid() as i32, libc::SIGSTOP) };
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Unhealthy(_)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(s.reasons()[0], HealthReason::Stopped { .. }),
        "{s}"
    );
    assert!(s.to_string().contains("is stopped"), "{s}");
    // SAFETY: as above.
    unsafe { libc::kill(child.pid() as i32, libc::SIGCONT) };
    wait_status(&m, |s| *s == HealthStatus::Healthy, Duration::from_secs(5)).await;
    // Both handlers have seen both changes, then nothing more arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = seen.lock().unwrap().clone();
    let expected_to = ["unhealthy: process", "healthy"];
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (i, pair) in seen.chunks(2).enumerate() {
        assert_eq!(
            (pair[0].0, pair[1].0),
            (1, 2),
            "handlers out of order: {seen:?}"
        );
        assert_eq!(pair[0].1, pair[1].1);
        assert!(pair[0].1.starts_with(expected_to[i]), "{seen:?}");
    }
    child.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_process_with_work_in_flight_is_hung_after_the_threshold_not_before() {
    let _serial = SERIAL.lock().await;
    let mut child = sh("exec sleep 100").await;
    let hang_after = Duration::from_millis(800);
    let m = HealthMonitor::start(
        child.pid(),
        config(Some(hang_after)),
        Sampler::default(),
        Vec::new(),
    );
    let start = Instant::now();
    m.signals().set_in_flight(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(m.activity(), Some(Activity::Waiting));
    assert_eq!(m.health_status(), HealthStatus::Healthy);
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Unhealthy(_)),
        Duration::from_secs(5),
    )
    .await;
    let took = start.elapsed();
    assert!(took >= hang_after, "hung after {took:?}");
    assert!(
        took < hang_after + Duration::from_millis(500),
        "hung only after {took:?}"
    );
    assert!(matches!(s.reasons()[0], HealthReason::Hung { .. }), "{s}");
    assert!(
        s.to_string().contains("unhealthy: hung: no progress"),
        "{s}"
    );
    assert_eq!(m.activity(), Some(Activity::Hung));
    // Output is progress: the status recovers.
    m.signals().record_output();
    wait_status(&m, |s| *s == HealthStatus::Healthy, Duration::from_secs(2)).await;
    child.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_process_is_working_not_hung_and_idle_cpu_is_flagged() {
    let _serial = SERIAL.lock().await;
    let mut child = sh("while :; do :; done").await;
    let mut c = config(Some(Duration::from_millis(300)));
    c.thresholds.idle_cpu_percent = Some(50.0);
    let m = HealthMonitor::start(child.pid(), c, Sampler::default(), Vec::new());
    m.signals().set_in_flight(true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(m.activity(), Some(Activity::Working));
    assert_eq!(m.health_status(), HealthStatus::Healthy);
    // The same CPU with no work in flight is the idle loop users report.
    m.signals().set_in_flight(false);
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Degraded(_)),
        Duration::from_secs(3),
    )
    .await;
    assert!(
        matches!(s.reasons()[0], HealthReason::BusyWhileIdle { .. }),
        "{s}"
    );
    assert!(s.to_string().contains("CPU while idle"), "{s}");
    child.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_rss_threshold_and_exit() {
    // A zombie: the sleep that replaced sh never reaps its child.
    let mut parent = sh("sleep 0.01 & exec sleep 100").await;
    let sampler = Sampler::default();
    let m = HealthMonitor::start(parent.pid(), config(None), sampler.clone(), Vec::new());
    let mut zombie = None;
    for _ in 0..200 {
        let tree = sampler.tree(parent.pid()).unwrap();
        zombie = tree
            .processes
            .iter()
            .skip(1)
            .find(|p| p.state == claude_health::ProcState::Zombie)
            .map(|p| p.pid);
        if zombie.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let zombie = zombie.expect("no zombie appeared");
    let s = m.check_health(zombie).await;
    assert!(
        matches!(&s, HealthStatus::Unhealthy(r) if r[0] == HealthReason::Exited { pid: zombie }),
        "{s}"
    );
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Degraded(_)),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        s.reasons()[0],
        HealthReason::ZombieDescendants { count: 1 },
        "{s}"
    );

    let mut c = config(None);
    c.thresholds.max_rss_bytes = Some(64 * 1024);
    let m2 = HealthMonitor::start(parent.pid(), c, sampler, Vec::new());
    let s = wait_status(
        &m2,
        |s| matches!(s, HealthStatus::Unhealthy(_)),
        Duration::from_secs(3),
    )
    .await;
    assert!(
        s.reasons().iter().any(|r| matches!(
            r,
            HealthReason::RssAbove {
                max_bytes: 65536,
                ..
            }
        )),
        "{s}"
    );

    // The monitor stops by itself when the process is gone.
    parent.stop().await.unwrap();
    let s = wait_status(
        &m,
        |s| {
            s.reasons()
                .iter()
                .any(|r| matches!(r, HealthReason::Exited { .. }))
        },
        Duration::from_secs(3),
    )
    .await;
    assert!(matches!(s, HealthStatus::Unhealthy(_)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(m.finished());
}

/// Counts calls; fails the first `fail` calls.
struct Counting {
    calls: AtomicU32,
    fail: u32,
}

#[async_trait]
impl Probe for Counting {
    fn name(&self) -> String {
        "counting".into()
    }
    async fn probe(&self) -> Result<(), String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            Err("no pong".into())
        } else {
            Ok(())
        }
    }
}

fn fast(threshold: u32) -> ProbeSpec {
    ProbeSpec {
        initial_delay: Duration::ZERO,
        period: Duration::from_millis(30),
        timeout: Duration::from_millis(200),
        failure_threshold: threshold,
        success_threshold: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_gate_fail_and_degrade_by_role() {
    let mut child = sh("exec sleep 100").await;
    // Startup fails 5 times before passing; liveness must not run until then.
    let startup = Arc::new(Counting {
        calls: AtomicU32::new(0),
        fail: 5,
    });
    let liveness = Arc::new(Counting {
        calls: AtomicU32::new(0),
        fail: 0,
    });
    let readiness = Arc::new(Counting {
        calls: AtomicU32::new(0),
        fail: u32::MAX,
    });
    let probes = vec![
        ProbeRunner::new(ProbeRole::Startup, fast(100), startup.clone()),
        ProbeRunner::new(ProbeRole::Liveness, fast(3), liveness.clone()),
        ProbeRunner::new(ProbeRole::Readiness, fast(2), readiness.clone()),
    ];
    let m = HealthMonitor::start(child.pid(), config(None), Sampler::default(), probes);
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Degraded(_)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(&s.reasons()[0], HealthReason::ProbeFailing { role: ProbeRole::Readiness, detail } if detail.contains("readiness probe counting")),
        "{s}"
    );
    assert!(startup.calls.load(Ordering::SeqCst) >= 6);
    // Gated: liveness and readiness started only after startup passed.
    let startup_calls = startup.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        startup.calls.load(Ordering::SeqCst),
        startup_calls,
        "startup probe kept running"
    );
    assert!(liveness.calls.load(Ordering::SeqCst) >= 3);
    drop(m);

    // A failing liveness probe is unhealthy.
    let failing = Arc::new(Counting {
        calls: AtomicU32::new(0),
        fail: u32::MAX,
    });
    let m = HealthMonitor::start(
        child.pid(),
        config(None),
        Sampler::default(),
        vec![ProbeRunner::new(
            ProbeRole::Liveness,
            fast(3),
            failing.clone(),
        )],
    );
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Unhealthy(_)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(&s.reasons()[0], HealthReason::ProbeFailing { role: ProbeRole::Liveness, detail } if detail.contains("liveness probe counting: no pong")),
        "{s}"
    );
    assert!(failing.calls.load(Ordering::SeqCst) >= 3);
    child.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_growth_past_the_threshold_degrades() {
    // One process (no children to blur the count) that opens four more descriptors when told.
    // It says "ready" once it runs its script: before that the dynamic loader may still hold a
    // library open, and a first sample taken then would make the baseline one too high.
    let opener = ProcessConfig::builder("/bin/sh")
        .args([
            "-c",
            "echo ready; read x; exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null; read y",
        ])
        .stdin(claude_proc::StdinMode::Piped)
        .stdout(claude_proc::OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&opener).await.unwrap();
    let stdin = child.take_stdin().unwrap();
    let mut stdout = child.take_stdout().unwrap();
    assert!(matches!(
        stdout.recv().await,
        Some(claude_proc::OutputEvent::Line(l)) if l == b"ready"
    ));
    let mut c = config(None);
    c.thresholds.max_fd_growth = Some(2);
    let m = HealthMonitor::start(child.pid(), c, Sampler::default(), Vec::new());
    wait_status(&m, |s| *s == HealthStatus::Healthy, Duration::from_secs(3)).await;
    stdin.write_line(b"open").await.unwrap();
    // A sample may land between two of the shell's opens (growth 3 is already past the
    // threshold); the count settles at four.
    let s = wait_status(
        &m,
        |s| matches!(s, HealthStatus::Degraded(r) if r.contains(&HealthReason::DescriptorGrowth { growth: 4 })),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(s.to_string(), "degraded: open descriptors grew by 4");
    child.stop().await.unwrap();
}

/// Monitors sharing one clock each sample at the interval (one ticker wakes them all) and
/// still see their own process end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_sharing_a_clock_sample_at_their_interval() {
    let _serial = SERIAL.lock().await;
    let clock = claude_health::SharedClock::new();
    let mut children = Vec::new();
    let mut monitors = Vec::new();
    for _ in 0..20 {
        let child = sh("exec sleep 100").await;
        let config = MonitorConfig {
            interval: Duration::from_millis(100),
            clock: Some(clock.clone()),
            ..config(None)
        };
        monitors.push(HealthMonitor::start(
            child.pid(),
            config,
            Sampler::default(),
            Vec::new(),
        ));
        children.push(child);
    }
    let mut feeds: Vec<_> = monitors.iter().map(HealthMonitor::watch_samples).collect();
    let start = Instant::now();
    let mut counts = vec![0u32; feeds.len()];
    while start.elapsed() < Duration::from_millis(1050) {
        for (feed, count) in feeds.iter_mut().zip(counts.iter_mut()) {
            if feed.has_changed().unwrap_or(false) {
                feed.borrow_and_update();
                *count += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for count in &counts {
        assert!(
            (8..=12).contains(count),
            "samples in 1.05 s at 100 ms: {counts:?}"
        );
    }
    let mut first = children.remove(0);
    first.request_kill(claude_proc::StopCause::Requested);
    let _ = first.wait().await;
    let status = wait_status(
        &monitors[0],
        |s| matches!(s, HealthStatus::Unhealthy(_)),
        Duration::from_secs(2),
    )
    .await;
    assert!(
        matches!(&status, HealthStatus::Unhealthy(r) if matches!(r[..], [HealthReason::Exited { .. }])),
        "{status:?}"
    );
    for mut child in children {
        child.stop().await.unwrap();
    }
}
