//! Restarts that resume: the real CLI 2.1.328 killed with SIGKILL between two turns comes back
//! under the same conversation, and the stand-in sees the earlier turn in the next request;
//! with the policy off, the next run starts a new conversation.

use std::time::Duration;

use claude_manager::proc::RestartMode;
use claude_manager::{ManagerConfig, ProcessManager};
use claude_testkit::StandInApi;

use crate::claude::{api_key, claude_left, stream_session};
use crate::SERIAL;

const T: Duration = Duration::from_secs(30);

/// A stream-json session `name` restarted at once after a failure.
async fn restarting(api: &StandInApi, name: &str) -> claude_manager::SessionSpec {
    let mut spec = stream_session(api, name).await;
    spec.credentials = Some(api_key("sk-ant-api03-resume-test-000000000000000"));
    spec.health = None;
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff.initial = Duration::ZERO;
    spec
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Two turns with a SIGKILL of the CLI between them; the first turn's conversation id, the
/// second's, and the user texts of the API request that answered the second.
async fn kill_between_turns(resume: bool) -> (String, String, Vec<String>) {
    let api = StandInApi::start().await.unwrap();
    let mut spec = restarting(&api, "resume").await;
    spec.resume_on_restart = resume;
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut h = manager.start(spec).unwrap();

    let run = h.next_run().await.unwrap();
    let mut session = run.session.unwrap();
    session.initialize(T).await.unwrap();
    let first = session.turn("remember the word apricot").await.unwrap();
    let first_id = first.result.session_id.clone().unwrap();
    sigkill(run.pid);

    let again = h.next_run().await.unwrap();
    assert_ne!(again.pid, run.pid);
    let mut session = again.session.unwrap();
    session.initialize(T).await.unwrap();
    let second = session.turn("which word was it").await.unwrap();
    let second_id = second.result.session_id.clone().unwrap();
    let texts = api.message_calls().last().unwrap().user_texts.clone();
    session.close().await;
    let _ = h.wait().await.unwrap();
    assert!(claude_left(&api).is_empty());
    (first_id, second_id, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cli_resumes_its_conversation_on_restart() {
    let _serial = SERIAL.lock().await;
    let (first, second, texts) = kill_between_turns(true).await;
    assert_eq!(first, second, "the conversation's id changed");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("remember the word apricot")),
        "the earlier turn is not in the request: {texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("which word was it")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_policy_a_restart_starts_a_new_conversation() {
    let _serial = SERIAL.lock().await;
    let (first, second, texts) = kill_between_turns(false).await;
    assert_ne!(first, second);
    assert!(
        !texts.iter().any(|t| t.contains("apricot")),
        "the earlier turn is in the request: {texts:?}"
    );
}

/// The conversation's transcripts are deleted while the CLI is down: the resumed run fails
/// before its first turn (the CLI: "No conversation found"), and the run after it starts a new
/// conversation instead of failing the same way until the restart limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resume_falls_back_to_a_new_conversation() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let spec = restarting(&api, "resume-lost").await;
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut h = manager.start(spec).unwrap();

    let run = h.next_run().await.unwrap();
    let mut session = run.session.unwrap();
    session.initialize(T).await.unwrap();
    let first = session.turn("remember the word quince").await.unwrap();
    let first_id = first.result.session_id.clone().unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", run.pid)).unwrap();
    let config_dir = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"CLAUDE_CONFIG_DIR="))
        .map(|v| std::path::PathBuf::from(String::from_utf8_lossy(v).into_owned()))
        .unwrap();
    sigkill(run.pid);
    std::fs::remove_dir_all(config_dir.join("projects")).unwrap();

    // The resumed run ends at once; the next one is a new conversation that answers.
    let mut runs = 1;
    let second = loop {
        let again = h.next_run().await.unwrap();
        runs += 1;
        assert!(runs <= 4, "no run after the failed resume answered");
        let mut session = again.session.unwrap();
        if session.initialize(T).await.is_err() {
            continue;
        }
        match session.turn("which word was it").await {
            Ok(turn) if !turn.result.is_error => {
                session.close().await;
                break turn;
            }
            _ => continue,
        }
    };
    assert_eq!(runs, 3, "one failed resume, then a fresh run");
    assert_ne!(second.result.session_id.as_deref(), Some(first_id.as_str()));
    let texts = api.message_calls().last().unwrap().user_texts.clone();
    assert!(!texts.iter().any(|t| t.contains("quince")), "{texts:?}");
    let _ = h.wait().await.unwrap();
    assert!(claude_left(&api).is_empty());
}
