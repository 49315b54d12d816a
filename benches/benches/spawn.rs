//! spawn + wait of `/bin/true`: claude-proc against raw `std::process::Command` in the same run,
//! with and without a limits-like hook, from a small process and from one holding 1 GiB.
#![expect(
    clippy::disallowed_methods,
    reason = "the baseline is std::process::Command itself"
)]
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::os::unix::process::CommandExt;
use std::time::Duration;

use benches::{hold_memory, session_limits_hook};
use claude_proc::{spawn, OutputMode, ProcessConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn group(c: &mut Criterion, name: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // stdio inherited, as `Command::status` does, so both sides do the same work there.
    let plain = ProcessConfig::builder("/bin/true")
        .stdout(OutputMode::Inherit)
        .stderr(OutputMode::Inherit)
        .build()
        .unwrap();
    let hooked = ProcessConfig::builder("/bin/true")
        .stdout(OutputMode::Inherit)
        .stderr(OutputMode::Inherit)
        .hook(session_limits_hook())
        .build()
        .unwrap();

    let mut g = c.benchmark_group(name);
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.bench_function("std_command", |b| {
        b.iter(|| std::process::Command::new("/bin/true").status().unwrap())
    });
    g.bench_function("claude_proc", |b| {
        b.iter(|| rt.block_on(async { spawn(&plain).await.unwrap().wait().await.unwrap() }))
    });
    g.bench_function("claude_proc_limits_hook", |b| {
        b.iter(|| rt.block_on(async { spawn(&hooked).await.unwrap().wait().await.unwrap() }))
    });
    // Last: forked children of a large parent leave page-table teardown behind them.
    g.bench_function("std_command_pre_exec", |b| {
        b.iter(|| {
            let mut cmd = std::process::Command::new("/bin/true");
            // SAFETY: an empty closure: the presence of pre_exec alone forces fork+exec.
            unsafe { cmd.pre_exec(|| Ok(())) };
            cmd.status().unwrap()
        })
    });
    g.finish();
}

fn small_parent(c: &mut Criterion) {
    group(c, "spawn_wait");
}

fn large_parent(c: &mut Criterion) {
    let held = hold_memory(1 << 30);
    group(c, "spawn_wait_1gib_parent");
    drop(held);
}

criterion_group!(benches, small_parent, large_parent);
criterion_main!(benches);
