//! `claude-pm run` and `claude-pm claude`: one supervised session in the foreground.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use claude_manager::auth::{TokenChain, TokenManager};
use claude_manager::proc::{OutputEvent, OutputMode, StdinMode};
use claude_manager::{
    EventKind, ManagerConfig, ManagerEvent, ProcessManager, SessionHandle, SessionSpec, Settings,
    SettingsSource,
};
use tokio::sync::broadcast;

use crate::cli::{RunOptions, SettingsArgs};
use crate::exit;
use crate::output::tell;

/// An error and every cause under it, as one line (`failed to read the config file x: No such
/// file or directory (os error 2)`).
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The settings in force: the config file, then `CLAUDE_PM_*`, then the flags.
pub(crate) fn load_settings(args: &SettingsArgs) -> Result<Settings, claude_manager::Error> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let env = Settings::from_env(&|k| std::env::var_os(k))?;
    let mut flags = Settings::default();
    for (key, value) in &args.values {
        flags.set(key, value, &SettingsSource::Flag)?;
    }
    Ok(file.merged(env).merged(flags))
}

/// `spec` with the settings applied, and the manager's configuration; on a bad setting the
/// message is printed and the usage status returned.
pub(crate) fn configure(
    args: &SettingsArgs,
    mut spec: SessionSpec,
) -> Result<(SessionSpec, ManagerConfig), u8> {
    let mut manager = ManagerConfig::default();
    load_settings(args)
        .and_then(|s| s.apply(&mut spec, &mut manager))
        .map_err(|e| {
            tell!("claude-pm: {}", describe(&e));
            exit::USAGE
        })?;
    Ok((spec, manager))
}

pub(crate) async fn run(options: RunOptions, program: Vec<String>) -> u8 {
    let Some((first, args)) = program.split_first() else {
        tell!("claude-pm: run needs a program after --");
        return exit::USAGE;
    };
    let name = Path::new(first)
        .file_name()
        .map_or_else(|| first.clone(), |n| n.to_string_lossy().into_owned());
    let mut spec = SessionSpec::command(name, first, args);
    spec.stdin = StdinMode::Inherit;
    spec.stdout = OutputMode::Inherit;
    spec.stderr = OutputMode::Inherit;
    match configure(&options.settings, spec) {
        Ok((spec, manager)) => foreground(&options, spec, manager, false).await,
        Err(code) => code,
    }
}

pub(crate) async fn claude(options: RunOptions, args: Vec<String>) -> u8 {
    let mut spec = SessionSpec::claude("claude", args);
    spec.stdin = StdinMode::Inherit;
    spec.stderr = OutputMode::Inherit;
    // Settings first: a bad config file is reported as such, not as a missing credential.
    let (mut spec, manager) = match configure(&options.settings, spec) {
        Ok(configured) => configured,
        Err(code) => return code,
    };
    let chain = TokenChain::cli_default(&|k| std::env::var_os(k));
    match chain.get_token().await {
        Ok(_) => {
            if let Some(report) = chain.report() {
                tracing::info!(source = %report.source, kind = %report.kind, "credential");
            }
            spec.credentials = Some(std::sync::Arc::new(chain));
        }
        Err(claude_manager::auth::Error::NoCredential { .. }) => {
            tell!(
                "claude-pm: no credential found: set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN \
                 (claude setup-token), or log in with claude"
            );
            return exit::USAGE;
        }
        Err(e) => {
            tell!("claude-pm: {}", describe(&e));
            return exit::USAGE;
        }
    }
    foreground(&options, spec, manager, true).await
}

/// Where `--events` go.
enum EventSink {
    Stderr,
    File(std::fs::File),
}

