//! OAuth refresh against the stand-in token endpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use claude_auth::{
    CredentialsFile, Error, OAuthLogin, OAuthTokenManager, RefreshConfig, Secret, TokenManager,
};
use claude_proc::{spawn, ProcessConfig};

use crate::endpoint::{Reply, TokenEndpoint};

const FIRST_REFRESH: &str = "sk-ant-ort01-first";

fn login_file(dir: &Path, expires_in: Duration) -> CredentialsFile {
    let file = CredentialsFile::new(dir.join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-original-access-token"),
            Some(Secret::new(FIRST_REFRESH)),
            Some(SystemTime::now() + expires_in),
        ))
    })
    .unwrap();
    file
}

fn config(endpoint: &TokenEndpoint) -> RefreshConfig {
    let mut c = RefreshConfig::new(&endpoint.url, "test-client");
    c.request_timeout = Duration::from_millis(500);
    c.backoff_initial = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(50);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_before_expiry_and_not_earlier() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    let dir = tempfile::tempdir().unwrap();
    // Valid for an hour: outside the 5-minute skew, no request.
    let file = login_file(dir.path(), Duration::from_secs(3600));
    let m = OAuthTokenManager::new(file.clone(), config(&endpoint)).unwrap();
    let c = m.get_token().await.unwrap();
    assert_eq!(c.secret.expose(), "sk-ant-oat01-original-access-token");
    assert_eq!(endpoint.requests(), 0);

    // Valid for two more minutes: inside the skew, refreshed first.
    let dir = tempfile::tempdir().unwrap();
    let file = login_file(dir.path(), Duration::from_secs(120));
    let m = OAuthTokenManager::new(file.clone(), config(&endpoint)).unwrap();
    let c = m.get_token().await.unwrap();
    assert_eq!(c.secret.expose(), "sk-ant-oat01-access-generation-1");
    assert_eq!(endpoint.requests(), 1);
    let stored = file.load().unwrap().unwrap();
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        "sk-ant-ort01-rotated-1"
    );
    assert!(stored.expires_at.unwrap() > SystemTime::now() + Duration::from_secs(3500));
    // Cached from now on.
    m.get_token().await.unwrap();
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_at_expiry_make_one_request() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    let dir = tempfile::tempdir().unwrap();
    let file = login_file(dir.path(), Duration::from_secs(10));
    let m = Arc::new(OAuthTokenManager::new(file, config(&endpoint)).unwrap());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let m = Arc::clone(&m);
            tokio::spawn(async move { m.get_token().await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().secret.expose(),
            "sk-ant-oat01-access-generation-1"
        );
    }
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_refresh_after_a_401_rotates_once() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    let dir = tempfile::tempdir().unwrap();
    let m = OAuthTokenManager::new(
        login_file(dir.path(), Duration::from_secs(3600)),
        config(&endpoint),
    )
    .unwrap();
    m.get_token().await.unwrap();
    let c = m.refresh_token().await.unwrap();
    assert_eq!(c.secret.expose(), "sk-ant-oat01-access-generation-1");
    assert_eq!(endpoint.requests(), 1);
}

