//! Every route and behaviour, through a real HTTP client.

use std::io::Read;
use std::time::{Duration, Instant};

use claude_testkit::{AuthSeen, Behaviour, StandInApi};

struct Reply {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// POST `body` to `url` with `headers` (blocking client on a blocking thread).
async fn post(url: String, headers: Vec<(&'static str, String)>, body: String) -> Reply {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut req = agent.post(&url).header("content-type", "application/json");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = req.send(body.as_str()).unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (retry_after, content_type) = (header("retry-after"), header("content-type"));
        Reply {
            status: resp.status().as_u16(),
            retry_after,
            content_type,
            body: resp.body_mut().read_to_string().unwrap(),
        }
    })
    .await
    .unwrap()
}

fn messages_body(stream: bool, prompt: &str) -> String {
    serde_json::json!({
        "model": "claude-test",
        "stream": stream,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
}

const KEY: &str = "sk-ant-api03-standin-test-key-0000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_reply_has_the_events_the_cli_expects() {
    let api = StandInApi::start().await.unwrap();
    let url = format!("{}/v1/messages?beta=true", api.base_url());
    let r = post(
        url,
        vec![("x-api-key", KEY.into())],
        messages_body(true, "ping"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("text/event-stream"));
    let names: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for data in r.body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        serde_json::from_str::<serde_json::Value>(data).unwrap();
    }
    assert!(r.body.contains(r#""text":"pong""#), "{}", r.body);
    let calls = api.message_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].auth, Some(AuthSeen::ApiKey(KEY.into())));
    assert_eq!(calls[0].model.as_deref(), Some("claude-test"));
    assert!(calls[0].stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_reply_and_token_counting() {
    let api = StandInApi::start().await.unwrap();
    let bearer = vec![(
        "authorization",
        "Bearer sk-ant-oat01-some-token-000000".to_owned(),
    )];
    let r = post(
        format!("{}/v1/messages", api.base_url()),
        bearer.clone(),
        messages_body(false, "say hi"),
    )
    .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["content"][0]["text"], "stand-in reply to: say hi");
    assert_eq!(v["stop_reason"], "end_turn");
    let r = post(
        format!("{}/v1/messages/count_tokens", api.base_url()),
        bearer,
        messages_body(false, "x"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);
    assert!(matches!(api.calls()[0].auth, Some(AuthSeen::Bearer(_))));
    // Not a route of the API.
    let r = post(
        format!("{}/v2/nothing", api.base_url()),
        vec![],
        "{}".into(),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_failures_per_credential_queue_and_default() {
    let api = StandInApi::start().await.unwrap();
    let url = format!("{}/v1/messages", api.base_url());
    let revoked = "sk-ant-api03-revoked-key-0000000000000";
    api.respond_to(revoked, Behaviour::Unauthorized);
    api.enqueue(Behaviour::RateLimited {
        retry_after_secs: 7,
    });
    api.enqueue(Behaviour::Overloaded);
    let call = |key: &str| {
        post(
            url.clone(),
            vec![("x-api-key", key.to_owned())],
            messages_body(true, "ping"),
        )
    };
    let r = call(revoked).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("authentication_error"));
    let r = call(KEY).await;
    assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("7")));
    assert!(r.body.contains("rate_limit_error"));
    assert_eq!(call(KEY).await.status, 529);
    assert_eq!(call(KEY).await.status, 200);
    // The per-credential script wins over the queue, every time.
    assert_eq!(call(revoked).await.status, 401);
    api.set_default(Behaviour::Reply {
        text: Some("fixed".into()),
    });
    assert!(call(KEY).await.body.contains(r#""text":"fixed""#));
    let statuses: Vec<u16> = api.message_calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [401, 429, 529, 200, 401, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_is_slow_and_a_stalled_one_never_ends() {
    let api = StandInApi::start().await.unwrap();
    let url = format!("{}/v1/messages", api.base_url());
    api.set_default(Behaviour::SlowStream {
        delay: Duration::from_millis(100),
    });
    let start = Instant::now();
    let r = post(url.clone(), vec![], messages_body(true, "ping")).await;
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    assert!(r.body.contains("message_stop"));
    api.set_default(Behaviour::Stall);
    let (first, rest) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let mut resp = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(messages_body(true, "ping").as_str())
            .unwrap();
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 4096];
        let n = reader.read(&mut buf).unwrap();
        let started = Instant::now();
        let rest = reader.read(&mut buf);
        (
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            (rest.is_err(), started.elapsed()),
        )
    })
    .await
    .unwrap();
    assert!(first.starts_with("event: message_start"), "{first}");
    let (timed_out, waited) = rest;
    assert!(timed_out, "a stalled stream sent more");
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_are_single_use() {
    let api = StandInApi::start().await.unwrap();
    let login = api.issue_login(Duration::ZERO).unwrap();
    assert!(!format!("{login:?}").contains(&login.access_token));
    // An issued token that has expired is refused like the real API refuses it.
    let r = post(
        format!("{}/v1/messages", api.base_url()),
        vec![("authorization", format!("Bearer {}", login.access_token))],
        messages_body(true, "ping"),
    )
    .await;
    assert_eq!(r.status, 401);
    let refresh = |token: String| {
        post(
            api.token_url(),
            vec![],
            serde_json::json!({"grant_type": "refresh_token", "refresh_token": token,
                               "client_id": "test"})
            .to_string(),
        )
    };
    let r = refresh(login.refresh_token.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let access = v["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("sk-ant-oat01-"));
    assert_ne!(v["refresh_token"].as_str().unwrap(), login.refresh_token);
    assert_eq!(v["expires_in"], 8 * 3600);
    // Spent: the same refresh token again is invalid_grant.
    let again = refresh(login.refresh_token).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("invalid_grant"));
    assert_eq!(api.refreshes(), 1);
    let r = post(
        format!("{}/v1/messages", api.base_url()),
        vec![("authorization", format!("Bearer {access}"))],
        messages_body(true, "ping"),
    )
    .await;
    assert_eq!(r.status, 200);
    // Debug output of recorded calls never shows a credential.
    let debug = format!("{:?}", api.calls());
    assert!(
        !debug.contains(&access) && debug.contains("redacted"),
        "{debug}"
    );
}
