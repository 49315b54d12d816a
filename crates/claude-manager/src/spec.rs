//! What a session runs and under which rules.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claude_auth::{Delivery, TokenManager};
use claude_limits::{LimitOptions, ResourceLimits};
use claude_proc::{OutputMode, RestartPolicy, StdinMode};
use claude_sandbox::{Level as IsolationLevel, Network, UidRange};

/// What a session runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Program {
    /// Any program, with the caller's environment.
    Command {
        /// A path, or a name looked up on `PATH`.
        program: PathBuf,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// The Claude CLI with a clean environment (its settings variables passed through, auth
    /// variables only through the credential), its stdout watched for API failures.
    Claude {
        /// The binary; `None`: `$CLAUDE_PM_CLAUDE_BIN`, else `claude` on `PATH`.
        binary: Option<PathBuf>,
        /// The CLI's arguments, passed unchanged.
        args: Vec<OsString>,
    },
}

impl Program {
    /// The arguments of a Claude program followed by `options`' flags; refused if `args`
    /// already give one of those flags (two sources of one setting would be a guess). A
    /// command's arguments, unchanged.
    pub(crate) fn args_with(
        &self,
        options: &claude_proc::ClaudeOptions,
    ) -> Result<Vec<OsString>, claude_proc::Error> {
        match self {
            Program::Command { args, .. } => Ok(args.clone()),
            Program::Claude { args, .. } => {
                let extra = options.to_args()?;
                for token in &extra {
                    let flag = token.split_once('=').map_or(token.as_str(), |(f, _)| f);
                    let prefix = format!("{flag}=");
                    let given = args.iter().any(|a| {
                        a.to_str()
                            .is_some_and(|a| a == flag || a.starts_with(&prefix))
                    });
                    if given {
                        return Err(claude_proc::Error::InvalidOption {
                            option: "args",
                            why: format!("{flag} is given in the arguments and by an option"),
                        });
                    }
                }
                let mut all = args.clone();
                all.extend(extra.into_iter().map(OsString::from));
                Ok(all)
            }
        }
    }

    /// Whether this is a stream-json Claude session (turns and control requests on stdin).
    pub(crate) fn is_stream_session(&self) -> bool {
        match self {
            Program::Claude { args, .. } => {
                args.windows(2)
                    .any(|w| w[0] == "--input-format" && w[1] == "stream-json")
                    || args.iter().any(|a| a == "--input-format=stream-json")
            }
            Program::Command { .. } => false,
        }
    }

    /// Whether `flag` has `value` (`--flag value` or `--flag=value`).
    fn has_option(&self, flag: &str, value: &str) -> bool {
        let Program::Claude { args, .. } = self else {
            return false;
        };
        let joined = format!("{flag}={value}");
        args.windows(2).any(|w| w[0] == flag && w[1] == value) || args.iter().any(|a| *a == *joined)
    }

    /// Whether the CLI reports API errors on stdout as they happen (stream-json output: its
    /// `api_retry` lines). In json and text output it prints nothing until it gives up, minutes
    /// later; the manager then learns of them from the CLI's debug log.
    pub(crate) fn reports_api_errors(&self) -> bool {
        self.has_option("--output-format", "stream-json")
    }

    /// Whether the caller already asked for the CLI's debug output (the manager then leaves
    /// it alone).
    pub(crate) fn debugs(&self) -> bool {
        match self {
            Program::Claude { args, .. } => args.iter().any(|a| {
                let a = a.to_string_lossy();
                a == "-d"
                    || a == "--debug"
                    || a.starts_with("--debug=")
                    || a.starts_with("--debug-file")
            }),
            Program::Command { .. } => false,
        }
    }

    /// Whether this is a one-shot `claude -p` run (work is in flight from the start until its
    /// result), as opposed to a stream-json session fed turns on stdin.
    pub(crate) fn is_one_shot_claude(&self) -> bool {
        match self {
            Program::Claude { args, .. } => {
                args.iter().any(|a| a == "-p" || a == "--print") && !self.is_stream_session()
            }
            Program::Command { .. } => false,
        }
    }
}

