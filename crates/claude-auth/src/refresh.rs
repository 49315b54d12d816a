//! OAuth refresh: one refresher per process (single-flight) and per credentials file (the file
//! lock), retries with jittered backoff, `invalid_grant` as a final answer.
//!
//! The request is made while the credentials file is locked: a second manager process that
//! wants to refresh the same login waits, re-reads, finds the fresh token and uses it instead of
//! spending the (single-use) refresh token again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;

use crate::credential::{validate_format, Credential, CredentialKind};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::source::TokenManager;
use crate::store::{CredentialsFile, OAuthLogin};

/// Where and how to refresh. Endpoint, client id and scope are configuration: the CLI's own
/// values are not a documented contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshConfig {
    /// The token endpoint (`https://...` in production; tests use `http://127.0.0.1:PORT/...`).
    pub token_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The scope to ask for, if any.
    pub scope: Option<String>,
    /// Refresh when the token expires within this much (default 5 minutes, like the CLI).
    pub skew: Duration,
    /// Limit for one request (default 10 s).
    pub request_timeout: Duration,
    /// Attempts for retryable failures: timeouts, connection errors, 429 and 5xx (default 4).
    pub max_attempts: u32,
    /// Ceiling of the first retry delay; doubles per attempt, full jitter (default 250 ms).
    pub backoff_initial: Duration,
    /// Cap of the retry delay (default 5 s).
    pub backoff_max: Duration,
}

impl RefreshConfig {
    /// Defaults for everything but the endpoint and the client id.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        RefreshConfig {
            token_url: token_url.into(),
            client_id: client_id.into(),
            scope: None,
            skew: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            max_attempts: 4,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, why: &str| {
            Err(Error::InvalidConfig {
                field,
                why: why.to_owned(),
            })
        };
        if !(self.token_url.starts_with("https://") || self.token_url.starts_with("http://")) {
            return bad("token_url", "must be an http(s) URL");
        }
        if self.client_id.is_empty() {
            return bad("client_id", "is empty");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        Ok(())
    }
}

/// The OAuth login of one credentials file, refreshed through the token endpoint.
pub struct OAuthTokenManager {
    inner: Arc<Inner>,
    single_flight: tokio::sync::Mutex<()>,
}

struct Inner {
    file: CredentialsFile,
    config: RefreshConfig,
    agent: ureq::Agent,
    cached: ArcSwapOption<Credential>,
}

impl std::fmt::Debug for OAuthTokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokenManager")
            .field("file", &self.inner.file.path())
            .field("token_url", &self.inner.config.token_url)
            .finish_non_exhaustive()
    }
}

impl OAuthTokenManager {
    /// Manage the login in `file`, refreshing per `config`.
    pub fn new(file: CredentialsFile, config: RefreshConfig) -> Result<Self> {
        config.validate()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.request_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(OAuthTokenManager {
            inner: Arc::new(Inner {
                file,
                config,
                agent,
                cached: ArcSwapOption::empty(),
            }),
            single_flight: tokio::sync::Mutex::new(()),
        })
    }

    /// The cached credential if it is not due for a refresh: no IO, no lock, no await.
    pub fn cached(&self) -> Option<Credential> {
        let cached = self.inner.cached.load();
        let credential = cached.as_deref()?;
        if credential.expires_within(SystemTime::now(), self.inner.config.skew) {
            None
        } else {
            Some(credential.clone())
        }
    }

    /// One refresher at a time in this process; `stale` is the token the caller found unusable
    /// (`None`: refresh only if the file's token is due).
    async fn refresh(&self, stale: Option<Secret>) -> Result<Credential> {
        let _flight = self.single_flight.lock().await;
        // Someone else in this process refreshed while we waited.
        if let Some(cached) = self.inner.cached.load_full() {
            let replaced = stale.as_ref().is_some_and(|s| *s != cached.secret);
            let fresh = !cached.expires_within(SystemTime::now(), self.inner.config.skew);
            if fresh && (stale.is_none() || replaced) {
                return Ok((*cached).clone());
            }
        }
        let inner = Arc::clone(&self.inner);
        let login = tokio::task::spawn_blocking(move || inner.refresh_locked(stale.as_ref()))
            .await
            .map_err(|e| Error::RefreshFailed {
                attempts: 0,
                last: format!("refresh task failed: {e}"),
            })??;
        let credential = login.credential();
        self.inner.cached.store(Some(Arc::new(credential.clone())));
        Ok(credential)
    }
}

