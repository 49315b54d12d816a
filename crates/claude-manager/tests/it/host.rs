//! The host's code called by the real CLI 2.1.328 on the stand-in API: a `PreToolUse` hook
//! registered at `initialize` and called back by id blocks a command (which runs without the
//! hook), and a tool of an in-process MCP server, written in Rust, is called by the model with
//! its answer reaching the API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use claude_manager::proc::{
    HookCallback, HookEvent, HookInput, HookOutput, HostHandlers, McpServer, McpTool,
    PermissionDecision, PermissionHandler, PermissionRequest, ToolHandler, ToolOutput,
};
use claude_manager::{ManagerConfig, ProcessManager};
use claude_testkit::{Behaviour, StandInApi};
use serde_json::Value;

use crate::permissions::{end, start_with};
use crate::SERIAL;

/// Allows every tool and counts the prompts.
#[derive(Default)]
struct AllowAll(Mutex<Vec<String>>);

#[async_trait]
impl PermissionHandler for AllowAll {
    async fn can_use_tool(&self, request: PermissionRequest) -> Result<PermissionDecision, String> {
        self.0.lock().unwrap().push(request.tool_name);
        Ok(PermissionDecision::allow())
    }
}

/// Blocks a Bash command that mentions `blocked`, records every call.
#[derive(Default)]
struct Guard(Mutex<Vec<HookInput>>);

