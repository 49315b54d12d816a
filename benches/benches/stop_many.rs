//! Stopping 100 TERM-respecting children (`sleep`): claude-proc's full stop sequence on all of
//! them concurrently, against SIGTERM + wait on 100 `std::process::Child`ren, in the same run.
#![expect(
    clippy::disallowed_methods,
    reason = "the baseline is std::process::Command itself"
)]
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::time::{Duration, Instant};

use claude_proc::ProcessConfig;
use criterion::{criterion_group, criterion_main, Criterion};

const N: usize = 100;

fn stop_many(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ProcessConfig::builder("/bin/sleep")
        .arg("1000")
        .build()
        .unwrap();
    let mut g = c.benchmark_group("stop_100_children");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("claude_proc_stop_tree", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let children = benches::spawn_all(&config, N).await;
                    total += benches::stop_all(children).await;
                }
                total
            })
        })
    });
    g.bench_function("std_sigterm_wait", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut children: Vec<_> = (0..N)
                    .map(|_| {
                        std::process::Command::new("/bin/sleep")
                            .arg("1000")
                            .spawn()
                            .unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for child in &children {
                    // SAFETY: kill(2) on a child we started and have not reaped.
                    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                }
                for child in &mut children {
                    child.wait().unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, stop_many);
criterion_main!(benches);
