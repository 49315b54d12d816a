//! The CLI's permission prompts answered by the host (`--permission-prompts host`), through
//! the real CLI 2.1.328 on the stand-in API, whose reply to `run: COMMAND` asks for the Bash
//! tool: a denied command does not run, an allowed one does, a rewritten input runs instead of
//! the model's, and a host without an answer (no handler, an error, too slow) never leaves the
//! CLI waiting.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use claude_manager::proc::{
    ClaudeSession, PermissionDecision, PermissionHandler, PermissionPrompts, PermissionRequest,
};
use claude_manager::{ManagerConfig, ProcessManager, SessionHandle, SessionSpec};
use claude_testkit::StandInApi;

use crate::claude::{api_key, claude_left, stream_session};
use crate::SERIAL;

/// Answers from a script, in order, and records every prompt.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<PermissionDecision, String>>>,
    seen: Mutex<Vec<PermissionRequest>>,
    delay: Option<Duration>,
}

impl Scripted {
    fn new(answers: Vec<Result<PermissionDecision, String>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.into()),
            ..Scripted::default()
        })
    }

    fn seen(&self) -> Vec<PermissionRequest> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl PermissionHandler for Scripted {
    async fn can_use_tool(&self, request: PermissionRequest) -> Result<PermissionDecision, String> {
        self.seen.lock().unwrap().push(request);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let next = self.answers.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Ok(PermissionDecision::deny("unscripted")))
    }
}

/// A stream-json session whose permission prompts come to us, working in `dir`, with
/// `model` if given; initialized.
pub(crate) async fn start(
    api: &StandInApi,
    manager: &ProcessManager,
    dir: &Path,
    model: Option<&str>,
) -> (SessionHandle, ClaudeSession) {
    start_with(api, manager, dir, |spec| {
        spec.claude.model = model.map(str::to_owned)
    })
    .await
}

/// As [`start`], with the spec changed by `configure` first.
pub(crate) async fn start_with(
    api: &StandInApi,
    manager: &ProcessManager,
    dir: &Path,
    configure: impl FnOnce(&mut SessionSpec),
) -> (SessionHandle, ClaudeSession) {
    let mut spec = stream_session(api, "host-session").await;
    spec.credentials = Some(api_key("sk-ant-api03-host-session-test-00000000"));
    spec.claude.permission_prompts = Some(PermissionPrompts::Host);
    spec.cwd = Some(dir.to_path_buf());
    spec.health = None;
    configure(&mut spec);
    let mut h = manager.start(spec).unwrap();
    let run = h.next_run().await.unwrap();
    let session = run.session.unwrap();
    session.initialize(Duration::from_secs(30)).await.unwrap();
    (h, session)
}

/// Close the session, wait for its end, and check no CLI of the stand-in's is left.
pub(crate) async fn end(mut h: SessionHandle, session: ClaudeSession, api: &StandInApi) {
    session.close().await;
    let _ = h.wait().await.unwrap();
    assert!(claude_left(api).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_command_does_not_run_and_an_allowed_one_does() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, mut session) = start(&api, &manager, dir.path(), None).await;
    let handler = Scripted::new(vec![
        Ok(PermissionDecision::deny("not on this host")),
        Ok(PermissionDecision::allow()),
    ]);
    session.set_permission_handler(handler.clone(), Duration::from_secs(10));

    let denied = session.turn("run: touch denied-marker").await.unwrap();
    assert!(!dir.path().join("denied-marker").exists(), "{denied:?}");
    let allowed = session.turn("run: touch allowed-marker").await.unwrap();
    assert!(dir.path().join("allowed-marker").exists(), "{allowed:?}");

    let seen = handler.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].tool_name, "Bash");
    assert!(
        seen[0].input_json.contains("touch denied-marker"),
        "{seen:?}"
    );
    assert!(seen[0].tool_use_id.is_some());
    end(h, session, &api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_input_runs_instead_of_the_models() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, mut session) = start(&api, &manager, dir.path(), None).await;
    let rewritten = r#"{"command":"touch rewritten-marker","description":"rewritten by the host"}"#;
    let handler = Scripted::new(vec![Ok(PermissionDecision::allow_with_input(rewritten))]);
    session.set_permission_handler(handler.clone(), Duration::from_secs(10));

    session.turn("run: touch original-marker").await.unwrap();
    assert!(dir.path().join("rewritten-marker").exists());
    assert!(!dir.path().join("original-marker").exists());
    end(h, session, &api).await;
}

/// No handler, a handler's error, a handler slower than its timeout: each is an error reply,
/// the command does not run and the turn ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_an_answer_never_leaves_the_cli_waiting() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let (h, mut session) = start(&api, &manager, dir.path(), None).await;

    session.turn("run: touch no-handler-marker").await.unwrap();
    assert!(!dir.path().join("no-handler-marker").exists());

    let failing = Scripted::new(vec![Err("the policy service is down".into())]);
    session.set_permission_handler(failing.clone(), Duration::from_secs(10));
    session.turn("run: touch failing-marker").await.unwrap();
    assert!(!dir.path().join("failing-marker").exists());
    assert_eq!(failing.seen().len(), 1);

    let slow = Arc::new(Scripted {
        answers: Mutex::new(vec![Ok(PermissionDecision::allow())].into()),
        delay: Some(Duration::from_secs(30)),
        ..Scripted::default()
    });
    session.set_permission_handler(slow.clone(), Duration::from_millis(500));
    let started = Instant::now();
    session.turn("run: touch slow-marker").await.unwrap();
    // Measured: the turn ends after the 0.5 s timeout, long before the handler's 30 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!dir.path().join("slow-marker").exists());
    assert_eq!(slow.seen().len(), 1);
    end(h, session, &api).await;
}
