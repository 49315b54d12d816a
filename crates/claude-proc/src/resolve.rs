//! Finding the `claude` binary and checking its version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::child::spawn;
use crate::config::{resolve_program, OutputMode, ProcessConfig};
use crate::error::{Error, Result};
use crate::output::OutputEvent;
use crate::status::StopCause;

/// The variable naming the claude binary when no explicit path is given.
pub const CLAUDE_BIN_ENV: &str = "CLAUDE_PM_CLAUDE_BIN";

/// Find the claude binary: `explicit`, else `$CLAUDE_PM_CLAUDE_BIN`, else `claude` on PATH.
pub fn resolve_claude(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return resolve_program(path, std::env::var_os("PATH").as_deref());
    }
    if let Some(path) = std::env::var_os(CLAUDE_BIN_ENV).filter(|p| !p.is_empty()) {
        return resolve_program(Path::new(&path), std::env::var_os("PATH").as_deref());
    }
    resolve_program(Path::new("claude"), std::env::var_os("PATH").as_deref())
}

/// Run `binary --version` and return the version it prints (`2.1.328` from
/// `2.1.328 (Claude Code)`). A binary that does not answer within `timeout` is stopped (its whole
/// tree) and reported as [`Error::VersionTimeout`].
pub async fn binary_version(binary: &Path, timeout: Duration) -> Result<String> {
    let line = version_line(binary, timeout).await?;
    parse_version(&line).ok_or_else(|| Error::VersionUnrecognized {
        program: binary.to_path_buf(),
        output: line.chars().take(200).collect(),
    })
}

/// [`binary_version`] for the Claude Code CLI: its answer must read `X.Y.Z (Claude Code)`, so a
/// binary that merely prints a version (`/bin/echo` says `echo (GNU coreutils) 9.1`) is
/// [`Error::NotClaudeCode`].
pub async fn claude_version(binary: &Path, timeout: Duration) -> Result<String> {
    let line = version_line(binary, timeout).await?;
    match parse_version(&line) {
        Some(version) if line.contains("(Claude Code)") => Ok(version),
        _ => Err(Error::NotClaudeCode {
            program: binary.to_path_buf(),
            output: line.chars().take(200).collect(),
        }),
    }
}

/// The first line `binary --version` prints.
async fn version_line(binary: &Path, timeout: Duration) -> Result<String> {
    if timeout.is_zero() {
        return Err(Error::InvalidDuration {
            field: "version timeout",
            value: timeout,
        });
    }
    let config = ProcessConfig::builder(binary)
        .arg("--version")
        .stdout(OutputMode::Lines { max_line: 4096 })
        .grace(Duration::from_millis(500))
        .build()?;
    let mut child = spawn(&config).await?;
    let mut stdout = child.take_stdout().ok_or(Error::InvalidValue {
        field: "stdout",
        value: "not piped".into(),
    })?;
    let first_line = async {
        let mut first = None;
        while let Some(event) = stdout.recv().await {
            if let OutputEvent::Line(line) | OutputEvent::Unterminated(line) = event {
                if first.is_none() {
                    first = Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
        }
        first.unwrap_or_default()
    };
    let line = match tokio::time::timeout(timeout, first_line).await {
        Ok(line) => line,
        Err(_) => {
            let _ = child.stop_with(StopCause::Timeout).await;
            return Err(Error::VersionTimeout {
                program: binary.to_path_buf(),
                timeout,
            });
        }
    };
    let _ = child.wait().await;
    Ok(line)
}

/// The first whitespace-separated token that looks like `N.N[.N...]`.
pub fn parse_version(line: &str) -> Option<String> {
    line.split_whitespace()
        .map(|t| t.trim_start_matches('v'))
        .find(|t| {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("2.1.328 (Claude Code)").as_deref(),
            Some("2.1.328")
        );
        assert_eq!(parse_version("tool v1.2").as_deref(), Some("1.2"));
        assert_eq!(parse_version("no version here 1."), None);
        assert_eq!(parse_version(""), None);
    }
}
