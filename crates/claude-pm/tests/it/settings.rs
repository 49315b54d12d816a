//! Settings as the binary reads them: from where, in which order, and what a bad source says.

use std::time::{Duration, Instant};

use claude_manager::proc::{spawn, EnvPolicy, OutputEvent, OutputMode, ProcessConfig};

use crate::cli::{code, pm};

/// A missing config file is reported as such, with the OS's reason, before anything else is
/// looked at (it used to be "no credential found" for `claude`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_file_is_named_before_the_credential_is_looked_for() {
    let bare = vec![
        ("ANTHROPIC_API_KEY", String::new()),
        ("CLAUDE_CODE_OAUTH_TOKEN", String::new()),
        ("HOME", "/nonexistent".to_owned()),
    ];
    for command in ["claude", "run", "doctor"] {
        let mut args = vec![command, "--config", "/missing/claude-pm.toml"];
        if command != "doctor" {
            args.extend(["--", "true"]);
        }
        let (_, err, exit) = pm(&args, &bare).await;
        assert_eq!(code(&exit), 125, "{command}: {err}");
        assert!(
            err.contains("/missing/claude-pm.toml") && err.contains("No such file or directory"),
            "{command}: {err}"
        );
        assert!(!err.contains("no credential"), "{command}: {err}");
    }
}

/// The documented order holds for the claude binary too: file, then `CLAUDE_PM_CLAUDE_BIN`,
/// then `--claude-binary` (the file used to beat the variable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claude_binary_follows_file_then_variable_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pm.toml");
    std::fs::write(&config, "claude_binary = \"/from/the/file\"\n").unwrap();
    let config = config.to_str().unwrap();
    let resolved = |variable: Option<&str>, flag: Option<&str>| {
        let mut args = vec!["doctor", "--json", "--config", config];
        if let Some(flag) = flag {
            args.extend(["--claude-binary", flag]);
        }
        let mut b = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
            .args(args)
            .env_policy(EnvPolicy::Inherit)
            .env_remove("CLAUDE_PM_CLAUDE_BIN")
            .stdout(OutputMode::lines());
        if let Some(v) = variable {
            b = b.env("CLAUDE_PM_CLAUDE_BIN", v);
        }
        let config = b.build().unwrap();
        async move {
            let mut child = spawn(&config).await.unwrap();
            let mut out = child.take_stdout().unwrap();
            let mut text = String::new();
            while let Some(e) = out.recv().await {
                if let OutputEvent::Line(l) = e {
                    text.push_str(&String::from_utf8_lossy(&l));
                }
            }
            child.wait().await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["claude"]["error"].as_str().unwrap_or_default().to_owned()
        }
    };
    let file = resolved(None, None).await;
    assert!(file.contains("/from/the/file"), "{file}");
    let var = resolved(Some("/from/the/variable"), None).await;
    assert!(var.contains("/from/the/variable"), "{var}");
    let flag = resolved(Some("/from/the/variable"), Some("/from/the/flag")).await;
    assert!(flag.contains("/from/the/flag"), "{flag}");
}

/// Runs claude-pm with one variable whose value is not UTF-8; stderr and the exit code.
async fn pm_raw_env(args: &[&str], name: &str, value: &[u8]) -> (String, i32) {
    use std::os::unix::ffi::OsStringExt;
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args(args)
        .env_policy(EnvPolicy::Inherit)
        .env(name, std::ffi::OsString::from_vec(value.to_vec()))
        .stderr(OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut err = child.take_stderr().unwrap();
    let mut text = String::new();
    while let Some(e) = err.recv().await {
        if let OutputEvent::Line(l) | OutputEvent::Unterminated(l) = e {
            text.push_str(&String::from_utf8_lossy(&l));
        }
    }
    let exit = child.wait().await.unwrap();
    (text, code(&exit))
}

/// A value that is not UTF-8 is refused naming the variable (it used to be ignored: the run
/// went ahead without its timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_that_is_not_utf8_is_refused_by_name() {
    let (err, status) =
        pm_raw_env(&["run", "--", "sleep", "5"], "CLAUDE_PM_TIMEOUT", b"1s\xff").await;
    assert_eq!(status, 125, "{err}");
    assert!(
        err.contains("CLAUDE_PM_TIMEOUT") && err.contains("UTF-8"),
        "{err}"
    );
}

/// A config file is read up to 1 MiB: `/dev/zero` is refused at once instead of filling
/// memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_config_file_is_refused_after_a_mebibyte() {
    let start = Instant::now();
    let (_, err, exit) = pm(&["run", "--config", "/dev/zero", "--", "true"], &[]).await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("larger than 1024 KiB"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}
