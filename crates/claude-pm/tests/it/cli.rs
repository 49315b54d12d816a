//! Each promise of the README's claude-pm section, against the real binary.

use std::time::{Duration, Instant};

use claude_manager::proc::{spawn, EnvPolicy, ExitInfo, OutputEvent, OutputMode, ProcessConfig};
use claude_testkit::{offline_env, pinned_cli, AuthSeen, StandInApi};

/// Run claude-pm with `args` (and `env`); its stdout lines, stderr text and exit.
pub(crate) async fn pm(args: &[&str], env: &[(&str, String)]) -> (Vec<String>, String, ExitInfo) {
    pm_in(None, args, env).await
}

/// [`pm`] in the working directory `cwd`.
pub(crate) async fn pm_in(
    cwd: Option<&std::path::Path>,
    args: &[&str],
    env: &[(&str, String)],
) -> (Vec<String>, String, ExitInfo) {
    let mut b = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args(args)
        .env_policy(EnvPolicy::Inherit)
        .env_remove("CLAUDE_PM_LOG")
        .stdout(OutputMode::lines())
        .stderr(OutputMode::lines())
        .grace(Duration::from_secs(10));
    for (k, v) in env {
        b = b.env(k, v);
    }
    if let Some(dir) = cwd {
        b = b.cwd(dir);
    }
    let mut child = spawn(&b.build().unwrap()).await.unwrap();
    let (mut out, mut err) = (child.take_stdout().unwrap(), child.take_stderr().unwrap());
    let read = |mut rx: claude_manager::proc::OutputReceiver| async move {
        let mut lines = Vec::new();
        while let Some(e) = rx.recv().await {
            if let OutputEvent::Line(l) | OutputEvent::Unterminated(l) = e {
                lines.push(String::from_utf8_lossy(&l).into_owned());
            }
        }
        lines
    };
    let (stdout, stderr) = tokio::join!(read(out_take(&mut out)), read(out_take(&mut err)));
    let exit = child.wait().await.unwrap();
    (stdout, stderr.join("\n"), exit)
}

fn out_take(rx: &mut claude_manager::proc::OutputReceiver) -> claude_manager::proc::OutputReceiver {
    let (tx, new) = tokio::sync::mpsc::channel(1);
    drop(tx);
    std::mem::replace(rx, claude_manager::proc::OutputReceiver::from_channel(new))
}

