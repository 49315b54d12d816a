//! The demo's second part: the same job through `claude-pm serve`'s API. A daemon on a
//! socket in a temporary state directory, a stream-json Claude session created with
//! `POST /v1/sessions`, a turn through `POST /v1/sessions/{name}/turns`, the list, the delete.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use claude_daemon::{Client, Daemon, Method};
use claude_manager::proc::STREAM_JSON_ARGS;
use claude_manager::{ManagerConfig, ProcessManager, Settings};
use claude_testkit::{offline_env, StandInApi};
use serde_json::json;

use crate::output::say;

/// Run the daemon part; whether every step did what it should.
pub(crate) async fn show_daemon(bin: &Path, api: &StandInApi) -> bool {
    let state = std::env::temp_dir().join(format!("claude-pm-demo-daemon-{}", std::process::id()));
    let ok = match drive_daemon(bin, api, &state).await {
        Ok(()) => true,
        Err(why) => {
            say!("  the daemon part failed: {why}");
            false
        }
    };
    let _ = std::fs::remove_dir_all(&state);
    ok
}

async fn drive_daemon(bin: &Path, api: &StandInApi, state: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state.join("home"))
        .map_err(|e| e.to_string())?;
    let socket = claude_daemon::socket_path(state);
    let listener = claude_daemon::bind(&socket, None)
        .await
        .map_err(|e| e.to_string())?;
    let manager = Arc::new(ProcessManager::new(ManagerConfig::default()));
    let daemon = Arc::new(Daemon::new(
        manager,
        Settings::default(),
        Settings::default(),
        None,
    ));
    let access = claude_daemon::Access::new(nix::unistd::geteuid().as_raw(), None);
    let server = tokio::spawn(claude_daemon::serve(
        listener,
        claude_daemon::router(Arc::clone(&daemon)),
        access,
    ));
    say!(
        "\nthe daemon (claude-pm serve's API) on {}",
        socket.display()
    );
    let client = Client::new(&socket);
    let result = api_steps(&client, bin, api, state).await;
    daemon.drain().await;
    server.abort();
    result
}

async fn api_steps(
    client: &Client,
    bin: &Path,
    api: &StandInApi,
    state: &Path,
) -> Result<(), String> {
    let mut env = serde_json::Map::new();
    for (k, v) in offline_env(&api.base_url()) {
        env.insert(k.into(), v.into());
    }
    env.insert(
        "HOME".into(),
        state.join("home").display().to_string().into(),
    );
    env.insert(
        "ANTHROPIC_API_KEY".into(),
        "sk-ant-api03-claude-pm-demo-daemon-0000".into(),
    );
    let definition = json!({
        "name": "chat", "claude": STREAM_JSON_ARGS, "claude_binary": bin.display().to_string(),
        "memory": "1G", "env": env,
    });
    let created = client
        .create(&definition)
        .await
        .map_err(|e| e.to_string())?;
    say!(
        "  POST /v1/sessions chat (stream-json claude, memory 1G)  -> {}",
        created.view.state
    );
    let mut pid = None;
    for _ in 0..300 {
        pid = client
            .inspect("chat")
            .await
            .map_err(|e| e.to_string())?
            .view
            .pid;
        if pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = pid.ok_or("chat did not start")?;
    let body = serde_json::to_vec(&json!({"text": "ping"})).map_err(|e| e.to_string())?;
    let (status, answer) = client
        .request(Method::Post, "/v1/sessions/chat/turns", Some(body))
        .await
        .map_err(|e| e.to_string())?;
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&answer)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = records
        .last()
        .and_then(|r| r["result"].as_str())
        .unwrap_or("");
    say!(
        "  POST /v1/sessions/chat/turns \"ping\"  -> {status}, {} records streamed, result {result:?}",
        records.len()
    );
    let list = client.list().await.map_err(|e| e.to_string())?;
    for s in &list {
        say!("  GET /v1/sessions  -> {} {} (pid {pid})", s.name, s.state);
    }
    client.delete("chat").await.map_err(|e| e.to_string())?;
    say!("  DELETE /v1/sessions/chat  -> its tree stopped, the session forgotten");
    if status != 200 || result != "pong" {
        return Err(format!("the turn answered {status} with {result:?}"));
    }
    Ok(())
}
