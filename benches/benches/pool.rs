//! Getting a ready Claude session: `acquire` from a warm `SessionPool` against a cold start to
//! ready (the manager starts the real CLI 2.1.328 and it answers `initialize`), in the same run
//! with the same spec. The pool refills between timed acquires; only the acquire is timed.
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_manager::{ManagerConfig, PoolConfig, ProcessManager, SessionPool, SessionSpec};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

fn spec(cli: &std::path::Path, base_url: &str) -> SessionSpec {
    let mut spec = SessionSpec::claude("bench-pool", claude_manager::proc::STREAM_JSON_ARGS);
    if let claude_manager::Program::Claude { binary, .. } = &mut spec.program {
        *binary = Some(cli.to_path_buf());
    }
    spec.stdin = claude_manager::proc::StdinMode::Piped;
    spec.health = None;
    for (k, v) in claude_testkit::offline_env(base_url) {
        spec.env.push((k.into(), v.into()));
    }
    spec.env.push((
        "ANTHROPIC_API_KEY".into(),
        "sk-ant-api03-bench-pool-0000000000000".into(),
    ));
    spec
}

fn acquire(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cli = rt.block_on(claude_testkit::pinned_cli()).unwrap();
    let api = rt.block_on(claude_testkit::StandInApi::start()).unwrap();
    let spec = spec(&cli, &api.base_url());
    let manager = Arc::new(ProcessManager::new(ManagerConfig::default()));
    let mut g = c.benchmark_group("session_acquire");
    // Every timed acquire costs an untimed CLI start to refill the pool: few iterations.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    let mut config = PoolConfig::default();
    config.size = 2;
    let pool = rt.block_on(async { SessionPool::new(manager.clone(), spec.clone(), config) });
    let mut key = 0u64;
    g.bench_function("warm_pool", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    assert!(pool.wait_ready(2, Duration::from_secs(60)).await);
                    key += 1;
                    let start = Instant::now();
                    let session = pool.acquire(&format!("key-{key}")).await.unwrap();
                    total += start.elapsed();
                    session.discard();
                }
                total
            })
        })
    });
    pool.close();
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("cold_start_to_ready", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut handle = manager.start(spec.clone()).unwrap();
                    let run = handle.next_run().await.unwrap();
                    let session = run.session.unwrap();
                    session.initialize(Duration::from_secs(60)).await.unwrap();
                    total += start.elapsed();
                    handle.stop().await.unwrap();
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, acquire);
criterion_main!(benches);
