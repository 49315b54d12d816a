//! Host-to-CLI control requests against the real CLI 2.1.328 on the stand-in API: the model
//! and the permission mode switched mid-session (seen in the API's requests and in who is
//! asked), an interrupt during a slow stream, and the other typed requests answered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use claude_manager::proc::{
    Error, PermissionDecision, PermissionHandler, PermissionMode, PermissionRequest,
};
use claude_manager::{ManagerConfig, ProcessManager};
use claude_testkit::{Behaviour, StandInApi};

use crate::permissions::{end, start};
use crate::SERIAL;

const T: Duration = Duration::from_secs(30);

/// Allows everything and counts the prompts.
#[derive(Default)]
struct Counting(Mutex<u32>);

#[async_trait]
impl PermissionHandler for Counting {
    async fn can_use_tool(&self, _: PermissionRequest) -> Result<PermissionDecision, String> {
        *self.0.lock().unwrap() += 1;
        Ok(PermissionDecision::allow())
    }
}

fn last_model(api: &StandInApi) -> Option<String> {
    api.message_calls().last().and_then(|c| c.model.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_permission_mode_switch_mid_session() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, mut session) = start(&api, &manager, dir.path(), Some("claude-model-one")).await;
    let handler = Arc::new(Counting::default());
    session.set_permission_handler(handler.clone(), Duration::from_secs(10));

    session.turn("ping").await.unwrap();
    assert_eq!(last_model(&api).as_deref(), Some("claude-model-one"));
    session
        .set_model(Some("claude-model-two"), T)
        .await
        .unwrap();
    session.turn("ping").await.unwrap();
    assert_eq!(last_model(&api).as_deref(), Some("claude-model-two"));

    // Asked under the default mode, so the command runs once allowed.
    session.turn("run: touch asked-marker").await.unwrap();
    assert_eq!(*handler.0.lock().unwrap(), 1);
    assert!(dir.path().join("asked-marker").exists());
    // Under dontAsk whatever would prompt is denied without asking.
    session
        .set_permission_mode(PermissionMode::DontAsk, T)
        .await
        .unwrap();
    session.turn("run: touch unasked-marker").await.unwrap();
    assert_eq!(*handler.0.lock().unwrap(), 1);
    assert!(!dir.path().join("unasked-marker").exists());
    end(h, session, &api).await;
}

/// An interrupt ends a turn whose reply streams slowly, long before the stream would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_a_slow_turn_at_once() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, mut session) = start(&api, &manager, dir.path(), Some("claude-slow")).await;
    // Its events 3 s apart: about 20 s for the reply without the interrupt.
    api.set_default(Behaviour::SlowStream {
        delay: Duration::from_secs(3),
    });
    let control = session.control_handle();
    let interrupter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        control.interrupt(T).await
    });
    let started = Instant::now();
    let turn = session.turn("tell me a long story").await.unwrap();
    let took = started.elapsed();
    interrupter.await.unwrap().unwrap();
    assert!(
        took < Duration::from_secs(8),
        "the turn took {took:?}: {turn:?}"
    );
    api.set_default(Behaviour::default());
    end(h, session, &api).await;
}

/// The other typed requests reach the CLI and are answered (an error reply counts: the CLI
/// understood and refused, as `rewind_files` without file checkpointing does), never left
/// to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_typed_requests_are_answered() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, session) = start(&api, &manager, dir.path(), Some("claude-misc")).await;
    let answered = |r: claude_manager::proc::Result<_>| match r {
        Ok(_) | Err(Error::ControlError { .. }) => {}
        Err(e) => panic!("not answered: {e}"),
    };
    let usage = session.get_context_usage(T).await.unwrap();
    assert!(usage.response_json.starts_with('{'));
    let status = session.mcp_status(T).await.unwrap();
    assert!(status.response_json.starts_with('{'));
    answered(
        session
            .rewind_files("00000000-0000-4000-8000-000000000000", T)
            .await,
    );
    answered(session.stop_task("task-that-does-not-exist", T).await);
    answered(session.mcp_reconnect("no-such-server", T).await);
    answered(session.mcp_toggle("no-such-server", false, T).await);
    answered(session.set_max_thinking_tokens(Some(2048), T).await);
    // What the TypeScript SDK's supportedCommands/supportedModels/accountInfo read: the
    // answer to `initialize`.
    let init = session.initialize(T).await.unwrap();
    let init: serde_json::Value = serde_json::from_str(&init.response_json).unwrap();
    for key in ["commands", "models", "account"] {
        assert!(init.get(key).is_some(), "{key} missing: {init}");
    }
    end(h, session, &api).await;
}
