//! Soft limits (user space, no cgroups), measured like the cgroup ones: memory and IO through
//! the hook in soft mode, CPU through a `SoftEnforcer` started by hand (to drop it mid-run).

use std::time::{Duration, Instant};

use std::sync::Arc;

use claude_limits::{
    LimitMode, LimitOptions, LimitsHook, Mechanism, ResourceLimits, SoftEnforcer, SoftLimits,
};
use claude_proc::{spawn, ExitReason, OutputMode, ProcessConfig, StopCause};

use crate::enforce::{allocator_outcome, cpu_seconds, written, HELPER_ENV};
use crate::SERIAL;

const MIB: u64 = 1 << 20;

/// Soft mode through the hook: the report says `soft`, and the hook starts the enforcer.
fn soft_hook(limits: ResourceLimits) -> LimitsHook {
    let hook = LimitsHook::new(
        limits,
        LimitOptions {
            mode: LimitMode::Soft,
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert!(hook
        .report()
        .entries
        .iter()
        .all(|e| e.mechanism == Mechanism::UserSpace));
    hook
}

fn helper_under(mode: &str, hook: Option<LimitsHook>) -> ProcessConfig {
    let mut builder = ProcessConfig::builder(std::env::current_exe().unwrap());
    if let Some(hook) = hook {
        builder = builder.hook(Arc::new(hook));
    }
    builder
        .args([
            "--exact",
            "enforce::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .stdout(OutputMode::lines())
        .grace(Duration::from_millis(500))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_memory_limit_stops_the_tree_with_a_memory_reason() {
    let _serial = SERIAL.lock().await;
    let hook = soft_hook(ResourceLimits {
        max_memory: Some(200 * MIB),
        ..Default::default()
    });
    let mut child = spawn(&helper_under("eat1g", Some(hook))).await.unwrap();
    let (last, held) = allocator_outcome(&mut child).await;
    let info = child.wait().await.unwrap();
    assert_ne!(last, "survived", "1 GiB held under a 200 MiB soft limit");
    let cause = info.reason.cause().cloned();
    assert_eq!(
        cause,
        Some(StopCause::LimitExceeded {
            limit: claude_limits::LimitKind::Memory
        }),
        "{:?}",
        info.reason
    );
    // Sampled every 20 ms: the overshoot is what the helper allocates in one interval.
    assert!(held <= 400, "held {held} MiB before the soft limit acted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_cpu_limit_holds_a_busy_loop_to_half_a_core() {
    let _serial = SERIAL.lock().await;
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", "while :; do :; done"])
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let enforcer = SoftEnforcer::start(
        child.stopper(),
        SoftLimits {
            max_cpu: Some(0.5),
            ..SoftLimits::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (t0, c0) = (Instant::now(), cpu_seconds(child.pid()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = (cpu_seconds(child.pid()) - c0) / t0.elapsed().as_secs_f64();
    drop(enforcer);
    // After the enforcer is gone the loop was continued: not stopped, and it keeps running.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let state = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
    };
    let (t1, c1) = (Instant::now(), cpu_seconds(child.pid()));
    let mut states = Vec::new();
    for _ in 0..10 {
        states.push(state(child.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let free = (cpu_seconds(child.pid()) - c1) / t1.elapsed().as_secs_f64();
    let info = child.stop().await.unwrap();
    assert!(
        (0.4..=0.6).contains(&used),
        "used {used:.3} CPU-s/s under a 0.5-core soft limit"
    );
    assert!(
        !states.contains(&'T'),
        "still stopped after the enforcer went away: {states:?}"
    );
    assert!(
        free > 0.3,
        "after the enforcer went away the loop used only {free:.2}"
    );
    assert!(
        matches!(info.reason, ExitReason::Stopped { .. }),
        "{:?}",
        info.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_io_limit_holds_a_writer_to_its_rate() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let hook = soft_hook(ResourceLimits {
        max_disk_io: Some(5 * MIB),
        ..Default::default()
    });
    let mode = format!("write20:{}", dir.path().display());
    let mut child = spawn(&helper_under(&mode, Some(hook))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, w0) = (Instant::now(), written(child.pid()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rate = (written(child.pid()) - w0) as f64 / t0.elapsed().as_secs_f64() / MIB as f64;
    child.stop().await.unwrap();
    assert!(
        rate <= 5.5,
        "writer averaged {rate:.2} MiB/s under a 5 MiB/s soft limit"
    );
    assert!(
        rate >= 3.5,
        "writer averaged only {rate:.2} MiB/s: throttled too hard"
    );
}