/// Health checking and hang detection for a session.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSpec {
    /// How often the tree is sampled.
    pub interval: Duration,
    /// Work in flight with no progress (output, CPU, IO) for this long: hung, then restarted
    /// per the policy. For Claude, work is in flight during a turn; for any other program,
    /// for the whole run. `None`: no hang detection.
    pub hang_after: Option<Duration>,
    /// Tree RSS above this is unhealthy (the session is stopped and restarted per policy).
    pub max_rss_bytes: Option<u64>,
    /// Stop and restart a session whose status is unhealthy (liveness, RSS, hang, probe).
    pub act_on_unhealthy: bool,
    /// For stream-json Claude sessions: a liveness probe that sends the CLI a control request
    /// (`initialize`, answered without API traffic) and expects the answer within the
    /// timeout; failing `failure_threshold` times in a row is unhealthy. `None`: no probe.
    pub probe: Option<claude_health::ProbeSpec>,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            interval: Duration::from_secs(1),
            hang_after: None,
            max_rss_bytes: None,
            act_on_unhealthy: true,
            probe: Some(claude_health::ProbeSpec {
                initial_delay: Duration::from_secs(5),
                period: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
                failure_threshold: 3,
                success_threshold: 1,
            }),
        }
    }
}

/// Per-session directories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDirs {
    /// Give the session its own empty `CLAUDE_CONFIG_DIR` (a temporary directory removed at
    /// the end). On by default for Claude sessions: concurrent CLIs sharing one config corrupt it.
    pub config_dir: bool,
    /// Also point `HOME` at that directory.
    pub home: bool,
    /// The session's own directory at this path instead of a temporary one: created (mode
    /// 0700) if missing and kept at the end, so the conversations its CLI saved outlive the
    /// manager and a service started again can resume them. Whoever sets it removes it.
    pub root: Option<PathBuf>,
}

/// Everything about one session. Build with [`SessionSpec::command`] or
/// [`SessionSpec::claude`], then set fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionSpec {
    /// A name for reports and events (unique names make logs readable; not enforced).
    pub name: String,
    /// What runs.
    pub program: Program,
    /// The working directory (default: the manager's).
    pub cwd: Option<PathBuf>,
    /// Variables to set (`--env KEY=VALUE`).
    pub env: Vec<(OsString, OsString)>,
    /// Variables to copy from the manager's environment (`--pass-env KEY`).
    pub pass_env: Vec<OsString>,
    /// Resource limits.
    pub limits: ResourceLimits,
    /// How limits are enforced.
    pub limit_options: LimitOptions,
    /// When and how a run that ended is started again (including the pause after a run the
    /// API rate-limited, [`RestartPolicy::rate_limit_pause`]).
    pub restart: RestartPolicy,
    /// SIGTERM-to-SIGKILL grace.
    pub grace: Duration,
    /// Health checking; `None` turns sampling off (no sample events, no peak RSS).
    pub health: Option<HealthSpec>,
    /// Where the credential comes from (Claude sessions); `None`: the child gets none from us.
    pub credentials: Option<Arc<dyn TokenManager>>,
    /// How the credential reaches the child.
    pub delivery: Delivery,
    /// Per-session directories.
    pub dirs: SessionDirs,
    /// How far the session is kept from the host and other sessions (`none`, `user`,
    /// `sandbox`; see [`claude_sandbox::Level`]).
    pub isolation: IsolationLevel,
    /// Where an isolated session's uid comes from.
    pub uid_range: UidRange,
    /// A sandboxed session's network: the host's, or only the API (`ANTHROPIC_BASE_URL`).
    pub network: Network,
    /// The child's stdin.
    pub stdin: StdinMode,
    /// With an inherited stdin that is the manager's controlling terminal: each run's process
    /// group takes the terminal's foreground before exec, as a shell's foreground job (set it
    /// only while the manager holds the foreground; `claude-pm` does for an interactive run).
    pub foreground_terminal: bool,
    /// The child's stdout: `Lines` or `Chunks` hand it to the caller through each [`crate::Run`];
    /// `Inherit` passes it through untouched.
    pub stdout: OutputMode,
    /// The child's stderr, likewise.
    pub stderr: OutputMode,
    /// Typed options of a Claude program (model, permission mode, tools, prompts, budget,
    /// resume, MCP, ...), added after its `args`; checked when the session starts (a bad value
    /// or a flag also given in `args` is refused). Unused for a command.
    pub claude: claude_proc::ClaudeOptions,
    /// A stream-json Claude session's next run continues the conversation of the one before
    /// (`--resume=<id>`, the id the CLI last reported, replacing any `--session-id`,
    /// `--resume` or `--continue`), so a crash, an OOM or hang kill, or a credential refresh
    /// does not lose it. On by default; nothing is resumed with `--no-session-persistence`
    /// (the CLI saves no conversation to resume).
    pub resume_on_restart: bool,
    /// A conversation the first run resumes, as a restart would (with `resume_on_restart`, for
    /// a stream-json session that saves its conversations): what a service passes when it
    /// starts a session again after its own restart. If that resume fails before the first
    /// turn (the conversation is gone), the next run starts a new conversation.
    pub resume_id: Option<String>,
    /// What answers a stream-json session's control requests from the CLI (permission
    /// prompts, hooks, in-process MCP servers), installed on every run's session before it is
    /// handed out; the handlers' MCP servers are added to the CLI's `--mcp-config`.
    pub handlers: claude_proc::HostHandlers,
}

