//! Helpers shared by the integration tests.

use std::time::Duration;

use claude_proc::{OutputMode, ProcessConfig, ProcessConfigBuilder};

/// A `sh -c SCRIPT` configuration.
pub fn sh(script: &str) -> ProcessConfigBuilder {
    ProcessConfig::builder("/bin/sh").arg("-c").arg(script)
}

/// Whether a pid is alive (not a zombie, not gone).
pub fn alive(pid: u32) -> bool {
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
pub async fn gone_within(pid: u32, limit: Duration) -> bool {
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
pub async fn read_lines(rx: &mut claude_proc::OutputReceiver, n: usize) -> Vec<String> {
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
pub fn lines() -> OutputMode {
    OutputMode::lines()
}
