//! `claude-pm doctor`: what this host gives a supervised session. Its limits report comes from
//! [`claude_manager::plan_limits`] over the spec `claude-pm claude` would build from the same
//! settings, the very call `ProcessManager::start` makes, so doctor cannot say one thing and a
//! run do another.

use std::path::Path;
use std::time::Duration;

use claude_manager::auth::{TokenChain, TokenManager};
use claude_manager::limits::{LimitReport, ResourceLimits};
use claude_manager::{plan_limits, Program, SessionSpec};
use serde_json::{json, Value};

use crate::cli::SettingsArgs;
use crate::output::say;
use crate::supervise::{configure, describe};

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

/// Every limit at a sample value, for a doctor asked about no limit in particular.
fn sample_limits() -> ResourceLimits {
    ResourceLimits {
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
    }
}

/// The limits part of the report: what `run` with these settings applies, or (with no limit
/// asked for) how each limit would be enforced at a sample value.
fn limits(spec: &SessionSpec) -> Value {
    let asked = spec.limits != ResourceLimits::default();
    let mut probe = spec.clone();
    if !asked {
        probe.limits = sample_limits();
        probe.limit_options.best_effort = true;
    }
    let (entries, error) = match plan_limits(&probe) {
        Ok(hook) => (entries(hook.report()), None),
        Err(e) => (Vec::new(), Some(describe(&e))),
    };
    json!({
        "for": if asked { "these settings" } else { "sample values" },
        "mode": spec.limit_options.mode.name(),
        "entries": entries,
        "error": error,
    })
}

fn entries(report: &LimitReport) -> Vec<Value> {
    report
        .entries
        .iter()
        .map(|e| {
            json!({"limit": e.limit.name(), "mechanism": e.mechanism.to_string(), "note": e.note})
        })
        .collect()
}

/// The isolation part: what each level promises and enforces it with on this host, what is
/// missing for a level it cannot give, and whether the settings' level would start.
fn isolation(spec: &SessionSpec) -> Value {
    use claude_manager::sandbox::{HostSupport, Level, SandboxConfig};
    let host = HostSupport::probe();
    let levels: Vec<Value> = [Level::User, Level::Sandbox]
        .into_iter()
        .map(|level| {
            let promises: Vec<Value> = HostSupport::promises(level)
                .into_iter()
                .map(|(p, m)| json!({"promise": p.to_string(), "mechanism": m.to_string()}))
                .collect();
            json!({"level": level.as_str(), "missing": host.missing(level), "promises": promises})
        })
        .collect();
    let mut config = SandboxConfig::default();
    config.level = spec.isolation;
    config.uid_range = spec.uid_range;
    config.network = spec.network;
    config.api_url = claude_manager::api_url(spec);
    json!({
        "network": spec.network.as_str(),
        "level": spec.isolation.as_str(),
        "uid_range": spec.uid_range.to_string(),
        "error": config.check().err().map(|e| describe(&e)),
        "levels": levels,
    })
}

async fn claude_binary(spec: &SessionSpec) -> Value {
    let binary = match &spec.program {
        Program::Claude { binary, .. } => binary.as_deref(),
        _ => None,
    };
    match claude_manager::proc::resolve_claude(binary) {
        Ok(bin) => {
            match claude_manager::proc::claude_version(&bin, Duration::from_secs(15)).await {
                Ok(version) => json!({"binary": bin, "version": version}),
                Err(e) => json!({"binary": bin, "version": null, "error": describe(&e)}),
            }
        }
        Err(e) => json!({"binary": null, "version": null, "error": describe(&e)}),
    }
}