#[async_trait]
impl HookCallback for Guard {
    async fn call(&self, input: HookInput) -> Result<HookOutput, String> {
        let blocked = input
            .tool_input_json
            .as_deref()
            .is_some_and(|i| i.contains("blocked"));
        self.0.lock().unwrap().push(input);
        Ok(if blocked {
            HookOutput::block("the guard hook refuses commands that touch blocked files")
        } else {
            HookOutput::proceed()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_tool_use_hook_blocks_a_command_that_runs_without_it() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let allow = Arc::new(AllowAll::default());

    // Without the hook: the permission handler allows, the command runs.
    let open_dir = tempfile::tempdir().unwrap();
    let handlers = HostHandlers::new().permission(allow.clone());
    let (h, mut session) = start_with(&api, &manager, open_dir.path(), |spec| {
        spec.handlers = handlers;
    })
    .await;
    session.turn("run: touch blocked-marker").await.unwrap();
    assert!(open_dir.path().join("blocked-marker").exists());
    end(h, session, &api).await;

    // With it: the same command is blocked before the permission handler is asked.
    let guard = Arc::new(Guard::default());
    let dir = tempfile::tempdir().unwrap();
    let handlers = HostHandlers::new()
        .permission(allow.clone())
        .hook(HookEvent::PreToolUse, Some("Bash"), guard.clone())
        .timeout(Duration::from_secs(10));
    let (h, mut session) = start_with(&api, &manager, dir.path(), |spec| {
        spec.handlers = handlers;
    })
    .await;
    // The liveness probe sends `initialize` again and again: the hooks stay registered.
    for _ in 0..3 {
        session.initialize(Duration::from_secs(10)).await.unwrap();
    }
    let asked_before = allow.0.lock().unwrap().len();
    let turn = session.turn("run: touch blocked-marker").await.unwrap();
    assert!(!dir.path().join("blocked-marker").exists(), "{turn:?}");
    assert_eq!(allow.0.lock().unwrap().len(), asked_before);
    // The model was told why (the tool result the CLI sent to the API).
    let results = api.tool_results();
    assert!(
        results.iter().any(|r| r.contains("refuses commands")),
        "{results:?}"
    );
    // A command the hook lets through runs, and the hook saw both.
    session.turn("run: touch fine-marker").await.unwrap();
    assert!(dir.path().join("fine-marker").exists());
    let seen = guard.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].event, "PreToolUse");
    assert_eq!(seen[0].tool_name.as_deref(), Some("Bash"));
    assert!(seen[0].tool_use_id.is_some());
    end(h, session, &api).await;
}

/// Adds two integers; counts its calls.
#[derive(Default)]
struct Add(Mutex<u32>);

#[async_trait]
impl ToolHandler for Add {
    async fn call(&self, arguments_json: String) -> Result<ToolOutput, String> {
        *self.0.lock().unwrap() += 1;
        let v: Value = serde_json::from_str(&arguments_json).map_err(|e| e.to_string())?;
        match (v["a"].as_i64(), v["b"].as_i64()) {
            (Some(a), Some(b)) => Ok(ToolOutput::text(format!("the sum is {}", a + b))),
            _ => Err("a and b must be integers".into()),
        }
    }
}

fn calc(add: Arc<Add>) -> McpServer {
    let schema = r#"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}"#;
    let tool = McpTool::new("add", "Add two integers", schema, add).unwrap();
    McpServer::new("calc").unwrap().tool(tool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_mcp_tool_is_called_and_its_answer_reaches_the_api() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let add = Arc::new(Add::default());
    let allow = Arc::new(AllowAll::default());
    let handlers = HostHandlers::new()
        .permission(allow.clone())
        .mcp_server(calc(add.clone()))
        .timeout(Duration::from_secs(10));
    let (h, mut session) = start_with(&api, &manager, dir.path(), |spec| {
        spec.handlers = handlers;
        // 2.1.328 offers MCP tools to the model only through its ToolSearch tool unless told
        // otherwise; the stand-in asks for the tool directly.
        spec.env.push(("ENABLE_TOOL_SEARCH".into(), "false".into()));
    })
    .await;
    api.enqueue(Behaviour::tool_use("mcp__calc__add", r#"{"a":2,"b":40}"#));
    let turn = session.turn("add two and forty").await.unwrap();
    assert_eq!(*add.0.lock().unwrap(), 1, "{turn:?}");
    let calls = api.message_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.tools.iter().any(|t| t == "mcp__calc__add")),
        "the CLI never offered the tool to the model"
    );
    let results = api.tool_results();
    assert!(
        results.iter().any(|r| r.contains("the sum is 42")),
        "{results:?}"
    );
    assert_eq!(
        turn.result.result.as_deref(),
        Some("tool output: the sum is 42")
    );
    assert_eq!(allow.0.lock().unwrap().as_slice(), ["mcp__calc__add"]);
    end(h, session, &api).await;
}

/// Waits a minute before allowing; records whether its answer was dropped unfinished.
struct Pending {
    asked: tokio::sync::Notify,
    dropped: Arc<AtomicBool>,
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl PermissionHandler for Pending {
    async fn can_use_tool(&self, _: PermissionRequest) -> Result<PermissionDecision, String> {
        let flag = DropFlag(self.dropped.clone());
        self.asked.notify_one();
        tokio::time::sleep(Duration::from_secs(60)).await;
        std::mem::forget(flag);
        Ok(PermissionDecision::allow())
    }
}

/// An interrupt while a permission prompt waits for the host: the CLI withdraws the prompt
/// (`control_cancel_request`), the pending answer is dropped, the command never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_cancels_a_pending_permission_prompt() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let pending = Arc::new(Pending {
        asked: tokio::sync::Notify::new(),
        dropped: Arc::default(),
    });
    let handlers = HostHandlers::new()
        .permission(pending.clone())
        .timeout(Duration::from_secs(120));
    let (h, mut session) = start_with(&api, &manager, dir.path(), |spec| {
        spec.handlers = handlers;
    })
    .await;
    let control = session.control_handle();
    let waiter = pending.clone();
    let interrupter = tokio::spawn(async move {
        waiter.asked.notified().await;
        control.interrupt(Duration::from_secs(10)).await
    });
    let turn = tokio::time::timeout(
        Duration::from_secs(30),
        session.turn("run: touch cancelled-marker"),
    )
    .await
    .expect("the interrupted turn ended")
    .unwrap();
    interrupter.await.unwrap().unwrap();
    let cancels: Vec<_> = turn
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                claude_manager::proc::SessionEvent::Message(
                    claude_manager::proc::StreamMessage::ControlCancel { .. }
                )
            )
        })
        .collect();
    // Measured: 2.1.328 withdraws the prompt on the interrupt, and the answer being worked out
    // is dropped then, not after the handler's minute.
    assert_eq!(cancels.len(), 1, "{:?}", turn.events);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pending.dropped.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pending.dropped.load(Ordering::SeqCst));
    assert!(!dir.path().join("cancelled-marker").exists());
    end(h, session, &api).await;
}
