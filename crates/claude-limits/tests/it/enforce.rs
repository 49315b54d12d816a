//! Limits held or killed, measured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_limits::{
    run_with_timeout, Error, LimitKind, LimitMode, LimitOptions, LimitsHook, Mechanism,
    ResourceLimits,
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

/// `sh -c script` under `limits`.
fn sh_under(script: &str, limits: ResourceLimits) -> ProcessConfig {
    ProcessConfig::builder("/bin/sh")
        .args(["-c", script])
        .hook(Arc::new(hook(limits)))
        .build()
        .unwrap()
}

/// The run ended because `limit` was exceeded.
fn assert_ended_by(info: &claude_proc::ExitInfo, limit: LimitKind) {
    assert_eq!(
        info.reason.cause(),
        Some(&StopCause::LimitExceeded { limit }),
        "{:?}",
        info.reason
    );
}

/// The cgroup directories a hook created live under our own cgroups; none may remain.
fn leftover_cgroups() -> Vec<String> {
    let root = claude_limits::CgroupV1Root::system();
    let mut found = Vec::new();
    for controller in ["memory", "cpu", "pids", "blkio"] {
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

/// Storage bytes `pid` has written so far (claude-health's sampler reads `/proc/<pid>/io`).
pub(crate) fn written(pid: u32) -> u64 {
    claude_health::Sampler::default()
        .process(pid)
        .unwrap()
        .write_bytes
        .unwrap()
}

pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    claude_health::Sampler::default()
        .process(pid)
        .unwrap()
        .cpu_time
        .as_secs_f64()
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
                limit: LimitKind::Memory
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
    let config = sh_under(
        "while :; do :; done",
        ResourceLimits {
            max_cpu: Some(0.5),
            ..Default::default()
        },
    );
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
        max_core_size: Some(0),
        ..Default::default()
    });
    assert_eq!(
        h.report().mechanism(LimitKind::OpenFiles),
        Some(Mechanism::Rlimit)
    );
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", "ulimit -n; cut -d' ' -f19 /proc/self/stat; ulimit -c"])
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
    assert_eq!(lines, vec!["64", "5", "0"]);
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
fn mechanisms_follow_the_mode_and_the_host() {
    let all = ResourceLimits {
        max_memory: Some(64 * MIB),
        max_cpu: Some(0.5),
        max_disk_io: Some(5 * MIB),
        max_pids: Some(50),
        max_cpu_time: Some(Duration::from_secs(10)),
        max_file_size: Some(MIB),
        max_core_size: Some(0),
        ..Default::default()
    };
    let with = |options: LimitOptions| LimitsHook::new(all, options);
    // This machine: cgroup v1 for memory, CPU and pids; disk IO without a device is soft.
    let auto = with(LimitOptions::default()).unwrap();
    let r = auto.report();
    assert_eq!(r.mechanism(LimitKind::Memory), Some(Mechanism::CgroupV1));
    assert_eq!(r.mechanism(LimitKind::Cpu), Some(Mechanism::CgroupV1));
    assert_eq!(r.mechanism(LimitKind::Pids), Some(Mechanism::CgroupV1));
    assert_eq!(r.mechanism(LimitKind::DiskIo), Some(Mechanism::UserSpace));
    for kind in [LimitKind::CpuTime, LimitKind::FileSize, LimitKind::CoreSize] {
        assert_eq!(r.mechanism(kind), Some(Mechanism::Rlimit));
    }
    assert_eq!(
        auto.soft_limits().map(|s| (s.max_memory, s.max_disk_io)),
        Some((None, Some(5 * MIB)))
    );
    // With a device, blkio takes direct IO and the soft enforcer buffered IO.
    let device = claude_limits::block_device_of(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let blk = with(LimitOptions {
        io_device: device.clone(),
        ..LimitOptions::default()
    })
    .unwrap();
    if device.is_some() {
        assert!(blk.report().uses(LimitKind::DiskIo, Mechanism::CgroupV1));
    }
    assert!(blk.report().uses(LimitKind::DiskIo, Mechanism::UserSpace));
    // Soft mode: no cgroups; root is exempt from RLIMIT_NPROC, so pids cannot be held.
    let soft = LimitOptions {
        mode: LimitMode::Soft,
        ..LimitOptions::default()
    };
    match with(soft.clone()) {
        Err(
            e @ Error::Unenforceable {
                limit: LimitKind::Pids,
                ..
            },
        ) => {
            assert!(e.to_string().contains("RLIMIT_NPROC"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let soft_hook = LimitsHook::new(
        ResourceLimits {
            max_pids: None,
            ..all
        },
        soft,
    )
    .unwrap();
    for kind in [LimitKind::Memory, LimitKind::Cpu, LimitKind::DiskIo] {
        assert_eq!(
            soft_hook.report().mechanism(kind),
            Some(Mechanism::UserSpace)
        );
    }
    // Cgroup mode: disk IO without a device has no cgroup mechanism.
    let cgroup = LimitOptions {
        mode: LimitMode::Cgroup,
        ..LimitOptions::default()
    };
    assert!(matches!(
        with(cgroup),
        Err(Error::Unenforceable {
            limit: LimitKind::DiskIo,
            ..
        })
    ));
}

#[test]
fn limits_nothing_here_enforces_fail_unless_best_effort() {
    let cgroup_only = LimitOptions {
        mode: LimitMode::Cgroup,
        ..LimitOptions::default()
    };
    let disk = ResourceLimits {
        max_disk_io: Some(5 * MIB),
        ..Default::default()
    };
    assert!(matches!(
        LimitsHook::new(disk, cgroup_only.clone()),
        Err(Error::Unenforceable {
            limit: LimitKind::DiskIo,
            ..
        })
    ));
    let best = LimitsHook::new(
        disk,
        LimitOptions {
            best_effort: true,
            ..cgroup_only.clone()
        },
    )
    .unwrap();
    assert_eq!(
        best.report().mechanism(LimitKind::DiskIo),
        Some(Mechanism::NotEnforced)
    );
    // A host without the memory hierarchy: the soft enforcer in auto mode; in cgroup mode
    // refused, or reported with best effort.
    let nowhere = claude_limits::CgroupV1Root::new("/nonexistent", "4:memory:/x\n");
    let memory = ResourceLimits {
        max_memory: Some(64 * MIB),
        ..Default::default()
    };
    let auto = LimitsHook::new(
        memory,
        LimitOptions {
            cgroup_v1: nowhere.clone(),
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        auto.report().mechanism(LimitKind::Memory),
        Some(Mechanism::UserSpace)
    );
    match LimitsHook::new(
        memory,
        LimitOptions {
            cgroup_v1: nowhere.clone(),
            ..cgroup_only.clone()
        },
    ) {
        Err(
            e @ Error::Unenforceable {
                limit: LimitKind::Memory,
                ..
            },
        ) => assert!(e.to_string().contains("memory")),
        other => panic!("{other:?}"),
    }
    let reported = LimitsHook::new(
        memory,
        LimitOptions {
            cgroup_v1: nowhere,
            best_effort: true,
            ..cgroup_only
        },
    )
    .unwrap();
    assert_eq!(
        reported.report().mechanism(LimitKind::Memory),
        Some(Mechanism::NotEnforced)
    );
    assert!(Path::new("/proc/self/cgroup").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_ends_a_busy_loop_after_one_cpu_second() {
    let _serial = SERIAL.lock().await;
    let config = sh_under(
        "while :; do :; done",
        ResourceLimits {
            max_cpu_time: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    );
    let start = Instant::now();
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    let took = start.elapsed();
    eprintln!("cpu_time: busy loop ended after {took:?} under a 1 s RLIMIT_CPU");
    assert_ended_by(&info, LimitKind::CpuTime);
    assert!(matches!(info.reason, ExitReason::Enforced { .. }));
    // A busy loop on an otherwise idle core: wall time is CPU time.
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(2500),
        "ended after {took:?}"
    );
}

#[tokio::test]
async fn file_size_stops_a_writer_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let config = sh_under(
        &format!("exec head -c 10485760 /dev/zero > {}", file.display()),
        ResourceLimits {
            max_file_size: Some(MIB),
            ..Default::default()
        },
    );
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    assert_ended_by(&info, LimitKind::FileSize);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_failing_on_a_refused_fork_exits_for_the_pids_limit() {
    let _serial = SERIAL.lock().await;
    let config = sh_under(
        "for i in $(seq 30); do sleep 5 & done; wait",
        ResourceLimits {
            max_pids: Some(5),
            ..Default::default()
        },
    );
    let mut child = spawn(&config).await.unwrap();
    let info = child.wait().await.unwrap();
    assert_ended_by(&info, LimitKind::Pids);
    // A tree that never touched the limit exits normally.
    let config = sh_under(
        "sleep 0.1 & wait; exit 3",
        ResourceLimits {
            max_pids: Some(5),
            ..Default::default()
        },
    );
    let info = spawn(&config).await.unwrap().wait().await.unwrap();
    assert_eq!(info.reason, ExitReason::Exited { code: 3 });
    assert!(leftover_cgroups().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blkio_holds_a_direct_io_writer_to_its_rate() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let Some(device) = claude_limits::block_device_of(dir.path()) else {
        let why = "the target directory is not on a block device";
        assert!(std::env::var_os("CLAUDE_PM_STRICT").is_none(), "{why}");
        eprintln!("skipping the blkio test: {why}");
        return;
    };
    // cgroup mode: blkio alone, no soft enforcer beside it.
    let h = LimitsHook::new(
        ResourceLimits {
            max_disk_io: Some(5 * MIB),
            ..Default::default()
        },
        LimitOptions {
            io_device: Some(device),
            mode: LimitMode::Cgroup,
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        h.report().mechanism(LimitKind::DiskIo),
        Some(Mechanism::CgroupV1)
    );
    assert!(h.soft_limits().is_none());
    let config = ProcessConfig::builder("/bin/dd")
        .args([
            "if=/dev/zero".to_owned(),
            format!("of={}", dir.path().join("out").display()),
            "bs=256K".to_owned(),
            "count=400".to_owned(),
            "oflag=direct".to_owned(),
        ])
        .hook(Arc::new(h))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, w0) = (Instant::now(), written(child.pid()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rate = (written(child.pid()) - w0) as f64 / t0.elapsed().as_secs_f64() / MIB as f64;
    child.stop().await.unwrap();
    eprintln!("blkio: direct-IO writer at {rate:.2} MiB/s under 5 MiB/s");
    assert!(
        rate <= 5.5,
        "direct-IO writer averaged {rate:.2} MiB/s under a 5 MiB/s blkio limit"
    );
    assert!(rate >= 3.5, "only {rate:.2} MiB/s: throttled too hard");
    assert!(leftover_cgroups().is_empty());
}
