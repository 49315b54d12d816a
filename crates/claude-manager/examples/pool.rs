//! A warm pool of Claude sessions answering prompts for several tenants, with a permission
//! handler deciding which shell commands may run, every session under memory and process
//! limits.
//!
//! Runs offline against the workspace's stand-in API (no account, no network):
//!
//! ```text
//! CLAUDE_PM_CLAUDE_BIN=/path/to/claude cargo run -p claude-manager --example pool
//! ```
//!
//! (`cargo xtask claude-cli` installs the pinned CLI under `target/claude-cli/`.) For the real
//! API, drop the stand-in and its `ANTHROPIC_BASE_URL` and give the spec a credential.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example program prints what it does"
)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use claude_manager::limits::{LimitOptions, ResourceLimits};
use claude_manager::proc::{
    HostHandlers, PermissionDecision, PermissionHandler, PermissionPrompts, PermissionRequest,
    STREAM_JSON_ARGS,
};
use claude_manager::{ManagerConfig, PoolConfig, ProcessManager, SessionPool, SessionSpec};

/// The host's policy: the Bash tool may run `echo` and nothing else.
struct EchoOnly;

#[async_trait]
impl PermissionHandler for EchoOnly {
    async fn can_use_tool(&self, request: PermissionRequest) -> Result<PermissionDecision, String> {
        let input: serde_json::Value =
            serde_json::from_str(&request.input_json).map_err(|e| e.to_string())?;
        let command = input["command"].as_str().unwrap_or_default();
        Ok(
            match (
                request.tool_name.as_str(),
                command.split_whitespace().next(),
            ) {
                ("Bash", Some("echo")) => PermissionDecision::allow(),
                _ => PermissionDecision::deny(format!("not allowed on this host: {command}")),
            },
        )
    }
}

/// A stream-json session spec: prompts answered by the host, 1 GiB and 256 processes at most.
fn spec(base_url: &str) -> SessionSpec {
    let mut spec = SessionSpec::claude("tenant-pool", STREAM_JSON_ARGS);
    spec.stdin = claude_manager::proc::StdinMode::Piped;
    spec.claude.permission_prompts = Some(PermissionPrompts::Host);
    spec.handlers = HostHandlers::new()
        .permission(Arc::new(EchoOnly))
        .timeout(Duration::from_secs(10));
    spec.limits = ResourceLimits {
        max_memory: Some(1 << 30),
        max_pids: Some(256),
        ..ResourceLimits::default()
    };
    // Enforced where this process may (root with cgroups); otherwise what can be, and said so.
    spec.limit_options = LimitOptions {
        best_effort: true,
        ..LimitOptions::default()
    };
    spec.env = vec![
        ("ANTHROPIC_BASE_URL".into(), base_url.into()),
        (
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into(),
        ),
        (
            "ANTHROPIC_API_KEY".into(),
            "sk-ant-api03-example-000000000000000".into(),
        ),
    ];
    spec
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pool example: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let api = claude_testkit::StandInApi::start()
        .await
        .map_err(|e| e.to_string())?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let important = work.path().join("important");
    std::fs::create_dir_all(&important).map_err(|e| e.to_string())?;
    let mut spec = spec(&api.base_url());
    spec.cwd = Some(work.path().to_path_buf());

    // At most four CLIs at once, whoever asks; the pool keeps two ready.
    let manager = Arc::new(ProcessManager::new(ManagerConfig {
        max_live: 4,
        ..ManagerConfig::default()
    }));
    let mut config = PoolConfig::default();
    config.size = 2;
    config.max_turns = Some(20);
    config.max_rss_bytes = Some(768 << 20);
    let pool = SessionPool::new(manager, spec, config);
    let started = Instant::now();
    pool.wait_ready(2, Duration::from_secs(60)).await;
    println!(
        "2 sessions ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Three tenants at once; the stand-in answers `run: COMMAND` with a Bash tool call.
    let asks = [
        ("tenant-a", "run: echo hello from a > a.txt"),
        ("tenant-b", "run: rm -rf important"),
        ("tenant-c", "run: echo hello from c > c.txt"),
    ];
    let mut tasks = Vec::new();
    for (tenant, prompt) in asks {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let asked = Instant::now();
            let mut session = pool.acquire(tenant).await.map_err(|e| e.to_string())?;
            let waited = asked.elapsed();
            let turn = session.turn(prompt).await.map_err(|e| e.to_string())?;
            let answer = turn.result.result.unwrap_or_default();
            println!(
                "{tenant}: session pid {} after {:.1} ms: {answer}",
                session.pid().unwrap_or_default(),
                waited.as_secs_f64() * 1000.0
            );
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let stats = pool.stats();
    println!(
        "pool: {} ready, {} kept for their tenants, {} started",
        stats.ready, stats.kept, stats.started
    );
    pool.close();

    // What the permission handler allowed ran; what it refused did not.
    let ran = |f: &str| work.path().join(f).exists();
    if !(ran("a.txt") && ran("c.txt")) {
        return Err("an allowed echo did not run".into());
    }
    if !important.exists() {
        return Err("the refused command ran".into());
    }
    println!("allowed commands ran; the refused one did not");
    Ok(())
}
