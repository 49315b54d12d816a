//! Helpers shared by the integration tests.

use std::time::Duration;

use claude_proc::{OutputMode, ProcessConfig, ProcessConfigBuilder};

/// A `sh -c SCRIPT` configuration.
pub(crate) fn sh(script: &str) -> ProcessConfigBuilder {
    ProcessConfig::builder("/bin/sh").arg("-c").arg(script)
}

/// Whether a pid is alive (not a zombie, not gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Wait until `pid` is gone or the limit passes.
pub(crate) async fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    !alive(pid)
}

/// Read lines from a child's stdout until `n` lines arrived.
pub(crate) async fn read_lines(rx: &mut claude_proc::OutputReceiver, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv().await {
            Some(claude_proc::OutputEvent::Line(l)) => {
                out.push(String::from_utf8_lossy(&l).into_owned())
            }
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// Stdout framed as lines.
pub(crate) fn lines() -> OutputMode {
    OutputMode::lines()
}

/// The real CLI from `CLAUDE_PM_CLAUDE_BIN` (set by `cargo xtask ci` after installing it).
/// Without it the test prints why and passes vacuously, except when `CLAUDE_PM_STRICT` is
/// set (as `cargo xtask ci` does), where a missing CLI fails the test.
pub(crate) fn claude_bin() -> Option<std::path::PathBuf> {
    match std::env::var_os("CLAUDE_PM_CLAUDE_BIN") {
        Some(path) if std::path::Path::new(&path).exists() => Some(path.into()),
        _ => {
            assert!(
                std::env::var_os("CLAUDE_PM_STRICT").is_none(),
                "CLAUDE_PM_STRICT is set but CLAUDE_PM_CLAUDE_BIN does not name the installed CLI"
            );
            eprintln!("skipping: CLAUDE_PM_CLAUDE_BIN is not set (run `cargo xtask claude-cli`)");
            None
        }
    }
}

/// Whether `pid` is a zombie whose parent is this test process.
pub(crate) fn is_zombie_child_of_us(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let ppid: Option<u32> = fields.next().and_then(|p| p.parse().ok());
    state == Some("Z") && ppid == Some(std::process::id())
}

/// A test that needs a capability this machine lacks: fail under `cargo xtask ci` (which sets
/// `CLAUDE_PM_STRICT`: on our machines nothing may skip), otherwise print why.
pub(crate) fn require_capability(what: &str) {
    assert!(
        std::env::var_os("CLAUDE_PM_STRICT").is_none(),
        "this machine should have {what}"
    );
    eprintln!("skipping: this machine lacks {what}");
}

/// Run `config` to the end and return its stdout lines and exit.
pub(crate) async fn output_of(
    config: &claude_proc::ProcessConfig,
) -> (Vec<String>, claude_proc::ExitInfo) {
    let mut child = claude_proc::spawn(config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut lines = Vec::new();
    while let Some(event) = out.recv().await {
        if let claude_proc::OutputEvent::Line(l) = event {
            lines.push(String::from_utf8(l).unwrap());
        }
    }
    (lines, child.wait().await.unwrap())
}
