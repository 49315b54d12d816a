//! The daemon's registry through the real binary: API-made sessions survive a restart of the
//! daemon (also one killed with SIGKILL, whose trees the watchdog ends), and a daemon killed
//! in the middle of writes never leaves the file unreadable.

use std::time::{Duration, Instant};

use claude_daemon::{registry_path, Registry};

use crate::serve::{alive, Served};

fn define(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "command": ["/bin/sleep", "1234"], "grace": "1s"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_daemons_trees_go_and_its_sessions_come_back() {
    let _serial = crate::SERIAL.lock().await;
    let served = Served::start("", &[]).await;
    let client = served.client();
    for i in 0..20 {
        client.create(&define(&format!("s{i:02}"))).await.unwrap();
    }
    let mut pids = Vec::new();
    for i in 0..20 {
        pids.push(crate::serve::pid_of(&client, &format!("s{i:02}")).await);
    }
    let (dir, state) = served.kill().await;
    let killed = Instant::now();
    while pids.iter().any(|p| alive(*p)) && killed.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left: Vec<&u32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(
        left.is_empty(),
        "alive 1 s after the daemon's SIGKILL: {left:?}"
    );
    let registry = Registry::open(&registry_path(&state)).unwrap();
    assert_eq!(registry.integrity().unwrap(), "ok");
    assert_eq!(registry.definitions().unwrap().len(), 20);
    drop(registry);
    let served = Served::restart(dir).await;
    let client = served.client();
    let list = client.list().await.unwrap();
    assert_eq!(list.len(), 20, "{list:?}");
    for i in 0..20 {
        let pid = crate::serve::pid_of(&client, &format!("s{i:02}")).await;
        assert!(!pids.contains(&pid));
    }
    // Deleted is forgotten; a stopped session's report is kept.
    client.stop("s00").await.unwrap();
    client.delete("s01").await.unwrap();
    let state = served.state();
    let _dir = served.drain().await;
    let registry = Registry::open(&registry_path(&state)).unwrap();
    assert_eq!(registry.definitions().unwrap().len(), 19);
    assert!(registry.report_count("s00").unwrap() >= 1);
}

/// A stream-json session's conversation goes on across a SIGKILL of the daemon: the new daemon
/// starts the session with the conversation id its registry kept, and the real CLI's next
/// request carries the turn made before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_goes_on_after_the_daemon_is_killed() {
    let _serial = crate::SERIAL.lock().await;
    let api = claude_testkit::StandInApi::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = crate::serve::chat_config(&api, home.path()).await;
    let served = Served::start_with_env(&config, &[crate::serve::CHAT_KEY]).await;
    let client = served.client();
    let pid = crate::serve::pid_of(&client, "chat").await;
    let first = crate::serve::chat_turn(&client, "remember the word saffron").await;
    let (dir, _state) = served.kill().await;
    let killed = Instant::now();
    while alive(pid) && killed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alive(pid));

    let served = Served::restart_with_env(dir, &[crate::serve::CHAT_KEY]).await;
    let client = served.client();
    crate::serve::pid_of(&client, "chat").await;
    let second = crate::serve::chat_turn(&client, "which word was it").await;
    assert_eq!(first["session_id"], second["session_id"]);
    let texts = api.message_calls().last().unwrap().user_texts.clone();
    assert!(texts.iter().any(|t| t.contains("saffron")), "{texts:?}");
    // The conversation was kept in the session's own directory; deleting the session removes
    // it (a new session of the name would start afresh).
    let own = served.state().join("sessions").join("chat");
    assert!(own.join(".claude").is_dir());
    client.delete("chat").await.unwrap();
    assert!(!own.exists());
    let _dir = served.drain().await;
}

/// A kept conversation the CLI cannot load, for a session that is not started again
/// (`restart = "never"`): the turn's run fails before the turn, no next run comes, and the
/// turn gets that failure at once (no `retry`, no waiting out the 30 s for a next run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_on_a_failed_resume_without_a_next_run_gets_the_failure_at_once() {
    let _serial = crate::SERIAL.lock().await;
    let api = claude_testkit::StandInApi::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = crate::serve::chat_config(&api, home.path()).await.replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nrestart = \"never\"\n",
    );
    let dir = tempfile::Builder::new()
        .prefix("serve-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::write(dir.path().join("pm.toml"), config).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let registry = Registry::open(&registry_path(&state)).unwrap();
    registry
        .claude_session("chat", "0b3c8f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f")
        .unwrap();
    drop(registry);
    let served = Served::restart_with_env(dir, &[crate::serve::CHAT_KEY]).await;
    let client = served.client();
    crate::serve::pid_of(&client, "chat").await;
    let records = tokio::time::timeout(
        Duration::from_secs(20),
        crate::serve::chat_records(&client, "hello"),
    )
    .await
    .unwrap_or_else(|_| panic!("the turn waited for a run that never comes"));
    let last = records.last().unwrap();
    assert_eq!(last["type"], "result", "{records:?}");
    assert_eq!(last["subtype"], "error_during_execution", "{records:?}");
    assert!(records.iter().all(|r| r["type"] != "retry"), "{records:?}");
    let _dir = served.drain().await;
}

/// SIGKILL at a random moment while sessions are being created and deleted, ten times: the
/// registry stays readable and whole each time, and the next daemon starts from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_writes_leaves_a_readable_registry() {
    let _serial = crate::SERIAL.lock().await;
    let mut served = Served::start("", &[]).await;
    for round in 0..10u32 {
        let client = served.client();
        let writer = tokio::spawn(async move {
            for i in 0..1000u32 {
                let name = format!("w{round}-{i}");
                if client.create(&define(&name)).await.is_err() {
                    return;
                }
                if i % 2 == 0 && client.delete(&name).await.is_err() {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(u64::from(50 + fastrand::u32(0..250)))).await;
        let (dir, state) = served.kill().await;
        writer.abort();
        let registry = Registry::open(&registry_path(&state)).unwrap();
        assert_eq!(registry.integrity().unwrap(), "ok", "round {round}");
        let defs = registry.definitions().unwrap();
        assert!(defs.iter().all(Result::is_ok), "round {round}: {defs:?}");
        drop(registry);
        served = Served::restart(dir).await;
        let kept = served.client().list().await.unwrap().len();
        assert_eq!(
            kept,
            defs.len(),
            "round {round}: restored all the registry kept"
        );
    }
    served.drain().await;
}
