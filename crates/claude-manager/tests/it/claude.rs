//! The real pinned CLI, supervised by the facade, against the stand-in API.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use claude_manager::auth::{
    Credential, CredentialKind, CredentialsFile, Delivery, OAuthLogin, OAuthTokenManager,
    RefreshConfig, Secret, StaticSource, TokenManager,
};
use claude_manager::proc::{OutputEvent, RestartMode};
use claude_manager::{ExitKind, HealthSpec, ManagerConfig, ProcessManager, SessionSpec};
use claude_testkit::{offline_env, pinned_cli, AuthSeen, Behaviour, StandInApi};

use crate::SERIAL;

/// A one-shot `claude -p PROMPT` spec against `api` with `credentials`.
pub(crate) async fn one_shot(api: &StandInApi, name: &str, prompt: &str) -> SessionSpec {
    let bin = pinned_cli().await.unwrap();
    let mut spec = SessionSpec::claude(
        name,
        ["-p", prompt, "--output-format", "stream-json", "--verbose"],
    );
    if let claude_manager::Program::Claude { binary, .. } = &mut spec.program {
        *binary = Some(bin);
    }
    for (k, v) in offline_env(&api.base_url()) {
        spec.env.push((k.into(), v.into()));
    }
    spec.dirs.home = true;
    spec.grace = Duration::from_secs(3);
    spec
}

pub(crate) fn api_key(key: &str) -> Arc<dyn TokenManager> {
    Arc::new(StaticSource::new(Credential::new(
        CredentialKind::ApiKey,
        Secret::new(key.to_owned()),
    )))
}

/// A credentials file holding `login`, refreshed through the stand-in's token endpoint.
fn oauth_manager(
    api: &StandInApi,
    dir: &std::path::Path,
    login: &claude_testkit::Login,
) -> Arc<dyn TokenManager> {
    let path = dir.join(".credentials.json");
    let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(login.expires_at_ms);
    let file_login = OAuthLogin::new(
        Secret::new(login.access_token.clone()),
        Some(Secret::new(login.refresh_token.clone())),
        Some(expires),
    );
    std::fs::write(&path, file_login.to_bytes()).unwrap();
    let config = RefreshConfig::new(api.token_url(), "claude-pm-test");
    Arc::new(OAuthTokenManager::new(CredentialsFile::new(path), config).unwrap())
}

