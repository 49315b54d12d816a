//! `claude-testkit`: run the stand-in API from a shell, or install the pinned CLI.
//!
//! ```text
//! claude-testkit serve [--port N] [--behaviour reply|unauthorized|rate-limited|overloaded|slow|stall]
//! claude-testkit claude-cli      install (if needed) and print the pinned CLI's path
//! ```
#![expect(
    clippy::print_stdout,
    reason = "a command-line tool prints its answers"
)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use claude_testkit::{offline_env, pinned_cli, Behaviour, StandInApi};

#[derive(Parser)]
#[command(
    name = "claude-testkit",
    version,
    about = "A stand-in Anthropic API for tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the stand-in API on 127.0.0.1 until interrupted.
    Serve {
        /// The port (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// What every messages request gets.
        #[arg(long, value_enum, default_value_t = Mode::Reply)]
        behaviour: Mode,
    },
    /// Install the pinned claude CLI if needed and print its path.
    ClaudeCli,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Reply,
    Unauthorized,
    RateLimited,
    Overloaded,
    Slow,
    Stall,
}

impl Mode {
    fn behaviour(self) -> Behaviour {
        match self {
            Mode::Reply => Behaviour::default(),
            Mode::Unauthorized => Behaviour::Unauthorized,
            Mode::RateLimited => Behaviour::RateLimited {
                retry_after_secs: 30,
            },
            Mode::Overloaded => Behaviour::Overloaded,
            Mode::Slow => Behaviour::SlowStream {
                delay: Duration::from_millis(500),
            },
            Mode::Stall => Behaviour::Stall,
        }
    }
}

/// SIGINT or SIGTERM (a shell starts background jobs with SIGINT ignored).
async fn wait_for_interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { port, behaviour } => {
            let api = match StandInApi::start_on(port).await {
                Ok(api) => api,
                Err(e) => {
                    eprintln!("claude-testkit: {e}");
                    return ExitCode::from(1);
                }
            };
            api.set_default(behaviour.behaviour());
            for (name, value) in offline_env(&api.base_url()) {
                println!("export {name}={value}");
            }
            wait_for_interrupt().await;
            eprintln!("claude-testkit: answered {} requests", api.calls().len());
            ExitCode::SUCCESS
        }
        Command::ClaudeCli => match pinned_cli().await {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("claude-testkit: {e}");
                ExitCode::from(1)
            }
        },
    }
}
