//! `ProcessConfig` and its builder: what to run and how.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hook::SpawnHook;

/// Variables copied from the parent under [`EnvPolicy::Clean`] (plus every `LC_*`).
pub const ENV_ALLOWLIST: &[&str] = &["PATH", "HOME", "LANG", "TERM", "TMPDIR", "USER"];

/// Variables never passed to a child, whatever the policy: `CLAUDECODE` makes the CLI refuse to
/// start "inside another Claude Code session", `CLAUDE_CODE_SSE_PORT` ties it to an IDE, and
/// `NODE_OPTIONS` can inject code into the runtime.
pub const ENV_NEVER_PASSED: &[&str] = &["CLAUDECODE", "CLAUDE_CODE_SSE_PORT", "NODE_OPTIONS"];

/// The variable that marks every process of one tree, so descendants that left the process
/// group (`setsid`) or were orphaned are still found. Its value is unique per spawn.
pub const TREE_MARKER_VAR: &str = "CLAUDE_PROC_TREE";

/// Where the child's environment comes from before explicit variables are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EnvPolicy {
    /// Start empty and copy only [`ENV_ALLOWLIST`] and `LC_*` from the parent (the default).
    #[default]
    Clean,
    /// Copy the parent's whole environment.
    Inherit,
}

/// What the child's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StdinMode {
    /// `/dev/null` (the default).
    #[default]
    Null,
    /// A pipe the caller writes to (see [`crate::Child::take_stdin`]).
    Piped,
    /// The parent's stdin.
    Inherit,
}

/// What happens to the child's stdout or stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutputMode {
    /// Drained and thrown away; stderr still feeds the tail buffer (the default).
    #[default]
    Discard,
    /// Framed into lines (NDJSON); a line longer than `max_line` bytes is delivered as
    /// [`crate::OutputEvent::Oversized`] fragments, never dropped.
    Lines {
        /// The longest line delivered whole, in bytes.
        max_line: usize,
    },
    /// Delivered as raw chunks in order.
    Chunks,
    /// The parent's own stream.
    Inherit,
    /// `/dev/null`.
    Null,
}

impl OutputMode {
    /// Line framing with a 1 MiB maximum line.
    pub const fn lines() -> Self {
        OutputMode::Lines {
            max_line: 1024 * 1024,
        }
    }

    pub(crate) fn is_piped(self) -> bool {
        matches!(
            self,
            OutputMode::Discard | OutputMode::Lines { .. } | OutputMode::Chunks
        )
    }
}

/// The stop sequence's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    /// After closing a piped stdin, how long to wait for a clean exit before SIGTERM.
    pub stdin_wait: Duration,
    /// After SIGTERM, how long the tree has before SIGKILL.
    pub grace: Duration,
}

impl Default for StopPolicy {
    fn default() -> Self {
        StopPolicy {
            stdin_wait: Duration::from_secs(1),
            grace: Duration::from_secs(5),
        }
    }
}

/// A validated description of a process to run. Build one with [`ProcessConfig::builder`].
///
/// `Debug` prints variable names but never their values: values may be secrets.
#[derive(Clone)]
pub struct ProcessConfig {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdin: StdinMode,
    pub(crate) stdout: OutputMode,
    pub(crate) stderr: OutputMode,
    pub(crate) env_policy: EnvPolicy,
    pub(crate) vars: Vec<(OsString, Option<OsString>)>,
    pub(crate) pass_env: Vec<OsString>,
    pub(crate) stop: StopPolicy,
    pub(crate) hooks: Vec<Arc<dyn SpawnHook>>,
    pub(crate) new_session: bool,
    pub(crate) survive_parent: bool,
    pub(crate) foreground_terminal: bool,
    pub(crate) stderr_tail: usize,
    pub(crate) output_buffer: usize,
}

impl fmt::Debug for ProcessConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.vars.iter().map(|(name, _)| name).collect();
        let hooks: Vec<_> = self.hooks.iter().map(|hook| hook.name()).collect();
        f.debug_struct("ProcessConfig")
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("cwd", &self.cwd)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("env_policy", &self.env_policy)
            .field("vars (names only)", &names)
            .field("pass_env", &self.pass_env)
            .field("stop", &self.stop)
            .field("hooks", &hooks)
            .field("new_session", &self.new_session)
            .field("foreground_terminal", &self.foreground_terminal)
            .finish()
    }
}

