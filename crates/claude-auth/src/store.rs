//! The CLI's credentials file: parsing that keeps unknown fields, and updates that lose nothing.
//!
//! An update takes an exclusive `flock` on a sibling lock file (`.credentials.json.lock`, so the
//! lock survives the rename), re-reads the file under the lock (another process may have just
//! rotated the refresh token), applies the change, writes a temporary file in the same directory
//! with mode 0600, fsyncs it, renames it over the original and fsyncs the directory. A crash at
//! any point leaves the old file or the new one, never a torn one.
//!
//! These calls block (file IO and `flock`); from async code run them in `spawn_blocking`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use crate::credential::{Credential, CredentialKind};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The OAuth login stored by the CLI under `claudeAiOauth`.
#[derive(Clone, PartialEq)]
pub struct OAuthLogin {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token (single use: every refresh rotates it). Absent for setup tokens.
    pub refresh_token: Option<Secret>,
    /// When the access token expires.
    pub expires_at: Option<SystemTime>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The subscription type, if recorded.
    pub subscription_type: Option<String>,
    /// The whole file as read, so fields this crate does not know are written back unchanged.
    raw: serde_json::Value,
}

impl fmt::Debug for OAuthLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLogin")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("subscription_type", &self.subscription_type)
            .finish_non_exhaustive()
    }
}

impl OAuthLogin {
    /// The access token as a credential to hand to a child.
    pub fn credential(&self) -> Credential {
        Credential {
            kind: CredentialKind::OAuthAccessToken,
            secret: self.access_token.clone(),
            expires_at: self.expires_at,
        }
    }

    /// Parse the file's bytes. Errors name the problem (bad JSON, missing field, wrong type),
    /// never a value.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<OAuthLogin> {
        let invalid = |why: String| Error::InvalidFile {
            path: path.to_path_buf(),
            why,
        };
        let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let oauth = raw
            .get("claudeAiOauth")
            .ok_or_else(|| invalid("no \"claudeAiOauth\" object".into()))?;
        if !oauth.is_object() {
            return Err(invalid("\"claudeAiOauth\" is not an object".into()));
        }
        let string = |key: &str, required: bool| -> Result<Option<String>> {
            match oauth.get(key) {
                None | Some(serde_json::Value::Null) if !required => Ok(None),
                None | Some(serde_json::Value::Null) => {
                    Err(invalid(format!("\"claudeAiOauth.{key}\" is missing")))
                }
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("\"claudeAiOauth.{key}\" is not a string"))),
            }
        };
        let access = string("accessToken", true)?.unwrap_or_default();
        let refresh = string("refreshToken", false)?;
        let expires_at = match oauth.get("expiresAt") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let ms = v.as_u64().ok_or_else(|| {
                    invalid("\"claudeAiOauth.expiresAt\" is not a non-negative integer".into())
                })?;
                Some(UNIX_EPOCH + Duration::from_millis(ms))
            }
        };
        let scopes = match oauth.get("scopes") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("\"claudeAiOauth.scopes\" holds a non-string".into()))?,
            Some(_) => return Err(invalid("\"claudeAiOauth.scopes\" is not an array".into())),
        };
        Ok(OAuthLogin {
            access_token: Secret::new(access),
            refresh_token: refresh.map(Secret::new),
            expires_at,
            scopes,
            subscription_type: string("subscriptionType", false)?,
            raw,
        })
    }

    /// A login with only the fields this crate knows (for writing a fresh file).
    pub fn new(
        access_token: Secret,
        refresh_token: Option<Secret>,
        expires_at: Option<SystemTime>,
    ) -> Self {
        OAuthLogin {
            access_token,
            refresh_token,
            expires_at,
            scopes: Vec::new(),
            subscription_type: None,
            raw: serde_json::json!({ "claudeAiOauth": {} }),
        }
    }

    /// This login without its refresh token: for a child's own config directory, so the child
    /// can use the access token but never rotate the refresh token itself.
    pub fn without_refresh_token(&self) -> OAuthLogin {
        let mut copy = self.clone();
        copy.refresh_token = None;
        copy
    }

    /// Serialise, keeping every field that was read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = self.raw.clone();
        if !raw.is_object() {
            raw = serde_json::json!({});
        }
        if let Some(root) = raw.as_object_mut() {
            let oauth = root
                .entry("claudeAiOauth")
                .or_insert_with(|| serde_json::json!({}));
            if !oauth.is_object() {
                *oauth = serde_json::json!({});
            }
            if let Some(o) = oauth.as_object_mut() {
                o.insert("accessToken".into(), self.access_token.expose().into());
                match &self.refresh_token {
                    Some(r) => o.insert("refreshToken".into(), r.expose().into()),
                    None => o.remove("refreshToken"),
                };
                match self
                    .expires_at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                {
                    Some(d) => o.insert("expiresAt".into(), (d.as_millis() as u64).into()),
                    None => o.remove("expiresAt"),
                };
                o.insert("scopes".into(), self.scopes.clone().into());
                if let Some(s) = &self.subscription_type {
                    o.insert("subscriptionType".into(), s.clone().into());
                }
            }
        }
        let mut out = serde_json::to_vec_pretty(&raw).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// The credentials file of one config directory.
