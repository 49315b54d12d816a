//! The command line, exactly as documented in the README.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Run {
        #[command(flatten)]
        options: Options,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "PROGRAM [ARGS...]")]
        program: Vec<String>,
    },
    /// Supervise the claude CLI with credentials injected.
    Claude {
        #[command(flatten)]
        options: Options,
        /// Arguments for claude, passed unchanged (after `--`).
        #[arg(last = true, value_name = "CLAUDE ARGS")]
        args: Vec<String>,
    },
    /// The claude binary and version, the auth source (redacted), the cgroup mode, and how
    /// each limit would be enforced.
    Doctor {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A config file whose settings apply.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The main job on the built-in stand-in API: real claude sessions, no account.
    Demo {
        /// How many sessions.
        #[arg(long, default_value_t = 4)]
        sessions: usize,
    },
}

/// The options of `run` and `claude`. Values are strings here; the manager's settings parser
/// checks them (one parser for flags, `CLAUDE_PM_*` and the config file).
#[derive(Debug, Args, Default)]
pub(crate) struct Options {
    /// CPU limit in cores (0.5 = half a core).
    #[arg(long, value_name = "CORES")]
    pub(crate) cpus: Option<String>,
    /// Memory limit of the whole tree (512K, 300M, 2G or bytes).
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory: Option<String>,
    /// Disk IO limit, bytes per second (SIZE).
    #[arg(long = "disk-io", value_name = "SIZE")]
    pub(crate) disk_io: Option<String>,
    /// Processes (and threads) in the tree.
    #[arg(long, value_name = "N")]
    pub(crate) pids: Option<String>,
    /// Open files per process.
    #[arg(long, value_name = "N")]
    pub(crate) nofile: Option<String>,
    /// Nice value (-20..19).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) nice: Option<String>,
    /// Wall-clock limit (1500ms, 30s, 10m).
    #[arg(long, value_name = "DUR")]
    pub(crate) timeout: Option<String>,
    /// SIGTERM-to-SIGKILL grace.
    #[arg(long, value_name = "DUR")]
    pub(crate) grace: Option<String>,
    /// never, on-failure or always.
    #[arg(long, value_name = "POLICY")]
    pub(crate) restart: Option<String>,
    /// Restarts allowed within the window.
    #[arg(long = "max-restarts", value_name = "N")]
    pub(crate) max_restarts: Option<String>,
    /// How often the tree is sampled.
    #[arg(long = "health-interval", value_name = "DUR")]
    pub(crate) health_interval: Option<String>,
    /// Hung after this long without progress while work is in flight.
    #[arg(long = "hang-after", value_name = "DUR")]
    pub(crate) hang_after: Option<String>,
    /// auto, cgroup or soft.
    #[arg(long, value_name = "MODE")]
    pub(crate) limits: Option<String>,
    /// Set a variable in the child (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
    /// Copy a variable from this environment (repeatable).
    #[arg(long = "pass-env", value_name = "KEY")]
    pub(crate) pass_env: Vec<String>,
    /// Write events as JSON lines to PATH (`-`: stderr).
    #[arg(long, value_name = "PATH|-")]
    pub(crate) events: Option<String>,
    /// A TOML config file.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl Options {
    /// The flags as (key, value) pairs for the settings parser.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut one = |key: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((key, v.clone()));
            }
        };
        one("cpus", &self.cpus);
        one("memory", &self.memory);
        one("disk_io", &self.disk_io);
        one("pids", &self.pids);
        one("nofile", &self.nofile);
        one("nice", &self.nice);
        one("timeout", &self.timeout);
        one("grace", &self.grace);
        one("restart", &self.restart);
        one("max_restarts", &self.max_restarts);
        one("health_interval", &self.health_interval);
        one("hang_after", &self.hang_after);
        one("limits", &self.limits);
        out.extend(self.env.iter().map(|e| ("env", e.clone())));
        out.extend(self.pass_env.iter().map(|e| ("pass_env", e.clone())));
        out
    }
}
