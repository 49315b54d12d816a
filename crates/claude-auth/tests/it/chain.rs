//! Source precedence, reports, and typed errors from the chain.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use claude_auth::{
    CredentialKind, CredentialsFile, Error, OAuthLogin, Secret, TokenChain, TokenManager,
};

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).map(Into::into)
}

const OAUTH: &str = "sk-ant-oat01-env-oauth-token-aaaa";
const KEY: &str = "sk-ant-api03-env-api-key-bbbbbbbbb";
const FALLBACK: &str = "sk-ant-api03-fallback-key-ccccccc";
const BEARER: &str = "gateway-bearer-token-dddddddddd";

#[tokio::test]
async fn precedence_follows_the_cli() {
    let all = [
        ("CLAUDE_CODE_OAUTH_TOKEN", OAUTH),
        ("ANTHROPIC_API_KEY", KEY),
        ("CLAUDE_API_KEY", FALLBACK),
        ("ANTHROPIC_AUTH_TOKEN", BEARER),
    ];
    let cases: Vec<(usize, &str, CredentialKind, &str)> = vec![
        (
            0,
            BEARER,
            CredentialKind::BearerToken,
            "env:ANTHROPIC_AUTH_TOKEN",
        ),
        (1, KEY, CredentialKind::ApiKey, "env:ANTHROPIC_API_KEY"),
        (2, FALLBACK, CredentialKind::ApiKey, "env:CLAUDE_API_KEY"),
        (
            3,
            OAUTH,
            CredentialKind::OAuthAccessToken,
            "env:CLAUDE_CODE_OAUTH_TOKEN",
        ),
    ];
    for (drop_first, secret, kind, source) in cases {
        // Remove the higher-precedence variables one by one.
        let vars: Vec<(&str, &str)> = all
            .iter()
            .copied()
            .filter(|(name, _)| match drop_first {
                0 => true,
                1 => *name != "ANTHROPIC_AUTH_TOKEN",
                2 => !matches!(*name, "ANTHROPIC_AUTH_TOKEN" | "ANTHROPIC_API_KEY"),
                _ => matches!(*name, "CLAUDE_CODE_OAUTH_TOKEN"),
            })
            .collect();
        let chain = TokenChain::cli_default(&lookup(&vars));
        let credential = chain.get_token().await.unwrap();
        assert_eq!(credential.secret.expose(), secret);
        assert_eq!(credential.kind, kind);
        let report = chain.report().unwrap();
        assert_eq!(report.source, source);
        assert!(!format!("{report:?}").contains(secret));
    }
}

#[tokio::test]
async fn the_credentials_file_comes_last_and_expiry_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let file = CredentialsFile::new(dir.path().join(".credentials.json"));
    let expiry = SystemTime::now() + Duration::from_secs(3600);
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-from-the-file-eeeeee"),
            Some(Secret::new("sk-ant-ort01-refresh-ffffffffff")),
            Some(expiry),
        ))
    })
    .unwrap();
    let chain = TokenChain::cli_default(&lookup(&[("CLAUDE_CONFIG_DIR", &dir_str)]));
    let credential = chain.get_token().await.unwrap();
    assert_eq!(credential.kind, CredentialKind::OAuthAccessToken);
    assert_eq!(
        credential.secret.expose(),
        "sk-ant-oat01-from-the-file-eeeeee"
    );
    assert!(chain.report().unwrap().source.starts_with("file:"));

    // Expired: a typed error, not a silent fall-through or an unusable token.
    file.update(|login| {
        let mut login = login.unwrap();
        login.expires_at = Some(SystemTime::now() - Duration::from_secs(60));
        Ok(login)
    })
    .unwrap();
    assert!(matches!(
        chain.get_token().await,
        Err(Error::Expired { .. })
    ));

    // Malformed: the chain stops with the file's error instead of pretending there is none.
    std::fs::write(file.path(), "{ not json").unwrap();
    match chain.get_token().await {
        Err(e @ Error::InvalidFile { .. }) => assert!(e.to_string().contains(".credentials.json")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nothing_anywhere_is_a_typed_error_naming_the_sources() {
    let chain = TokenChain::cli_default(&lookup(&[("HOME", "/nonexistent/home")]));
    match chain.get_token().await {
        Err(Error::NoCredential { looked }) => {
            assert!(looked.contains("env:ANTHROPIC_API_KEY"), "{looked}");
            assert!(
                looked.contains("file:/nonexistent/home/.claude/.credentials.json"),
                "{looked}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        claude_auth::EnvSource::api_key(&lookup(&[("ANTHROPIC_API_KEY", KEY)]))
            .refresh_token()
            .await,
        Err(Error::RefreshUnsupported { .. })
    ));
}

/// A supervisor restarts a run whose credential was rejected only if the source that gave it
/// can give another: a variable cannot, the credentials file can (a login refreshed by another
/// process or by the token endpoint). Before any answer, any source that can counts.
#[tokio::test]
async fn only_the_answering_source_says_whether_a_refresh_can_help() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let file = CredentialsFile::new(dir.path().join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-from-the-file-eeeeee"),
            None,
            Some(SystemTime::now() + Duration::from_secs(3600)),
        ))
    })
    .unwrap();
    let with_key = TokenChain::cli_default(&lookup(&[
        ("ANTHROPIC_API_KEY", KEY),
        ("CLAUDE_CONFIG_DIR", &dir_str),
    ]));
    assert!(with_key.can_refresh(), "the file could answer");
    with_key.get_token().await.unwrap();
    assert!(!with_key.can_refresh(), "a fixed key answered");

    let file_only = TokenChain::cli_default(&lookup(&[("CLAUDE_CONFIG_DIR", &dir_str)]));
    file_only.get_token().await.unwrap();
    assert!(file_only.can_refresh(), "the file answered");
}