impl ProcessConfig {
    /// Start building a configuration for `program` (a path, or a name looked up on PATH).
    pub fn builder(program: impl Into<PathBuf>) -> ProcessConfigBuilder {
        ProcessConfigBuilder {
            config: ProcessConfig {
                program: program.into(),
                args: Vec::new(),
                cwd: None,
                stdin: StdinMode::default(),
                stdout: OutputMode::default(),
                stderr: OutputMode::default(),
                env_policy: EnvPolicy::default(),
                vars: Vec::new(),
                pass_env: Vec::new(),
                stop: StopPolicy::default(),
                hooks: Vec::new(),
                new_session: false,
                survive_parent: false,
                foreground_terminal: false,
                stderr_tail: 8 * 1024,
                output_buffer: 64,
            },
        }
    }

    /// The resolved program path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments (without the program).
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The stop sequence's timing.
    pub fn stop_policy(&self) -> StopPolicy {
        self.stop
    }

    /// A copy with one more hook; used by upper layers that add their own.
    pub fn with_hook(mut self, hook: Arc<dyn SpawnHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// A copy with an extra variable set (validated like [`ProcessConfigBuilder::env`]).
    pub fn with_env(
        mut self,
        name: impl Into<OsString>,
        value: impl Into<OsString>,
    ) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        validate_name(&name)?;
        validate_value(&name, &value)?;
        self.vars.push((name, Some(value)));
        Ok(self)
    }

    /// The environment the child will get, as `NAME=value` entries, given the parent's.
    pub(crate) fn child_env(
        &self,
        parent: impl Iterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let mut out: Vec<(OsString, OsString)> = Vec::new();
        for (name, value) in parent {
            let keep = match self.env_policy {
                EnvPolicy::Inherit => true,
                EnvPolicy::Clean => is_allowlisted(&name) || self.pass_env.contains(&name),
            };
            if keep && !is_never_passed(&name) {
                out.push((name, value));
            }
        }
        for (name, value) in &self.vars {
            out.retain(|(existing, _)| existing != name);
            if let Some(value) = value {
                out.push((name.clone(), value.clone()));
            }
        }
        out
    }
}

fn is_allowlisted(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(b"LC_") || ENV_ALLOWLIST.iter().any(|n| n.as_bytes() == bytes)
}

fn is_never_passed(name: &OsStr) -> bool {
    ENV_NEVER_PASSED
        .iter()
        .any(|n| n.as_bytes() == name.as_bytes())
        || name.as_bytes() == TREE_MARKER_VAR.as_bytes()
}

fn validate_name(name: &OsStr) -> Result<()> {
    let bytes = name.as_bytes();
    let why = if bytes.is_empty() {
        Some("empty name")
    } else if bytes.contains(&b'=') {
        Some("contains '='")
    } else if bytes.contains(&0) {
        Some("contains NUL")
    } else if is_never_passed(name) {
        Some("this variable is never passed to children")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidEnvName {
            name: name.to_string_lossy().into_owned(),
            why,
        }),
        None => Ok(()),
    }
}

fn validate_value(name: &OsStr, value: &OsStr) -> Result<()> {
    if value.as_bytes().contains(&0) {
        return Err(Error::InvalidEnvValue {
            name: name.to_string_lossy().into_owned(),
        });
    }
    Ok(())
}

/// Builder for [`ProcessConfig`]; [`ProcessConfigBuilder::build`] validates everything.
#[derive(Debug)]
pub struct ProcessConfigBuilder {
    config: ProcessConfig,
}