/// Processes of this test's sessions still alive: every claude child carries the stand-in's
/// unique base URL in its environment.
pub(crate) fn claude_left(api: &StandInApi) -> Vec<u32> {
    let needle = format!("ANTHROPIC_BASE_URL={}", api.base_url());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !crate::gone(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// The session ended with its program's exit code 0.
fn assert_succeeded(report: &claude_manager::SessionReport) {
    assert_eq!(
        (report.reason, report.code),
        (ExitKind::Exited, Some(0)),
        "{report:?}"
    );
}

/// Every line the run printed, as JSON.
pub(crate) async fn lines_of(run: &mut claude_manager::Run) -> Vec<serde_json::Value> {
    let mut out = run.stdout.take().unwrap();
    let mut lines = Vec::new();
    while let Some(OutputEvent::Line(l)) = out.recv().await {
        if let Ok(v) = serde_json::from_slice(&l) {
            lines.push(v);
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_answers_with_the_injected_api_key() {
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-manager-e2e-key-00000000000";
    let mut spec = one_shot(&api, "oneshot", "ping").await;
    spec.credentials = Some(api_key(key));
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut h = manager.start(spec).unwrap();
    let mut run = h.next_run().await.unwrap();
    let lines = lines_of(&mut run).await;
    let report = h.wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Exited, "{report:?}");
    assert_eq!(report.code, Some(0));
    let result = lines.iter().find(|l| l["type"] == "result").unwrap();
    assert_eq!(result["result"], "pong");
    let claude = report.claude.unwrap();
    assert_eq!((claude.results, claude.is_error), (1, false));
    assert!(report.cpu_time > Duration::ZERO);
    assert!(
        api.every_message_call_used(&AuthSeen::ApiKey(key.into())),
        "{:?}",
        api.message_calls()
    );
    assert!(crate::gone(run.pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_token_by_descriptor_arrives_as_bearer() {
    let api = StandInApi::start().await.unwrap();
    let login = api.issue_login(Duration::from_secs(3600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = one_shot(&api, "by-fd", "ping").await;
    spec.credentials = Some(oauth_manager(&api, dir.path(), &login));
    spec.delivery = Delivery::Fd(3);
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_succeeded(&report);
    assert!(api.every_message_call_used(&AuthSeen::Bearer(login.access_token.clone())));
    assert_eq!(api.refreshes(), 0);
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_is_refreshed_before_the_session_starts() {
    let api = StandInApi::start().await.unwrap();
    let login = api.issue_login(Duration::ZERO).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = one_shot(&api, "expired", "ping").await;
    spec.credentials = Some(oauth_manager(&api, dir.path(), &login));
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_succeeded(&report);
    assert_eq!(api.refreshes(), 1);
    let calls = api.message_calls();
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c.auth != Some(AuthSeen::Bearer(login.access_token.clone()))));
    // The rotated login was written back.
    let stored = std::fs::read_to_string(dir.path().join(".credentials.json")).unwrap();
    assert!(!stored.contains(&login.refresh_token));
    // And every request carried the refreshed token.
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let fresh = stored["claudeAiOauth"]["accessToken"].as_str().unwrap();
    assert!(api.every_message_call_used(&AuthSeen::Bearer(fresh.to_owned())));
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_run_refreshes_restarts_and_succeeds() {
    let api = StandInApi::start().await.unwrap();
    let login = api.issue_login(Duration::from_secs(3600)).unwrap();
    // The API has revoked this token although it has not expired.
    api.respond_to(&login.access_token, Behaviour::Unauthorized);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = one_shot(&api, "revoked", "ping").await;
    spec.credentials = Some(oauth_manager(&api, dir.path(), &login));
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let started = std::time::Instant::now();
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_succeeded(&report);
    assert_eq!(report.restarts, 1);
    assert_eq!(api.refreshes(), 1);
    let statuses: Vec<u16> = api.message_calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses.first(), Some(&401));
    assert_eq!(statuses.last(), Some(&200));
    // Acted on the first retry report, not after the CLI's ten retries.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // A fixed key the API rejects is final at once, whatever the policy: there is nothing to
    // refresh (it used to "restart" to refresh it, report one restart no process made, and
    // blame the refresh instead of the 401).
    let key = "sk-ant-api03-always-revoked-000000000000";
    api.respond_to(key, Behaviour::Unauthorized);
    let mut spec = one_shot(&api, "hopeless", "ping").await;
    spec.credentials = Some(api_key(key));
    spec.restart.mode = RestartMode::Always;
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::AuthFailed, "{report:?}");
    assert_eq!(report.restarts, 0);
    assert!(
        report.detail.contains("rejected the credential (HTTP 401)")
            && !report.detail.contains("refresh"),
        "{}",
        report.detail
    );
    let calls = api
        .message_calls()
        .iter()
        .filter(|c| {
            c.status == 401
                && matches!(&c.auth, Some(AuthSeen::ApiKey(k)) if k.contains("always-revoked"))
        })
        .count();
    assert_eq!(calls, 1, "one run, acted on at its first rejection");
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

/// A rejected key is seen as fast in json and text output as in stream-json: those formats
/// print nothing until the CLI has retried for minutes (179 s and 187 s, ending as `exited`),
/// so the manager reads the CLI's debug log, which reports each attempt at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_seen_at_once_in_every_output_format() {
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-rejected-in-json-000000000";
    api.respond_to(key, Behaviour::Unauthorized);
    let manager = ProcessManager::new(ManagerConfig::default());
    for format in ["json", "text"] {
        let mut spec = one_shot(&api, format, "ping").await;
        if let claude_manager::Program::Claude { args, .. } = &mut spec.program {
            *args = vec![
                "-p".into(),
                "ping".into(),
                "--output-format".into(),
                format.into(),
            ];
        }
        spec.credentials = Some(api_key(key));
        spec.stdout = claude_manager::proc::OutputMode::Discard;
        let started = std::time::Instant::now();
        let report = manager.start(spec).unwrap().wait().await.unwrap();
        assert_eq!(report.reason, ExitKind::AuthFailed, "{format}: {report:?}");
        assert!(
            report.detail.contains("HTTP 401"),
            "{format}: {}",
            report.detail
        );
        assert_eq!(report.restarts, 0);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{format}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_detected_as_a_hang_and_the_restart_succeeds() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let key = "sk-ant-api03-manager-stall-key-000000000";
    api.set_default(Behaviour::Stall);
    let mut spec = one_shot(&api, "stalled", "ping").await;
    spec.credentials = Some(api_key(key));
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff.initial = Duration::from_millis(50);
    spec.health = Some(HealthSpec {
        interval: Duration::from_millis(250),
        hang_after: Some(Duration::from_secs(3)),
        ..HealthSpec::default()
    });
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut events = manager.subscribe();
    let mut h = manager.start(spec).unwrap();
    let first = h.next_run().await.unwrap();
    // Once the first run is hung, the API recovers. Bounded: a run that is never judged hung
    // fails the test with what happened instead of waiting forever.
    let mut seen = Vec::new();
    let hung = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(e) = events.recv().await {
            seen.push(e.to_json().to_string());
            if let claude_manager::EventKind::Health(status) = &e.kind {
                if status
                    .reasons()
                    .iter()
                    .any(|r| matches!(r, claude_manager::health::HealthReason::Hung { .. }))
                {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(hung, Ok(true), "no hang seen; events: {seen:#?}");
    api.set_default(Behaviour::default());
    let report = h.wait().await.unwrap();
    assert_succeeded(&report);
    assert_eq!(report.restarts, 1);
    assert!(crate::gone(first.pid));
    assert_eq!(manager.metrics().exits.get("hung"), Some(&1));
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_sessions_under_a_cap_of_four_and_none_left_behind() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig {
        max_live: 4,
        ..Default::default()
    });
    let mut handles = Vec::new();
    for i in 0..8 {
        let mut spec = one_shot(&api, &format!("c{i}"), "ping").await;
        spec.credentials = Some(api_key(&format!("sk-ant-api03-manager-cap-key-{i:012}")));
        spec.stdout = claude_manager::proc::OutputMode::Discard;
        handles.push(manager.start(spec).unwrap());
    }
    let mut peak = 0;
    let mut pids = Vec::new();
    loop {
        let list = manager.list();
        peak = peak.max(list.iter().filter(|s| s.state.pid().is_some()).count());
        pids.extend(list.iter().filter_map(|s| s.state.pid()));
        if list
            .iter()
            .all(|s| s.state == claude_manager::SessionState::Finished)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for h in &mut handles {
        let r = h.wait().await.unwrap();
        assert_succeeded(&r);
    }
    assert!((2..=4).contains(&peak), "peak {peak}");
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 8);
    assert!(pids.iter().all(|p| crate::gone(*p)));
    let keys: std::collections::BTreeSet<String> = api
        .message_calls()
        .iter()
        .filter_map(|c| c.auth.as_ref().map(|a| a.credential().to_owned()))
        .collect();
    assert_eq!(keys.len(), 8, "each session used its own key");
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_timeout_is_stopped() {
    let api = StandInApi::start().await.unwrap();
    api.set_default(Behaviour::Stall);
    let mut spec = one_shot(&api, "late", "ping").await;
    spec.credentials = Some(api_key("sk-ant-api03-manager-timeout-0000000000"));
    spec.limits.timeout = Some(Duration::from_secs(3));
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Timeout, "{report:?}");
    assert!(report.wall >= Duration::from_secs(3) && report.wall < Duration::from_secs(10));
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_over_its_memory_limit_is_killed_as_a_memory_limit() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let mut spec = one_shot(&api, "squeezed", "ping").await;
    spec.credentials = Some(api_key("sk-ant-api03-manager-memory-00000000000"));
    // The CLI idles at ~170 MB RSS: 64 MiB cannot hold it.
    spec.limits.max_memory = Some(64 << 20);
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::MemoryLimit, "{report:?}");
    assert_eq!(report.signal, Some(9));
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_run_waits_the_long_pause_before_the_next() {
    let api = StandInApi::start().await.unwrap();
    api.enqueue(Behaviour::RateLimited {
        retry_after_secs: 1,
    });
    let mut spec = one_shot(&api, "throttled", "ping").await;
    spec.credentials = Some(api_key("sk-ant-api03-manager-ratelimit-000000000"));
    // The CLI gives up at once instead of retrying itself.
    spec.env
        .push(("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()));
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff.initial = Duration::from_millis(10);
    spec.restart.rate_limit_pause = Duration::from_secs(2);
    spec.stdout = claude_manager::proc::OutputMode::Discard;
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut events = manager.subscribe();
    let report = manager.start(spec).unwrap().wait().await.unwrap();
    assert_succeeded(&report);
    assert_eq!(report.restarts, 1);
    let mut pause = None;
    while let Ok(e) = events.try_recv() {
        if let claude_manager::EventKind::State {
            to: claude_manager::SessionState::BackingOff { delay },
            ..
        } = e.kind
        {
            pause = Some(delay);
        }
    }
    let pause = pause.expect("a backing-off state");
    assert!(
        pause >= Duration::from_secs(2) && pause <= Duration::from_secs(4),
        "{pause:?}"
    );
    let statuses: Vec<u16> = api.message_calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses.first(), Some(&429), "{statuses:?}");
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

/// A stream-json session spec (turns on stdin) against `api`, with a fast liveness probe.
pub(crate) async fn stream_session(api: &StandInApi, name: &str) -> SessionSpec {
    let mut spec = one_shot(api, name, "unused").await;
    if let claude_manager::Program::Claude { args, .. } = &mut spec.program {
        *args = claude_manager::proc::STREAM_JSON_ARGS
            .iter()
            .map(Into::into)
            .collect();
    }
    spec.stdin = claude_manager::proc::StdinMode::Piped;
    spec.health = Some(HealthSpec {
        interval: Duration::from_millis(200),
        probe: Some(claude_manager::health::ProbeSpec {
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
            failure_threshold: 2,
            success_threshold: 1,
        }),
        ..HealthSpec::default()
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_session_answers_turns_and_its_control_pings() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let mut spec = stream_session(&api, "stream").await;
    spec.credentials = Some(api_key("sk-ant-api03-manager-stream-00000000000"));
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut events = manager.subscribe();
    let mut h = manager.start(spec).unwrap();
    let run = h.next_run().await.unwrap();
    let mut session = run.session.expect("a stream-json session");
    session.initialize(Duration::from_secs(30)).await.unwrap();
    let first = session.turn("ping").await.unwrap();
    assert_eq!(first.result.result.as_deref(), Some("pong"));
    // Let the probe ping the idle CLI several times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = session.turn("and again").await.unwrap();
    assert_eq!(
        second.result.result.as_deref(),
        Some("stand-in reply to: and again")
    );
    session.close().await;
    let report = h.wait().await.unwrap();
    assert_eq!(
        (report.reason, report.code, report.restarts),
        (ExitKind::Exited, Some(0), 0)
    );
    let claude = report.claude.unwrap();
    assert_eq!(claude.results, 2);
    let mut unhealthy = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let claude_manager::EventKind::Health(claude_manager::health::HealthStatus::Unhealthy(
            reasons,
        )) = e.kind
        {
            unhealthy.push(reasons);
        }
    }
    // The only unhealthy report may be the exit itself.
    assert!(
        unhealthy.iter().all(|r| r
            .iter()
            .all(|r| matches!(r, claude_manager::health::HealthReason::Exited { .. }))),
        "{unhealthy:?}"
    );
    assert_eq!(claude_left(&api), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_that_stops_answering_control_requests_fails_its_probe() {
    // A fault injected with a stand-in for the CLI that reads stdin and never answers.
    let api = StandInApi::start().await.unwrap();
    let mut spec = stream_session(&api, "mute").await;
    if let claude_manager::Program::Claude { binary, args } = &mut spec.program {
        *binary = Some("/bin/sh".into());
        args.splice(
            0..0,
            ["-c".into(), "cat > /dev/null".into(), "mute-cli".into()],
        );
    }
    let manager = ProcessManager::new(ManagerConfig::default());
    let started = std::time::Instant::now();
    let mut h = manager.start(spec).unwrap();
    let run = h.next_run().await.unwrap();
    let _session = run.session.expect("a stream-json session");
    let report = h.wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Unhealthy, "{report:?}");
    assert!(report.detail.contains("control ping"), "{}", report.detail);
    // Two failures of a 5 s timeout, 0.3 s apart.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(crate::gone(run.pid));
}

/// Typed options reach the real CLI and through it the API: the stand-in sees the model
/// they name on every call; a flag given both in the arguments and by an option, or a bad
/// option, is refused before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_options_reach_the_api_and_conflicts_are_refused_before_start() {
    let api = StandInApi::start().await.unwrap();
    let mut spec = one_shot(&api, "options", "ping").await;
    spec.credentials = Some(api_key("sk-ant-api03-options-test-key-0000000000"));
    spec.claude.model = Some("claude-options-test-model".into());
    spec.claude.max_turns = Some(2);
    spec.claude.append_system_prompt = Some("Answer in one word.".into());
    spec.claude.permission_mode = Some(claude_manager::proc::PermissionMode::DontAsk);
    spec.claude.no_session_persistence = true;
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut h = manager.start(spec).unwrap();
    let mut run = h.next_run().await.unwrap();
    let _ = lines_of(&mut run).await;
    let report = h.wait().await.unwrap();
    assert_succeeded(&report);
    let calls = api.message_calls();
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(
            call.model.as_deref(),
            Some("claude-options-test-model"),
            "{calls:?}"
        );
    }

    let mut twice = one_shot(&api, "twice", "ping").await;
    if let claude_manager::Program::Claude { args, .. } = &mut twice.program {
        args.push("--model=other".into());
    }
    twice.claude.model = Some("claude-options-test-model".into());
    let err = manager.start(twice).unwrap_err();
    assert!(
        err.to_string()
            .contains("--model is given in the arguments and by an option"),
        "{err}"
    );

    let mut bad = one_shot(&api, "bad", "ping").await;
    bad.claude.max_budget_usd = Some(0.0);
    let err = manager.start(bad).unwrap_err();
    assert!(err.to_string().contains("max_budget_usd"), "{err}");
    assert!(claude_left(&api).is_empty());
}
