//! # claude-proc
//!
//! Spawn, supervise and stop the Claude Code CLI (or any program) as a child process *together
//! with everything it starts*: MCP servers, Bash-tool grandchildren, descendants that called
//! `setsid`. The base of the workspace: `claude-limits`, `claude-auth` and `claude-health` reach
//! the child only through this crate's extension points.
//!
//! ## Theory of operation
//!
//! **Spawning.** Every child is created by one long-lived thread with
//! `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, the mechanism posix_spawn uses: no page tables
//! are copied, so a manager holding gigabytes spawns as fast as a small one (std's fork path,
//! taken by any `pre_exec` closure, costs ~40 ms per spawn from a 1 GiB parent here; see
//! BENCHMARKS.md). Between clone and exec the child runs only raw system calls over data the
//! parent prepared: default signal dispositions, its own process group (or session), the
//! parent-death signal (SIGKILL, then a `getppid` check for the race where the parent died
//! first), the [`SpawnHook`] actions (rlimits, writing `0` to a `cgroup.procs`, nice),
//! close-on-exec on every descriptor above stdio (so nothing this process inherited without the
//! flag leaks into the program), descriptor moves, `chdir`, `execve`. A failure there is reported as [`Error::Spawn`] naming the step.
//! The spawner thread never exits, so the parent-death signal fires when the *process* dies, not
//! when some runtime worker thread does.
//!
//! **Identity.** The kernel returns a pidfd with the child; waiting and signalling the leader go
//! through it, so a recycled pid is never signalled. The leader is reaped last, after its whole
//! tree is gone: until then its pid, and so its process-group id, cannot be reused.
//!
//! **The tree.** A tree is the leader's process group, everything below the leader, and every
//! process carrying the tree's marker variable [`TREE_MARKER_VAR`] (inherited through `setsid`
//! and orphaning). The scan walks the kernel's per-task `children` lists from the leader and
//! looks for orphans only among the children of this process, its ancestors and init (where
//! orphans are re-parented), so it costs O(tree), not O(host); without `children` lists it reads
//! every `/proc/<pid>/stat`. Hooks may add members they know (a cgroup's `cgroup.procs`).
//!
//! **Lifecycle.** Each run is watched by a monitor task; statuses follow the table in
//! [`StatusKind::can_transition_to`] and every transition is published on a `watch` and a
//! broadcast of [`StatusEvent`]s. The stop sequence: close a piped stdin and wait
//! [`StopPolicy::stdin_wait`]; SIGTERM to the whole tree; wait [`StopPolicy::grace`] for the
//! leader and every member; SIGKILL to whatever is left until a scan (confirmed by a second one)
//! finds nothing; reap. [`ExitReason`] says which of these ended it. When the leader exits by
//! itself, descendants it leaves behind get the same TERM-grace-KILL treatment before the run is
//! reported `Exited`.
//!
//! **Output.** stdout and stderr each have a reader task, so a full stderr pipe never blocks
//! stdout. Lines ([`OutputMode::Lines`]) are bounded: a longer line arrives as
//! [`OutputEvent::Oversized`] fragments, never dropped. Events go through a bounded channel: a
//! slow consumer makes the child block on write (back-pressure); nothing is lost. A stderr tail
//! is kept and attached to exit errors ([`ExitInfo::into_result`]).
//!
//! **Sessions.** [`ClaudeSession`] speaks the CLI's stream-json protocol: user turns, typed
//! messages parsed tolerantly ([`StreamMessage`]), control requests with ids and timeouts
//! (`initialize` doubles as a ping that needs no API traffic).
//!
//! **Restarts.** One engine decides every restart: [`RestartState`], a pure state machine fed
//! each run's end ([`RunEnd`]) that answers with a [`Decision`]. It applies a [`RestartPolicy`]:
//! never / on-failure / always, at most N restarts in a window, exponential backoff with full
//! jitter and a cap, reset after a stable run, a [`CircuitBreaker`] that opens after consecutive
//! failures, a long jittered pause after a rate-limited run, and one immediate restart with a
//! refreshed credential after an authentication failure. [`Supervisor`] runs a configuration
//! on it; claude-manager's sessions use the same engine.
//!
//! **Shared vocabulary.** The base crate holds what the others exchange: [`LimitKind`] (the
//! limit in [`StopCause::LimitExceeded`], set by claude-limits, classified by claude-manager)
//! and the workspace's one `/proc/<pid>/stat` parser, [`parse_proc_stat`] (used by the tree
//! scan here and by claude-health's sampler; it borrows the command name and never panics).
//!
//! ## What it deliberately does not do
//!
//! It sets no resource limits (that is `claude-limits`, through [`SpawnHook`]), holds no
//! credentials (`claude-auth` passes them as variables or descriptors through the same hook),
//! and judges no health (`claude-health`); it never installs a tracing subscriber.
//!
//! ## Caveats
//!
//! - **Drop.** Dropping a [`Child`] kills its tree with SIGKILL and reaps it (in the monitor
//!   task, or synchronously if the runtime is shutting down). Stop it first for a graceful end.
//!   Dropping a [`Supervisor`] stops the current run gracefully in the background.
//! - **Cancellation.** [`Child::stop`] is cancellation-safe: the sequence runs in the monitor
//!   task and completes even if the future is dropped.
//! - **Zombies.** Leaders are reaped through their pidfd; a child that fails before exec is
//!   reaped before the error is returned. Grandchildren are reaped by their parent or by init;
//!   after [`become_subreaper`], orphans of a tree are re-parented to this process and reaped by
//!   the stop sequence. Do not call `waitpid(-1)` elsewhere in the process: it would steal exit
//!   statuses.
//! - **Manager death.** If the manager process dies (even by SIGKILL), every leader gets SIGKILL
//!   from the kernel (parent-death signal). Grandchildren that ignore their parent's death are
//!   outside that guarantee unless a cgroup (`claude-limits`) holds the tree.
//! - **Environment.** Children get a clean environment by default ([`EnvPolicy::Clean`]);
//!   [`ENV_NEVER_PASSED`] is never passed on. `Debug` of a [`ProcessConfig`] prints variable
//!   names, never values.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use claude_proc::{spawn, ClaudeSession, resolve_claude};
//!
//! # async fn demo() -> claude_proc::Result<()> {
//! let bin = resolve_claude(None)?; // explicit path, $CLAUDE_PM_CLAUDE_BIN, or PATH
//! let config = ClaudeSession::config(&bin)
//!     .env("CLAUDE_CONFIG_DIR", "/tmp/session-1")
//!     .grace(Duration::from_secs(5))
//!     .build()?;
//! let mut child = spawn(&config).await?;
//! let mut session = ClaudeSession::attach(&mut child)?;
//! session.initialize(Duration::from_secs(10)).await?; // a ping without API traffic
//! let turn = session.turn("say pong").await?;
//! println!("{:?}", turn.result.result);
//! let exit = child.stop().await?; // stdin close, TERM, grace, KILL: the whole tree
//! println!("{}", exit.reason);
//! # Ok(())
//! # }
//! ```