impl std::fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<_> = self.env.iter().map(|(k, _)| k).collect();
        f.debug_struct("SessionSpec")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("env (names)", &env)
            .field("pass_env", &self.pass_env)
            .field("limits", &self.limits)
            .field("limit_options", &self.limit_options)
            .field("restart", &self.restart)
            .field("grace", &self.grace)
            .field("health", &self.health)
            .field("credentials", &self.credentials.as_ref().map(|c| c.name()))
            .field("delivery", &self.delivery)
            .field("dirs", &self.dirs)
            .field("isolation", &self.isolation)
            .field("uid_range", &self.uid_range)
            .field("network", &self.network)
            .field("claude", &self.claude)
            .field("resume_on_restart", &self.resume_on_restart)
            .field("resume_id", &self.resume_id)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl SessionSpec {
    fn base(name: impl Into<String>, program: Program) -> Self {
        SessionSpec {
            name: name.into(),
            program,
            cwd: None,
            env: Vec::new(),
            pass_env: Vec::new(),
            limits: ResourceLimits::default(),
            limit_options: LimitOptions::default(),
            restart: RestartPolicy::default(),
            grace: Duration::from_secs(5),
            health: Some(HealthSpec::default()),
            credentials: None,
            delivery: Delivery::Env,
            dirs: SessionDirs::default(),
            isolation: IsolationLevel::None,
            uid_range: UidRange::DEFAULT,
            network: Network::Host,
            stdin: StdinMode::Null,
            foreground_terminal: false,
            stdout: OutputMode::Inherit,
            stderr: OutputMode::Inherit,
            claude: claude_proc::ClaudeOptions::default(),
            resume_on_restart: true,
            resume_id: None,
            handlers: claude_proc::HostHandlers::default(),
        }
    }

    /// Run `program` with `args` and the manager's environment; output passed through.
    pub fn command<I, S>(name: impl Into<String>, program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::base(
            name,
            Program::Command {
                program: program.into(),
                args: args.into_iter().map(Into::into).collect(),
            },
        )
    }

    /// Run the Claude CLI with `args` (unchanged), its own config directory, stdout as lines
    /// of up to [`claude_proc::SESSION_MAX_LINE`] (16 MiB: a tool result with an image is one
    /// line; set `stdout` for another limit).
    pub fn claude<I, S>(name: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut spec = Self::base(
            name,
            Program::Claude {
                binary: None,
                args: args.into_iter().map(Into::into).collect(),
            },
        );
        spec.dirs.config_dir = true;
        spec.stdout = OutputMode::Lines {
            max_line: claude_proc::SESSION_MAX_LINE,
        };
        spec
    }
}

/// The variables that configure the CLI's debug log: set by a caller, the manager leaves
/// the CLI's debugging to them.
pub(crate) const CLI_DEBUG_VARS: [&str; 3] = ["DEBUG", "DEBUG_SDK", "CLAUDE_CODE_DEBUG_LOGS_DIR"];

