//! `TokenManager` and the credential sources: environment, credentials file, static value, and
//! the chain in the CLI's documented precedence.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;

use crate::credential::{Credential, CredentialKind};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::CredentialsFile;

/// Where a credential comes from and how it is kept fresh. Object-safe: use
/// `Arc<dyn TokenManager>`.
#[async_trait]
pub trait TokenManager: Send + Sync {
    /// A short name for reports (`env:ANTHROPIC_API_KEY`, `file:/path`, ...).
    fn name(&self) -> String;

    /// The current credential. [`Error::NoCredential`] means "this source has none", which a
    /// chain treats as "ask the next one"; any other error stops the chain.
    async fn get_token(&self) -> Result<Credential>;

    /// Get a fresh credential (for example after the API answered 401).
    async fn refresh_token(&self) -> Result<Credential>;

    /// Whether [`TokenManager::refresh_token`] can give a different credential than the last
    /// (an OAuth refresh, a helper run again, a file another process updates). A supervisor
    /// asks before it restarts a run whose credential was rejected: with a fixed key there is
    /// nothing to try. Defaults to `true`, the cautious answer for a source that may refresh.
    fn can_refresh(&self) -> bool {
        true
    }

    /// Check a credential: format for its kind and expiry. Override to add a remote check.
    fn validate_token(&self, credential: &Credential) -> Result<()> {
        credential.validate(SystemTime::now())
    }
}

/// A credential variable of an environment (captured when the source is built), with
/// fallback names asked in order.
#[derive(Debug, Clone)]
pub struct EnvSource {
    vars: Vec<&'static str>,
    kind: CredentialKind,
    found: Option<(&'static str, Secret)>,
}

impl EnvSource {
    /// Read `var` (one of the CLI's credential variables) of kind `kind` through `lookup`.
    pub fn new(
        var: &'static str,
        kind: CredentialKind,
        lookup: &dyn Fn(&str) -> Option<OsString>,
    ) -> Self {
        Self::with_fallbacks(&[var], kind, lookup)
    }

    /// The first of `vars` that is set and non-empty.
    pub fn with_fallbacks(
        vars: &[&'static str],
        kind: CredentialKind,
        lookup: &dyn Fn(&str) -> Option<OsString>,
    ) -> Self {
        let found = vars.iter().find_map(|var| {
            lookup(var)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.is_empty())
                .map(|v| (*var, Secret::new(v)))
        });
        EnvSource {
            vars: vars.to_vec(),
            kind,
            found,
        }
    }

    /// `ANTHROPIC_API_KEY`, falling back to `CLAUDE_API_KEY`.
    pub fn api_key(lookup: &dyn Fn(&str) -> Option<OsString>) -> Self {
        Self::with_fallbacks(
            &["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"],
            CredentialKind::ApiKey,
            lookup,
        )
    }
}

#[async_trait]
impl TokenManager for EnvSource {
    fn name(&self) -> String {
        match &self.found {
            Some((var, _)) => format!("env:{var}"),
            None => format!("env:{}", self.vars.join("|")),
        }
    }

    async fn get_token(&self) -> Result<Credential> {
        match &self.found {
            Some((_, secret)) => Ok(Credential::new(self.kind, secret.clone())),
            None => Err(Error::NoCredential {
                looked: self.name(),
            }),
        }
    }

    async fn refresh_token(&self) -> Result<Credential> {
        Err(Error::RefreshUnsupported {
            source_name: self.name(),
        })
    }

    fn can_refresh(&self) -> bool {
        false
    }
}

/// A fixed credential (from configuration or a secret manager).
#[derive(Debug, Clone)]
pub struct StaticSource {
    credential: Credential,
}

impl StaticSource {
    /// Wrap a credential.
    pub fn new(credential: Credential) -> Self {
        StaticSource { credential }
    }
}

#[async_trait]
impl TokenManager for StaticSource {
    fn name(&self) -> String {
        "static".into()
    }

    async fn get_token(&self) -> Result<Credential> {
        Ok(self.credential.clone())
    }

    async fn refresh_token(&self) -> Result<Credential> {
        Err(Error::RefreshUnsupported {
            source_name: self.name(),
        })
    }

    fn can_refresh(&self) -> bool {
        false
    }
}

/// The OAuth login in the CLI's credentials file.
///
/// `refresh_token` re-reads the file under its lock, which picks up a refresh another process
/// has written. Refreshing through the token endpoint is not implemented yet (issue #3): until
/// then an expired login stays expired and `get_token` reports it as [`Error::Expired`].
#[derive(Debug, Clone)]
pub struct FileSource {
    file: CredentialsFile,
}

impl FileSource {
    /// The login in `file`.
    pub fn new(file: CredentialsFile) -> Self {
        FileSource { file }
    }

    async fn read(&self) -> Result<Credential> {
        let file = self.file.clone();
        let login = tokio::task::spawn_blocking(move || file.load())
            .await
            .map_err(|e| Error::Io {
                op: "read (task failed)",
                path: self.file.path().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let credential = login
            .ok_or_else(|| Error::NoCredential {
                looked: self.name(),
            })?
            .credential();
        credential.validate(SystemTime::now())?;
        Ok(credential)
    }
}

#[async_trait]
impl TokenManager for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.file.path().display())
    }

    async fn get_token(&self) -> Result<Credential> {
        self.read().await
    }

