//! The soft enforcer's cost: 100 idle supervised processes, each with the soft memory and CPU
//! limits a hook in soft mode starts (sampled every 20 ms), measured as this process's CPU
//! time per wall second, against the same 100 children without enforcers, in the same run.
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use benches::cpu_over_wall_seconds;
use claude_limits::{LimitMode, LimitOptions, LimitsHook, Mechanism, ResourceLimits};
use claude_proc::{spawn, ProcessConfig};
use criterion::{criterion_group, criterion_main, Criterion};

const SUPERVISED: usize = 100;

fn soft_limits(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plain = ProcessConfig::builder("/bin/sleep")
        .arg("1000")
        .build()
        .unwrap();
    let hook = LimitsHook::new(
        ResourceLimits {
            max_memory: Some(1 << 30),
            max_cpu: Some(0.5),
            ..ResourceLimits::default()
        },
        LimitOptions {
            mode: LimitMode::Soft,
            ..LimitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        hook.report().mechanism(claude_limits::LimitKind::Memory),
        Some(Mechanism::UserSpace)
    );
    let limited = ProcessConfig::builder("/bin/sleep")
        .arg("1000")
        .hook(Arc::new(hook))
        .build()
        .unwrap();
    let mut g = c.benchmark_group("soft_enforcer_cpu_per_wall_second");
    g.sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for (name, config) in [
        ("100_idle_without_enforcers_baseline", &plain),
        ("100_idle_with_soft_memory_and_cpu", &limited),
    ] {
        let children: Vec<_> = rt.block_on(async {
            let mut v = Vec::with_capacity(SUPERVISED);
            for _ in 0..SUPERVISED {
                v.push(spawn(config).await.unwrap());
            }
            v
        });
        g.bench_function(name, |b| b.iter_custom(cpu_over_wall_seconds));
        rt.block_on(async {
            for mut child in children {
                child.stop().await.unwrap();
            }
        });
    }
    g.finish();
}

criterion_group!(benches, soft_limits);
criterion_main!(benches);
