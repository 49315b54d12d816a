//! # claude-proc
//!
//! Spawn, supervise and stop the Claude Code CLI (or any program) as a child process together
//! with everything it starts.
//!
//! (Full theory of operation below; see also ARCHITECTURE.md.)

mod backoff;
mod child;
mod config;
mod error;
mod hook;
mod message;
mod output;
mod resolve;
mod session;
mod status;
mod stdin;
mod stop;
mod supervisor;
mod sys;

pub use backoff::{Backoff, BreakerState, CircuitBreaker};
pub use child::{spawn, Child, ExitInfo};
pub use config::{
    resolve_program, EnvPolicy, OutputMode, ProcessConfig, ProcessConfigBuilder, StdinMode,
    StopPolicy, ENV_ALLOWLIST, ENV_NEVER_PASSED, TREE_MARKER_VAR,
};
pub use error::{Error, HookError, Result};
pub use hook::{ChildSetup, HookInstance, Rlimit, SpawnHook};
pub use message::{
    parse_line, AssistantMessage, ContentBlock, ControlRequest, ControlResponse, RateLimitEvent,
    ResultMessage, StreamMessage, SystemMessage, Usage, UserMessage,
};
pub use output::{OutputEvent, OutputReceiver};
pub use resolve::{binary_version, parse_version, resolve_claude, CLAUDE_BIN_ENV};
pub use session::{ClaudeSession, SessionEvent, Turn, SESSION_MAX_LINE};
pub use status::{ExitReason, ProcessStatus, RawExit, StatusEvent, StatusKind, StopCause};
pub use stdin::ChildStdin;
pub use supervisor::{Outcome, RestartMode, RestartPolicy, Run, Supervisor, SupervisorExit};

/// Make this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): descendants orphaned by the
/// death of their parent are re-parented to this process instead of init, so the stop sequence
/// still finds them by parent and reaps them. Process-wide: call it only in a program that
/// starts its children through this crate (the `claude-pm` binary does).
pub fn become_subreaper() -> Result<()> {
    sys::set_subreaper().map_err(|e| Error::os("become a child subreaper", e))
}
