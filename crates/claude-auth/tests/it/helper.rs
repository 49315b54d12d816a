//! The helper-command source: TTL cache, time limit, typed failures, place in the chain.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claude_auth::{CredentialKind, Error, HelperSource, TokenChain, TokenManager};

fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("helper.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs")).map_or(0, |s| s.lines().count())
}

#[tokio::test]
async fn the_key_is_cached_for_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let helper = script(dir.path(), &format!("echo run >> {d}/runs; echo sk-ant-api03-from-helper-$(wc -l < {d}/runs | tr -d ' ')xxxxxxxx"));
    let source = HelperSource::new(
        helper.to_str().unwrap(),
        &[],
        CredentialKind::ApiKey,
        Duration::from_millis(400),
        Duration::from_secs(5),
    )
    .unwrap();
    let first = source.get_token().await.unwrap();
    assert_eq!(first.secret.expose(), "sk-ant-api03-from-helper-1xxxxxxxx");
    assert_eq!(source.get_token().await.unwrap(), first);
    assert_eq!(runs(dir.path()), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        source.get_token().await.unwrap().secret.expose(),
        "sk-ant-api03-from-helper-2xxxxxxxx"
    );
    assert_eq!(
        source.refresh_token().await.unwrap().secret.expose(),
        "sk-ant-api03-from-helper-3xxxxxxxx"
    );
    assert_eq!(runs(dir.path()), 3);
}

#[tokio::test]
async fn a_hanging_helper_is_stopped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let helper = script(
        dir.path(),
        &format!("echo $$ > {}/pid; exec sleep 100", dir.path().display()),
    );
    let source = HelperSource::new(
        helper.to_str().unwrap(),
        &[],
        CredentialKind::ApiKey,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .unwrap();
    let start = std::time::Instant::now();
    match source.get_token().await {
        Err(e @ Error::Helper { .. }) => {
            assert!(e.to_string().contains("did not finish within"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(3));
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "helper left running"
    );
}

#[tokio::test]
async fn failing_or_empty_or_malformed_helpers_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "echo sk-ant-api03-printed-before-failing; exit 3",
            "exited with code 3",
        ),
        ("true", "printed nothing"),
        ("echo not-an-api-key-but-long-enough", "does not start with"),
    ];
    for (body, expected) in cases {
        let helper = script(dir.path(), body);
        let source = HelperSource::new(
            helper.to_str().unwrap(),
            &[],
            CredentialKind::ApiKey,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .unwrap();
        let error = source.get_token().await.unwrap_err().to_string();
        assert!(error.contains(expected), "{body}: {error}");
        assert!(!error.contains("printed-before"), "{error}");
    }
    assert!(matches!(
        HelperSource::new(
            "/nonexistent/helper",
            &[],
            CredentialKind::ApiKey,
            Duration::from_secs(1),
            Duration::from_secs(1)
        ),
        Err(Error::Helper { .. })
    ));
}

#[tokio::test]
async fn the_helper_sits_between_the_api_key_and_the_oauth_token() {
    let dir = tempfile::tempdir().unwrap();
    let helper = script(dir.path(), "echo sk-ant-api03-helper-key-zzzzzzzzz");
    let helper: Arc<dyn TokenManager> = Arc::new(
        HelperSource::new(
            helper.to_str().unwrap(),
            &[],
            CredentialKind::ApiKey,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .unwrap(),
    );
    let oauth_only = |k: &str| {
        (k == "CLAUDE_CODE_OAUTH_TOKEN").then(|| "sk-ant-oat01-env-oauth-token-aaaa".into())
    };
    let chain = TokenChain::cli_precedence(&oauth_only, Some(Arc::clone(&helper)), None).unwrap();
    assert_eq!(
        chain.get_token().await.unwrap().secret.expose(),
        "sk-ant-api03-helper-key-zzzzzzzzz"
    );
    assert!(chain.report().unwrap().source.starts_with("helper:"));
    let with_key =
        |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-ant-api03-env-api-key-bbbbbbbbb".into());
    let chain = TokenChain::cli_precedence(&with_key, Some(helper), None).unwrap();
    assert_eq!(chain.report(), None);
    assert_eq!(
        chain.get_token().await.unwrap().secret.expose(),
        "sk-ant-api03-env-api-key-bbbbbbbbb"
    );
    // A bad refresh configuration is an error, not a silent fallback.
    let bad = claude_auth::RefreshConfig::new("not-a-url", "client");
    let home = |k: &str| (k == "HOME").then(|| "/tmp".into());
    assert!(matches!(
        TokenChain::cli_precedence(&home, None, Some(bad)),
        Err(Error::InvalidConfig {
            field: "token_url",
            ..
        })
    ));
}
