//! Sampling cost: one idle process through `Sampler::process` (all fields, and the fields the
//! health monitor reads by default) against a bare read of its
//! `/proc/<pid>/stat`, and one round over 500 idle supervised processes (the monitor's CPU at
//! 1 Hz is that round's time per second), in the same run.
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::time::Duration;

use claude_health::{Fields, MonitorConfig, Sampler};
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
    g.finish();
    rt.block_on(async {
        for mut child in children {
            child.stop().await.unwrap();
        }
    });
}

criterion_group!(benches, sampling);
criterion_main!(benches);
