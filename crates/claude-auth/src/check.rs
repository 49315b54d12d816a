//! A hook for a remote validity check (for example a cheap authenticated API call).

use std::sync::Arc;

use async_trait::async_trait;

use crate::credential::Credential;
use crate::error::{Error, Result};
use crate::source::TokenManager;

/// A check a credential must pass beyond its format and expiry.
#[async_trait]
pub trait RemoteCheck: Send + Sync {
    /// A short name for errors.
    fn name(&self) -> String;

    /// `Err(reason)` rejects the credential. The reason must not contain the secret.
    async fn check(&self, credential: &Credential) -> Result<(), String>;
}

/// A source whose credentials are validated locally and by a [`RemoteCheck`] before use.
pub struct Checked {
    inner: Arc<dyn TokenManager>,
    check: Arc<dyn RemoteCheck>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("inner", &self.inner.name())
            .field("check", &self.check.name())
            .finish()
    }
}

impl Checked {
    /// Wrap `inner` with `check`.
    pub fn new(inner: Arc<dyn TokenManager>, check: Arc<dyn RemoteCheck>) -> Self {
        Checked { inner, check }
    }

    async fn checked(&self, credential: Credential) -> Result<Credential> {
        self.inner.validate_token(&credential)?;
        self.check
            .check(&credential)
            .await
            .map_err(|why| Error::Rejected {
                check: self.check.name(),
                why,
            })?;
        Ok(credential)
    }
}

#[async_trait]
impl TokenManager for Checked {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn get_token(&self) -> Result<Credential> {
        let credential = self.inner.get_token().await?;
        self.checked(credential).await
    }

    async fn refresh_token(&self) -> Result<Credential> {
        let credential = self.inner.refresh_token().await?;
        self.checked(credential).await
    }

    fn can_refresh(&self) -> bool {
        self.inner.can_refresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CredentialKind, Secret, StaticSource};

    struct DenyList;

    #[async_trait]
    impl RemoteCheck for DenyList {
        fn name(&self) -> String {
            "deny-list".into()
        }
        async fn check(&self, credential: &Credential) -> Result<(), String> {
            if credential.secret.expose().ends_with("revoked") {
                Err("revoked".into())
            } else {
                Ok(())
            }
        }
    }

    fn source(text: &str) -> Arc<dyn TokenManager> {
        Arc::new(StaticSource::new(Credential::new(
            CredentialKind::ApiKey,
            Secret::new(text),
        )))
    }

    #[tokio::test]
    async fn the_remote_check_and_local_rules_both_apply() {
        let ok = Checked::new(source("sk-ant-api03-fine-key-xxxxxxxx"), Arc::new(DenyList));
        assert!(ok.get_token().await.is_ok());
        let revoked = Checked::new(source("sk-ant-api03-key-is-revoked"), Arc::new(DenyList));
        match revoked.get_token().await {
            Err(Error::Rejected { check, why }) => {
                assert_eq!((check.as_str(), why.as_str()), ("deny-list", "revoked"))
            }
            other => panic!("{other:?}"),
        }
        let malformed = Checked::new(source("not-an-api-key-at-all-xxxx"), Arc::new(DenyList));
        assert!(matches!(
            malformed.get_token().await,
            Err(Error::Malformed { .. })
        ));
    }
}
