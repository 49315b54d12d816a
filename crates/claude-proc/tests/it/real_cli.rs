//! The real Claude CLI (pinned version): binary resolution, version check, a stream-json
//! session answering control-request pings without any API traffic.

use std::time::Duration;

use claude_proc::{
    binary_version, resolve_claude, spawn, ClaudeSession, ExitReason, StreamMessage,
};

use crate::support::*;

/// A stream-json session of the real CLI in `home`, with an API nobody answers at (control
/// requests need none) and a made-up key.
fn offline(bin: &std::path::Path, home: &std::path::Path) -> claude_proc::ProcessConfigBuilder {
    ClaudeSession::config(bin)
        .env("HOME", home)
        .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-test-not-real")
}

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
    let config = offline(&bin, home.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
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
    let config = offline(&bin, home.path())
        .arg("--no-such-option")
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

/// Every option set at once, as `ClaudeOptions` maps them.
fn every_option() -> claude_proc::ClaudeOptions {
    use claude_proc::{
        ClaudeOptions, Effort, PermissionMode, PermissionPrompts, SettingSource, Tools,
    };
    let mut o = ClaudeOptions::default();
    o.model = Some("claude-haiku-4-5".into());
    o.fallback_models = vec!["claude-sonnet-4-5".into()];
    o.permission_mode = Some(PermissionMode::AcceptEdits);
    o.permission_prompts = Some(PermissionPrompts::Host);
    o.allowed_tools = vec!["Bash(git *)".into(), "Read".into()];
    o.disallowed_tools = vec!["WebFetch".into()];
    o.tools = Some(Tools::Named(vec![
        "Bash".into(),
        "Read".into(),
        "Edit".into(),
    ]));
    o.append_system_prompt = Some("Answer briefly.".into());
    o.max_turns = Some(3);
    o.max_budget_usd = Some(0.25);
    o.json_schema = Some(r#"{"type":"object","properties":{"a":{"type":"string"}}}"#.into());
    o.session_id = Some("0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f".into());
    o.no_session_persistence = true;
    o.add_dirs = vec![std::env::temp_dir()];
    o.mcp_config = vec![r#"{"mcpServers":{}}"#.into()];
    o.sdk_mcp_servers = vec!["host-tools".into()];
    o.strict_mcp_config = true;
    o.settings = Some(r#"{"cleanupPeriodDays":7}"#.into());
    o.setting_sources = Some(vec![SettingSource::Project]);
    o.agents = Some(r#"{"reviewer":{"description":"Reviews","prompt":"Review."}}"#.into());
    o.include_partial_messages = true;
    o.effort = Some(Effort::Low);
    o
}

/// Every flag `ClaudeOptions` emits is one the pinned CLI documents in `--help` (read from
/// the binary, not from memory), except `--max-turns` and `--permission-prompt-tool`, which it
/// accepts without listing them (`the_real_cli_accepts_every_option_at_once` proves it).
#[tokio::test]
async fn every_option_flag_is_in_the_real_clis_help() {
    let Some(bin) = claude_bin() else { return };
    let config = claude_proc::ProcessConfig::builder(&bin)
        .arg("--help")
        .stdout(claude_proc::OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut help = String::new();
    while let Some(event) = out.recv().await {
        if let claude_proc::OutputEvent::Line(line) = event {
            help.push_str(&String::from_utf8_lossy(&line));
            help.push('\n');
        }
    }
    child.wait().await.unwrap();
    let mut flags: Vec<String> = every_option().to_args().unwrap();
    let mut resumed = claude_proc::ClaudeOptions::default();
    resumed.conversation = claude_proc::Conversation::Resume("x".into());
    resumed.fork_session = true;
    flags.extend(resumed.to_args().unwrap());
    let mut cont = claude_proc::ClaudeOptions::default();
    cont.conversation = claude_proc::Conversation::Continue;
    flags.extend(cont.to_args().unwrap());
    for token in &flags {
        let flag = token.split_once('=').map_or(token.as_str(), |(f, _)| f);
        // Accepted by 2.1.328 without being listed (what the official SDKs pass).
        if flag == "--max-turns" || flag == "--permission-prompt-tool" {
            continue;
        }
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag},")),
            "{flag} is not in claude --help"
        );
    }
}

/// The real CLI takes all of them at once: it starts and answers `initialize` (a flag it
/// refused would end it, which fails `initialize` at once).
#[tokio::test]
async fn the_real_cli_accepts_every_option_at_once() {
    let Some(bin) = claude_bin() else { return };
    let home = tempfile::tempdir().unwrap();
    let config = offline(&bin, home.path())
        .args(every_option().to_args().unwrap())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    let init = session.initialize(Duration::from_secs(30)).await;
    assert!(init.is_ok(), "{init:?}");
    child.stop().await.unwrap();
}

#[test]
fn resolve_prefers_the_environment_variable() {
    let Some(bin) = claude_bin() else { return };
    assert_eq!(resolve_claude(None).unwrap(), bin);
    let explicit = resolve_claude(Some(std::path::Path::new("/bin/sh"))).unwrap();
    assert_eq!(explicit, std::path::PathBuf::from("/bin/sh"));
}
