//! Stage 1, prepare: a credential (refreshed when the last one was rejected) and the process
//! configuration of the next run.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use claude_auth::{Credential, CredentialHook, Delivery};
use claude_health::Signals;
use claude_proc::{EnvPolicy, OutputMode, ProcessConfig, ProcessConfigBuilder, RunOutcome};

use super::{RunResult, SessionTask};
use crate::report::ExitKind;
use crate::spec::{is_claude_setting, Program};

impl SessionTask {
    /// The configuration of the next run, or how the run failed before it could start.
    pub(super) async fn prepare(
        &self,
        refresh: bool,
        workdir: Option<&Path>,
        signals: &Arc<Signals>,
    ) -> Result<ProcessConfig, RunResult> {
        let credential = self.credential(refresh).await?;
        let mut b = self.builder(workdir);
        if let Some(credential) = credential {
            // An isolated session gets its credential by descriptor, never in its environment.
            let delivery = match (&self.sandbox, self.spec.delivery) {
                (Some(_), Delivery::Env) => Delivery::Fd(3),
                (_, delivery) => delivery,
            };
            b = b.hook(Arc::new(CredentialHook::new(credential, delivery)));
        }
        if let Some(sandbox) = &self.sandbox {
            b = b.hook(Arc::clone(sandbox) as Arc<dyn claude_proc::SpawnHook>);
        }
        if let Some(limits) = &self.limits {
            b = b.hook(Arc::new(limits.for_run(Arc::clone(signals))));
        }
        b.build().map_err(|e| RunResult::spawn_failed(&e))
    }

    /// The spec's credential, checked; none without a source.
    async fn credential(&self, refresh: bool) -> Result<Option<Credential>, RunResult> {
        let Some(source) = &self.spec.credentials else {
            return Ok(None);
        };
        let got = if refresh {
            source.refresh_token().await
        } else {
            source.get_token().await
        };
        match got.and_then(|c| source.validate_token(&c).map(|()| c)) {
            Ok(c) => Ok(Some(c)),
            Err(e) => Err(RunResult {
                kind: ExitKind::AuthFailed,
                code: None,
                signal: None,
                by_manager: false,
                detail: format!("no usable credential: {e}"),
                outcome: RunOutcome::FailedPermanently,
                rate_limited: false,
            }),
        }
    }

    /// Program, arguments, environment and streams; hooks are added by the caller.
    fn builder(&self, workdir: Option<&Path>) -> ProcessConfigBuilder {
        let spec = &self.spec;
        let (program, args, claude) = match &spec.program {
            Program::Command { program, .. } => (program.clone(), self.args.clone(), false),
            Program::Claude { .. } => {
                let args = match &self.resume_id {
                    Some(id) => resumed(&self.args, id),
                    None => self.args.clone(),
                };
                (self.binary.clone(), args, true)
            }
        };
        let mut b = ProcessConfig::builder(program)
            .args(args)
            .stdin(spec.stdin)
            .foreground_terminal(spec.foreground_terminal)
            .stderr(spec.stderr)
            .grace(spec.grace);
        if let Some(cwd) = &spec.cwd {
            b = b.cwd(cwd);
        }
        if claude {
            // A clean environment: the CLI's settings pass, credentials only through the hook.
            b = b.env_policy(EnvPolicy::Clean);
            for (name, _) in std::env::vars_os() {
                if name.to_str().is_some_and(is_claude_setting) {
                    b = b.pass_env(name);
                }
            }
            b = b.env("CLAUDE_CODE_ENTRYPOINT", "sdk-claude-pm");
            if let Some(log) = &self.api_log {
                // In json and text output the CLI is silent about API errors until it gives
                // up, minutes later; its debug log, errors only, says at once. The arguments
                // stay as given; the file is in the session's own directory, removed with it.
                b = b
                    .env("DEBUG_SDK", "1")
                    .env("CLAUDE_CODE_DEBUG_LOGS_DIR", log)
                    .env("CLAUDE_CODE_DEBUG_LOG_LEVEL", "error");
            }
            // The manager watches stdout, so it is always piped as lines.
            b = b.stdout(match spec.stdout {
                OutputMode::Lines { .. } => spec.stdout,
                _ => OutputMode::Lines {
                    max_line: claude_proc::SESSION_MAX_LINE,
                },
            });
        } else {
            b = b.env_policy(EnvPolicy::Inherit).stdout(spec.stdout);
        }
        if let Some(dir) = workdir {
            if spec.dirs.config_dir {
                b = b.env("CLAUDE_CONFIG_DIR", dir.join(".claude"));
            }
            // An isolated session's HOME is its own: the manager's is not its to read.
            if spec.dirs.home || self.sandbox.is_some() {
                b = b.env("HOME", dir);
            }
        }
        for (k, v) in &spec.env {
            b = b.env(k, v);
        }
        for k in &spec.pass_env {
            b = b.pass_env(k);
        }
        b
    }
}

/// `args` continuing conversation `id`: `--resume=<id>` instead of whatever chose the
/// conversation of the first run (`--session-id`, `--resume`, `--continue`, `--fork-session`).
fn resumed(args: &[OsString], id: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut skip_value = false;
    for arg in args {
        // The value of a two-token `--resume ID`; a bare `--resume` is followed by a flag.
        if std::mem::take(&mut skip_value) && !arg.to_string_lossy().starts_with('-') {
            continue;
        }
        let text = arg.to_string_lossy();
        let flag = text.split_once('=').map_or(text.as_ref(), |(f, _)| f);
        match flag {
            "--session-id" | "--resume" | "-r" if !text.contains('=') => skip_value = true,
            "--session-id" | "--resume" | "-r" | "--continue" | "-c" | "--fork-session" => {}
            _ => out.push(arg.clone()),
        }
    }
    out.push(OsString::from(format!("--resume={id}")));
    out
}

/// Whether a run with `args` leaves a conversation the next one can resume (not with
/// `--no-session-persistence`: the CLI saves nothing, and a `--resume` would fail every run).
pub(crate) fn resumable(args: &[OsString]) -> bool {
    !args.iter().any(|a| a == "--no-session-persistence")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// `resumed(args, "abc")` as text.
    fn resumed_abc(args: &[OsString]) -> Vec<String> {
        resumed(args, "abc")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_resumed_run_replaces_how_the_first_chose_its_conversation() {
        let args = os(&[
            "-p",
            "--session-id=0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f",
            "--model=m",
            "--resume",
            "old",
            "--continue",
            "--fork-session",
        ]);
        let out = resumed_abc(&args);
        assert_eq!(out, ["-p", "--model=m", "--resume=abc"]);
    }

    #[test]
    fn a_bare_resume_keeps_the_flag_after_it_and_no_persistence_means_no_resume() {
        let args = os(&["--resume", "--verbose"]);
        let out = resumed_abc(&args);
        assert_eq!(out, ["--verbose", "--resume=abc"]);
        assert!(resumable(&args));
        let unsaved = os(&["-p", "--no-session-persistence"]);
        assert!(!resumable(&unsaved));
    }
}
