//! No secret in tracing output, `Debug` strings or error messages.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use claude_auth::{
    Credential, CredentialHook, CredentialKind, CredentialsFile, Delivery, OAuthLogin, Secret,
    TokenChain, TokenManager,
};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ACCESS: &str = "sk-ant-oat01-LEAKCHECK-access-mmmmmm";
const REFRESH: &str = "sk-ant-ort01-LEAKCHECK-refresh-nnnnn";

#[tokio::test]
async fn secrets_never_reach_logs_debug_or_errors() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not thread-local: the library logs from runtime tasks and the spawner thread, and
    // a thread-local default would miss callsites first hit on other threads.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = CredentialsFile::new(dir.path().join(".credentials.json"));
    let login = file
        .update(|_| {
            Ok(OAuthLogin::new(
                Secret::new(ACCESS),
                Some(Secret::new(REFRESH)),
                Some(SystemTime::now() + Duration::from_secs(600)),
            ))
        })
        .unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let chain = TokenChain::cli_default(&move |k| {
        (k == "CLAUDE_CONFIG_DIR").then(|| dir_str.clone().into())
    });
    let credential = chain.get_token().await.unwrap();
    let hook = CredentialHook::new(credential.clone(), Delivery::Fd(3));
    let config = claude_proc::ProcessConfig::builder("/bin/true")
        .hook(Arc::new(hook.clone()))
        .build()
        .unwrap();
    let mut child = claude_proc::spawn(&config).await.unwrap();
    child.wait().await.unwrap();

    let mut texts = vec![
        format!("{login:?}"),
        format!("{credential:?}"),
        format!("{chain:?}"),
        format!("{:?}", chain.report()),
        format!("{hook:?}"),
        format!("{config:?}"),
    ];
    let bad = Credential::new(
        CredentialKind::ApiKey,
        Secret::new(format!("{ACCESS} with spaces")),
    );
    texts.push(bad.validate(SystemTime::now()).unwrap_err().to_string());
    let expired = Credential {
        expires_at: Some(SystemTime::now() - Duration::from_secs(5)),
        ..credential.clone()
    };
    texts.push(format!("{:?}", expired.validate(SystemTime::now())));
    std::fs::write(
        file.path(),
        format!("{{\"claudeAiOauth\":{{\"accessToken\":\"{ACCESS}\",\"refreshToken\":5}}}}"),
    )
    .unwrap();
    texts.push(chain.get_token().await.unwrap_err().to_string());
    // A refresh that needs a retry: both the warning and the success are logged.
    let endpoint = crate::endpoint::TokenEndpoint::start(REFRESH);
    endpoint.script([crate::endpoint::Reply::Status(503, "unavailable")]);
    let refresh_dir = tempfile::tempdir().unwrap();
    let refresh_file = CredentialsFile::new(refresh_dir.path().join(".credentials.json"));
    refresh_file
        .update(|_| {
            Ok(OAuthLogin::new(
                Secret::new(ACCESS),
                Some(Secret::new(REFRESH)),
                Some(SystemTime::now() + Duration::from_secs(5)),
            ))
        })
        .unwrap();
    let mut config = claude_auth::RefreshConfig::new(&endpoint.url, "test-client");
    config.backoff_initial = Duration::from_millis(5);
    let manager = claude_auth::OAuthTokenManager::new(refresh_file, config).unwrap();
    let fresh = manager.get_token().await.unwrap();
    texts.push(format!("{manager:?}"));
    texts.push(format!("{fresh:?}"));
    texts.push(String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned());

    for text in &texts {
        assert!(!text.contains("LEAKCHECK"), "secret leaked into: {text}");
        assert!(
            !text.contains("access-generation"),
            "refreshed token leaked into: {text}"
        );
        assert!(
            !text.contains("sk-ant-ort01-rotated"),
            "rotated refresh token leaked into: {text}"
        );
    }
    let logs = texts.last().unwrap();
    assert!(
        logs.contains("retrying") && logs.contains("refreshed"),
        "{logs}"
    );
    // The capture did see the spawn: the check is not vacuous.
    assert!(
        texts.last().unwrap().contains("spawned"),
        "no tracing output captured"
    );
}