async fn refresh_error(replies: Vec<Reply>) -> (Error, u64) {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    endpoint.script(replies);
    let dir = tempfile::tempdir().unwrap();
    let file = login_file(dir.path(), Duration::from_secs(1));
    let before = std::fs::read(file.path()).unwrap();
    let m = OAuthTokenManager::new(file.clone(), config(&endpoint)).unwrap();
    let error = m.get_token().await.unwrap_err();
    // A failed refresh changes nothing on disk.
    assert_eq!(std::fs::read(file.path()).unwrap(), before);
    (error, endpoint.requests())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failures_are_typed_and_retried_only_when_it_helps() {
    let (e, n) = refresh_error(vec![Reply::Status(400, "invalid_grant")]).await;
    assert!(matches!(e, Error::InvalidGrant), "{e}");
    assert_eq!(n, 1, "invalid_grant must not be retried");

    let (e, n) = refresh_error(vec![Reply::Status(401, "unauthorized_client")]).await;
    assert!(
        matches!(e, Error::RefreshRejected { status: 401, ref code } if code.as_deref() == Some("unauthorized_client")),
        "{e}"
    );
    assert_eq!(n, 1);

    let (e, n) = refresh_error(vec![Reply::Garbage]).await;
    assert!(matches!(e, Error::RefreshResponse { .. }), "{e}");
    assert_eq!(n, 1);

    let (e, n) = refresh_error(vec![Reply::Status(500, "server_error"); 4]).await;
    assert!(
        matches!(e, Error::RefreshFailed { attempts: 4, ref last } if last == "HTTP 500"),
        "{e}"
    );
    assert_eq!(n, 4);

    let slow = Reply::Slow(Duration::from_millis(1500));
    let (e, n) = refresh_error(vec![slow.clone(), slow.clone(), slow.clone(), slow]).await;
    assert!(
        matches!(e, Error::RefreshFailed { ref last, .. } if last.contains("timed out")),
        "{e}"
    );
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_to_success() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    endpoint.script([
        Reply::Status(429, "rate_limited"),
        Reply::Status(529, "overloaded"),
        Reply::Slow(Duration::from_millis(1500)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let m = OAuthTokenManager::new(
        login_file(dir.path(), Duration::from_secs(1)),
        config(&endpoint),
    )
    .unwrap();
    let c = m.get_token().await.unwrap();
    assert!(c
        .secret
        .expose()
        .starts_with("sk-ant-oat01-access-generation-"));
    assert_eq!(endpoint.requests(), 4);
    // The timed-out request is answered late by the endpoint; the retry has spent the refresh
    // token by then, so the late one is refused and the stored pair stays the server's current.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = endpoint.state.lock().unwrap();
    assert_eq!(s.rotations, 1);
    let stored = CredentialsFile::new(dir.path().join(".credentials.json"))
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), s.current);
    assert_eq!(stored.access_token, c.secret);
}

const HELPER_ENV: &str = "CLAUDE_AUTH_REFRESH_HELPER";

/// Not a test of its own: a manager process that force-refreshes N times (does nothing
/// otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_helper_entry() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '|');
    let (rounds, url, path) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut c = RefreshConfig::new(url, "test-client");
    c.backoff_initial = Duration::from_millis(5);
    let m = OAuthTokenManager::new(CredentialsFile::new(path), c).unwrap();
    for _ in 0..rounds.parse::<u32>().unwrap() {
        m.refresh_token().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_manager_processes_refreshing_one_file_lose_no_rotation() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    let dir = tempfile::tempdir().unwrap();
    let file = login_file(dir.path(), Duration::from_secs(3600));
    let helper = || {
        ProcessConfig::builder(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "refresh::refresh_helper_entry",
                "--test-threads=1",
            ])
            .env(
                HELPER_ENV,
                format!("40|{}|{}", endpoint.url, file.path().display()),
            )
            .build()
            .unwrap()
    };
    let mut a = spawn(&helper()).await.unwrap();
    let mut b = spawn(&helper()).await.unwrap();
    let (ra, rb) = (a.wait().await.unwrap(), b.wait().await.unwrap());
    assert!(ra.reason.success(), "{ra:?}");
    assert!(rb.reason.success(), "{rb:?}");
    let s = endpoint.state.lock().unwrap();
    assert_eq!(s.invalid_grants, 0, "a refresh token was spent twice");
    assert!(s.rotations >= 40, "{} rotations", s.rotations);
    let stored = file.load().unwrap().unwrap();
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        s.current,
        "the last rotation was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_token_without_refresh_token_is_not_refreshable() {
    let endpoint = TokenEndpoint::start(FIRST_REFRESH);
    let dir = tempfile::tempdir().unwrap();
    let file = CredentialsFile::new(dir.path().join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-setup-token-yyyyyyyy"),
            None,
            Some(SystemTime::now() + Duration::from_secs(10)),
        ))
    })
    .unwrap();
    let m = OAuthTokenManager::new(file, config(&endpoint)).unwrap();
    assert!(matches!(m.get_token().await, Err(Error::NotRefreshable)));
    assert_eq!(endpoint.requests(), 0);
}
