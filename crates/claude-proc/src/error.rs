//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::{ExitReason, StatusKind};

/// A boxed error from a spawn hook supplied by an upper layer.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `claude-proc`.
///
/// Every variant carries the context a reader needs (program, path, pid, value); messages are
/// lowercase fragments so they compose as "failed to start session: {error}".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration named no program.
    #[error("no program given")]
    MissingProgram,

    /// The program could not be found (not on PATH, or the path does not exist).
    #[error("program {program:?} not found{}", searched_hint(.searched))]
    ProgramNotFound {
        /// What the caller asked for.
        program: PathBuf,
        /// The PATH that was searched, if the name was looked up there.
        searched: Option<String>,
    },

    /// The program exists but is not an executable regular file.
    #[error("program {path:?} is not executable")]
    NotExecutable {
        /// The resolved path.
        path: PathBuf,
    },

    /// The working directory does not exist or is not a directory.
    #[error("working directory {path:?} does not exist or is not a directory")]
    MissingCwd {
        /// The directory asked for.
        path: PathBuf,
    },

    /// A path of a sandbox's view cannot be used.
    #[error("sandbox path {path:?} {problem}")]
    InvalidSandboxPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// An environment variable name is empty or contains `=` or NUL.
    #[error("invalid environment variable name {name:?}: {why}")]
    InvalidEnvName {
        /// The offending name (names are not secret; values never appear in errors).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// An environment variable value contains NUL.
    #[error("environment variable {name:?} has a value containing NUL")]
    InvalidEnvValue {
        /// The variable's name.
        name: String,
    },

    /// An argument contains a NUL byte.
    #[error("argument {index} contains a NUL byte")]
    InvalidArgument {
        /// Position of the argument (0 is the program).
        index: usize,
    },

    /// A duration in the configuration is zero where a positive one is required.
    #[error("{field} must be a positive duration, got {value:?}")]
    InvalidDuration {
        /// The configuration field.
        field: &'static str,
        /// The value given.
        value: Duration,
    },

    /// A numeric setting is out of range.
    #[error("{field} is out of range: {value}")]
    InvalidValue {
        /// The configuration field.
        field: &'static str,
        /// The value given, as text.
        value: String,
    },

    /// A Claude session option with a bad value, or options that cannot go together (or
    /// one that needs another).
    #[error("claude option {option}: {why}")]
    InvalidOption {
        /// The option or options, by their `ClaudeOptions` field names.
        option: &'static str,
        /// What is wrong.
        why: String,
    },

    /// A spawn hook of an upper layer refused or failed to prepare the child.
    #[error("spawn hook {hook} failed")]
    Hook {
        /// The hook's name.
        hook: String,
        /// What the hook reported.
        #[source]
        source: HookError,
    },

    /// The child failed between clone and exec (the program never ran).
    #[error("failed to start {program:?}: {step} failed")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The setup step that failed in the child (`execve`, `chdir`, `setrlimit`, ...).
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// An OS call in the parent failed.
    #[error("failed to {op}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The task watching a child is gone without reporting an exit (the runtime shut down).
    #[error("the monitor of process {pid} is gone")]
    MonitorGone {
        /// The process id.
        pid: u32,
    },

    /// The supervisor's task is gone without reporting an end (the runtime shut down).
    #[error("the supervisor task is gone")]
    SupervisorGone,

    /// The spawner thread is gone (the process is shutting down).
    #[error("the spawner thread is not running")]
    SpawnerGone,

    /// A status transition that the state machine does not allow.
    #[error("invalid status transition from {from:?} to {to:?}")]
    InvalidTransition {
        /// The current status.
        from: StatusKind,
        /// The requested status.
        to: StatusKind,
    },

    /// The process has already ended; the operation needs a live one.
    #[error("process {pid} has already exited")]
    AlreadyExited {
        /// The process id it had.
        pid: u32,
    },

    /// A wait for the binary's version did not finish in time.
    #[error("{program:?} --version did not finish within {timeout:?}")]
    VersionTimeout {
        /// The binary.
        program: PathBuf,
        /// The limit.
        timeout: Duration,
    },

    /// A binary's `--version` output was not understood.
    #[error("{program:?} --version printed {output:?}, which is not a version")]
    VersionUnrecognized {
        /// The binary.
        program: PathBuf,
        /// The first line it printed (truncated to 200 bytes).
        output: String,
    },

    /// A binary taken for the Claude CLI answered `--version` with something else.
    #[error("{program:?} is not Claude Code: its --version printed {output:?}")]
    NotClaudeCode {
        /// The binary.
        program: PathBuf,
        /// The first line it printed (truncated to 200 bytes).
        output: String,
    },

    /// The child ended unsuccessfully (returned by [`crate::ExitInfo::into_result`]).
    #[error("process {pid} ended: {reason}{}", tail_hint(.stderr_tail))]
    ChildFailed {
        /// The process id it had.
        pid: u32,
        /// Why it ended.
        reason: ExitReason,
        /// The last bytes it wrote to stderr (lossy UTF-8).
        stderr_tail: String,
    },

    /// Writing to the child's stdin failed (usually: it closed stdin or exited).
    #[error("failed to write to stdin of process {pid}")]
    StdinWrite {
        /// The process id.
        pid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The child's stdin is closed (stopped, or closed by a previous call).
    #[error("stdin of process {pid} is closed")]
    StdinClosed {
        /// The process id.
        pid: u32,
    },

    /// A stream-json message could not be encoded.
    #[error("failed to encode a stream-json message")]
    Encode {
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },

    /// A line of the CLI's stream-json output is not a message we can read.
    #[error("malformed stream-json line{}: {detail}", kind_hint(.kind))]
    MalformedMessage {
        /// The message's `type`, when it had one.
        kind: Option<String>,
        /// What is wrong.
        detail: String,
    },

    /// A control request got no response in time.
    #[error("control request {request_id} ({subtype}) got no response within {timeout:?}")]
    ControlTimeout {
        /// The request id.
        request_id: String,
        /// The request's subtype.
        subtype: String,
        /// The limit.
        timeout: Duration,
    },

    /// The CLI answered a control request with an error.
    #[error("control request {request_id} failed: {message}")]
    ControlError {
        /// The request id.
        request_id: String,
        /// The CLI's error message.
        message: String,
    },

    /// The session ended (stdout closed) while a request or turn was outstanding.
    #[error("session output ended")]
    SessionClosed,

    /// The CLI ended while a request or turn was outstanding (during start-up: a bad flag,
    /// a broken configuration); its exit and what it last wrote to stderr.
    #[error("the CLI (pid {pid}) ended before answering {during}: {reason}{}", tail_hint(.stderr_tail))]
    SessionEnded {
        /// The CLI's pid.
        pid: u32,
        /// What was waiting: a control subtype (`initialize`) or `turn`.
        during: String,
        /// How it ended.
        reason: ExitReason,
        /// The last bytes it wrote to stderr (lossy UTF-8).
        stderr_tail: String,
    },

    /// `/proc/<pid>/stat` bytes that are not a stat line.
    #[error("malformed /proc/<pid>/stat: {why}")]
    MalformedProcStat {
        /// What is wrong.
        why: &'static str,
    },
}

fn searched_hint(searched: &Option<String>) -> String {
    match searched {
        Some(path) => format!(" in PATH {path:?}"),
        None => String::new(),
    }
}

fn kind_hint(kind: &Option<String>) -> String {
    match kind {
        Some(kind) => format!(" (type {kind:?})"),
        None => String::new(),
    }
}

fn tail_hint(tail: &str) -> String {
    let trimmed = tail.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; stderr ended with: {trimmed}")
    }
}

impl Error {
    /// Whether this spawn error is permanent: another attempt with the same configuration
    /// fails the same way (the program is missing or not executable, the working directory is
    /// missing, the configuration is invalid). Transient ones (out of memory, a hook's cgroup
    /// write that raced, a full process table) may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::MissingProgram
                | Error::ProgramNotFound { .. }
                | Error::NotExecutable { .. }
                | Error::MissingCwd { .. }
                | Error::InvalidSandboxPath { .. }
                | Error::InvalidEnvName { .. }
                | Error::InvalidEnvValue { .. }
                | Error::InvalidArgument { .. }
                | Error::InvalidDuration { .. }
                | Error::InvalidValue { .. }
                | Error::InvalidOption { .. }
        )
    }

    pub(crate) fn os(op: &'static str, source: io::Error) -> Self {
        Error::Os { op, source }
    }

    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::Os {
            op,
            source: io::Error::last_os_error(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