impl EventSink {
    fn open(target: &str) -> Result<EventSink, String> {
        if target == "-" {
            return Ok(EventSink::Stderr);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .map(EventSink::File)
            .map_err(|e| format!("invalid --events: {target:?} ({e})"))
    }

    fn write(&mut self, event: &ManagerEvent) {
        let line = format!("{}\n", event.to_json());
        let _ = match self {
            EventSink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            EventSink::File(f) => f.write_all(line.as_bytes()),
        };
    }
}

async fn foreground(
    options: &RunOptions,
    spec: SessionSpec,
    config: ManagerConfig,
    forward_stdout: bool,
) -> u8 {
    let mut sink = match options.events.as_deref().map(EventSink::open).transpose() {
        Ok(sink) => sink,
        Err(e) => {
            tell!("claude-pm: {e}");
            return exit::USAGE;
        }
    };
    let status_line = std::io::stderr().is_terminal() && !matches!(sink, Some(EventSink::Stderr));
    let _ = claude_manager::proc::become_subreaper();
    if let Err(e) = claude_manager::start_watchdog().await {
        tracing::warn!(error = %e, "no watchdog: a killed claude-pm may leave descendants");
    }
    let manager = ProcessManager::new(config);
    let mut events = manager.subscribe();
    let mut handle = match manager.start(spec) {
        Ok(h) => h,
        Err(claude_manager::Error::Process(
            e @ claude_manager::proc::Error::ProgramNotFound { .. },
        )) => {
            tell!("claude-pm: {e}");
            return exit::NOT_FOUND;
        }
        Err(claude_manager::Error::Process(
            e @ claude_manager::proc::Error::NotExecutable { .. },
        )) => {
            tell!("claude-pm: {e}");
            return exit::NOT_EXECUTABLE;
        }
        Err(e) => {
            tell!("claude-pm: {}", describe(&e));
            return exit::USAGE;
        }
    };
    let report = pump(
        &mut handle,
        &mut events,
        &mut sink,
        status_line,
        forward_stdout,
    )
    .await;
    match report {
        Some(report) => {
            if !report.reason.eq(&claude_manager::ExitKind::Exited) {
                tell!("claude-pm: {} ({})", report.reason, report.detail);
            }
            exit::status(&report)
        }
        None => {
            tell!("claude-pm: the session ended without a report");
            exit::NO_REPORT
        }
    }
}

/// Drive the session to its end: copy each run's stdout (Claude), write events, draw the
/// status line, stop on SIGINT/SIGTERM.
async fn pump(
    handle: &mut SessionHandle,
    events: &mut broadcast::Receiver<ManagerEvent>,
    sink: &mut Option<EventSink>,
    status_line: bool,
    forward_stdout: bool,
) -> Option<claude_manager::SessionReport> {
    let started = Instant::now();
    let mut signals = Signals::new();
    let mut copy: Option<tokio::task::JoinHandle<()>> = None;
    let mut runs_open = true;
    let mut report = None;
    let mut drawn = false;
    loop {
        tokio::select! {
            // Runs first: a run is published before the exit event, and its stdout must be taken
            // before the exit event ends this loop, or a quick child's output would be dropped
            // (an unbiased select lost it about once in 300 runs).
            biased;
            run = handle.next_run(), if runs_open => match run {
                Some(mut run) => {
                    if forward_stdout {
                        if let Some(mut out) = run.stdout.take() {
                            let previous = copy.take();
                            copy = Some(tokio::spawn(async move {
                                if let Some(p) = previous { let _ = p.await; }
                                let mut stdout = std::io::stdout();
                                while let Some(event) = out.recv().await {
                                    let bytes = match event {
                                        OutputEvent::Line(mut l) => { l.push(b'\n'); l }
                                        OutputEvent::Oversized { mut fragment, end } => {
                                            if end { fragment.push(b'\n'); }
                                            fragment
                                        }
                                        OutputEvent::Unterminated(b) | OutputEvent::Chunk(b) => b,
                                        _ => Vec::new(),
                                    };
                                    if stdout.write_all(&bytes).and_then(|()| stdout.flush()).is_err() {
                                        break;
                                    }
                                }
                            }));
                        }
                    }
                }
                None => runs_open = false,
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(sink) = sink.as_mut() {
                        sink.write(&event);
                    }
                    if status_line {
                        drawn |= draw(&event, started);
                    }
                    if let EventKind::Exit(r) = event.kind {
                        report = Some(r);
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = signals.next() => {
                handle.request_stop();
            }
        }
    }
    if drawn {
        crate::output::stderr_raw(b"\r\x1b[K");
    }
    if let Some(copy) = copy {
        let _ = copy.await;
    }
    match report {
        Some(r) => Some(r),
        None => handle.wait().await.ok(),
    }
}

/// The live status line: state, pid, CPU%, RSS, elapsed. True if something was drawn.
fn draw(event: &ManagerEvent, started: Instant) -> bool {
    let elapsed = started.elapsed().as_secs_f64();
    let line = match &event.kind {
        EventKind::State { to, .. } => format!(
            "[{}] {} pid {}  {:.1}s",
            event.session,
            to.as_str(),
            to.pid().map_or("-".into(), |p| p.to_string()),
            elapsed
        ),
        EventKind::Sample {
            cpu_percent,
            rss_bytes,
            processes,
            ..
        } => format!(
            "[{}] running  cpu {:>5.1}%  rss {:>6.1} MiB  procs {}  {:.1}s",
            event.session,
            cpu_percent,
            *rss_bytes as f64 / (1 << 20) as f64,
            processes,
            elapsed
        ),
        _ => return false,
    };
    crate::output::stderr_raw(format!("\r\x1b[K{line}").as_bytes());
    true
}

/// SIGINT and SIGTERM as a stream.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        let int = async {
            match self.int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let term = async {
            match self.term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => {}
            _ = term => {}
        }
    }
}
