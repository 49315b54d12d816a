//! The real pinned CLI against the stand-in: the shapes it sends and accepts.

use std::time::Duration;

use claude_proc::{spawn, EnvPolicy, OutputEvent, OutputMode, ProcessConfig};
use claude_testkit::{offline_env, pinned_cli, AuthSeen, StandInApi};

/// Run `claude -p PROMPT` (stream-json) with `credential_var=credential` against `api`; return
/// its stdout lines and exit.
async fn one_shot(
    api: &StandInApi,
    credential_var: &str,
    credential: &str,
    prompt: &str,
    extra: &[(&str, &str)],
) -> (Vec<serde_json::Value>, claude_proc::ExitInfo) {
    let bin = pinned_cli().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut builder = ProcessConfig::builder(bin)
        .args(["-p", prompt, "--output-format", "stream-json", "--verbose"])
        .env_policy(EnvPolicy::Clean)
        .pass_env("PATH")
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env(credential_var, credential)
        .stdout(OutputMode::lines())
        .stderr(OutputMode::lines());
    for (name, value) in offline_env(&api.base_url()) {
        builder = builder.env(name, value);
    }
    for (name, value) in extra {
        builder = builder.env(name, value);
    }
    let mut child = spawn(&builder.build().unwrap()).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut lines = Vec::new();
    let read = async {
        while let Some(event) = out.recv().await {
            if let OutputEvent::Line(l) = event {
                lines.push(serde_json::from_slice(&l).unwrap());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap();
    let exit = child.wait().await.unwrap();
    (lines, exit)
}

fn result_of(lines: &[serde_json::Value]) -> &serde_json::Value {
    lines
        .iter()
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_gets_its_answer_with_an_api_key() {
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-standin-e2e-key-000000000000";
    let (lines, exit) = one_shot(&api, "ANTHROPIC_API_KEY", key, "ping", &[]).await;
    assert!(exit.reason.success(), "{exit:?}");
    let result = result_of(&lines);
    assert_eq!(result["subtype"], "success", "{result}");
    assert_eq!(result["result"], "pong", "{result}");
    assert!(
        api.every_message_call_used(&AuthSeen::ApiKey(key.into())),
        "{:?}",
        api.message_calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_sends_an_oauth_token_as_bearer() {
    let api = StandInApi::start().await.unwrap();
    let login = api.issue_login(Duration::from_secs(3600)).unwrap();
    let (lines, exit) = one_shot(
        &api,
        "CLAUDE_CODE_OAUTH_TOKEN",
        &login.access_token,
        "ping",
        &[],
    )
    .await;
    assert!(exit.reason.success(), "{exit:?}");
    assert_eq!(result_of(&lines)["result"], "pong");
    assert!(api.every_message_call_used(&AuthSeen::Bearer(login.access_token.clone())));
    let calls = api.message_calls();
    assert!(calls.iter().all(|c| c
        .beta
        .as_deref()
        .is_some_and(|b| b.contains("oauth-2025-04-20"))));
}

/// The CLI retries a 401 ten times over minutes (reporting each as a `system`/`api_retry`
/// line); with `CLAUDE_CODE_MAX_RETRIES=0` it gives up at once with an error result that
/// names the status, and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_credential_is_an_error_result() {
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-standin-revoked-000000000000";
    api.respond_to(key, claude_testkit::Behaviour::Unauthorized);
    let (lines, exit) = one_shot(
        &api,
        "ANTHROPIC_API_KEY",
        key,
        "ping",
        &[("CLAUDE_CODE_MAX_RETRIES", "0")],
    )
    .await;
    let result = result_of(&lines);
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["api_error_status"], 401, "{result}");
    assert_eq!(result["api_error_type"], "authentication_error", "{result}");
    assert_eq!(exit.reason, claude_proc::ExitReason::Exited { code: 1 });
    assert_eq!(api.message_calls().len(), 1);
}

/// With retries allowed, each failed attempt is reported on stdout as it happens: what a
/// supervisor watches to act on an auth failure without waiting minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_reported_as_they_happen() {
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-standin-revoked-000000000001";
    api.respond_to(key, claude_testkit::Behaviour::Unauthorized);
    let (lines, exit) = one_shot(
        &api,
        "ANTHROPIC_API_KEY",
        key,
        "ping",
        &[("CLAUDE_CODE_MAX_RETRIES", "1")],
    )
    .await;
    let retry = lines
        .iter()
        .find(|l| l["type"] == "system" && l["subtype"] == "api_retry")
        .unwrap_or_else(|| panic!("no api_retry line in {lines:?}"));
    assert_eq!(retry["error_status"], 401, "{retry}");
    assert_eq!(retry["error"], "authentication_failed", "{retry}");
    assert!(!exit.reason.success());
    assert_eq!(api.message_calls().len(), 2);
}
