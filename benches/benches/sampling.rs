//! Sampling cost: one idle process through `Sampler::process` (all fields, and the fields the
//! health monitor reads by default) against a bare read of its
//! `/proc/<pid>/stat`, and one round over 500 idle supervised processes (the monitor's CPU at
//! 1 Hz is that round's time per second), in the same run; each both with files opened per
//! sample (`Sampler::tree`) and kept open between samples (`TreeWatch`, what the monitor uses).
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::time::Duration;

use benches::cpu_over_wall_seconds;
use claude_health::{Fields, HealthMonitor, MonitorConfig, Sampler};
use claude_proc::{spawn, ProcessConfig};
use criterion::{criterion_group, criterion_main, Criterion};

const IDLE: usize = 500;

fn sampling(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ProcessConfig::builder("/bin/sleep")
        .arg("1000")
        .build()
        .unwrap();
    let children: Vec<_> = rt.block_on(async {
        let mut v = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            v.push(spawn(&config).await.unwrap());
        }
        v
    });
    let pids: Vec<u32> = children.iter().map(|c| c.pid()).collect();
    let sampler = Sampler::default();
    // What the health monitor reads with its default configuration.
    let monitor = Sampler::default().with_fields(MonitorConfig::default().fields());
    assert_eq!(MonitorConfig::default().fields(), Fields::MINIMAL);
    let first = pids[0];
    let stat_path = format!("/proc/{first}/stat");

    let mut g = c.benchmark_group("sampling");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("sampler_process", |b| {
        b.iter(|| sampler.process(first).unwrap())
    });
    g.bench_function("raw_stat_read_baseline", |b| {
        b.iter(|| std::fs::read(&stat_path).unwrap())
    });
    g.bench_function("sampler_tree_leaf", |b| {
        b.iter(|| sampler.tree(first).unwrap())
    });
    g.bench_function("monitor_tree_leaf", |b| {
        b.iter(|| monitor.tree(first).unwrap())
    });
    let mut leaf_watch = monitor.watch(first);
    g.bench_function("monitor_watch_leaf", |b| {
        b.iter(|| leaf_watch.sample().unwrap())
    });
    g.sample_size(20);
    g.bench_function("round_over_500_idle_trees", |b| {
        b.iter(|| {
            for pid in &pids {
                sampler.tree(*pid).unwrap();
            }
        })
    });
    g.bench_function("monitor_round_over_500_idle_trees", |b| {
        b.iter(|| {
            for pid in &pids {
                monitor.tree(*pid).unwrap();
            }
        })
    });
    // What the monitor does since it keeps files open: one watch per supervised tree.
    let mut watches: Vec<_> = pids.iter().map(|pid| monitor.watch(*pid)).collect();
    g.bench_function("monitor_watch_round_over_500_idle_trees", |b| {
        b.iter(|| {
            for watch in watches.iter_mut() {
                watch.sample().unwrap();
            }
        })
    });
    g.finish();
    drop(watches);

    // The whole monitor as a session gets it: 500 `HealthMonitor`s at 1 Hz on the runtime,
    // measured as this process's CPU time per wall-clock second (user + system, all threads),
    // against the same process with the same 500 children and no monitors.
    let mut g = c.benchmark_group("monitor_cpu_per_wall_second");
    g.sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("no_monitors_baseline", |b| {
        b.iter_custom(cpu_over_wall_seconds)
    });
    let monitors: Vec<HealthMonitor> = rt.block_on(async {
        pids.iter()
            .map(|pid| {
                HealthMonitor::start(*pid, MonitorConfig::default(), Sampler::default(), vec![])
            })
            .collect()
    });
    g.bench_function("health_monitors_500_idle_at_1hz", |b| {
        b.iter_custom(cpu_over_wall_seconds)
    });
    g.finish();
    assert!(monitors.iter().all(|m| !m.finished()));
    drop(monitors);
    rt.block_on(async {
        for mut child in children {
            child.stop().await.unwrap();
        }
    });
}

criterion_group!(benches, sampling);
criterion_main!(benches);
