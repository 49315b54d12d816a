//! The warm pool with the real CLI 2.1.328 on the stand-in API: ready sessions handed out per
//! key, never a used one to another key, recycled after K turns, above an RSS threshold and
//! after an idle time, under the manager's live cap, and a start failure reported by name.

use std::sync::Arc;
use std::time::Duration;

use claude_manager::{Error, ManagerConfig, PoolConfig, ProcessManager, SessionPool, SessionSpec};
use claude_testkit::StandInApi;

use crate::claude::{api_key, claude_left, stream_session};
use crate::{gone, SERIAL};

async fn spec(api: &StandInApi) -> SessionSpec {
    let mut spec = stream_session(api, "pooled").await;
    spec.credentials = Some(api_key("sk-ant-api03-pool-test-000000000000000"));
    spec.health = None;
    spec
}

fn config(size: usize) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.size = size;
    c.ready_timeout = Duration::from_secs(30);
    c.acquire_timeout = Duration::from_secs(60);
    c
}

/// Close the pool and check every CLI of the stand-in's is gone.
async fn finish(pool: SessionPool, api: &StandInApi) {
    pool.close();
    drop(pool);
    // Each stop: stdin closed, 1 s, SIGTERM, up to the 5 s grace, SIGKILL.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !claude_left(api).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(claude_left(api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_sessions_are_handed_out_per_key_and_never_across_keys() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = Arc::new(ProcessManager::new(ManagerConfig::default()));
    let pool = SessionPool::new(manager.clone(), spec(&api).await, config(2));
    assert!(pool.wait_ready(2, Duration::from_secs(60)).await);

    let mut a = pool.acquire("tenant-a").await.unwrap();
    let a_pid = a.pid().unwrap();
    let first = a.turn("remember the word heliotrope").await.unwrap();
    assert!(!first.result.is_error);
    drop(a);
    assert_eq!(pool.stats().kept, 1);

    // Another key never gets tenant-a's session.
    let b = pool.acquire("tenant-b").await.unwrap();
    assert_ne!(b.pid(), Some(a_pid));
    // tenant-a gets its own back, and its conversation goes on.
    let mut a = pool.acquire("tenant-a").await.unwrap();
    assert_eq!(a.pid(), Some(a_pid));
    a.turn("what was the word?").await.unwrap();
    let last = api.message_calls().last().unwrap().user_texts.clone();
    assert!(last.iter().any(|t| t.contains("heliotrope")), "{last:?}");
    drop((a, b));
    // The pool refilled behind the two fresh sessions it handed out.
    assert!(pool.wait_ready(2, Duration::from_secs(60)).await);
    assert!(pool.stats().started >= 3, "{:?}", pool.stats());
    finish(pool, &api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_recycled_after_their_turns_above_the_rss_threshold_and_when_idle() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = Arc::new(ProcessManager::new(ManagerConfig::default()));
    let mut c = config(1);
    c.max_turns = Some(2);
    c.max_idle = None;
    let pool = SessionPool::new(manager.clone(), spec(&api).await, c);

    // Two turns: spent, stopped when given back.
    let mut s = pool.acquire("k").await.unwrap();
    let pid = s.pid().unwrap();
    s.turn("one").await.unwrap();
    s.turn("two").await.unwrap();
    drop(s);
    assert_eq!(pool.stats().kept, 0);
    wait_gone(pid).await;
    // One turn: kept.
    let mut s = pool.acquire("k").await.unwrap();
    s.turn("one").await.unwrap();
    let pid = s.pid().unwrap();
    drop(s);
    assert_eq!(pool.stats().kept, 1);
    assert!(!gone(pid));
    finish(pool, &api).await;

    // An RSS threshold below the CLI's (~170 MB idle, measured) recycles it on return.
    let mut c = config(1);
    c.max_rss_bytes = Some(16 << 20);
    let pool = SessionPool::new(manager.clone(), spec(&api).await, c);
    let s = pool.acquire("k").await.unwrap();
    let pid = s.pid().unwrap();
    drop(s);
    assert_eq!(pool.stats().kept, 0);
    wait_gone(pid).await;
    finish(pool, &api).await;

    // Idle: a ready session that waited past max_idle is replaced.
    let mut c = config(1);
    c.max_idle = Some(Duration::from_millis(500));
    let pool = SessionPool::new(manager.clone(), spec(&api).await, c);
    let s = pool.acquire("k").await.unwrap();
    let pid = s.pid().unwrap();
    drop(s);
    wait_gone(pid).await;
    assert!(pool.stats().recycled >= 1, "{:?}", pool.stats());
    finish(pool, &api).await;
}

async fn wait_gone(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !gone(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(pid), "pid {pid} is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_stays_under_the_live_cap_and_evicts_an_idle_key_for_a_waiting_one() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = Arc::new(ProcessManager::new(ManagerConfig {
        max_live: 2,
        ..ManagerConfig::default()
    }));
    let pool = SessionPool::new(manager.clone(), spec(&api).await, config(2));
    let a = pool.acquire("a").await.unwrap();
    let b = pool.acquire("b").await.unwrap();
    let (a_pid, b_pid) = (a.pid().unwrap(), b.pid().unwrap());
    drop((a, b));
    // Both kept for their keys, the cap full: "c" gets a session only by evicting one.
    let c = pool.acquire("c").await.unwrap();
    assert!(c.pid() != Some(a_pid) && c.pid() != Some(b_pid));
    assert!(gone(a_pid) || gone(b_pid));
    assert!(manager.metrics().live_processes <= 2);
    drop(c);
    finish(pool, &api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_start_fails_acquire_with_the_reason() {
    let api = StandInApi::start().await.unwrap();
    let manager = Arc::new(ProcessManager::new(ManagerConfig::default()));
    let mut spec = spec(&api).await;
    if let claude_manager::Program::Claude { args, .. } = &mut spec.program {
        args.push("--no-such-flag".into());
    }
    let mut c = config(1);
    c.acquire_timeout = Duration::from_secs(3);
    let pool = SessionPool::new(manager, spec, c);
    let err = pool.acquire("k").await.unwrap_err();
    match &err {
        Error::PoolTimeout {
            last_error: Some(why),
            ..
        } => assert!(why.contains("no-such-flag"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("no pooled session was ready"),
        "{err}"
    );
    finish(pool, &api).await;
}
