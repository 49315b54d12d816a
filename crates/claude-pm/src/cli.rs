//! The command line. The settings flags are not written here: they are generated from
//! claude-manager's settings table ([`claude_manager::SETTINGS`]), the one place each setting
//! is declared, so flags, variables, config keys and the README cannot drift apart.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, Parser, Subcommand};
use claude_manager::SETTINGS;

/// Supervise the Claude Code CLI or any program: limits, health checks, restarts, events.
#[derive(Debug, Parser)]
#[command(name = "claude-pm", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Supervise any program.
    #[command(after_help = crate::exit::help())]
    Run {
        #[command(flatten)]
        options: RunOptions,
        /// The program and its arguments (after `--`), passed on byte for byte.
        #[arg(
            last = true,
            required = true,
            value_name = "PROGRAM [ARGS...]",
            value_parser = clap::value_parser!(std::ffi::OsString)
        )]
        program: Vec<std::ffi::OsString>,
    },
    /// Supervise the claude CLI with credentials injected.
    #[command(after_help = crate::exit::help())]
    Claude {
        #[command(flatten)]
        options: RunOptions,
        /// Arguments for claude, passed on byte for byte (after `--`).
        #[arg(
            last = true,
            value_name = "CLAUDE ARGS",
            value_parser = clap::value_parser!(std::ffi::OsString)
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// The claude binary and version, the auth source (redacted), the cgroup mode, and how
    /// each limit would be enforced; with limit settings, exactly what `run` would apply.
    Doctor {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// The main job on the built-in stand-in API: real claude sessions, no account.
    Demo {
        /// How many sessions.
        #[arg(long, default_value_t = 4)]
        sessions: usize,
    },
    /// Run the daemon: the config file's `[[session]]` tables started at boot, an HTTP API on
    /// `STATE_DIR/claude-pm.sock`; SIGTERM or SIGINT stops every session, then it exits.
    Serve {
        #[command(flatten)]
        settings: SettingsArgs,
        /// A group (numeric gid) whose members may use the socket besides root and this user.
        #[arg(long, value_name = "GID")]
        socket_group: Option<u32>,
        /// Also serve the API on TCP (`PORT` means 127.0.0.1:PORT); needs --token-file.
        #[arg(long, value_name = "[HOST:]PORT")]
        listen: Option<String>,
        /// The bearer token TCP requests must carry (a file only its owner may read).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Wrong tokens a client address may send in a row before it gets one more try every
        /// 6 s (behind a reverse proxy every client shares the proxy's address); 0 counts
        /// nothing.
        #[arg(long, value_name = "N", default_value_t = claude_daemon::WRONG_TOKENS_ALLOWED)]
        token_attempts: u32,
        /// The size at which a session's log file (`STATE_DIR/logs/NAME.log`) is rotated; three
        /// old files are kept.
        #[arg(long, value_name = "SIZE", default_value = "8M")]
        log_size: String,
    },
    /// A live full-screen view of the daemon's sessions (on a terminal): CPU, memory,
    /// health, restarts; keys to stop, restart and follow logs.
    Top {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// The daemon's sessions as a table.
    Ps {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Create a session in the daemon: settings as flags (as for run; --state-dir finds the
    /// daemon), the program after --.
    /// With --config FILE, the session is that file's one table (name, command or claude,
    /// settings), flags and the words after -- over it.
    Start {
        /// The session's unique name.
        #[arg(long)]
        name: Option<String>,
        /// The daemon's API on TCP (with --token-file or CLAUDE_PM_TOKEN) instead of its socket.
        #[arg(long, value_name = "http://HOST:PORT")]
        url: Option<String>,
        /// The bearer token for --url.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The program is the claude CLI (the words after -- are its arguments).
        #[arg(long)]
        claude: bool,
        #[command(flatten)]
        settings: SettingsArgs,
        /// The program and its arguments (claude's arguments with --claude).
        #[arg(last = true, value_name = "PROGRAM [ARGS...]")]
        program: Vec<String>,
    },
    /// Stop a session of the daemon (its tree within its grace); it stays listed.
    Stop {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The session.
        name: String,
    },
    /// Restart a session of the daemon (a finished one starts again).
    Restart {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The session.
        name: String,
    },
    /// Stop a session of the daemon and forget it.
    Rm {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The session.
        name: String,
    },
    /// The daemon's events as JSON lines, each with its sequence number (`lagged` records
    /// count what a slow reader missed; a `reset` record says the numbers started afresh).
    Events {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Keep streaming new events.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this sequence number (resume where a reader stopped).
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Re-read the daemon's config file and apply the difference (as SIGHUP does).
    Reload {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Stop every session of the daemon and take no new ones; the daemon keeps running.
    Drain {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// The last output lines the daemon kept of a session (with -f, then each new one).
    Logs {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Keep streaming new lines.
        #[arg(short, long)]
        follow: bool,
        /// The session.
        name: String,
    },
}

/// Where the operator commands find the daemon.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct DaemonArgs {
    /// The daemon's state directory (its socket is claude-pm.sock there); default
    /// CLAUDE_PM_STATE_DIR, else /var/lib/claude-pm as root, else $XDG_STATE_HOME/claude-pm.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// The daemon's API on TCP (with --token-file or CLAUDE_PM_TOKEN) instead of its socket.
    #[arg(long, value_name = "http://HOST:PORT")]
    pub(crate) url: Option<String>,
    /// The bearer token for --url.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
}

/// The options of `run` and `claude`.
#[derive(Debug, Args, Default)]
pub(crate) struct RunOptions {
    #[command(flatten)]
    pub(crate) settings: SettingsArgs,
    /// Write events as JSON lines to PATH (`-`: stderr).
    #[arg(long, value_name = "PATH|-")]
    pub(crate) events: Option<String>,
}

/// Every setting of the table as a flag, and `--config FILE`. Values stay text here; the
/// settings parser checks them (one parser for flags, `CLAUDE_PM_*` and the config file).
#[derive(Debug, Default, Clone)]
pub(crate) struct SettingsArgs {
    /// (key, value), every value of a repeatable setting in the order given.
    pub(crate) values: Vec<(&'static str, String)>,
    /// `--config FILE`.
    pub(crate) config: Option<PathBuf>,
}

const HEADING: &str = "Settings (also CLAUDE_PM_<KEY> variables and keys of --config)";

impl Args for SettingsArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for s in SETTINGS {
            cmd = cmd.arg(
                Arg::new(s.key)
                    .long(s.long())
                    .value_name(s.value_name)
                    .help(s.help)
                    .allow_negative_numbers(true)
                    .help_heading(HEADING)
                    .action(match s.repeatable {
                        true => ArgAction::Append,
                        false => ArgAction::Set,
                    }),
            );
        }
        cmd.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("A TOML config file: the settings' keys with `_` (memory = \"2G\")")
                .help_heading(HEADING),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SettingsArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingsArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for s in SETTINGS {
            if let Some(values) = matches.get_many::<String>(s.key) {
                self.values.extend(values.map(|v| (s.key, v.clone())));
            }
        }
        if let Some(config) = matches.get_one::<PathBuf>("config") {
            self.config = Some(config.clone());
        }
        Ok(())
    }
}
