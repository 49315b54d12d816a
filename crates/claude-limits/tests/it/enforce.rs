//! Limits held or killed, measured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_limits::{
    run_with_timeout, Error, LimitKind, LimitOptions, LimitsHook, Mechanism, ResourceLimits,
};
use claude_proc::{spawn, ExitReason, OutputEvent, OutputMode, ProcessConfig, StopCause};

use crate::SERIAL;

pub(crate) const HELPER_ENV: &str = "CLAUDE_LIMITS_TEST_HELPER";
const MIB: u64 = 1 << 20;

/// Not a test of its own: the entry point of helper processes (does nothing otherwise).
#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the helper tries to fork 100 children itself"
)]
fn helper_entry() {
    if std::env::var(HELPER_ENV).as_deref() == Ok("fork100") {
        let mut started = Vec::new();
        let mut refused = 0;
        for _ in 0..100 {
            match std::process::Command::new("/bin/sleep").arg("30").spawn() {
                Ok(child) => started.push(child),
                Err(_) => refused += 1,
            }
        }
        println!("started {} refused {refused}", started.len());
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let mode = std::env::var(HELPER_ENV).unwrap_or_default();
    if let Some(dir) = mode.strip_prefix("write20:") {
        // 256 KiB, then 12.5 ms of sleep: at most 20 MiB/s, and no catching up after a stop
        // (a writer that catches up bursts faster than any sampling interval can see).
        use std::io::Write;
        let mut file = std::fs::File::create(format!("{dir}/out")).unwrap();
        let block = vec![1u8; (MIB / 4) as usize];
        println!("writing");
        for _ in 0..2400u32 {
            file.write_all(&block).unwrap();
            std::thread::sleep(Duration::from_micros(12_500));
        }
        return;
    }
    if std::env::var(HELPER_ENV).as_deref() != Ok("eat1g") {
        return;
    }
    // Touch 1 GiB, 16 MiB at a time, reporting progress.
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 1..=64 {
        held.push(vec![1u8; (16 * MIB) as usize]);
        println!("held {} MiB", i * 16);
    }
    println!("survived");
}

fn hook(limits: ResourceLimits) -> LimitsHook {
    LimitsHook::new(limits, LimitOptions::default()).unwrap()
}

/// The cgroup directories a hook created live under our own cgroups; none may remain.
fn leftover_cgroups() -> Vec<String> {
    let root = claude_limits::CgroupV1Root::system();
    let mut found = Vec::new();
    for controller in ["memory", "cpu", "pids"] {
        if let Some(dir) = root.own_dir(controller) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("claude-{}-", std::process::id())) {
                    found.push(format!("{controller}/{name}"));
                }
            }
        }
    }
    found
}

