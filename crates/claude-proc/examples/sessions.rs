//! claude-proc on its own: N real Claude CLI sessions, pinged with stream-json control
//! requests (no API traffic, no account), then stopped; afterwards no process of any session
//! is left. (`cargo xtask demo` runs the full job through claude-pm and the stand-in API.)
//!
//! `cargo run -p claude-proc --example sessions -- [--sessions N]` with `CLAUDE_PM_CLAUDE_BIN`
//! naming the CLI (`cargo xtask demo` installs it and sets it).
#![expect(clippy::print_stdout, reason = "a demo prints its report")]

use std::time::{Duration, Instant};

use claude_proc::{binary_version, resolve_claude, spawn, ClaudeSession, ExitReason};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let sessions: usize = match args.iter().position(|a| a == "--sessions") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--sessions needs a number")?
            .parse()
            .map_err(|e| format!("--sessions: {e}"))?,
        None => 4,
    };
    let bin = resolve_claude(None)?;
    let version = binary_version(&bin, Duration::from_secs(20)).await?;
    println!("claude {version} at {}", bin.display());
    let home = std::env::temp_dir().join(format!("claude-proc-demo-{}", std::process::id()));

    let mut running = Vec::new();
    for i in 0..sessions {
        let dir = home.join(format!("session-{i}"));
        std::fs::create_dir_all(&dir)?;
        let config = ClaudeSession::config(&bin)
            .env("HOME", &dir)
            .env("CLAUDE_CONFIG_DIR", dir.join(".claude"))
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-demo-not-a-real-key")
            .grace(Duration::from_secs(3))
            .build()?;
        let started = Instant::now();
        let mut child = spawn(&config).await?;
        let session = ClaudeSession::attach(&mut child)?;
        running.push((i, child, session, started));
    }

    println!(
        "\n{:<8} {:>8} {:>10} {:>12} {:>10}  exit",
        "session", "pid", "ping ms", "ping2 ms", "rss MiB"
    );
    let mut failures = 0;
    for (i, mut child, session, started) in running {
        let t = Instant::now();
        let first = session.initialize(Duration::from_secs(30)).await;
        let first_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let second = session
            .control("get_context_usage", None, Duration::from_secs(30))
            .await;
        let second_ms = t.elapsed().as_secs_f64() * 1000.0;
        let rss = rss_mib(child.pid());
        let pid = child.pid();
        let info = child.stop().await?;
        let clean =
            matches!(&info.reason, ExitReason::Stopped { exit, .. } if exit.code == Some(0));
        if first.is_err() || second.is_err() || !clean {
            failures += 1;
        }
        println!(
            "{:<8} {:>8} {:>10.1} {:>12.1} {:>10.0}  {} after {:.1}s",
            i,
            pid,
            first_ms,
            second_ms,
            rss,
            info.reason,
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = first.and(second) {
            println!("         control request failed: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&home);
    if failures > 0 {
        return Err(format!("{failures} session(s) did not answer or stop cleanly").into());
    }
    println!(
        "\nall {sessions} sessions answered and stopped cleanly; no process of theirs is left"
    );
    Ok(())
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
