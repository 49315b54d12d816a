//! `claude-pm run` and `claude-pm claude`: one supervised session in the foreground.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use claude_manager::auth::{TokenChain, TokenManager};
use claude_manager::proc::{OutputMode, StdinMode};
use claude_manager::{ManagerConfig, ProcessManager, SessionSpec, Settings, SettingsSource};

use crate::cli::{RunOptions, SettingsArgs};
use crate::exit;
use crate::output::tell;
use crate::pump::{pump, EventSink, PumpSignals};
use crate::status_line::StatusLine;
use crate::terminal::Terminal;

pub(crate) use claude_manager::describe_error as describe;

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

pub(crate) async fn run(options: RunOptions, program: Vec<OsString>) -> u8 {
    let Some((first, args)) = program.split_first() else {
        tell!("claude-pm: run needs a program after --");
        return exit::USAGE;
    };
    if first.is_empty() {
        tell!("claude-pm: run needs a program after --, not an empty name");
        return exit::USAGE;
    }
    let name = Path::new(first)
        .file_name()
        .unwrap_or(first)
        .to_string_lossy()
        .into_owned();
    let mut spec = SessionSpec::command(name, first, args);
    spec.stdin = StdinMode::Inherit;
    spec.stdout = OutputMode::Inherit;
    spec.stderr = OutputMode::Inherit;
    match configure(&options.settings, spec) {
        Ok((spec, manager)) => foreground(&options, spec, manager, false).await,
        Err(code) => code,
    }
}

pub(crate) async fn claude(options: RunOptions, args: Vec<OsString>) -> u8 {
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
        Ok(credential) => {
            let source = chain.report().map(|r| r.source).unwrap_or_default();
            // A malformed or expired credential is refused here, naming the problem, not
            // after minutes of the CLI's own retries.
            if let Err(e) = chain.validate_token(&credential) {
                tell!(
                    "claude-pm: the credential from {source} is unusable: {}",
                    describe(&e)
                );
                return exit::USAGE;
            }
            tracing::info!(%source, "credential");
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

async fn foreground(
    options: &RunOptions,
    spec: SessionSpec,
    config: ManagerConfig,
    forward_stdout: bool,
) -> u8 {
    let sink = match options.events.as_deref().map(EventSink::open).transpose() {
        Ok(sink) => sink,
        Err(e) => {
            tell!("claude-pm: {e}");
            return exit::USAGE;
        }
    };
    // The status line only where the child cannot be an interactive program on the same
    // terminal (stdin is not one): it has a row of its own there, never over the child's bytes.
    let status_line = (std::io::stderr().is_terminal()
        && !std::io::stdin().is_terminal()
        && !sink.as_ref().is_some_and(EventSink::is_stderr))
    .then(StatusLine::start)
    .flatten();
    // Job control when the child shares claude-pm's terminal; each run takes the terminal's
    // foreground itself (before exec, so it never reads from the background first) while
    // claude-pm holds it.
    let terminal = matches!(spec.stdin, StdinMode::Inherit)
        .then(Terminal::of_stdin)
        .flatten();
    let mut spec = spec;
    spec.foreground_terminal = terminal.as_ref().is_some_and(Terminal::in_foreground);
    let _ = claude_manager::proc::become_subreaper();
    if let Err(e) = claude_manager::start_watchdog().await {
        tracing::warn!(error = %e, "no watchdog: a killed claude-pm may leave descendants");
    }
    let signals = PumpSignals::register();
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
    let ended = pump(
        signals,
        &mut handle,
        &mut events,
        sink,
        status_line,
        forward_stdout,
        terminal,
    )
    .await;
    match ended.report {
        Some(report) => {
            if report.reason != claude_manager::ExitKind::Exited && !ended.reader_gone {
                tell!("claude-pm: {}: {}", report.reason, report.detail);
            }
            if ended.reader_gone {
                // The output module turns the failed write into the status: 141 for a reader
                // that went away, 1 with a message for a full disk.
                0
            } else {
                exit::status(&report)
            }
        }
        None => {
            tell!("claude-pm: the session ended without a report");
            exit::NO_REPORT
        }
    }
}