pub(crate) fn code(exit: &ExitInfo) -> i32 {
    match exit.reason {
        claude_manager::proc::ExitReason::Exited { code } => code,
        ref other => panic!("claude-pm did not exit by itself: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, exit) = pm(&["run", "--", "sh", "-c", "echo hi; exit 3"], &[]).await;
    assert_eq!((out, code(&exit)), (vec!["hi".to_owned()], 3));
    let (_, _, exit) = pm(&["run", "--", "sh", "-c", "kill -SEGV $$"], &[]).await;
    assert_eq!(code(&exit), 139);
    let (_, err, exit) = pm(&["run", "--timeout", "300ms", "--", "sleep", "10"], &[]).await;
    assert_eq!(code(&exit), 124, "{err}");
    let (_, err, exit) = pm(
        &[
            "run",
            "--memory",
            "200M",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=600M",
            "count=1",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 137, "{err}");
    assert!(err.contains("memory_limit"), "{err}");
    let (_, err, exit) = pm(&["run", "--", "/nonexistent/program"], &[]).await;
    assert_eq!(code(&exit), 127, "{err}");
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    let (_, err, exit) = pm(&["run", "--", plain.to_str().unwrap()], &[]).await;
    assert_eq!(code(&exit), 126, "{err}");
    // claude-pm's own usage and configuration errors: 125, naming the problem.
    let (_, err, exit) = pm(&["run", "--bogus", "--", "true"], &[]).await;
    assert_eq!(code(&exit), 125, "{err}");
    let (_, err, exit) = pm(&["run", "--cpus", "lots", "--", "true"], &[]).await;
    assert_eq!(code(&exit), 125);
    assert!(err.contains("--cpus") && err.contains("lots"), "{err}");
    let (_, err, exit) = pm(
        &["run", "--", "true"],
        &[("CLAUDE_PM_TIMEOUT", "soon".into())],
    )
    .await;
    assert_eq!(code(&exit), 125);
    assert!(err.contains("CLAUDE_PM_TIMEOUT"), "{err}");
    let config = dir.path().join("pm.toml");
    std::fs::write(&config, "memory = \"2X\"\n").unwrap();
    let (_, err, exit) = pm(
        &["run", "--config", config.to_str().unwrap(), "--", "true"],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 125);
    assert!(
        err.contains("memory in") && err.contains("pm.toml"),
        "{err}"
    );
    let (out, _, exit) = pm(&["--version"], &[]).await;
    assert_eq!(code(&exit), 0);
    assert!(out[0].starts_with("claude-pm "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_json_lines_ending_with_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (_, _, exit) = pm(
        &[
            "run",
            "--events",
            path.to_str().unwrap(),
            "--health-interval",
            "100ms",
            "--pids",
            "64",
            "--",
            "sh",
            "-c",
            "sleep 0.3; exit 2",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .all(|e| e["event"].is_string() && e["ts"].is_number()));
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in ["state", "sample", "limit", "exit"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["reason"].as_str()),
        (Some("exit"), Some("exited"))
    );
    assert_eq!(last["code"], 2);
    for key in [
        "signal",
        "cpu_seconds",
        "max_rss_bytes",
        "wall_seconds",
        "restarts",
    ] {
        assert!(last.get(key).is_some(), "{key} missing in {last}");
    }
    let sample = events.iter().find(|e| e["event"] == "sample").unwrap();
    for key in [
        "cpu_percent",
        "rss_bytes",
        "read_bytes",
        "write_bytes",
        "processes",
    ] {
        assert!(sample.get(key).is_some(), "{key} missing in {sample}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_tree_gracefully_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args([
            "run",
            "--events",
            events.to_str().unwrap(),
            "--health-interval",
            "100ms",
            "--",
            "sh",
            "-c",
            "sleep 100 & sleep 100 & wait",
        ])
        .env_policy(EnvPolicy::Inherit)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    // Wait until a sample saw the whole tree of three.
    let start = Instant::now();
    let tree_pids = loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let sampled = text.lines().any(|l| l.contains("\"processes\":3"));
        if sampled {
            let leader: u32 = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|e| e["pid"].as_u64())
                .unwrap() as u32;
            let children =
                std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
                    .unwrap_or_default();
            let mut pids: Vec<u32> = children
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            pids.push(leader);
            break pids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no sample of the tree"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(tree_pids.len(), 3);
    // SAFETY: kill(2) on the claude-pm this test started.
    unsafe { libc::kill(child.pid() as i32, libc::SIGTERM) };
    let exit = child.wait().await.unwrap();
    assert_eq!(code(&exit), 143, "{exit:?}");
    // Gone at once, or a zombie for the moment init takes to reap it.
    let deadline = Instant::now() + Duration::from_secs(1);
    for pid in tree_pids {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let alive = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..i + 3))
                .is_some_and(|s| s != "Z");
            assert!(!alive, "{pid} outlived claude-pm: {stat}");
            if stat.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{pid} still a zombie after 1 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let text = std::fs::read_to_string(&events).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["reason"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_gets_the_chain_credential_its_settings_and_nothing_else() {
    let api = StandInApi::start().await.unwrap();
    let bin = pinned_cli().await.unwrap();
    let key = "sk-ant-api03-claude-pm-cli-key-00000000000";
    let mut env: Vec<(&str, String)> = offline_env(&api.base_url()).into_iter().collect();
    env.push(("CLAUDE_PM_CLAUDE_BIN", bin.display().to_string()));
    env.push(("ANTHROPIC_API_KEY", key.into()));
    // A competing credential lower in the CLI's precedence must not reach the child.
    env.push((
        "CLAUDE_CODE_OAUTH_TOKEN",
        "sk-ant-oat01-should-not-be-used-000000".into(),
    ));
    let (out, err, exit) = pm(
        &[
            "claude",
            "--",
            "-p",
            "ping",
            "--output-format",
            "stream-json",
            "--verbose",
        ],
        &env,
    )
    .await;
    assert_eq!(code(&exit), 0, "{err}");
    let result = out
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result in {out:?}"));
    assert_eq!(result["result"], "pong");
    assert!(
        api.every_message_call_used(&AuthSeen::ApiKey(key.into())),
        "{:?}",
        api.message_calls()
    );
    // Without any credential claude-pm says so and exits 125.
    let mut bare: Vec<(&str, String)> = offline_env(&api.base_url()).into_iter().collect();
    bare.push(("CLAUDE_PM_CLAUDE_BIN", bin.display().to_string()));
    bare.push(("HOME", "/nonexistent".into()));
    let (_, err, exit) = pm_without(
        &["claude", "--", "-p", "ping"],
        &bare,
        &[
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CONFIG_DIR",
        ],
    )
    .await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(err.contains("no credential"), "{err}");
}

async fn pm_without(
    args: &[&str],
    env: &[(&str, String)],
    remove: &[&str],
) -> (Vec<String>, String, ExitInfo) {
    let mut env = env.to_vec();
    // An empty value counts as unset for the credential sources.
    for r in remove {
        env.push((r, String::new()));
    }
    pm(args, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_binary_auth_cgroups_and_limits() {
    let bin = pinned_cli().await.unwrap();
    let (out, err, exit) = pm(
        &["doctor", "--json"],
        &[
            ("CLAUDE_PM_CLAUDE_BIN", bin.display().to_string()),
            (
                "ANTHROPIC_API_KEY",
                "sk-ant-api03-doctor-key-000000000000000".into(),
            ),
        ],
    )
    .await;
    assert_eq!(code(&exit), 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out.join("\n")).unwrap();
    assert_eq!(v["claude"]["version"], "2.1.328");
    assert_eq!(v["auth"]["kind"], "API key");
    let shown = v["auth"]["credential"].as_str().unwrap();
    assert!(!shown.contains("doctor-key-0000"), "{shown}");
    assert!(v["cgroup"].as_str().unwrap().contains("hybrid"), "{v}");
    assert_eq!(v["limits"]["for"], "sample values");
    let limits = v["limits"]["entries"].as_array().unwrap();
    let mechanism = |name: &str| {
        limits
            .iter()
            .find(|l| l["limit"] == name)
            .map(|l| l["mechanism"].as_str().unwrap().to_owned())
    };
    assert_eq!(mechanism("memory").as_deref(), Some("cgroup-v1"));
    assert_eq!(mechanism("open_files").as_deref(), Some("rlimit"));
    assert_eq!(mechanism("timeout").as_deref(), Some("timer"));
}

/// `(limit, mechanism)` pairs: doctor's entries, or a run's `limit` events.
fn pairs(values: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = values
        .iter()
        .map(|v| {
            (
                v["limit"].as_str().unwrap().to_owned(),
                v["mechanism"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Doctor with run's flags reports, limit by limit, exactly what the run then applies: both
/// come from `plan_limits` over the same spec. Before the shared path, `--disk-io` read
/// cgroup-v1 + soft in doctor and soft alone in run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_exactly_the_mechanisms_run_applies() {
    let cases: [&[&str]; 3] = [
        &[
            "--memory",
            "200M",
            "--disk-io",
            "10M",
            "--pids",
            "64",
            "--nofile",
            "256",
        ],
        &[
            "--cpus",
            "0.5",
            "--disk-io",
            "10M",
            "--limits",
            "soft",
            "--nice",
            "5",
        ],
        &["--memory", "100M", "--timeout", "30s", "--limits", "cgroup"],
    ];
    // A usable credential, so doctor finds nothing amiss (the suite points it at the real CLI).
    let key = [(
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-doctor-mechanisms-000000000".to_owned(),
    )];
    for flags in cases {
        let doctor: Vec<&str> = ["doctor", "--json"].iter().chain(flags).copied().collect();
        let (out, err, exit) = pm(&doctor, &key).await;
        assert_eq!(code(&exit), 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out.join("\n")).unwrap();
        assert_eq!(v["limits"]["for"], "these settings", "{v}");
        let told = pairs(v["limits"]["entries"].as_array().unwrap());
        let run: Vec<&str> = ["run", "--events", "-"]
            .iter()
            .chain(flags)
            .chain(&["--", "true"])
            .copied()
            .collect();
        let (_, err, exit) = pm(&run, &[]).await;
        assert_eq!(code(&exit), 0, "{err}");
        let applied: Vec<serde_json::Value> = err
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "limit" && e["action"] == "applied")
            .collect();
        assert!(!told.is_empty());
        assert_eq!(told, pairs(&applied), "flags {flags:?}");
    }
    // What run refuses, doctor says it would refuse, with the same words.
    let flags = ["--pids", "64", "--limits", "soft"];
    let doctor: Vec<&str> = ["doctor", "--json"].iter().chain(&flags).copied().collect();
    let (out, _, _) = pm(&doctor, &[]).await;
    let v: serde_json::Value = serde_json::from_str(&out.join("\n")).unwrap();
    let refused = v["limits"]["error"].as_str().unwrap().to_owned();
    let run: Vec<&str> = ["run"]
        .iter()
        .chain(&flags)
        .chain(&["--", "true"])
        .copied()
        .collect();
    let (_, err, exit) = pm(&run, &[]).await;
    assert_eq!(code(&exit), 125, "{err}");
    assert!(err.contains(&refused), "doctor: {refused}; run: {err}");
}

/// The settings table is the one declaration: every setting is a flag of run, claude and
/// doctor, a CLAUDE_PM_* variable and a config key, and the README lists every flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_variables_config_keys_and_readme_agree_with_the_settings_table() {
    let readme = include_str!("../../../../README.md");
    let options = readme
        .split("OPTIONS:")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let mut readme_flags: Vec<&str> = options
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    readme_flags.sort();
    let mut table: Vec<String> = claude_manager::SETTINGS.iter().map(|s| s.flag()).collect();
    table.extend(["--config".to_owned(), "--events".to_owned()]);
    table.sort();
    assert_eq!(
        readme_flags, table,
        "README OPTIONS and the settings table differ"
    );
    for command in ["run", "claude", "doctor"] {
        let (out, _, _) = pm(&[command, "--help"], &[]).await;
        let help = out.join("\n");
        for s in claude_manager::SETTINGS {
            assert!(
                help.contains(&s.flag()),
                "{command} --help lacks {}",
                s.flag()
            );
        }
    }
    // Doctor without the real CLI's `--version` (a second per call); a variable given below
    // for the claude binary comes later and wins.
    let doctor = |args: Vec<String>, var: Option<(String, &'static str)>| async move {
        let args: Vec<&str> = std::iter::once("doctor")
            .chain(args.iter().map(String::as_str))
            .collect();
        let mut env = vec![("CLAUDE_PM_CLAUDE_BIN", "/bin/true".to_owned())];
        if let Some((name, value)) = var {
            env.push((leak(name), value.to_owned()));
        }
        let (_, err, exit) = pm(&args, &env).await;
        (code(&exit), err)
    };
    let dir = tempfile::tempdir().unwrap();
    for s in claude_manager::SETTINGS {
        let value = match s.value_name {
            _ if s.key == "nice" => "5",
            "CORES" => "1",
            "SIZE" => "64M",
            "N" => "20",
            "DUR" => "5s",
            "POLICY" => "never",
            "MODE" => "auto",
            "DIR" => "/sys/fs/cgroup/unified",
            "PATH" => "/bin/true",
            "HOW" => "env",
            "LEVEL" => "user",
            "NET" => "host",
            "FIRST-LAST" => "3900500-3900599",
            "KEY=VALUE" => "A=1",
            "KEY" => "HOME",
            other => panic!("no sample value for {other}"),
        };
        // A bad value through each source is refused, naming the key as that source spells it.
        let bad = if s.value_name == "PATH" { "" } else { "x\u{1}" };
        let (status, err) = doctor(vec![s.flag(), bad.to_owned()], None).await;
        assert_eq!(status, 125, "{}: {err}", s.flag());
        assert!(err.contains(&s.flag()), "{err}");
        // Accepted: not refused as a setting (doctor may still find the host lacking, status 1:
        // /bin/true is no Claude CLI).
        let (status, err) = doctor(vec![s.flag(), value.to_owned()], None).await;
        assert_ne!(status, 125, "{} {value}: {err}", s.flag());
        if !s.repeatable {
            let (status, err) = doctor(vec![], Some((s.variable(), bad))).await;
            assert_eq!(status, 125, "{}: {err}", s.variable());
            assert!(err.contains(&s.variable()), "{err}");
            let (status, err) = doctor(vec![], Some((s.variable(), value))).await;
            assert_ne!(status, 125, "{}={value}: {err}", s.variable());
        }
        let file = dir.path().join(format!("{}.toml", s.key));
        let config = vec!["--config".to_owned(), file.display().to_string()];
        std::fs::write(&file, format!("{} = {value:?}\n", s.key)).unwrap();
        let (status, err) = doctor(config.clone(), None).await;
        assert_ne!(status, 125, "{} in a config file: {err}", s.key);
        let toml_bad = bad.replace('\u{1}', "\\u0001");
        std::fs::write(&file, format!("{} = \"{toml_bad}\"\n", s.key)).unwrap();
        let (status, err) = doctor(config, None).await;
        assert_eq!(status, 125, "{err}");
        assert!(err.contains(&format!("{} in ", s.key)), "{err}");
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// What reaches the claude child, seen by a stand-in "claude" that prints its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_child_environment_is_clean_but_for_settings_and_asked_variables() {
    let env = vec![
        ("CLAUDE_PM_CLAUDE_BIN", "/usr/bin/env".to_owned()),
        (
            "ANTHROPIC_API_KEY",
            "sk-ant-api03-env-check-key-000000000000".to_owned(),
        ),
        (
            "CLAUDE_CODE_OAUTH_TOKEN",
            "sk-ant-oat01-env-check-competing-0000".to_owned(),
        ),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("UNRELATED_SECRET", "nope".to_owned()),
        ("WANTED", "yes".to_owned()),
    ];
    let (out, err, exit) = pm(
        &["claude", "--pass-env", "WANTED", "--env", "EXTRA=1", "--"],
        &env,
    )
    .await;
    assert_eq!(code(&exit), 0, "{err}");
    let vars: std::collections::BTreeMap<String, String> = out
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let has = |k: &str| vars.contains_key(k);
    assert_eq!(
        vars.get("ANTHROPIC_API_KEY").map(String::as_str),
        Some("sk-ant-api03-env-check-key-000000000000")
    );
    assert!(
        !has("CLAUDE_CODE_OAUTH_TOKEN"),
        "a competing credential leaked"
    );
    assert!(has("ANTHROPIC_BASE_URL") && has("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"));
    // (NODE_OPTIONS and CLAUDECODE never reach any child: claude-proc refuses them, tested there.)
    assert!(!has("UNRELATED_SECRET"), "{vars:?}");
    assert_eq!(vars.get("WANTED").map(String::as_str), Some("yes"));
    assert_eq!(vars.get("EXTRA").map(String::as_str), Some("1"));
    assert_eq!(
        vars.get("CLAUDE_CODE_ENTRYPOINT").map(String::as_str),
        Some("sdk-claude-pm")
    );
    let config_dir = vars.get("CLAUDE_CONFIG_DIR").expect("its own config dir");
    assert!(config_dir.contains("claude-pm-claude-"), "{config_dir}");
    assert!(
        !std::path::Path::new(config_dir).exists(),
        "the config dir was not removed"
    );
}

/// A new pseudo-terminal: the master (owned) and the slave's path.
pub(crate) fn open_pty() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt returns a new descriptor or -1; grantpt/unlockpt/ptsname_r act on it.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt failed");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(master), path)
    }
}

/// On a terminal, stderr carries a live status line (state changes, then samples with CPU, RSS
/// and process count) on a row of its own: the bottom row is reserved with a scroll region and
/// every draw saves and restores the cursor in one write, so the child's output, even half a
/// line written before a pause, is never drawn over or split. At the end the region is reset.
/// With stderr not a terminal (as in every other test here) nothing of it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_live_status_line_on_its_own_row() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut master, slave) = open_pty();
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the struct we pass.
    let set = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(set, 0);
    // Everything written to the terminal, read until the last writer has closed it (EIO).
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let child = "printf part; sleep 0.9; printf 'ial\\n'; sleep 0.2";
    let script = format!(
        "exec \"$0\" run --health-interval 100ms -- sh -c \"{child}\" </dev/null >{slave} 2>{slave}"
    );
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_claude-pm")])
        .env_policy(EnvPolicy::Inherit)
        .env_remove("CLAUDE_PM_LOG")
        .build()
        .unwrap();
    let exit = spawn(&config).await.unwrap().wait().await.unwrap();
    assert_eq!(code(&exit), 0);
    let shown = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    // The bottom row is reserved before the first draw, and given back at the end.
    let region = shown
        .find("\x1b[1;23r")
        .unwrap_or_else(|| panic!("no region in {shown:?}"));
    let first_draw = shown.find("\x1b[24;1H").unwrap();
    assert!(region < first_draw, "{shown:?}");
    let reset = shown
        .rfind("\x1b[r")
        .unwrap_or_else(|| panic!("no reset in {shown:?}"));
    assert!(
        reset > shown.rfind("\x1b[24;1H\x1b[2K[").unwrap_or(0),
        "{shown:?}"
    );
    // Every draw is one whole block: save, bottom row, text, restore.
    let mut draws = Vec::new();
    let mut rest = String::new();
    let mut tail = shown.as_str();
    while let Some(at) = tail.find("\x1b7") {
        rest.push_str(&tail[..at]);
        let block = &tail[at..];
        let end = block
            .find("\x1b8")
            .unwrap_or_else(|| panic!("a draw not closed: {block:?}"));
        draws.push(block[..end].to_owned());
        tail = &block[end + 2..];
    }
    rest.push_str(tail);
    // Outside the blocks, the child's bytes are whole: its half line, the pause, the rest.
    assert!(rest.contains("partial"), "{rest:?} (all: {shown:?})");
    let texts: Vec<&str> = draws
        .iter()
        .filter_map(|d| d.split("\x1b[24;1H\x1b[2K").nth(1))
        .collect();
    assert!(
        texts.iter().any(|d| d.contains(" running pid ")),
        "no state line in {shown:?}"
    );
    let samples: Vec<&&str> = texts.iter().filter(|d| d.contains("  cpu ")).collect();
    assert!(samples.len() >= 3, "too few samples in {shown:?}");
    // The tree (sh and its sleep) is seen whole, with a real RSS.
    assert!(samples.iter().any(|d| d.contains("procs 2")), "{samples:?}");
    let rss_mib = |d: &str| -> f64 {
        let after = d.split("rss").nth(1).unwrap_or("");
        after
            .trim_start()
            .split(' ')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or(0.0)
    };
    let top = samples.iter().map(|d| rss_mib(d)).fold(0.0, f64::max);
    assert!(top >= 1.0, "{samples:?}");

    let (_, err, exit) = pm(
        &["run", "--health-interval", "100ms", "--", "sleep", "0.4"],
        &[],
    )
    .await;
    assert_eq!(code(&exit), 0);
    assert!(!err.contains('\x1b'), "{err:?}");
}
