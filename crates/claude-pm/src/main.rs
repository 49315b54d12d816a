//! `claude-pm`: supervise the Claude Code CLI or any program from a shell. See the README for
//! the surface; the exit statuses are one table in `exit.rs`.

mod cli;
mod demo;
mod demo_daemon;
mod doctor;
mod exit;
mod output;
mod pump;
mod service;
mod status_line;
mod supervise;
mod terminal;
mod top;

use std::process::ExitCode;

use clap::Parser;

use crate::output::tell;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    init_tracing();
    raise_nofile();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tell!("claude-pm: cannot start the runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            cli::Command::Run { options, program } => supervise::run(options, program).await,
            cli::Command::Claude { options, args } => supervise::claude(options, args).await,
            cli::Command::Doctor { json, settings } => doctor::doctor(json, settings).await,
            cli::Command::Demo { sessions } => demo::demo(sessions).await,
            cli::Command::Serve {
                settings,
                socket_group,
                listen,
                token_file,
                token_attempts,
                log_size,
            } => {
                let tcp = service::Tcp {
                    listen,
                    token_file,
                    token_attempts,
                };
                service::serve(settings, socket_group, tcp, &log_size).await
            }
            cli::Command::Ps { daemon, json } => service::ps(&daemon, json).await,
            cli::Command::Top { daemon } => service::top(&daemon).await,
            cli::Command::Start {
                name,
                url,
                token_file,
                claude,
                settings,
                program,
            } => {
                let daemon = cli::DaemonArgs {
                    state_dir: None,
                    url,
                    token_file,
                };
                service::start(daemon, name, claude, &settings, program).await
            }
            cli::Command::Stop { daemon, name } => service::stop(&daemon, &name).await,
            cli::Command::Restart { daemon, name } => service::restart(&daemon, &name).await,
            cli::Command::Rm { daemon, name } => service::rm(&daemon, &name).await,
            cli::Command::Logs {
                daemon,
                follow,
                name,
            } => service::logs(&daemon, &name, follow).await,
            cli::Command::Reload { daemon } => service::reload(&daemon).await,
            cli::Command::Events {
                daemon,
                follow,
                since,
            } => service::events(&daemon, follow, since).await,
            cli::Command::Drain { daemon } => service::drain(&daemon).await,
        }
    });
    ExitCode::from(output::exit_status(code))
}

/// Logs to stderr when `CLAUDE_PM_LOG` is set (`info`, `debug`, ...); quiet otherwise.
fn init_tracing() {
    let Ok(level) = std::env::var("CLAUDE_PM_LOG") else {
        return;
    };
    let level = match level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raise the open-files soft limit to the hard one: a supervisor holds a few descriptors per
/// child (pipes, pidfd, `/proc` files of the health monitor).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
