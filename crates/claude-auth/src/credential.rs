//! Credentials: what kind, the secret, when it expires; format and expiry validation.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Every variable through which the CLI accepts a credential: a child gets exactly one of them
/// (or one descriptor variable), never a competing leftover.
pub const AUTH_VARS: &[&str] = &[
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "CLAUDE_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR",
    "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR",
];

/// What a credential is, which decides how the CLI sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A Claude OAuth access token (`sk-ant-oat01-...`): `Authorization: Bearer`.
    OAuthAccessToken,
    /// An Anthropic API key (`sk-ant-api03-...`): `x-api-key`.
    ApiKey,
    /// A bearer token for an LLM gateway (`ANTHROPIC_AUTH_TOKEN`), free form.
    BearerToken,
}

impl CredentialKind {
    /// The variable that hands this kind to the CLI.
    pub fn env_var(self) -> &'static str {
        match self {
            CredentialKind::OAuthAccessToken => "CLAUDE_CODE_OAUTH_TOKEN",
            CredentialKind::ApiKey => "ANTHROPIC_API_KEY",
            CredentialKind::BearerToken => "ANTHROPIC_AUTH_TOKEN",
        }
    }

    /// The variable naming a descriptor that holds this kind, where the CLI has one.
    /// (`CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR` verified with 2.1.328: the init message says
    /// `"apiKeySource":"ANTHROPIC_API_KEY"` for a key read from the descriptor.)
    pub fn fd_var(self) -> Option<&'static str> {
        match self {
            CredentialKind::OAuthAccessToken => Some("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR"),
            CredentialKind::ApiKey => Some("CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR"),
            CredentialKind::BearerToken => None,
        }
    }

    fn prefix(self) -> Option<&'static str> {
        match self {
            CredentialKind::OAuthAccessToken => Some("sk-ant-oat"),
            CredentialKind::ApiKey => Some("sk-ant-api"),
            CredentialKind::BearerToken => None,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialKind::OAuthAccessToken => "OAuth access token",
            CredentialKind::ApiKey => "API key",
            CredentialKind::BearerToken => "bearer token",
        })
    }
}

/// A credential ready to hand to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// What it is.
    pub kind: CredentialKind,
    /// The secret.
    pub secret: Secret,
    /// When it stops working, if known.
    pub expires_at: Option<SystemTime>,
}

impl Credential {
    /// A credential without a known expiry.
    pub fn new(kind: CredentialKind, secret: Secret) -> Self {
        Credential {
            kind,
            secret,
            expires_at: None,
        }
    }

    /// Check the format for the kind (see [`validate_format`]) and that it has not expired.
    pub fn validate(&self, now: SystemTime) -> Result<()> {
        validate_format(self.kind, &self.secret)?;
        if let Some(at) = self.expires_at {
            if let Ok(ago) = now.duration_since(at) {
                return Err(Error::Expired {
                    kind: self.kind,
                    ago_secs: ago.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// Whether it expires within `skew` of `now` (a refresh is due).
    pub fn expires_within(&self, now: SystemTime, skew: Duration) -> bool {
        self.expires_at.is_some_and(|at| at <= now + skew)
    }
}

/// Format rules: OAuth tokens start with `sk-ant-oat`, API keys with `sk-ant-api`; all kinds are
/// 20 to 4096 characters of `A-Z a-z 0-9 - _` (bearer tokens may also hold `. ~ + / =`).
pub fn validate_format(kind: CredentialKind, secret: &Secret) -> Result<()> {
    let text = secret.expose();
    let malformed = |why: String| Err(Error::Malformed { kind, why });
    if text.len() < 20 || text.len() > 4096 {
        return malformed(format!("length {} is outside 20..=4096", text.len()));
    }
    if let Some(prefix) = kind.prefix() {
        if !text.starts_with(prefix) {
            return malformed(format!("does not start with {prefix:?}"));
        }
    }
    let allowed = |c: char| match kind {
        CredentialKind::BearerToken => c.is_ascii_alphanumeric() || "-_.~+/=".contains(c),
        _ => c.is_ascii_alphanumeric() || c == '-' || c == '_',
    };
    if let Some(pos) = text.chars().position(|c| !allowed(c)) {
        return malformed(format!("character {pos} is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_by_kind() {
        let ok = |k, s: &str| validate_format(k, &Secret::new(s)).is_ok();
        assert!(ok(
            CredentialKind::OAuthAccessToken,
            "sk-ant-oat01-abcdefghijklmnop"
        ));
        assert!(!ok(
            CredentialKind::OAuthAccessToken,
            "sk-ant-api03-abcdefghijklmnop"
        ));
        assert!(ok(CredentialKind::ApiKey, "sk-ant-api03-abcdefghijklmnop"));
        assert!(!ok(
            CredentialKind::ApiKey,
            "sk-ant-api03-abc def ghijklmnop"
        ));
        assert!(!ok(CredentialKind::ApiKey, "sk-ant-api03"));
        assert!(ok(
            CredentialKind::BearerToken,
            "eyJhbGciOiJIUzI1NiJ9.payload.sig"
        ));
        assert!(!ok(
            CredentialKind::BearerToken,
            "has\nnewline-and-is-long-enough"
        ));
        let err = validate_format(
            CredentialKind::ApiKey,
            &Secret::new("sk-ant-api03-SECRET!PART-xx"),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn expiry() {
        let now = SystemTime::now();
        let mut c = Credential::new(
            CredentialKind::OAuthAccessToken,
            Secret::new("sk-ant-oat01-abcdefghijklmnop"),
        );
        c.expires_at = Some(now - Duration::from_secs(90));
        assert!(matches!(
            c.validate(now),
            Err(Error::Expired { ago_secs: 90, .. })
        ));
        c.expires_at = Some(now + Duration::from_secs(120));
        assert!(c.validate(now).is_ok());
        assert!(c.expires_within(now, Duration::from_secs(300)));
        assert!(!c.expires_within(now, Duration::from_secs(60)));
    }

    proptest! {
        #[test]
        fn validation_never_panics(s in ".{0,64}") {
            for k in [CredentialKind::OAuthAccessToken, CredentialKind::ApiKey, CredentialKind::BearerToken] {
                let _ = validate_format(k, &Secret::new(s.clone()));
            }
        }
    }
}