impl Inner {
    /// Under the file lock: use the file's token if it is usable (another process may have
    /// refreshed), else spend the refresh token and store the rotated pair.
    fn refresh_locked(&self, stale: Option<&Secret>) -> Result<OAuthLogin> {
        self.file.update(|login| {
            let mut login = login.ok_or_else(|| Error::NoCredential {
                looked: format!("file:{}", self.file.path().display()),
            })?;
            let due = login
                .credential()
                .expires_within(SystemTime::now(), self.config.skew);
            let is_stale = stale.is_some_and(|s| *s == login.access_token);
            if !due && !is_stale {
                return Ok(login);
            }
            let refresh = login.refresh_token.clone().ok_or(Error::NotRefreshable)?;
            let tokens = self.request(&refresh)?;
            tracing::info!(file = %self.file.path().display(), "oauth login refreshed");
            login.access_token = tokens.access_token;
            if let Some(rotated) = tokens.refresh_token {
                login.refresh_token = Some(rotated);
            }
            login.expires_at = Some(SystemTime::now() + tokens.expires_in);
            Ok(login)
        })
    }

    fn request(&self, refresh: &Secret) -> Result<Tokens> {
        let mut body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh.expose(),
            "client_id": self.config.client_id,
        });
        if let (Some(scope), Some(obj)) = (&self.config.scope, body.as_object_mut()) {
            obj.insert("scope".into(), scope.clone().into());
        }
        let body = Secret::new(body.to_string());
        let mut rng = fastrand::Rng::new();
        let mut last = String::new();
        for attempt in 0..self.config.max_attempts {
            if attempt > 0 {
                let ceiling = self
                    .config
                    .backoff_initial
                    .saturating_mul(1 << attempt.min(16))
                    .min(self.config.backoff_max);
                std::thread::sleep(ceiling.mul_f64(rng.f64()));
            }
            match self.attempt(&body) {
                Ok(tokens) => return Ok(tokens),
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retry(why)) => {
                    tracing::warn!(attempt = attempt + 1, reason = %why, "token refresh failed, retrying");
                    last = why;
                }
            }
        }
        Err(Error::RefreshFailed {
            attempts: self.config.max_attempts,
            last,
        })
    }

    fn attempt(&self, body: &Secret) -> Result<Tokens, Attempt> {
        let mut response = match self
            .agent
            .post(&self.config.token_url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .send(body.expose())
        {
            Ok(response) => response,
            Err(e) => return Err(Attempt::Retry(transport_reason(&e))),
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .map_err(|e| Attempt::Retry(format!("reading the reply: {}", transport_reason(&e))))?;
        let text = Secret::new(text);
        match status {
            200 => parse_tokens(text.expose()).map_err(Attempt::Final),
            429 | 500..=599 => Err(Attempt::Retry(format!("HTTP {status}"))),
            _ => {
                let code = error_code(text.expose());
                if code.as_deref() == Some("invalid_grant") {
                    Err(Attempt::Final(Error::InvalidGrant))
                } else {
                    Err(Attempt::Final(Error::RefreshRejected { status, code }))
                }
            }
        }
    }
}

enum Attempt {
    Retry(String),
    Final(Error),
}

/// A transport error, described without the URL's query or anything from the body.
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("io: {}", io.kind()),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::BodyExceedsLimit(n) => format!("reply larger than {n} bytes"),
        other => format!("transport error ({})", std::any::type_name_of_val(other)),
    }
}

