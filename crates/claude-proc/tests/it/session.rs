//! Stream-json session faults, injected with shell stand-ins for the CLI (the real CLI's happy
//! path is in `real_cli`).

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
