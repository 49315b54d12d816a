//! Exit detection latency: from SIGKILL of a child to its `Exited` status (claude-proc: pidfd,
//! tree scan, reap, event) against tokio::process's `wait()` returning, in the same run.
#![expect(
    clippy::disallowed_methods,
    reason = "the baseline is tokio::process itself"
)]
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::time::{Duration, Instant};

use claude_proc::{spawn, ProcessConfig, StatusKind};
use criterion::{criterion_group, criterion_main, Criterion};

fn latency(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ProcessConfig::builder("/bin/sleep")
        .arg("1000")
        .build()
        .unwrap();
    let mut g = c.benchmark_group("exit_detection");
    g.sample_size(50).measurement_time(Duration::from_secs(4));
    g.bench_function("claude_proc_status_event", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let child = spawn(&config).await.unwrap();
                    let mut status = child.watch_status();
                    let pid = child.pid() as i32;
                    let start = Instant::now();
                    // SAFETY: kill(2) on a child we started and have not reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    status
                        .wait_for(|s| s.kind() == StatusKind::Exited)
                        .await
                        .unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.bench_function("tokio_process_wait", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut child = tokio::process::Command::new("/bin/sleep")
                        .arg("1000")
                        .spawn()
                        .unwrap();
                    let pid = child.id().unwrap() as i32;
                    let start = Instant::now();
                    // SAFETY: kill(2) on a child we started and have not reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    child.wait().await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, latency);
criterion_main!(benches);