impl ProcessConfigBuilder {
    /// Append one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.config.args.push(arg.into());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.config.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The child's working directory (default: the parent's).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.cwd = Some(dir.into());
        self
    }

    /// What stdin is.
    pub fn stdin(mut self, mode: StdinMode) -> Self {
        self.config.stdin = mode;
        self
    }

    /// What happens to stdout.
    pub fn stdout(mut self, mode: OutputMode) -> Self {
        self.config.stdout = mode;
        self
    }

    /// What happens to stderr.
    pub fn stderr(mut self, mode: OutputMode) -> Self {
        self.config.stderr = mode;
        self
    }

    /// Where the base environment comes from.
    pub fn env_policy(mut self, policy: EnvPolicy) -> Self {
        self.config.env_policy = policy;
        self
    }

    /// Set a variable (overrides the base environment).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.config.vars.push((name.into(), Some(value.into())));
        self
    }

    /// Remove a variable from the base environment.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.config.vars.push((name.into(), None));
        self
    }

    /// Copy this variable from the parent even under [`EnvPolicy::Clean`].
    pub fn pass_env(mut self, name: impl Into<OsString>) -> Self {
        self.config.pass_env.push(name.into());
        self
    }

    /// How long to wait for a clean exit after closing stdin (zero skips the wait).
    pub fn stdin_wait(mut self, wait: Duration) -> Self {
        self.config.stop.stdin_wait = wait;
        self
    }

    /// The grace period between SIGTERM and SIGKILL (must be positive).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.stop.grace = grace;
        self
    }

    /// Add a spawn hook (see [`SpawnHook`]); hooks run in the order added.
    pub fn hook(mut self, hook: Arc<dyn SpawnHook>) -> Self {
        self.config.hooks.push(hook);
        self
    }

    /// Let the child outlive this process (no parent-death signal). Crate-private: only the
    /// watchdog, whose whole job is to act after the manager died, gets it.
    pub(crate) fn survive_parent(mut self) -> Self {
        self.config.survive_parent = true;
        self
    }

    /// Take stdin's terminal: when stdin is inherited and is this process's controlling
    /// terminal, the child makes its process group the terminal's foreground group before exec
    /// (as a shell does for a foreground job, and as glibc's
    /// `posix_spawn_file_actions_addtcsetpgrp_np` does), so it may read the terminal and change
    /// its modes instead of being stopped by `SIGTTIN` or `SIGTTOU`. Done in the child, so no
    /// read can come first. Ask for it only while this process holds the terminal's foreground.
    pub fn foreground_terminal(mut self, yes: bool) -> Self {
        self.config.foreground_terminal = yes;
        self
    }

    /// Start the child in a new session (`setsid`) instead of only a new process group.
    pub fn new_session(mut self, yes: bool) -> Self {
        self.config.new_session = yes;
        self
    }

    /// How many bytes of stderr to keep for exit errors (default 8 KiB).
    pub fn stderr_tail(mut self, bytes: usize) -> Self {
        self.config.stderr_tail = bytes;
        self
    }

    /// How many output events may queue per stream before the reader waits (back-pressure).
    pub fn output_buffer(mut self, events: usize) -> Self {
        self.config.output_buffer = events;
        self
    }

    /// Validate and resolve: the program is found and executable, the cwd exists, variable names
    /// are valid, durations are positive.
    pub fn build(mut self) -> Result<ProcessConfig> {
        let config = &mut self.config;
        if config.program.as_os_str().is_empty() {
            return Err(Error::MissingProgram);
        }
        for (index, arg) in std::iter::once(config.program.as_os_str())
            .chain(config.args.iter().map(OsString::as_os_str))
            .enumerate()
        {
            if arg.as_bytes().contains(&0) {
                return Err(Error::InvalidArgument { index });
            }
        }
        for (name, value) in &config.vars {
            validate_name(name)?;
            if let Some(value) = value {
                validate_value(name, value)?;
            }
        }
        for name in &config.pass_env {
            validate_name(name)?;
        }
        if let Some(cwd) = &config.cwd {
            if !cwd.is_dir() {
                return Err(Error::MissingCwd { path: cwd.clone() });
            }
        }
        if config.stop.grace.is_zero() {
            return Err(Error::InvalidDuration {
                field: "grace",
                value: config.stop.grace,
            });
        }
        if let OutputMode::Lines { max_line: 0 } = config.stdout {
            return Err(Error::InvalidValue {
                field: "stdout max_line",
                value: "0".into(),
            });
        }
        if let OutputMode::Lines { max_line: 0 } = config.stderr {
            return Err(Error::InvalidValue {
                field: "stderr max_line",
                value: "0".into(),
            });
        }
        if config.output_buffer == 0 {
            return Err(Error::InvalidValue {
                field: "output_buffer",
                value: "0".into(),
            });
        }
        let path_var = config
            .vars
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .and_then(|(_, value)| value.clone())
            .or_else(|| std::env::var_os("PATH"));
        config.program = resolve_program(&config.program, path_var.as_deref())?;
        Ok(self.config)
    }
}

/// Find `program`: a name with a `/` is taken as a path; a bare name is searched on `path`.
pub fn resolve_program(program: &Path, path: Option<&OsStr>) -> Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return check_executable(program);
    }
    let search = path.unwrap_or_default();
    for dir in std::env::split_paths(search) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            if let Ok(found) = check_executable(&candidate) {
                return Ok(found);
            }
        }
    }
    Err(Error::ProgramNotFound {
        program: program.to_path_buf(),
        searched: Some(search.to_string_lossy().into_owned()),
    })
}

fn check_executable(path: &Path) -> Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(_) => {
            return Err(Error::ProgramNotFound {
                program: path.to_path_buf(),
                searched: None,
            })
        }
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::NotExecutable {
            path: path.to_path_buf(),
        });
    }
    Ok(path.to_path_buf())
}
