//! The real Claude CLI (pinned version): binary resolution, version check, a stream-json
//! session answering control-request pings without any API traffic.

use std::time::Duration;

use claude_proc::{
    binary_version, resolve_claude, spawn, ClaudeSession, ExitReason, StreamMessage,
};

use crate::support::*;

#[tokio::test]
async fn version_check_of_the_real_cli() {
    let Some(bin) = claude_bin() else { return };
    let version = binary_version(&bin, Duration::from_secs(20)).await.unwrap();
    assert_eq!(version, "2.1.328");
}

#[tokio::test]
async fn stream_json_session_answers_control_pings_and_stops_cleanly() {
    let Some(bin) = claude_bin() else { return };
    let home = tempfile::tempdir().unwrap();
    let config = ClaudeSession::config(&bin)
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        // Nothing listens here: the session must not need the API for control requests.
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-test-not-real")
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut session = ClaudeSession::attach(&mut child).unwrap();
    let init = session.initialize(Duration::from_secs(30)).await.unwrap();
    assert!(init.success);
    assert!(
        init.response_json.starts_with('{'),
        "{}",
        init.response_json
    );
    // A second ping with a fresh id answers too.
    let again = session
        .control("get_context_usage", None, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(again.success);
    // An unknown control request is an error reply, not a hang.
    let unknown = session
        .control("no_such_request_subtype", None, Duration::from_secs(10))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");

    // Closing stdin ends the CLI with exit 0 inside the stdin wait.
    let info = child.stop().await.unwrap();
    match &info.reason {
        ExitReason::Stopped { exit, .. } => assert_eq!(exit.code, Some(0), "{info:?}"),
        other => panic!(
            "expected a clean stop, got {other:?}; stderr: {}",
            info.stderr_tail
        ),
    }
    assert!(!alive(child.pid()));
    while let Some(ev) = session.next_event().await {
        if let claude_proc::SessionEvent::Message(StreamMessage::Unknown { kind }) = ev {
            eprintln!("unknown message type from the CLI: {kind}");
        }
    }
}

/// The real CLI refusing its arguments fails `initialize` at once, with the CLI's own words.
#[tokio::test]
async fn the_real_cli_failing_at_start_fails_initialize_at_once() {
    let Some(bin) = claude_bin() else { return };
    let home = tempfile::tempdir().unwrap();
    let config = ClaudeSession::config(&bin)
        .arg("--no-such-option")
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-test-not-real")
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    let start = std::time::Instant::now();
    let err = session
        .initialize(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    match &err {
        claude_proc::Error::SessionEnded { stderr_tail, .. } => {
            assert!(stderr_tail.contains("no-such-option"), "{stderr_tail:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!alive(child.pid()));
}

#[test]
fn resolve_prefers_the_environment_variable() {
    let Some(bin) = claude_bin() else { return };
    assert_eq!(resolve_claude(None).unwrap(), bin);
    let explicit = resolve_claude(Some(std::path::Path::new("/bin/sh"))).unwrap();
    assert_eq!(explicit, std::path::PathBuf::from("/bin/sh"));
}