/// The credential `claude-pm claude` would use, redacted, and whether it is usable (the same
/// check `claude` makes before it starts).
async fn auth() -> Value {
    let chain = TokenChain::cli_default(&|k| std::env::var_os(k));
    match chain.get_token().await {
        Ok(credential) => {
            let mut v = chain
                .report()
                .map(|r| json!({"source": r.source, "kind": r.kind.to_string(), "credential": r.redacted}))
                .unwrap_or(json!({}));
            if let (Err(e), Some(obj)) = (chain.validate_token(&credential), v.as_object_mut()) {
                obj.insert("error".into(), json!(describe(&e)));
            }
            v
        }
        Err(e) => json!({"error": describe(&e)}),
    }
}

pub(crate) async fn doctor(json_out: bool, settings: SettingsArgs) -> u8 {
    let spec = SessionSpec::claude("doctor", Vec::<String>::new());
    let spec = match configure(&settings, spec) {
        Ok((spec, _)) => spec,
        Err(code) => return code,
    };
    let report = json!({
        "claude": claude_binary(&spec).await,
        "auth": auth().await,
        "cgroup": cgroup_mode(),
        "limits": limits(&spec),
        "isolation": isolation(&spec),
        "claude_pm": env!("CARGO_PKG_VERSION"),
    });
    if json_out {
        say!("{report}");
    } else {
        print_text(&report);
    }
    // Non-zero when `claude-pm claude` could not run here: no usable Claude CLI, no usable
    // credential, or limits or an isolation it would refuse.
    let broken = report["claude"]["error"].is_string()
        || report["auth"]["error"].is_string()
        || report["limits"]["error"].is_string()
        || report["isolation"]["error"].is_string();
    if broken {
        1
    } else {
        0
    }
}

fn print_text(report: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    say!("claude-pm {}", text(&report["claude_pm"]));
    let claude = &report["claude"];
    match claude["binary"].as_str() {
        Some(bin) if claude["version"].is_string() => {
            say!(
                "claude binary   {bin} (version {})",
                text(&claude["version"])
            )
        }
        Some(bin) => say!("claude binary   {bin}: {}", text(&claude["error"])),
        None => say!("claude binary   not found: {}", text(&claude["error"])),
    }
    let auth = &report["auth"];
    match (auth.get("source"), auth["error"].as_str()) {
        (Some(source), None) => say!(
            "auth            {} from {} ({})",
            text(&auth["kind"]),
            text(source),
            text(&auth["credential"])
        ),
        (Some(source), Some(error)) => say!(
            "auth            unusable {} from {}: {error}",
            text(&auth["kind"]),
            text(source)
        ),
        (None, _) => say!("auth            none: {}", text(&auth["error"])),
    }
    say!("cgroups         {}", text(&report["cgroup"]));
    let limits = &report["limits"];
    match limits["for"].as_str() {
        Some("these settings") => say!(
            "limits          as run would apply them ({} mode):",
            text(&limits["mode"])
        ),
        _ => say!(
            "limits          how each would be enforced here ({} mode):",
            text(&limits["mode"])
        ),
    }
    if let Some(error) = limits["error"].as_str() {
        say!("  run would refuse to start: {error}");
    }
    for l in limits["entries"].as_array().into_iter().flatten() {
        say!(
            "  {:<12} {:<13} {}",
            text(&l["limit"]),
            text(&l["mechanism"]),
            l["note"].as_str().unwrap_or("")
        );
    }
    print_isolation(&report["isolation"]);
}

fn print_isolation(iso: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    say!(
        "isolation       {} (uids {}, network {})",
        text(&iso["level"]),
        text(&iso["uid_range"]),
        text(&iso["network"])
    );
    if let Some(error) = iso["error"].as_str() {
        say!("  run would refuse to start: {error}");
    }
    for level in iso["levels"].as_array().into_iter().flatten() {
        match level["missing"].as_str() {
            Some(missing) => say!(
                "  {:<8} not available here: {missing}",
                text(&level["level"])
            ),
            None => {
                say!("  {}:", text(&level["level"]));
                for p in level["promises"].as_array().into_iter().flatten() {
                    say!("    {:<40} {}", text(&p["promise"]), text(&p["mechanism"]));
                }
            }
        }
    }
}
