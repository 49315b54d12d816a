//! The pinned real Claude CLI: found where a previous install left it, or installed with npm.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_proc::{spawn, EnvPolicy, OutputMode, ProcessConfig, CLAUDE_BIN_ENV};

use crate::error::{Error, Result};

/// The CLI version this project is tested against.
pub const CLAUDE_CLI_VERSION: &str = "2.1.328";

/// Where [`pinned_cli`] installs: `$CLAUDE_TESTKIT_CLI_DIR`, else `claude-cli/` in this
/// workspace's `target/` (`$CARGO_TARGET_DIR` when set).
pub fn cli_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAUDE_TESTKIT_CLI_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
            workspace.canonicalize().unwrap_or(workspace).join("target")
        });
    target.join("claude-cli")
}

/// The variables that make the CLI work offline against the stand-in at `base_url` (add a
/// fresh `CLAUDE_CONFIG_DIR` and `HOME` per session, and a credential).
pub fn offline_env(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ANTHROPIC_BASE_URL", base_url.to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
    ]
}

async fn version_of(bin: &Path) -> Option<String> {
    claude_proc::binary_version(bin, Duration::from_secs(30))
        .await
        .ok()
}

/// The pinned CLI ([`CLAUDE_CLI_VERSION`]): `$CLAUDE_PM_CLAUDE_BIN` if it names that version,
/// else the copy under [`cli_cache_dir`], installed there with `npm` first if missing.
pub async fn pinned_cli() -> Result<PathBuf> {
    let dir = cli_cache_dir();
    let fail = |why: String| Error::Cli {
        version: CLAUDE_CLI_VERSION,
        dir: dir.clone(),
        why,
    };
    if let Some(bin) = std::env::var_os(CLAUDE_BIN_ENV).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return match version_of(&bin).await {
            Some(v) if v == CLAUDE_CLI_VERSION => Ok(bin),
            other => Err(fail(format!(
                "${CLAUDE_BIN_ENV} names {} which reports version {other:?}",
                bin.display()
            ))),
        };
    }
    let bin = dir.join("node_modules").join(".bin").join("claude");
    if version_of(&bin).await.as_deref() == Some(CLAUDE_CLI_VERSION) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create the directory: {e}")))?;
    // npm needs the caller's whole environment: proxies, CA bundles (NODE_EXTRA_CA_CERTS
    // behind a TLS-inspecting proxy), npm_config_* settings.
    let config = ProcessConfig::builder("npm")
        .env_policy(EnvPolicy::Inherit)
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("@anthropic-ai/claude-code@{CLAUDE_CLI_VERSION}"))
        .stdout(OutputMode::Discard)
        .stderr(OutputMode::lines())
        .build()
        .map_err(|e| fail(format!("npm: {e}")))?;
    let mut npm = spawn(&config)
        .await
        .map_err(|e| fail(format!("npm could not start: {e}")))?;
    let exit = match tokio::time::timeout(Duration::from_secs(600), npm.wait()).await {
        Ok(exit) => exit,
        Err(_) => npm.stop().await,
    }
    .map_err(|e| fail(format!("npm: {e}")))?;
    if !exit.reason.success() {
        return Err(fail(format!(
            "npm install ended with {}: {}",
            exit.reason,
            exit.stderr_tail.trim()
        )));
    }
    match version_of(&bin).await {
        Some(v) if v == CLAUDE_CLI_VERSION => Ok(bin),
        other => Err(fail(format!(
            "after npm install, {} reports version {other:?}",
            bin.display()
        ))),
    }
}