#[derive(Debug, Clone)]
pub struct CredentialsFile {
    path: PathBuf,
}

impl CredentialsFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CredentialsFile { path: path.into() }
    }

    /// `$CLAUDE_CONFIG_DIR/.credentials.json`, else `$HOME/.claude/.credentials.json`, from the
    /// given variables (pass `std::env::var_os`).
    pub fn default_location(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<Self> {
        if let Some(dir) = var("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Some(Self::new(PathBuf::from(dir).join(".credentials.json")));
        }
        let home = var("HOME").filter(|h| !h.is_empty())?;
        Some(Self::new(
            PathBuf::from(home)
                .join(".claude")
                .join(".credentials.json"),
        ))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read and parse. A missing file is `Ok(None)`.
    pub fn load(&self) -> Result<Option<OAuthLogin>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => OAuthLogin::parse(&bytes, &self.path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                op: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Under the cross-process lock: re-read the file, let `change` edit the login (or create
    /// one when there is none), and replace the file atomically. Returns what was written.
    pub fn update<F>(&self, change: F) -> Result<OAuthLogin>
    where
        F: FnOnce(Option<OAuthLogin>) -> Result<OAuthLogin>,
    {
        let _lock = self.lock()?;
        self.remove_stale_temporaries();
        let current = self.load()?;
        let unchanged = current.as_ref().map(OAuthLogin::to_bytes);
        let next = change(current)?;
        let bytes = next.to_bytes();
        if unchanged.as_ref() != Some(&bytes) {
            self.write_atomically(&bytes)?;
        }
        Ok(next)
    }

    fn lock(&self) -> Result<Flock<File>> {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".lock");
        let lock_path = self.path.with_file_name(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                op: "open the lock file",
                path: lock_path.clone(),
                source,
            })?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
            op: "lock",
            path: lock_path,
            source: std::io::Error::from_raw_os_error(errno as i32),
        })
    }

    /// Temporary files are written only under the lock: any found while we hold it belong to
    /// a writer killed between writing and renaming. They hold a secret: remove them.
    fn remove_stale_temporaries(&self) {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".credentials.json.tmp.")
            {
                tracing::warn!(file = %entry.path().display(), "removing a torn write's temporary file");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".credentials.json.tmp.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            file.write_all(bytes).map_err(io("write", &tmp))?;
            file.sync_all().map_err(io("fsync", &tmp))?;
            std::fs::rename(&tmp, &self.path).map_err(io("rename over", &self.path))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync the directory of", &self.path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Prepare `dir` as one child's `CLAUDE_CONFIG_DIR`: created with mode 0700, holding a
/// `.credentials.json` (0600) with the login's access token and expiry but **no refresh token**,
/// so the child authenticates but can never rotate (and so invalidate) the shared login; the
/// manager refreshes and rewrites this file instead.
pub fn write_child_config_dir(dir: &Path, login: &OAuthLogin) -> Result<CredentialsFile> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            op: "create the config directory",
            path: dir.to_path_buf(),
            source,
        })?;
    let file = CredentialsFile::new(dir.join(".credentials.json"));
    let child = login.without_refresh_token();
    file.update(|_| Ok(child))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-access-aaaaaaaaaaaa","refreshToken":"sk-ant-ort01-refresh-bbbbbbbbbb","expiresAt":1900000000000,"scopes":["user:inference"],"subscriptionType":"max","rateLimitTier":"tier9"},"mcpOAuth":{"server":{"token":"x"}}}"#;

    #[test]
    fn parses_and_keeps_unknown_fields() {
        let login = OAuthLogin::parse(SAMPLE.as_bytes(), Path::new("c.json")).unwrap();
        assert_eq!(
            login.access_token.expose(),
            "sk-ant-oat01-access-aaaaaaaaaaaa"
        );
        assert_eq!(login.scopes, vec!["user:inference"]);
        assert_eq!(
            login.expires_at,
            Some(UNIX_EPOCH + Duration::from_millis(1_900_000_000_000))
        );
        let mut rotated = login.clone();
        rotated.refresh_token = Some(Secret::new("sk-ant-ort01-new"));
        let back: serde_json::Value = serde_json::from_slice(&rotated.to_bytes()).unwrap();
        assert_eq!(back["claudeAiOauth"]["rateLimitTier"], "tier9");
        assert_eq!(back["mcpOAuth"]["server"]["token"], "x");
        assert_eq!(back["claudeAiOauth"]["refreshToken"], "sk-ant-ort01-new");
        assert_eq!(back["claudeAiOauth"]["expiresAt"], 1_900_000_000_000u64);
        let child = login.without_refresh_token();
        let back: serde_json::Value = serde_json::from_slice(&child.to_bytes()).unwrap();
        assert!(back["claudeAiOauth"].get("refreshToken").is_none());
        let debug = format!("{login:?}");
        assert!(
            !debug.contains("access-aaaa")
                && !debug.contains("refresh-bbbb")
                && !debug.contains("\"x\""),
            "{debug}"
        );
    }

    #[test]
    fn bad_files_are_named() {
        let why = |text: &str| match OAuthLogin::parse(text.as_bytes(), Path::new("c.json")) {
            Err(Error::InvalidFile { why, .. }) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert!(why("{").starts_with("not JSON"));
        assert!(why("[]").contains("no \"claudeAiOauth\""));
        assert!(why(r#"{"claudeAiOauth":5}"#).contains("not an object"));
        assert!(why(r#"{"claudeAiOauth":{}}"#).contains("accessToken\" is missing"));
        assert!(why(r#"{"claudeAiOauth":{"accessToken":7}}"#).contains("not a string"));
        assert!(
            why(r#"{"claudeAiOauth":{"accessToken":"a","expiresAt":"soon"}}"#)
                .contains("expiresAt")
        );
        assert!(
            why(r#"{"claudeAiOauth":{"accessToken":"a","expiresAt":-1}}"#).contains("expiresAt")
        );
        assert!(why(r#"{"claudeAiOauth":{"accessToken":"a","scopes":[1]}}"#).contains("scopes"));
        // The error never carries a value from the file.
        let e = OAuthLogin::parse(
            br#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-LEAK","refreshToken":9}}"#,
            Path::new("c.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("LEAK"), "{e}");
    }

    #[test]
    fn update_writes_0600_atomically_and_creates_when_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = CredentialsFile::new(dir.path().join(".credentials.json"));
        assert!(file.load().unwrap().is_none());
        file.update(|current| {
            assert!(current.is_none());
            Ok(OAuthLogin::new(
                Secret::new("sk-ant-oat01-one"),
                Some(Secret::new("sk-ant-ort01-one")),
                None,
            ))
        })
        .unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.refresh_token.unwrap().expose(), "sk-ant-ort01-one");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().contains(".tmp.")),
            "{names:?}"
        );
        // A failing change writes nothing.
        let before = std::fs::read(file.path()).unwrap();
        assert!(file
            .update(|_| Err(Error::NoCredential {
                looked: "test".into()
            }))
            .is_err());
        assert_eq!(std::fs::read(file.path()).unwrap(), before);
    }

    #[test]
    fn a_child_config_dir_has_no_refresh_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let login = OAuthLogin::parse(SAMPLE.as_bytes(), Path::new("c.json")).unwrap();
        let child_dir = dir.path().join("sessions").join("s1");
        let file = write_child_config_dir(&child_dir, &login).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains("refresh"), "{text}");
        assert!(text.contains("sk-ant-oat01-access-aaaaaaaaaaaa"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&child_dir), 0o700);
        assert_eq!(mode(file.path()), 0o600);
    }

    #[test]
    fn default_location_follows_the_cli() {
        let vars = |config: Option<&str>, home: Option<&str>| {
            let (config, home) = (config.map(str::to_owned), home.map(str::to_owned));
            CredentialsFile::default_location(move |k| match k {
                "CLAUDE_CONFIG_DIR" => config.clone().map(Into::into),
                "HOME" => home.clone().map(Into::into),
                _ => None,
            })
            .map(|f| f.path().to_path_buf())
        };
        assert_eq!(
            vars(Some("/cfg"), Some("/home/u")),
            Some(PathBuf::from("/cfg/.credentials.json"))
        );
        assert_eq!(
            vars(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.claude/.credentials.json"))
        );
        assert_eq!(vars(None, None), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = OAuthLogin::parse(&bytes, Path::new("x"));
        }

        #[test]
        fn parse_never_panics_on_json_shapes(s in r#"\{"claudeAiOauth":\{("(accessToken|refreshToken|expiresAt|scopes)":("[a-z]{0,8}"|-?[0-9]{1,20}|null|\[\]|\{\}|\[1\]),?){0,4}\}\}"#) {
            let _ = OAuthLogin::parse(s.as_bytes(), Path::new("x"));
        }
    }
}
