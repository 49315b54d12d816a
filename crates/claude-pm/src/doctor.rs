//! `claude-pm doctor`: what this host gives a supervised session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_manager::auth::{TokenChain, TokenManager};
use claude_manager::limits::{LimitMode, LimitOptions, LimitsHook, ResourceLimits};
use claude_manager::Settings;
use serde_json::json;

use crate::USAGE;

/// The cgroup layout of this host, in words.
fn cgroup_mode() -> &'static str {
    let root = Path::new("/sys/fs/cgroup");
    let controllers = |p: &Path| std::fs::read_to_string(p.join("cgroup.controllers")).ok();
    match controllers(root) {
        Some(c) if !c.trim().is_empty() => "v2 (unified, controllers on v2)",
        Some(_) => "v2 (unified, no controllers delegated here)",
        None if root.join("memory").exists() && root.join("unified").exists() => {
            "hybrid (controllers on v1, v2 without controllers)"
        }
        None if root.join("memory").exists() => "v1 (legacy)",
        None => "none (soft limits only)",
    }
}

pub(crate) async fn doctor(json_out: bool, config: Option<PathBuf>) -> u8 {
    let file = match config.as_deref().map(Settings::from_file).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("claude-pm: {e}");
            return USAGE;
        }
    };
    let settings = match Settings::from_env(&|k| std::env::var(k).ok()) {
        Ok(env) => file.merged(env),
        Err(e) => {
            eprintln!("claude-pm: {e}");
            return USAGE;
        }
    };
    let (binary, version) =
        match claude_manager::proc::resolve_claude(settings.claude_binary.as_deref()) {
            Ok(bin) => {
                let version = claude_manager::proc::binary_version(&bin, Duration::from_secs(15))
                    .await
                    .unwrap_or_else(|e| format!("unknown ({e})"));
                (Some(bin), version)
            }
            Err(e) => (None, e.to_string()),
        };
    let chain = TokenChain::cli_default(&|k| std::env::var_os(k));
    let auth = match chain.get_token().await {
        Ok(_) => chain
            .report()
            .map(|r| json!({"source": r.source, "kind": r.kind.to_string(), "credential": r.redacted}))
            .unwrap_or(json!(null)),
        Err(e) => json!({"error": e.to_string()}),
    };
    let probe = ResourceLimits {
        max_cpu: Some(1.0),
        max_memory: Some(1 << 30),
        max_disk_io: Some(10 << 20),
        timeout: Some(Duration::from_secs(60)),
        max_pids: Some(256),
        max_open_files: Some(1024),
        nice: Some(0),
        max_cpu_time: Some(Duration::from_secs(60)),
        max_file_size: Some(1 << 30),
        max_core_size: Some(0),
    };
    let options = LimitOptions {
        mode: settings.limits.unwrap_or(LimitMode::Auto),
        io_device: claude_manager::limits::block_device_of(Path::new(".")),
        best_effort: true,
        ..LimitOptions::default()
    };
    let limits: Vec<serde_json::Value> = match LimitsHook::new(probe, options) {
        Ok(hook) => hook
            .report()
            .entries
            .iter()
            .map(
                |(k, m, note)| json!({"limit": k.name(), "mechanism": m.to_string(), "note": note}),
            )
            .collect(),
        Err(e) => vec![json!({"error": e.to_string()})],
    };
    let report = json!({
        "claude": {"binary": binary, "version": version},
        "auth": auth,
        "cgroup": cgroup_mode(),
        "limits": limits,
        "claude_pm": env!("CARGO_PKG_VERSION"),
    });
    if json_out {
        println!("{report}");
        return 0;
    }
    println!("claude-pm {}", env!("CARGO_PKG_VERSION"));
    match &binary {
        Some(bin) => println!("claude binary   {} (version {version})", bin.display()),
        None => println!("claude binary   not found: {version}"),
    }
    match report["auth"].get("source") {
        Some(source) => println!(
            "auth            {} from {} ({})",
            report["auth"]["kind"].as_str().unwrap_or("?"),
            source.as_str().unwrap_or("?"),
            report["auth"]["credential"].as_str().unwrap_or("?")
        ),
        None => println!(
            "auth            none: {}",
            report["auth"]["error"].as_str().unwrap_or("no credential")
        ),
    }
    println!("cgroups         {}", cgroup_mode());
    println!("limits          how each would be enforced here:");
    for l in &limits {
        match l.get("limit") {
            Some(name) => println!(
                "  {:<12} {:<13} {}",
                name.as_str().unwrap_or("?"),
                l["mechanism"].as_str().unwrap_or("?"),
                l["note"].as_str().unwrap_or("")
            ),
            None => println!("  {}", l["error"].as_str().unwrap_or("?")),
        }
    }
    0
}
