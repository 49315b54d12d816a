//! Stream-json session faults, injected with shell stand-ins for the CLI (the real CLI's happy
//! path is in `real_cli`).

use std::sync::Arc;
use std::time::Duration;

use claude_proc::{spawn, ClaudeSession, Error, SessionEvent, StdinMode, StreamMessage};

use crate::support::*;

fn session_of(script: &str) -> claude_proc::ProcessConfig {
    sh(script)
        .stdin(StdinMode::Piped)
        .stdout(claude_proc::OutputMode::lines())
        .grace(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_unanswered_control_request_times_out() {
    let mut child = spawn(&session_of("cat >/dev/null")).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    let start = std::time::Instant::now();
    match session.initialize(Duration::from_millis(200)).await {
        Err(Error::ControlTimeout {
            request_id,
            subtype,
            ..
        }) => {
            assert_eq!(subtype, "initialize");
            assert!(request_id.starts_with("req_"));
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    child.stop().await.unwrap();
}

#[tokio::test]
async fn a_cli_that_exits_mid_request_ends_the_request_with_its_exit() {
    let mut child = spawn(&session_of("head -n 1 >/dev/null")).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    match session.initialize(Duration::from_secs(10)).await {
        Err(Error::SessionEnded { during, reason, .. }) => {
            assert_eq!(during, "initialize");
            assert!(reason.success(), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    child.wait().await.unwrap();
}

/// A CLI that fails during start-up fails `initialize` at once with its exit and stderr, not
/// after the request's timeout (the official SDKs' "Control request timeout: initialize").
#[tokio::test]
async fn a_start_up_failure_fails_initialize_at_once_with_stderr() {
    let script = "echo 'fatal: the settings file is not valid JSON' >&2; exit 3";
    let mut child = spawn(&session_of(script)).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    let start = std::time::Instant::now();
    let err = session
        .initialize(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        start.elapsed()
    );
    match &err {
        Error::SessionEnded {
            during,
            reason,
            stderr_tail,
            ..
        } => {
            assert_eq!(during, "initialize");
            assert_eq!(*reason, claude_proc::ExitReason::Exited { code: 3 });
            assert!(stderr_tail.contains("not valid JSON"), "{stderr_tail:?}");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("exit") || text.contains("3"), "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
    // A turn on the ended session reports the same end.
    let mut session = session;
    assert!(matches!(
        session.turn("hello").await,
        Err(Error::SessionEnded { .. })
    ));
}

#[tokio::test]
async fn garbage_output_is_reported_not_fatal_and_the_result_still_arrives() {
    // A stand-in that prints garbage, an unknown type, then a turn result.
    let script = r#"read line; echo 'not json'; echo '{"type":"from_the_future"}'; echo '{"type":"result","subtype":"success","is_error":false,"result":"pong","num_turns":1}'; cat >/dev/null"#;
    let mut child = spawn(&session_of(script)).await.unwrap();
    let mut session = ClaudeSession::attach(&mut child).unwrap();
    let turn = session.turn("ping").await.unwrap();
    assert_eq!(turn.result.result.as_deref(), Some("pong"));
    assert!(matches!(&turn.events[0], SessionEvent::Malformed { line, .. } if line == "not json"));
    assert_eq!(
        turn.events[1],
        SessionEvent::Message(StreamMessage::Unknown {
            kind: "from_the_future".into()
        })
    );
    session.close().await;
    let info = child.stop().await.unwrap();
    assert!(matches!(
        info.reason,
        claude_proc::ExitReason::Stopped { .. }
    ));
}

#[tokio::test]
async fn attach_needs_piped_streams() {
    let mut child = spawn(&sh("true").build().unwrap()).await.unwrap();
    assert!(matches!(
        ClaudeSession::attach(&mut child),
        Err(Error::InvalidValue { field: "stdin", .. })
    ));
    child.wait().await.unwrap();
}

/// A stand-in CLI that sends `requests` (lines), then writes the next line it reads from
/// stdin (our reply) to `out`, or `none` if none comes within 3 s (`timeout` + `head`: the
/// shell's `read` has no timeout here).
fn asks(requests: &[&str], out: &std::path::Path) -> claude_proc::ProcessConfig {
    let mut script = String::new();
    for r in requests {
        script.push_str(&format!("echo '{r}'; "));
    }
    script.push_str(&format!(
        "reply=$(timeout 3 head -n 1); if [ -n \"$reply\" ]; then printf '%s\\n' \"$reply\" > {0}; else echo none > {0}; fi; cat >/dev/null",
        out.display()
    ));
    session_of(&script)
}

async fn reply_of(requests: &[&str], session_setup: impl FnOnce(&ClaudeSession)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reply");
    let mut child = spawn(&asks(requests, &out)).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    session_setup(&session);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !out.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.stop().await.unwrap();
    std::fs::read_to_string(&out).unwrap_or_default()
}

struct Answer(claude_proc::PermissionDecision);

#[async_trait::async_trait]
impl claude_proc::PermissionHandler for Answer {
    async fn can_use_tool(
        &self,
        request: claude_proc::PermissionRequest,
    ) -> Result<claude_proc::PermissionDecision, String> {
        assert_eq!(request.tool_name, "Bash");
        assert_eq!(request.input_json, r#"{"command":"ls"}"#);
        Ok(self.0.clone())
    }
}

const PROMPT: &str = r#"{"type":"control_request","request_id":"cli_7","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"tool_use_id":"toolu_1"}}"#;

/// Every control request of the CLI gets a reply: an unsupported subtype and a prompt without
/// a handler an error naming why, a prompt with a handler its decision.
#[tokio::test]
async fn every_control_request_of_the_cli_is_answered() {
    let unknown = r#"{"type":"control_request","request_id":"cli_1","request":{"subtype":"elicitation_of_the_future"}}"#;
    let reply: serde_json::Value =
        serde_json::from_str(&reply_of(&[unknown], |_| {}).await).unwrap();
    assert_eq!(reply["type"], "control_response");
    assert_eq!(reply["response"]["subtype"], "error");
    assert_eq!(reply["response"]["request_id"], "cli_1");
    assert_eq!(
        reply["response"]["error"],
        "unsupported control request subtype: elicitation_of_the_future"
    );
    // An MCP message for a server this host does not have, a hook id it never registered.
    for (request, error) in [
        (
            r#"{"type":"control_request","request_id":"cli_2","request":{"subtype":"mcp_message","server_name":"x","message":{}}}"#,
            "no in-process MCP server is named \"x\"",
        ),
        (
            r#"{"type":"control_request","request_id":"cli_3","request":{"subtype":"hook_callback","callback_id":"hook_9","input":{}}}"#,
            "no hook is registered under the id \"hook_9\"",
        ),
    ] {
        let reply: serde_json::Value =
            serde_json::from_str(&reply_of(&[request], |_| {}).await).unwrap();
        assert_eq!(reply["response"]["subtype"], "error");
        assert_eq!(reply["response"]["error"], error);
    }

    let reply: serde_json::Value =
        serde_json::from_str(&reply_of(&[PROMPT], |_| {}).await).unwrap();
    assert_eq!(reply["response"]["subtype"], "error");
    assert!(reply["response"]["error"]
        .as_str()
        .unwrap()
        .contains("no permission handler"));

    let deny = claude_proc::PermissionDecision::deny_and_interrupt("no ls here");
    let reply: serde_json::Value = serde_json::from_str(
        &reply_of(&[PROMPT], |s| {
            s.set_permission_handler(Arc::new(Answer(deny)), Duration::from_secs(5))
        })
        .await,
    )
    .unwrap();
    assert_eq!(reply["response"]["subtype"], "success");
    assert_eq!(reply["response"]["request_id"], "cli_7");
    assert_eq!(
        reply["response"]["response"],
        serde_json::json!({"behavior": "deny", "message": "no ls here", "interrupt": true})
    );

    let allow = claude_proc::PermissionDecision::allow();
    let reply: serde_json::Value = serde_json::from_str(
        &reply_of(&[PROMPT], |s| {
            s.set_permission_handler(Arc::new(Answer(allow)), Duration::from_secs(5))
        })
        .await,
    )
    .unwrap();
    assert_eq!(
        reply["response"]["response"],
        serde_json::json!({"behavior": "allow", "updatedInput": {"command": "ls"}})
    );
}

/// A handler that never answers, for the cancel test: records that its future was dropped.
struct Never(Arc<std::sync::atomic::AtomicBool>);

struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl claude_proc::PermissionHandler for Never {
    async fn can_use_tool(
        &self,
        _: claude_proc::PermissionRequest,
    ) -> Result<claude_proc::PermissionDecision, String> {
        let _guard = SetOnDrop(Arc::clone(&self.0));
        std::future::pending().await
    }
}

/// `control_cancel_request` cancels the pending answer: the handler's future is dropped and
/// nothing is sent for the withdrawn request.
#[tokio::test]
async fn a_cancelled_prompt_stops_its_handler_and_gets_no_reply() {
    let cancel = r#"{"type":"control_cancel_request","request_id":"cli_7"}"#;
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = Arc::new(Never(Arc::clone(&dropped)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reply");
    // The prompt, a pause for it to reach the handler, then the cancel; the verdict is
    // written whole before it appears under its name.
    let script = format!(
        "echo '{PROMPT}'; sleep 0.5; echo '{cancel}'; reply=$(timeout 2 head -n 1); if [ -n \"$reply\" ]; then printf '%s\\n' \"$reply\" > {0}.part; else echo none > {0}.part; fi; mv {0}.part {0}; cat >/dev/null",
        out.display()
    );
    let mut child = spawn(&session_of(&script)).await.unwrap();
    let session = ClaudeSession::attach(&mut child).unwrap();
    session.set_permission_handler(handler, Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !out.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Checked while the CLI still runs: the end of a session also ends its pending answers.
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "none");
    child.stop().await.unwrap();
}

/// A handler past its timeout is an error reply that says so in seconds.
#[tokio::test]
async fn a_slow_handler_is_an_error_reply_naming_its_timeout() {
    let never = Arc::new(Never(Arc::new(std::sync::atomic::AtomicBool::new(false))));
    let reply: serde_json::Value = serde_json::from_str(
        &reply_of(&[PROMPT], |s| {
            s.set_permission_handler(never, Duration::from_millis(100))
        })
        .await,
    )
    .unwrap();
    assert_eq!(reply["response"]["subtype"], "error");
    assert_eq!(
        reply["response"]["error"],
        "the permission handler did not answer within 0.1 s"
    );
}

/// A hook that never answers.
struct NeverHook;

#[async_trait::async_trait]
impl claude_proc::HookCallback for NeverHook {
    async fn call(&self, _: claude_proc::HookInput) -> Result<claude_proc::HookOutput, String> {
        std::future::pending().await
    }
}

/// A hook past the handlers' timeout is an error reply too: the CLI is never left waiting.
#[tokio::test]
async fn a_slow_hook_is_an_error_reply_naming_the_timeout() {
    let call = r#"{"type":"control_request","request_id":"cli_9","request":{"subtype":"hook_callback","callback_id":"hook_0","input":{"hook_event_name":"PreToolUse","tool_name":"Bash"}}}"#;
    let handlers = claude_proc::HostHandlers::new()
        .hook(
            claude_proc::HookEvent::PreToolUse,
            Some("Bash"),
            Arc::new(NeverHook),
        )
        .timeout(Duration::from_millis(100));
    let reply: serde_json::Value =
        serde_json::from_str(&reply_of(&[call], |s| s.set_handlers(handlers)).await).unwrap();
    assert_eq!(reply["response"]["subtype"], "error");
    assert_eq!(
        reply["response"]["error"],
        "the hook did not answer within 0.1 s"
    );
}