    async fn refresh_token(&self) -> Result<Credential> {
        self.read().await
    }
}

/// Which source a chain used, safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The source's name.
    pub source: String,
    /// The credential's kind.
    pub kind: CredentialKind,
    /// The credential, redacted (`sk-ant-oat01-[redacted, 108 chars]`).
    pub redacted: String,
}

/// Sources asked in order; the first that has a credential wins.
pub struct TokenChain {
    sources: Vec<Arc<dyn TokenManager>>,
    last: ArcSwapOption<SourceReport>,
}

impl std::fmt::Debug for TokenChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.sources.iter().map(|s| s.name()).collect();
        f.debug_struct("TokenChain")
            .field("sources", &names)
            .finish()
    }
}

impl TokenChain {
    /// A chain over `sources`, asked in this order.
    pub fn new(sources: Vec<Arc<dyn TokenManager>>) -> Self {
        TokenChain {
            sources,
            last: ArcSwapOption::empty(),
        }
    }

    /// The CLI's documented precedence, from the given variables: `ANTHROPIC_AUTH_TOKEN`, then
    /// `ANTHROPIC_API_KEY` (or `CLAUDE_API_KEY`), then `CLAUDE_CODE_OAUTH_TOKEN`, then the
    /// credentials file. (The CLI's `apiKeyHelper` setting sits between the API key and the
    /// OAuth token; a helper source is not implemented yet.)
    pub fn cli_default(lookup: &dyn Fn(&str) -> Option<OsString>) -> Self {
        let file = CredentialsFile::default_location(lookup)
            .map(|file| Arc::new(FileSource::new(file)) as Arc<dyn TokenManager>);
        Self::in_cli_order(lookup, None, file)
    }

    /// The CLI's full precedence: `ANTHROPIC_AUTH_TOKEN`, `ANTHROPIC_API_KEY` (or
    /// `CLAUDE_API_KEY`), the `helper` (the CLI's `apiKeyHelper`), `CLAUDE_CODE_OAUTH_TOKEN`,
    /// then the credentials file, refreshed through the token endpoint when `refresh` is given.
    pub fn cli_precedence(
        lookup: &dyn Fn(&str) -> Option<OsString>,
        helper: Option<Arc<dyn TokenManager>>,
        refresh: Option<crate::refresh::RefreshConfig>,
    ) -> Result<Self> {
        let file: Option<Arc<dyn TokenManager>> = match CredentialsFile::default_location(lookup) {
            None => None,
            Some(file) => Some(match refresh {
                Some(config) => Arc::new(crate::refresh::OAuthTokenManager::new(file, config)?),
                None => Arc::new(FileSource::new(file)),
            }),
        };
        Ok(Self::in_cli_order(lookup, helper, file))
    }

    fn in_cli_order(
        lookup: &dyn Fn(&str) -> Option<OsString>,
        helper: Option<Arc<dyn TokenManager>>,
        file: Option<Arc<dyn TokenManager>>,
    ) -> Self {
        let mut sources: Vec<Arc<dyn TokenManager>> = vec![
            Arc::new(EnvSource::new(
                "ANTHROPIC_AUTH_TOKEN",
                CredentialKind::BearerToken,
                lookup,
            )),
            Arc::new(EnvSource::api_key(lookup)),
        ];
        sources.extend(helper);
        sources.push(Arc::new(EnvSource::new(
            "CLAUDE_CODE_OAUTH_TOKEN",
            CredentialKind::OAuthAccessToken,
            lookup,
        )));
        sources.extend(file);
        TokenChain::new(sources)
    }

    /// Which source answered the last successful `get_token`.
    pub fn report(&self) -> Option<SourceReport> {
        self.last.load_full().map(|r| (*r).clone())
    }

    fn record(&self, source: &dyn TokenManager, credential: &Credential) {
        self.last.store(Some(Arc::new(SourceReport {
            source: source.name(),
            kind: credential.kind,
            redacted: credential.secret.redacted(),
        })));
    }
}

#[async_trait]
impl TokenManager for TokenChain {
    fn name(&self) -> String {
        "chain".into()
    }

    async fn get_token(&self) -> Result<Credential> {
        let mut looked = Vec::new();
        for source in &self.sources {
            match source.get_token().await {
                Ok(credential) => {
                    self.record(source.as_ref(), &credential);
                    return Ok(credential);
                }
                Err(Error::NoCredential { .. }) => looked.push(source.name()),
                Err(other) => return Err(other),
            }
        }
        Err(Error::NoCredential {
            looked: looked.join(", "),
        })
    }

    /// Whether the source that answered last can refresh (before any answer: whether any
    /// source can).
    fn can_refresh(&self) -> bool {
        let winner = self.report().map(|r| r.source);
        self.sources
            .iter()
            .filter(|s| winner.as_deref().is_none_or(|w| w == s.name()))
            .any(|s| s.can_refresh())
    }

    /// Refresh through the source that answered last (or the first that has a credential).
    async fn refresh_token(&self) -> Result<Credential> {
        let winner = self.report().map(|r| r.source);
        for source in &self.sources {
            if winner.as_deref().is_none_or(|w| w == source.name()) {
                match source.refresh_token().await {
                    Err(Error::NoCredential { .. }) if winner.is_none() => continue,
                    other => return other,
                }
            }
        }
        Err(Error::NoCredential {
            looked: "chain".into(),
        })
    }
}
