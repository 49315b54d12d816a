//! Bad input gives typed errors naming the problem; the environment policy.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use claude_proc::{spawn, EnvPolicy, Error, ProcessConfig};

use crate::support::*;

#[test]
fn bad_programs_are_named() {
    assert!(matches!(
        ProcessConfig::builder("").build(),
        Err(Error::MissingProgram)
    ));
    match ProcessConfig::builder("/nonexistent/bin/x").build() {
        Err(e @ Error::ProgramNotFound { .. }) => {
            assert!(e.to_string().contains("/nonexistent/bin/x"))
        }
        other => panic!("{other:?}"),
    }
    match ProcessConfig::builder("no-such-program-7f3a").build() {
        Err(Error::ProgramNotFound {
            searched: Some(_), ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        ProcessConfig::builder(&file).build(),
        Err(Error::NotExecutable { .. })
    ));
    assert!(matches!(
        ProcessConfig::builder(dir.path()).build(),
        Err(Error::NotExecutable { .. })
    ));
}

#[test]
fn bad_cwd_env_args_and_durations_are_named() {
    let err = sh("true").cwd("/nonexistent/dir").build().unwrap_err();
    assert!(matches!(err, Error::MissingCwd { .. }));
    assert!(err.to_string().contains("/nonexistent/dir"));
    for (name, why) in [
        ("A=B", "'='"),
        ("", "empty"),
        ("A\0B", "NUL"),
        ("NODE_OPTIONS", "never passed"),
        ("CLAUDECODE", "never passed"),
    ] {
        match sh("true").env(name, "v").build() {
            Err(e @ Error::InvalidEnvName { .. }) => assert!(e.to_string().contains(why), "{e}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    match sh("true").env("OK_NAME", "a\0b").build() {
        Err(e @ Error::InvalidEnvValue { .. }) => {
            assert!(e.to_string().contains("OK_NAME"));
            assert!(!e.to_string().contains("a\0b"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sh("true").arg("x\0y").build(),
        Err(Error::InvalidArgument { index: 3 })
    ));
    assert!(matches!(
        sh("true").grace(Duration::ZERO).build(),
        Err(Error::InvalidDuration { field: "grace", .. })
    ));
    assert!(matches!(
        sh("true")
            .stdout(claude_proc::OutputMode::Lines { max_line: 0 })
            .build(),
        Err(Error::InvalidValue { .. })
    ));
}

#[tokio::test]
async fn exec_failure_is_a_spawn_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad-interpreter");
    std::fs::write(&file, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ProcessConfig::builder(&file).build().unwrap();
    match spawn(&config).await {
        Err(e @ Error::Spawn { step, .. }) if step.starts_with("execve") => {
            let text = e.to_string();
            assert!(text.contains("bad-interpreter"), "{text}");
            assert!(text.contains("interpreter"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // The failed child was reaped: no zombie of ours is left behind. A child that died before
    // exec still has the spawner thread's name; other tests' children have exec'd programs.
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_zombie_child_of_us(*pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("claude-proc-sp"))
        })
        .count();
    assert_eq!(zombies, 0);
}

#[tokio::test]
async fn clean_environment_keeps_only_the_allowlist_and_explicit_variables() {
    // SAFETY: set_var while other threads run is sound here: these variables are unique to this test.
    unsafe {
        std::env::set_var("CLAUDE_PROC_TEST_NOT_ALLOWED", "leak");
        std::env::set_var("CLAUDE_PROC_TEST_PASSED", "passed");
        std::env::set_var("LC_CLAUDE_PROC_TEST", "lc");
    }
    let config = ProcessConfig::builder("/usr/bin/env")
        .stdout(lines())
        .env("EXPLICIT", "yes")
        .pass_env("CLAUDE_PROC_TEST_PASSED")
        .build()
        .unwrap();
    let env = output_of(&config).await.0;
    assert!(env.iter().any(|l| l.starts_with("PATH=")));
    assert!(env.contains(&"EXPLICIT=yes".to_owned()));
    assert!(env.contains(&"CLAUDE_PROC_TEST_PASSED=passed".to_owned()));
    assert!(env.contains(&"LC_CLAUDE_PROC_TEST=lc".to_owned()));
    assert!(!env
        .iter()
        .any(|l| l.starts_with("CLAUDE_PROC_TEST_NOT_ALLOWED")));
    assert_eq!(
        env.iter()
            .filter(|l| l.starts_with("CLAUDE_PROC_TREE="))
            .count(),
        1
    );
}

#[tokio::test]
async fn forbidden_variables_are_never_inherited() {
    // SAFETY: set_var while other threads run is sound here: no other test reads these variables.
    unsafe {
        std::env::set_var("CLAUDECODE", "1");
        std::env::set_var("CLAUDE_CODE_SSE_PORT", "1234");
        std::env::set_var("NODE_OPTIONS", "--require /tmp/evil.js");
    }
    let config = ProcessConfig::builder("/usr/bin/env")
        .stdout(lines())
        .env_policy(EnvPolicy::Inherit)
        .build()
        .unwrap();
    let env = output_of(&config).await.0;
    for name in ["CLAUDECODE=", "CLAUDE_CODE_SSE_PORT=", "NODE_OPTIONS="] {
        assert!(
            !env.iter().any(|l| l.starts_with(name)),
            "{name} was passed on"
        );
    }
}

#[test]
fn debug_output_never_shows_variable_values() {
    let config = sh("true")
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-SECRETSECRET")
        .build()
        .unwrap();
    let debug = format!("{config:?}");
    assert!(debug.contains("ANTHROPIC_API_KEY"));
    assert!(!debug.contains("SECRETSECRET"), "{debug}");
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_hanging_version_check_times_out_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let bin = script(
        dir.path(),
        "claude",
        &format!("echo $$ > {}; exec sleep 100", pidfile.display()),
    );
    let start = std::time::Instant::now();
    let err = claude_proc::binary_version(&bin, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionTimeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the hanging binary was left running");
}

#[tokio::test]
async fn a_version_check_names_unrecognised_output() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "claude", "echo 'no version here'");
    match claude_proc::binary_version(&bin, Duration::from_secs(5)).await {
        Err(Error::VersionUnrecognized { output, .. }) => assert_eq!(output, "no version here"),
        other => panic!("{other:?}"),
    }
    let bin = script(dir.path(), "claude2", "echo '9.8.7 (Claude Code)'");
    assert_eq!(
        claude_proc::binary_version(&bin, Duration::from_secs(5))
            .await
            .unwrap(),
        "9.8.7"
    );
}