/// Read the `eat1g` helper's output to its end: its last line, and the MiB it reported holding.
pub(crate) async fn allocator_outcome(child: &mut claude_proc::Child) -> (String, u64) {
    let mut out = child.take_stdout().unwrap();
    let mut last = String::new();
    while let Some(event) = out.recv().await {
        if let OutputEvent::Line(l) = event {
            last = String::from_utf8_lossy(&l).into_owned();
        }
    }
    let held = last
        .strip_prefix("held ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .map_or(0, |n| n.parse().unwrap());
    (last, held)
}

pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_under_200_mb_is_killed_and_reported_as_memory() {
    let _serial = SERIAL.lock().await;
    let h = hook(ResourceLimits {
        max_memory: Some(200 * MIB),
        ..Default::default()
    });
    assert_eq!(
        h.report().mechanism(LimitKind::Memory),
        Some(Mechanism::CgroupV1)
    );
    let config = ProcessConfig::builder(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "enforce::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "eat1g")
        .stdout(OutputMode::lines())
        .hook(Arc::new(h))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let (last, held) = allocator_outcome(&mut child).await;
    let info = child.wait().await.unwrap();
    assert_ne!(
        last, "survived",
        "the helper held 1 GiB under a 200 MiB limit"
    );
    assert!(held <= 208, "held {held} MiB under a 200 MiB limit");
    assert_eq!(
        info.reason,
        ExitReason::Enforced {
            cause: StopCause::LimitExceeded {
                limit: "memory".into()
            },
            exit: claude_proc::RawExit {
                code: None,
                signal: Some(9)
            }
        }
    );
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_under_half_a_core_uses_half_a_core() {
    let _serial = SERIAL.lock().await;
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", "while :; do :; done"])
        .hook(Arc::new(hook(ResourceLimits {
            max_cpu: Some(0.5),
            ..Default::default()
        })))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (t0, c0) = (Instant::now(), cpu_seconds(child.pid()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = (cpu_seconds(child.pid()) - c0) / t0.elapsed().as_secs_f64();
    child.stop().await.unwrap();
    assert!(
        (0.4..=0.6).contains(&used),
        "used {used:.3} CPU-seconds per second under 0.5 cores"
    );
    assert!(leftover_cgroups().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_processes_under_max_pids_20_are_held_to_20() {
    let _serial = SERIAL.lock().await;
    let config = ProcessConfig::builder(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "enforce::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "fork100")
        .stdout(OutputMode::lines())
        .hook(Arc::new(hook(ResourceLimits {
            max_pids: Some(20),
            ..Default::default()
        })))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    // Wait until the helper is done trying.
    let report = loop {
        match out.recv().await {
            Some(OutputEvent::Line(l)) => {
                let line = String::from_utf8_lossy(&l).into_owned();
                if let Some((_, rest)) = line.split_once("started ") {
                    break rest.to_owned();
                }
            }
            Some(_) => {}
            None => panic!("helper ended early"),
        }
    };
    // Processes, not threads: the helper's own threads count against pids.max too.
    let live = tree_size(child.pid());
    child.stop().await.unwrap();
    assert!(live <= 20, "{live} processes under max_pids 20 ({report})");
    assert!(report.contains("refused"), "{report}");
    let refused: u32 = report.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        refused >= 80,
        "only {refused} of 100 forks refused: {report}"
    );
    assert!(leftover_cgroups().is_empty());
}

/// Processes in the tree of `pid` (through the kernel's children lists).
fn tree_size(pid: u32) -> usize {
    let mut queue = vec![pid];
    let mut n = 0;
    while let Some(p) = queue.pop() {
        n += 1;
        let task = format!("/proc/{p}/task");
        for t in std::fs::read_dir(&task).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                queue.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    n
}

#[tokio::test]
async fn open_files_and_nice_are_applied() {
    let h = hook(ResourceLimits {
        max_open_files: Some(64),
        nice: Some(5),
        ..Default::default()
    });
    assert_eq!(
        h.report().mechanism(LimitKind::OpenFiles),
        Some(Mechanism::Rlimit)
    );
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", "ulimit -n; cut -d' ' -f19 /proc/self/stat"])
        .stdout(OutputMode::lines())
        .hook(Arc::new(h))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut lines = Vec::new();
    while let Some(OutputEvent::Line(l)) = out.recv().await {
        lines.push(String::from_utf8(l).unwrap());
    }
    child.wait().await.unwrap();
    assert_eq!(lines, vec!["64", "5"]);
}

#[tokio::test]
async fn the_timeout_fires_within_100_ms_of_its_deadline() {
    let config = ProcessConfig::builder("/bin/sleep")
        .arg("100")
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let start = Instant::now();
    let info = run_with_timeout(&mut child, Duration::from_millis(500))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took <= Duration::from_millis(600), "{took:?}");
    assert!(
        matches!(
            info.reason,
            ExitReason::Stopped {
                cause: StopCause::Timeout,
                ..
            }
        ),
        "{:?}",
        info.reason
    );
    // A child that ends first is not touched.
    let mut quick = spawn(&ProcessConfig::builder("/bin/true").build().unwrap())
        .await
        .unwrap();
    let info = run_with_timeout(&mut quick, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(info.reason.success());
}

#[test]
fn limits_nothing_here_enforces_fail_unless_best_effort() {
    let disk = ResourceLimits {
        max_disk_io: Some(5 * MIB),
        ..Default::default()
    };
    assert!(matches!(
        LimitsHook::new(disk, LimitOptions::default()),
        Err(Error::Unenforceable {
            limit: "disk_io",
            ..
        })
    ));
    let best = LimitsHook::new(
        disk,
        LimitOptions {
            best_effort: true,
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        best.report().mechanism(LimitKind::DiskIo),
        Some(Mechanism::NotEnforced)
    );
    // A host without the memory hierarchy: refused, or reported with best effort.
    let nowhere = claude_limits::CgroupV1Root::new("/nonexistent", "4:memory:/x\n");
    let memory = ResourceLimits {
        max_memory: Some(64 * MIB),
        ..Default::default()
    };
    match LimitsHook::new(
        memory,
        LimitOptions {
            cgroup_v1: nowhere.clone(),
            best_effort: false,
            ..LimitOptions::default()
        },
    ) {
        Err(
            e @ Error::Unenforceable {
                limit: "memory", ..
            },
        ) => assert!(e.to_string().contains("memory")),
        other => panic!("{other:?}"),
    }
    let reported = LimitsHook::new(
        memory,
        LimitOptions {
            cgroup_v1: nowhere,
            best_effort: true,
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        reported.report().mechanism(LimitKind::Memory),
        Some(Mechanism::NotEnforced)
    );
    assert!(Path::new("/proc/self/cgroup").exists());
}
