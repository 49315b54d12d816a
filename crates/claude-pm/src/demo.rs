//! `claude-pm demo`: the main job on the built-in stand-in API. Real claude sessions (the
//! pinned CLI, installed if missing) under limits and health checks, each fed turns over
//! stream-json, with live status and a summary; no account, no network. Where this host can
//! sandbox (root, namespaces), each session runs in its own sandbox under its own uid with
//! `network = api`: the stand-in is all it can reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::{say, tell};
use claude_manager::auth::{Credential, CredentialKind, Secret, StaticSource};
use claude_manager::proc::{OutputMode, StdinMode, STREAM_JSON_ARGS};
use claude_manager::{
    EventKind, ExitKind, HealthSpec, IsolationLevel, ManagerConfig, Network, ProcessManager,
    SessionReport, SessionSpec,
};
use claude_testkit::{offline_env, pinned_cli, StandInApi};

const PROMPTS: [&str; 2] = ["ping", "what does a process supervisor do?"];

pub(crate) async fn demo(sessions: usize) -> u8 {
    if sessions == 0 {
        tell!("claude-pm: --sessions must be at least 1");
        return crate::exit::USAGE;
    }
    let bin = match pinned_cli().await {
        Ok(bin) => bin,
        Err(e) => {
            tell!("claude-pm: {e}");
            return 1;
        }
    };
    let version = claude_manager::proc::binary_version(&bin, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let api = match StandInApi::start().await {
        Ok(api) => api,
        Err(e) => {
            tell!("claude-pm: {e}");
            return 1;
        }
    };
    let cap = sessions.min(4);
    say!("claude {version} at {}", bin.display());
    say!(
        "stand-in API at {}; {sessions} sessions, at most {cap} live at once, each under \
         memory 1G / pids 256 / nofile 4096 with health checks\n",
        api.base_url()
    );
    let isolation = demo_isolation();
    let work = std::env::temp_dir().join(format!("claude-pm-demo-{}", std::process::id()));
    let _ = claude_manager::proc::become_subreaper();
    let _ = claude_manager::start_watchdog().await;
    let manager = Arc::new(ProcessManager::new(ManagerConfig {
        max_live: cap,
        ..Default::default()
    }));
    let started = Instant::now();
    let printer = print_events(&manager, started);
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let mut spec = session_spec(i, &bin, &api);
        if isolation == IsolationLevel::Sandbox {
            // Each sandboxed session gets a working directory of its own to be granted.
            let dir = work.join(format!("session-{i}"));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tell!("claude-pm: cannot create {}: {e}", dir.display());
                return 1;
            }
            spec.cwd = Some(dir);
            spec.isolation = IsolationLevel::Sandbox;
            spec.network = Network::Api;
        }
        let handle = match manager.start(spec) {
            Ok(h) => h,
            Err(e) => {
                tell!("claude-pm: {e}");
                return 1;
            }
        };
        tasks.push(tokio::spawn(drive(handle)));
    }
    let mut rows = Vec::new();
    for task in tasks {
        match task.await {
            Ok(row) => rows.push(row),
            Err(e) => tell!("claude-pm: a session task failed: {e}"),
        }
    }
    printer.abort();
    let _ = std::fs::remove_dir_all(&work);
    let ok = summary(&rows) && rows.len() == sessions;
    let ok = crate::demo_daemon::show_daemon(&bin, &api).await && ok;
    say!(
        "\nstand-in answered {} API calls; total {:.1}s",
        api.message_calls().len(),
        started.elapsed().as_secs_f64()
    );
    if ok {
        say!("all {sessions} sessions answered every turn and ended cleanly, and the daemon's API ran a session and its turn; no process of theirs is left");
        0
    } else {
        say!("some sessions did not complete (see above)");
        1
    }
}

/// Sandbox the sessions where this host can, and say which.
fn demo_isolation() -> IsolationLevel {
    match claude_manager::sandbox::HostSupport::probe().missing(IsolationLevel::Sandbox) {
        None => {
            say!(
                "isolation: sandbox with network api (each session under its own uid, in its own \
                 namespaces; the stand-in API is all it can reach)\n"
            );
            IsolationLevel::Sandbox
        }
        Some(missing) => {
            say!("isolation: none (this host cannot sandbox: {missing})\n");
            IsolationLevel::None
        }
    }
}

