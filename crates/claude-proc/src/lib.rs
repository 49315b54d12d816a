//! # claude-proc
//!
//! Spawn, supervise and stop the Claude Code CLI (or any program) as a child process together
//! with everything it starts.
//!
//! (Full theory of operation below; see also ARCHITECTURE.md.)

mod child;
mod config;
mod error;
mod hook;
mod output;
mod status;
mod stdin;
mod stop;
mod sys;

pub use child::{spawn, Child, ExitInfo};
pub use config::{
    resolve_program, EnvPolicy, OutputMode, ProcessConfig, ProcessConfigBuilder, StdinMode,
    StopPolicy, ENV_ALLOWLIST, ENV_NEVER_PASSED, TREE_MARKER_VAR,
};
pub use error::{Error, HookError, Result};
pub use hook::{ChildSetup, HookInstance, Rlimit, SpawnHook};
pub use output::{OutputEvent, OutputReceiver};
pub use status::{ExitReason, ProcessStatus, RawExit, StatusEvent, StatusKind, StopCause};
pub use stdin::ChildStdin;

/// Make this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): descendants orphaned by the
/// death of their parent are re-parented to this process instead of init, so the stop sequence
/// still finds them by parent and reaps them. Process-wide: call it only in a program that
/// starts its children through this crate (the `claude-pm` binary does).
pub fn become_subreaper() -> Result<()> {
    sys::set_subreaper().map_err(|e| Error::os("become a child subreaper", e))
}
