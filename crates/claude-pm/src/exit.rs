//! The exit-status contract of `claude-pm run` and `claude-pm claude`, in one table (as
//! cargo-nextest keeps its exit codes): every status claude-pm itself chooses is here, and the
//! README's list is checked against [`CONTRACT`].

use claude_manager::{ExitKind, SessionReport};

/// The wall-clock timeout ran out (as `timeout(1)`).
pub(crate) const TIMEOUT: u8 = 124;
/// claude-pm's own usage or configuration error: nothing was started.
pub(crate) const USAGE: u8 = 125;
/// The program exists but cannot be executed.
pub(crate) const NOT_EXECUTABLE: u8 = 126;
/// The program was not found.
pub(crate) const NOT_FOUND: u8 = 127;
/// A limit's enforcer killed the tree (memory, pids, CPU time).
pub(crate) const LIMIT_KILL: u8 = 137;
/// The credential was rejected (sysexits' `EX_NOPERM`).
pub(crate) const AUTH_FAILED: u8 = 77;
/// claude-pm stopped the tree as hung or unhealthy and it ended within the grace period
/// (128 + SIGTERM, whatever code the child chose).
pub(crate) const STOPPED_FOR_HEALTH: u8 = 143;
/// The session ended without a report (the runtime shut down).
pub(crate) const NO_REPORT: u8 = 1;
/// The reader of claude-pm's stdout went away; the tree was stopped (128 + SIGPIPE, as a
/// shell reports a pipeline member SIGPIPE ended).
pub(crate) const READER_GONE: u8 = 141;

/// Every status, what it means, in the order the README lists them.
pub(crate) const CONTRACT: &[(&str, &str)] = &[
    ("N", "the child's own exit code"),
    ("124", "timeout"),
    (
        "125",
        "claude-pm's own usage, configuration or internal error",
    ),
    ("126", "not executable"),
    ("127", "not found"),
    (
        "137",
        "a limit killed it, or it outlived the grace period of a stop claude-pm made",
    ),
    ("143", "claude-pm stopped it as hung or unhealthy"),
    ("77", "the credential was rejected (auth_failed)"),
    ("128+N", "signal N that claude-pm did not send"),
    (
        "141",
        "the reader of claude-pm's own stdout went away (the tree was stopped)",
    ),
];

/// The contract as help text (`claude-pm run --help`).
pub(crate) fn help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in CONTRACT {
        text.push_str(&format!("  {code:<6} {meaning}\n"));
    }
    text
}

/// The status a report maps to.
pub(crate) fn status(report: &SessionReport) -> u8 {
    match report.reason {
        ExitKind::Timeout => TIMEOUT,
        ExitKind::MemoryLimit | ExitKind::PidsLimit | ExitKind::CpuTimeLimit => LIMIT_KILL,
        ExitKind::SpawnFailed => match report.code {
            Some(127) => NOT_FOUND,
            _ => NOT_EXECUTABLE,
        },
        // claude-pm's own stop, whatever code the child chose on its way out.
        ExitKind::Hung | ExitKind::Unhealthy => match report.signal {
            Some(9) if report.signal_sent_by_manager => LIMIT_KILL,
            _ => STOPPED_FOR_HEALTH,
        },
        ExitKind::AuthFailed => AUTH_FAILED,
        ExitKind::InternalError => USAGE,
        _ => match (report.code, report.signal) {
            (Some(code), _) => u8::try_from(code.clamp(0, 255)).unwrap_or(1),
            (None, Some(signal)) => by_signal(signal),
            (None, None) => 1,
        },
    }
}

/// 128 + the signal number.
fn by_signal(signal: i32) -> u8 {
    u8::try_from(128 + signal.clamp(1, 127)).unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reason: ExitKind, code: Option<i32>, signal: Option<i32>) -> SessionReport {
        let mut r = SessionReport::new("t", reason);
        r.code = code;
        r.signal = signal;
        r
    }

    #[test]
    fn reports_map_to_the_contract() {
        assert_eq!(status(&report(ExitKind::Exited, Some(3), None)), 3);
        assert_eq!(status(&report(ExitKind::Signaled, None, Some(11))), 139);
        assert_eq!(status(&report(ExitKind::Timeout, None, Some(15))), 124);
        assert_eq!(status(&report(ExitKind::MemoryLimit, None, Some(9))), 137);
        assert_eq!(status(&report(ExitKind::PidsLimit, Some(1), None)), 137);
        assert_eq!(status(&report(ExitKind::SpawnFailed, Some(127), None)), 127);
        assert_eq!(status(&report(ExitKind::SpawnFailed, Some(126), None)), 126);
        assert_eq!(status(&report(ExitKind::Stopped, Some(0), None)), 0);
        assert_eq!(status(&report(ExitKind::Stopped, None, Some(15))), 143);
        assert_eq!(status(&report(ExitKind::Exited, Some(300), None)), 255);
        // claude-pm's own stops: a child that traps SIGTERM and exits 0 still reads as stopped.
        assert_eq!(status(&report(ExitKind::Unhealthy, Some(0), None)), 143);
        assert_eq!(status(&report(ExitKind::Hung, None, Some(15))), 143);
        let mut killed = report(ExitKind::Hung, None, Some(9));
        killed.signal_sent_by_manager = true;
        assert_eq!(status(&killed), 137);
        assert_eq!(status(&report(ExitKind::AuthFailed, Some(1), None)), 77);
        assert_eq!(status(&report(ExitKind::InternalError, None, None)), 125);
    }

    #[test]
    fn the_readme_lists_the_contract() {
        let readme = include_str!("../../../README.md");
        let line = readme
            .lines()
            .find(|l| l.contains("Exit status:"))
            .expect("the README has an exit-status line");
        let start = readme.find(line).unwrap_or(0);
        let text = readme[start..].split("\n\n").next().unwrap_or_default();
        for (code, _) in CONTRACT.iter().filter(|(c, _)| *c != "N") {
            assert!(
                text.contains(code),
                "README exit statuses lack {code}: {text}"
            );
        }
    }
}