mod agent_hooks;
mod backoff;
mod child;
mod config;
mod control;
mod error;
mod hook;
mod limit;
mod mcp;
mod message;
mod options;
mod output;
mod proc_stat;
mod resolve;
mod restart;
mod session;
mod status;
mod stdin;
mod stop;
mod supervisor;
mod sys;
mod time;
mod watchdog;

pub use agent_hooks::{HookCallback, HookEvent, HookInput, HookOutput};
pub use backoff::{Backoff, BreakerState, CircuitBreaker};
pub use child::{spawn, Child, ExitInfo, StopProbe, Stopper};
pub use config::{
    resolve_program, EnvPolicy, OutputMode, ProcessConfig, ProcessConfigBuilder, StdinMode,
    StopPolicy, ENV_ALLOWLIST, ENV_NEVER_PASSED, TREE_MARKER_VAR,
};
pub use control::{
    HostHandlers, PermissionDecision, PermissionHandler, PermissionRequest, DEFAULT_HANDLER_TIMEOUT,
};
pub use error::{Error, HookError, Result};
pub use hook::{ChildSetup, FsView, HookInstance, Rlimit, SpawnHook, TreeUsage};
pub use limit::LimitKind;
pub use mcp::{McpServer, McpTool, ToolContent, ToolHandler, ToolOutput};
pub use message::{
    parse_line, AssistantMessage, ContentBlock, ControlRequest, ControlResponse, RateLimitEvent,
    ResultMessage, StreamMessage, SystemMessage, Usage, UserMessage,
};
pub use options::{
    ClaudeOptions, Conversation, Effort, PermissionMode, PermissionPrompts, SettingSource, Tools,
};
pub use output::{OutputEvent, OutputReceiver};
pub use proc_stat::{parse_proc_stat, ProcStat};
pub use resolve::{binary_version, claude_version, parse_version, resolve_claude, CLAUDE_BIN_ENV};
pub use restart::{
    Decision, GiveUpReason, RestartMode, RestartPolicy, RestartState, RunEnd, RunOutcome,
};
pub use session::{
    ClaudeSession, SessionControl, SessionEvent, Turn, SESSION_MAX_LINE, STREAM_JSON_ARGS,
};
pub use status::{
    signal_name, ExitReason, ProcessStatus, RawExit, StatusEvent, StatusKind, StopCause,
};
pub use stdin::ChildStdin;
pub use supervisor::{Outcome, Run, Supervisor, SupervisorExit};
pub use time::instant_after;
pub use watchdog::start_watchdog;

/// Make this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): descendants orphaned by the
/// death of their parent are re-parented to this process instead of init, so the stop sequence
/// still finds them by parent and reaps them. Process-wide: call it only in a program that
/// starts its children through this crate (the `claude-pm` binary does).
pub fn become_subreaper() -> Result<()> {
    sys::set_subreaper().map_err(|e| Error::os("become a child subreaper", e))
}