impl SessionSpec {
    /// The program's arguments with the Claude options' flags and the handlers' in-process
    /// MCP servers; refused for a bad option.
    pub(crate) fn args(&self) -> Result<Vec<OsString>, claude_proc::Error> {
        let mut options = self.claude.clone();
        for name in self.handlers.mcp_server_names() {
            if !options.sdk_mcp_servers.contains(&name) {
                options.sdk_mcp_servers.push(name);
            }
        }
        self.program.args_with(&options)
    }

    /// The conversation the first run resumes: `resume_id`, if restarts resume and a run with
    /// `args` saves its conversation; refused if empty or holding a control character.
    pub(crate) fn first_resume(
        &self,
        args: &[OsString],
    ) -> Result<Option<String>, claude_proc::Error> {
        let Some(id) = &self.resume_id else {
            return Ok(None);
        };
        if id.is_empty() || id.chars().any(char::is_control) {
            return Err(claude_proc::Error::InvalidOption {
                option: "resume_id",
                why: "empty or holds a control character".into(),
            });
        }
        let used = self.resume_on_restart
            && self.program.is_stream_session()
            && crate::session::resumable(args);
        Ok(used.then(|| id.clone()))
    }

    /// Whether the caller configures the CLI's debug log (arguments, `env`, `pass_env`, or the
    /// manager's own environment for the variables that pass).
    pub(crate) fn configures_cli_debugging(&self) -> bool {
        self.program.debugs()
            || self
                .env
                .iter()
                .any(|(k, _)| CLI_DEBUG_VARS.iter().any(|v| k == v))
            || self
                .pass_env
                .iter()
                .any(|k| CLI_DEBUG_VARS.iter().any(|v| k == v))
            || std::env::var_os("CLAUDE_CODE_DEBUG_LOGS_DIR").is_some()
    }
}

/// Settings variables of the CLI that reach a Claude child from the manager's environment
/// (never credentials: those come only through the auth chain).
pub(crate) fn is_claude_setting(name: &str) -> bool {
    const EXACT: [&str; 13] = [
        // Trust for a TLS-inspecting proxy: without it the CLI cannot reach the API.
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_MODEL",
        "ANTHROPIC_SMALL_FAST_MODEL",
        "ANTHROPIC_CUSTOM_HEADERS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ];
    if claude_auth::AUTH_VARS.contains(&name) {
        return false;
    }
    // The CLI refuses to start under these, or they leak the parent's session into it.
    if matches!(
        name,
        "CLAUDECODE" | "CLAUDE_CODE_SSE_PORT" | "CLAUDE_CODE_ENTRYPOINT"
    ) {
        return false;
    }
    EXACT.contains(&name)
        || name.starts_with("CLAUDE_CODE_")
        || name.starts_with("DISABLE_")
        || name.starts_with("ANTHROPIC_DEFAULT_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_is_told_from_a_stream_session() {
        let c = |args: &[&str]| Program::Claude {
            binary: None,
            args: args.iter().map(OsString::from).collect(),
        };
        assert!(c(&["-p", "hi"]).is_one_shot_claude());
        assert!(c(&["--print", "hi", "--output-format", "json"]).is_one_shot_claude());
        assert!(!c(&["-p", "--input-format", "stream-json"]).is_one_shot_claude());
        assert!(!c(&["-p", "--input-format=stream-json"]).is_one_shot_claude());
        assert!(!c(&[]).is_one_shot_claude());
    }

    #[test]
    fn settings_pass_and_credentials_do_not() {
        for ok in [
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "DISABLE_TELEMETRY",
            "HTTPS_PROXY",
            "no_proxy",
            "ANTHROPIC_MODEL",
        ] {
            assert!(is_claude_setting(ok), "{ok}");
        }
        for no in [
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDECODE",
            "CLAUDE_CODE_SSE_PORT",
            "NODE_OPTIONS",
            "HOME",
            "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR",
        ] {
            assert!(!is_claude_setting(no), "{no}");
        }
    }
}