struct Tokens {
    access_token: Secret,
    refresh_token: Option<Secret>,
    expires_in: Duration,
}

/// The reply's `error` field, if it is a plain OAuth error code (never echoes other text).
fn error_code(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let code = value.get("error")?.as_str()?;
    (code.len() <= 64 && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .then(|| code.to_owned())
}

fn parse_tokens(text: &str) -> Result<Tokens> {
    let bad = |why: &str| Error::RefreshResponse {
        why: why.to_owned(),
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| bad("the reply is not JSON"))?;
    let access = value
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("no string \"access_token\""))?;
    let access_token = Secret::new(access);
    validate_format(CredentialKind::OAuthAccessToken, &access_token)
        .map_err(|_| bad("\"access_token\" is not an OAuth access token"))?;
    let refresh_token = match value.get("refresh_token") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Secret::new(s.clone())),
        Some(_) => return Err(bad("\"refresh_token\" is not a non-empty string")),
    };
    let expires_in = value
        .get("expires_in")
        .and_then(|v| v.as_u64())
        .filter(|s| *s > 0 && *s < 10 * 365 * 24 * 3600)
        .ok_or_else(|| bad("no positive integer \"expires_in\""))?;
    Ok(Tokens {
        access_token,
        refresh_token,
        expires_in: Duration::from_secs(expires_in),
    })
}

#[async_trait]
impl TokenManager for OAuthTokenManager {
    fn name(&self) -> String {
        format!("oauth:{}", self.inner.file.path().display())
    }

    /// The cached token, or the file's, refreshed first when it expires within the skew.
    async fn get_token(&self) -> Result<Credential> {
        if let Some(credential) = self.cached() {
            return Ok(credential);
        }
        self.refresh(None).await
    }

    /// Replace the current token even if it looks valid (the API rejected it), unless another
    /// refresher already replaced it.
    async fn refresh_token(&self) -> Result<Credential> {
        let stale = match self.inner.cached.load_full() {
            Some(c) => Some(c.secret.clone()),
            None => {
                let file = self.inner.file.clone();
                tokio::task::spawn_blocking(move || file.load())
                    .await
                    .map_err(|e| Error::RefreshFailed {
                        attempts: 0,
                        last: format!("read task failed: {e}"),
                    })??
                    .map(|l| l.access_token)
            }
        };
        self.refresh(stale).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies_are_checked() {
        assert!(parse_tokens(r#"{"access_token":"sk-ant-oat01-abcdefghijklmnop","refresh_token":"sk-ant-ort01-x","expires_in":3600}"#).is_ok());
        for bad in [
            "garbage",
            "{}",
            r#"{"access_token":5,"expires_in":1}"#,
            r#"{"access_token":"not-a-token-at-all-xxxxxx","expires_in":3600}"#,
            r#"{"access_token":"sk-ant-oat01-abcdefghijklmnop","expires_in":0}"#,
            r#"{"access_token":"sk-ant-oat01-abcdefghijklmnop","expires_in":"soon"}"#,
            r#"{"access_token":"sk-ant-oat01-abcdefghijklmnop","refresh_token":7,"expires_in":60}"#,
        ] {
            assert!(
                matches!(parse_tokens(bad), Err(Error::RefreshResponse { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            error_code(r#"{"error":"invalid_grant"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(error_code(r#"{"error":"sk-ant-ort01-ECHOED"}"#), None);
    }

    #[test]
    fn config_is_validated() {
        let ok = RefreshConfig::new("https://example.test/token", "client");
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.token_url = "ftp://x".into();
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "token_url",
                ..
            })
        ));
        let mut c = ok.clone();
        c.client_id.clear();
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "client_id",
                ..
            })
        ));
        let mut c = ok;
        c.max_attempts = 0;
        assert!(c.validate().is_err());
    }

    proptest! {
        #[test]
        fn reply_parsing_never_panics(s in ".{0,200}") {
            let _ = parse_tokens(&s);
            let _ = error_code(&s);
        }
    }
}
