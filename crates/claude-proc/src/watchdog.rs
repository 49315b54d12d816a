//! The watchdog: what ends the trees of a manager that was killed outright.
//!
//! Every child gets the parent-death signal, so the leaders die with the manager; their
//! descendants do not (the signal is not inherited) and would be orphaned. The watchdog is a
//! small `sh` started without the parent-death signal, reading a pipe only this process holds
//! open: when the process dies, however it dies, the pipe reaches end-of-file and the watchdog
//! SIGKILLs, by pid, every process whose environment carries one of this process's tree
//! markers (`CLAUDE_PROC_TREE=<pid>-...`, set on every child and inherited by its
//! descendants, `setsid` escapees included), three times over 0.2 s to catch forks in flight,
//! then removes the given directories' `claude-<pid>-*` cgroups, and exits.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::child::{spawn, Child};
use crate::config::{OutputMode, ProcessConfig, StdinMode, TREE_MARKER_VAR};
use crate::error::Result;

/// The script; `$1` is this process's pid, the other arguments cgroup parent directories.
const SCRIPT: &str = r#"
unset CLAUDE_PROC_TREE
while read -r _; do :; done
me=$$
prefix="CLAUDE_PROC_TREE=$1-"
owner=$1
shift
for round in 1 2 3; do
  for f in $(grep -laF "$prefix" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}
    p=${p%/environ}
    [ "$p" = "$me" ] || kill -KILL "$p" 2>/dev/null
  done
  sleep 0.1
done
for dir in "$@"; do
  for cg in "$dir"/claude-"$owner"-*; do
    [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
  done
done
exit 0
"#;

static WATCHDOG: OnceLock<std::sync::Mutex<Option<Child>>> = OnceLock::new();

/// Start this process's watchdog (once; later calls do nothing). `cgroup_parents` are the
/// directories under which this process creates `claude-<pid>-*` cgroups, removed after the
/// kill. Must be called within a tokio runtime. The watchdog lives as long as this process;
/// when the process exits normally it also ends whatever trees are still running.
pub async fn start_watchdog(cgroup_parents: &[PathBuf]) -> Result<()> {
    let cell = WATCHDOG.get_or_init(Default::default);
    if cell.lock().map(|w| w.is_some()).unwrap_or(true) {
        return Ok(());
    }
    let config = ProcessConfig::builder("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("claude-proc-watchdog")
        .arg(std::process::id().to_string())
        .args(cgroup_parents.iter().map(|p| p.as_os_str().to_owned()))
        .stdin(StdinMode::Piped)
        .stdout(OutputMode::Null)
        .stderr(OutputMode::Null)
        .survive_parent()
        .build()?;
    let mut child = spawn(&config).await?;
    // The write end stays open, never written, for as long as this process lives.
    if let Some(stdin) = child.take_stdin() {
        std::mem::forget(stdin);
    }
    tracing::info!(
        pid = child.pid(),
        marker = TREE_MARKER_VAR,
        "watchdog started"
    );
    if let Ok(mut slot) = cell.lock() {
        *slot = Some(child);
    }
    Ok(())
}
