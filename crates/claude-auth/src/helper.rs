//! A credential printed by a helper command (the CLI's `apiKeyHelper`), cached for a TTL, with
//! its run time limited; the command runs through claude-proc like every child.

use std::time::Duration;

use async_trait::async_trait;
use claude_proc::{OutputEvent, OutputMode, ProcessConfig, StopCause};
use tokio::time::Instant;

use crate::credential::{validate_format, Credential, CredentialKind};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::source::TokenManager;

/// Runs a command whose first stdout line is the credential.
pub struct HelperSource {
    command: ProcessConfig,
    kind: CredentialKind,
    ttl: Duration,
    timeout: Duration,
    cache: tokio::sync::Mutex<Option<(Credential, Instant)>>,
}

impl std::fmt::Debug for HelperSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperSource")
            .field("program", &self.command.program())
            .field("kind", &self.kind)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HelperSource {
    /// `program args...` yields a credential of `kind`, cached for `ttl`; a run longer than
    /// `timeout` is stopped (its whole tree) and reported.
    pub fn new(
        program: &str,
        args: &[&str],
        kind: CredentialKind,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self> {
        if timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "helper timeout",
                why: "must be positive".into(),
            });
        }
        let command = ProcessConfig::builder(program)
            .args(args.iter().copied())
            .stdout(OutputMode::Lines {
                max_line: 16 * 1024,
            })
            .grace(Duration::from_millis(500))
            .build()
            .map_err(|e| Error::Helper {
                program: program.to_owned(),
                why: e.to_string(),
            })?;
        Ok(HelperSource {
            command,
            kind,
            ttl,
            timeout,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    fn program(&self) -> String {
        self.command.program().display().to_string()
    }

    async fn run(&self) -> Result<Credential> {
        let failed = |why: String| Error::Helper {
            program: self.program(),
            why,
        };
        let mut child = claude_proc::spawn(&self.command)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut stdout = child
            .take_stdout()
            .ok_or_else(|| failed("stdout not piped".into()))?;
        let first = async {
            let mut first = None;
            while let Some(event) = stdout.recv().await {
                if let OutputEvent::Line(l) | OutputEvent::Unterminated(l) = event {
                    first.get_or_insert(l);
                }
            }
            first
        };
        let line = match tokio::time::timeout(self.timeout, first).await {
            Ok(line) => line,
            Err(_) => {
                let _ = child.stop_with(StopCause::Timeout).await;
                return Err(failed(format!("did not finish within {:?}", self.timeout)));
            }
        };
        let exit = child.wait().await.map_err(|e| failed(e.to_string()))?;
        if !exit.reason.success() {
            return Err(failed(format!("{}", exit.reason)));
        }
        let text = String::from_utf8(line.unwrap_or_default())
            .map_err(|_| failed("printed a line that is not UTF-8".into()))?;
        let secret = Secret::new(text.trim());
        if secret.is_empty() {
            return Err(failed("printed nothing".into()));
        }
        validate_format(self.kind, &secret)?;
        Ok(Credential::new(self.kind, secret))
    }
}

#[async_trait]
impl TokenManager for HelperSource {
    fn name(&self) -> String {
        format!("helper:{}", self.program())
    }

    /// The cached credential while younger than the TTL, else a new run. Concurrent callers
    /// share one run.
    async fn get_token(&self) -> Result<Credential> {
        let mut cache = self.cache.lock().await;
        if let Some((credential, at)) = cache.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(credential.clone());
            }
        }
        let credential = self.run().await?;
        *cache = Some((credential.clone(), Instant::now()));
        Ok(credential)
    }

    /// Run the helper again, whatever the cache holds.
    async fn refresh_token(&self) -> Result<Credential> {
        let mut cache = self.cache.lock().await;
        let credential = self.run().await?;
        *cache = Some((credential.clone(), Instant::now()));
        Ok(credential)
    }
}
