//! A manager for the chaos tests: 20 sessions, each a shell with a background child and a
//! `setsid` escapee, under a pids cgroup; prints `ready <pid>` once all run, then waits for
//! stdin to end (a graceful stop) or to be killed.
#![expect(clippy::print_stdout, reason = "it reports readiness on stdout")]

use std::io::Write;
use std::time::Duration;

use claude_manager::{ManagerConfig, ProcessManager, SessionSpec};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    if let Err(e) = claude_manager::start_watchdog().await {
        eprintln!("chaos manager: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let manager = ProcessManager::new(ManagerConfig::default());
    let mut handles = Vec::new();
    for i in 0..20 {
        let mut spec = SessionSpec::command(
            format!("chaos-{i}"),
            "/bin/sh",
            ["-c", "sleep 300 & setsid sleep 300 & exec sleep 300"],
        );
        spec.limits.max_pids = Some(64);
        spec.health = None;
        match manager.start(spec) {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("chaos manager: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    while manager.list().iter().any(|s| s.state.pid().is_none()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let every shell start its background children.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    })
    .await;
    manager.stop_all();
    for mut h in handles {
        let _ = h.wait().await;
    }
    std::process::ExitCode::SUCCESS
}
