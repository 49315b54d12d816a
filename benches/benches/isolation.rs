//! What isolation costs, each level next to `none` in the same run: spawn+wait of `/bin/true`;
//! the real CLI from spawn to its answer to `initialize`; the stop of 100 two-process trees.
//! Needs root (uids and namespaces), as the feature does.
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_proc::{spawn, ClaudeSession, ProcessConfig, ProcessConfigBuilder, SpawnHook};
use claude_sandbox::{Level, SandboxConfig, SessionSandbox, UidRange};
use criterion::{criterion_group, criterion_main, Criterion};

/// A session of `level` working in `dir`, its uid leased from a range no user has.
fn session(level: Level, dir: &std::path::Path, first: u32) -> Option<Arc<SessionSandbox>> {
    let mut config = SandboxConfig::default();
    config.level = level;
    config.uid_range = UidRange::new(first, first + 9).unwrap();
    config.lease_dir = dir.join("leases");
    SessionSandbox::start(&config, dir).unwrap().map(Arc::new)
}

struct Levels {
    _dir: tempfile::TempDir,
    hooks: Vec<(&'static str, Option<Arc<SessionSandbox>>)>,
}

fn levels() -> Levels {
    let dir = tempfile::Builder::new()
        .prefix("bench-isolation-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = vec![
        ("none", None),
        ("user", session(Level::User, dir.path(), 3_940_000)),
        ("sandbox", session(Level::Sandbox, dir.path(), 3_940_010)),
    ];
    Levels { _dir: dir, hooks }
}

fn with(
    b: ProcessConfigBuilder,
    hook: &Option<Arc<SessionSandbox>>,
    dir: &std::path::Path,
) -> ProcessConfig {
    let b = b.cwd(dir);
    match hook {
        Some(h) => b.hook(Arc::clone(h) as Arc<dyn SpawnHook>),
        None => b,
    }
    .build()
    .unwrap()
}

fn spawn_wait(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let levels = levels();
    let dir = levels._dir.path();
    let mut g = c.benchmark_group("isolation_spawn_wait");
    for (name, hook) in &levels.hooks {
        let config = with(ProcessConfig::builder("/bin/true"), hook, dir);
        g.bench_function(*name, |b| {
            b.iter(|| rt.block_on(async { spawn(&config).await.unwrap().wait().await.unwrap() }))
        });
    }
    g.finish();
}

fn cli_ready(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cli = rt.block_on(claude_testkit::pinned_cli()).unwrap();
    let levels = levels();
    let dir = levels._dir.path();
    let home = tempfile::Builder::new()
        .prefix("bench-home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut g = c.benchmark_group("isolation_cli_ready");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for (name, hook) in levels.hooks.iter().filter(|(n, _)| *n != "user") {
        if let Some(h) = hook {
            h.adopt_home(home.path()).unwrap();
        }
        let mut b = ProcessConfig::builder(&cli)
            .args(claude_proc::STREAM_JSON_ARGS.iter().copied())
            .stdin(claude_proc::StdinMode::Piped)
            .stdout(claude_proc::OutputMode::lines())
            .env("HOME", home.path())
            .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"));
        for (k, v) in claude_testkit::offline_env("http://127.0.0.1:9") {
            b = b.env(k, v);
        }
        let config = with(b, hook, dir);
        g.bench_function(*name, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let mut child = spawn(&config).await.unwrap();
                        let session = ClaudeSession::attach(&mut child).unwrap();
                        session.initialize(Duration::from_secs(60)).await.unwrap();
                        total += start.elapsed();
                        child.stop().await.unwrap();
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

const N: usize = 100;

fn stop_100(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let levels = levels();
    let dir = levels._dir.path();
    let mut g = c.benchmark_group("isolation_stop_100_trees");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, hook) in levels.hooks.iter().filter(|(n, _)| *n != "user") {
        let config = with(
            ProcessConfig::builder("/bin/sh").args(["-c", "sleep 1000 & exec sleep 1000"]),
            hook,
            dir,
        );
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let children = benches::spawn_all(&config, N).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        total += benches::stop_all(children).await;
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, spawn_wait, cli_ready, stop_100);
criterion_main!(benches);