/// Session `i`: the pinned CLI in stream-json mode against the stand-in, its own API key,
/// limits and health checks.
fn session_spec(i: usize, bin: &std::path::Path, api: &StandInApi) -> SessionSpec {
    let mut spec = SessionSpec::claude(format!("session-{i}"), STREAM_JSON_ARGS);
    if let claude_manager::Program::Claude { binary, .. } = &mut spec.program {
        *binary = Some(bin.to_path_buf());
    }
    for (k, v) in offline_env(&api.base_url()) {
        spec.env.push((k.into(), v.into()));
    }
    spec.credentials = Some(Arc::new(StaticSource::new(Credential::new(
        CredentialKind::ApiKey,
        Secret::new(format!("sk-ant-api03-claude-pm-demo-{i:08}")),
    ))));
    spec.limits.max_memory = Some(1 << 30);
    spec.limits.max_pids = Some(256);
    spec.limits.max_open_files = Some(4096);
    spec.limits.timeout = Some(Duration::from_secs(120));
    spec.health = Some(HealthSpec {
        interval: Duration::from_secs(1),
        hang_after: Some(Duration::from_secs(60)),
        ..HealthSpec::default()
    });
    spec.dirs.home = true;
    spec.stdin = StdinMode::Piped;
    spec.stdout = OutputMode::lines();
    spec.stderr = OutputMode::Discard;
    spec.grace = Duration::from_secs(3);
    spec
}

/// Every state change and exit as it happens.
fn print_events(manager: &ProcessManager, started: Instant) -> tokio::task::JoinHandle<()> {
    let mut events = manager.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let t = started.elapsed().as_secs_f64();
            match &e.kind {
                EventKind::State { to, .. } => say!(
                    "{t:6.2}s  {:<10} {}{}",
                    e.session,
                    to.as_str(),
                    to.pid().map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                EventKind::Exit(r) => say!(
                    "{t:6.2}s  {:<10} exit: {}{}",
                    e.session,
                    r.reason,
                    r.code.map(|c| format!(", code {c}")).unwrap_or_default()
                ),
                _ => {}
            }
        }
    })
}

/// The table of sessions; whether every one answered every turn and left nothing running.
fn summary(rows: &[Row]) -> bool {
    say!(
        "\n{:<10} {:<9} {:>5} {:>10} {:>9} {:>7}  {:<8} answers",
        "session",
        "state",
        "turns",
        "cost $",
        "peak MiB",
        "pid",
        "exit"
    );
    let mut ok = true;
    for row in rows {
        let (turns, cost) = row
            .report
            .as_ref()
            .and_then(|r| r.claude.as_ref())
            .map_or((0, 0.0), |c| (c.turns, c.cost_usd));
        let peak = row.report.as_ref().map_or(0, |r| r.max_rss_bytes) >> 20;
        let reason = row
            .report
            .as_ref()
            .map_or("none".to_owned(), |r| r.reason.to_string());
        let left = row.pid.is_some_and(still_running);
        ok &= row
            .report
            .as_ref()
            .is_some_and(|r| r.reason == ExitKind::Exited && r.code == Some(0))
            && row.answers.len() == PROMPTS.len()
            && !left;
        say!(
            "{:<10} {:<9} {:>5} {:>10.6} {:>9} {:>7}  {:<8} {}",
            row.name,
            if left { "LEFT" } else { "finished" },
            turns,
            cost,
            peak,
            row.pid.map_or("-".into(), |p| p.to_string()),
            reason,
            row.answers.join(" | ")
        );
    }
    ok
}

struct Row {
    name: String,
    pid: Option<u32>,
    answers: Vec<String>,
    report: Option<SessionReport>,
}

/// One session: a control ping, the turns, then stdin closed (the CLI exits 0).
async fn drive(mut handle: claude_manager::SessionHandle) -> Row {
    let name = handle.name().to_owned();
    let mut row = Row {
        name,
        pid: None,
        answers: Vec::new(),
        report: None,
    };
    if let Some(run) = handle.next_run().await {
        row.pid = Some(run.pid);
        if let Some(mut session) = run.session {
            let _ = session.initialize(Duration::from_secs(30)).await;
            for prompt in PROMPTS {
                match session.turn(prompt).await {
                    Ok(turn) => row.answers.push(
                        turn.result
                            .result
                            .unwrap_or_default()
                            .chars()
                            .take(40)
                            .collect(),
                    ),
                    Err(e) => {
                        row.answers.push(format!("error: {e}"));
                        break;
                    }
                }
            }
            session.close().await;
        }
    }
    row.report = handle.wait().await.ok();
    row
}

fn still_running(pid: u32) -> bool {
    use claude_manager::health::{ProcState, Sampler};
    Sampler::default()
        .process(pid)
        .is_ok_and(|p| p.state != ProcState::Zombie)
}
