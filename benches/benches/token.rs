//! Cached `get_token`: the lock-free fast path of `OAuthTokenManager` against the naive
//! `Mutex<Credential>` clone, single-threaded and with 8 readers at once, in the same run.
#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a bench that cannot set up should fail loudly"
)]

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime};

use claude_auth::{
    Credential, CredentialsFile, OAuthLogin, OAuthTokenManager, RefreshConfig, Secret, TokenManager,
};
use criterion::{criterion_group, criterion_main, Criterion};

const READERS: usize = 8;

fn manager(dir: &std::path::Path) -> OAuthTokenManager {
    let file = CredentialsFile::new(dir.join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-bench-access-token-0123456789abcdef0123456789abcdef"),
            Some(Secret::new("sk-ant-ort01-bench")),
            Some(SystemTime::now() + Duration::from_secs(8 * 3600)),
        ))
    })
    .unwrap();
    // The endpoint is never called: the token is fresh for hours.
    let m = OAuthTokenManager::new(
        file,
        RefreshConfig::new("http://127.0.0.1:9/token", "bench"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(m.get_token()).unwrap();
    m
}

/// Per-call time with `READERS` threads calling `f` at once.
fn contended(iters: u64, f: Arc<dyn Fn() + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(READERS));
    let per_thread = iters.div_ceil(READERS as u64).max(1);
    let handles: Vec<_> = (0..READERS)
        .map(|_| {
            let (f, barrier) = (Arc::clone(&f), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..per_thread {
                    f();
                }
                start.elapsed()
            })
        })
        .collect();
    let slowest = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    // Time per call as each reader saw it.
    slowest.mul_f64(iters as f64 / per_thread as f64)
}

fn cached(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let m = Arc::new(manager(dir.path()));
    let naive = Arc::new(Mutex::new(m.cached().unwrap()));
    let mut g = c.benchmark_group("cached_get_token");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("oauth_manager_cached", |b| b.iter(|| m.cached().unwrap()));
    g.bench_function("mutex_clone_baseline", |b| {
        b.iter(|| naive.lock().unwrap().clone())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("oauth_manager_get_token_async", |b| {
        b.iter(|| rt.block_on(m.get_token()).unwrap())
    });
    let m8 = Arc::clone(&m);
    g.bench_function("oauth_manager_cached_8_readers", move |b| {
        let m = Arc::clone(&m8);
        b.iter_custom(|iters| {
            let m = Arc::clone(&m);
            contended(
                iters,
                Arc::new(move || {
                    let _: Credential = m.cached().unwrap();
                }),
            )
        })
    });
    let n8 = Arc::clone(&naive);
    g.bench_function("mutex_clone_baseline_8_readers", move |b| {
        let n = Arc::clone(&n8);
        b.iter_custom(|iters| {
            let n = Arc::clone(&n);
            contended(
                iters,
                Arc::new(move || {
                    let _: Credential = n.lock().unwrap().clone();
                }),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, cached);
criterion_main!(benches);
