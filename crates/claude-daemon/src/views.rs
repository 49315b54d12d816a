//! How a session is shown: the list's view, with what the event log knows now, and the
//! detail of inspect.

use claude_manager::{SessionReport, SessionState};

use crate::daemon::Session;
use crate::wire::{ExitView, ProgramDef, SessionDetail, SessionView};

pub(crate) fn short(program: &ProgramDef) -> String {
    let (first, rest) = match program {
        ProgramDef::Command(argv) => (argv.first().cloned().unwrap_or_default(), argv.get(1..)),
        ProgramDef::Claude(args) => ("claude".to_owned(), Some(&args[..])),
    };
    let mut text = first;
    for arg in rest.unwrap_or_default() {
        if text.len() > 60 {
            text.push_str(" ...");
            break;
        }
        text.push(' ');
        text.push_str(arg);
    }
    text
}

pub(crate) fn exit_view(r: &SessionReport) -> ExitView {
    ExitView {
        reason: r.reason.as_str().to_owned(),
        code: r.code,
        signal: r.signal,
        detail: r.detail.clone(),
    }
}

pub(crate) fn view(name: &str, session: &Session) -> SessionView {
    let state = session.state.borrow().clone();
    let last = session.live.last.lock().ok().and_then(|l| l.clone());
    let runs = session.live.runs.lock().map(|r| *r).unwrap_or(0);
    let usage = session.live.usage.lock().ok().map(|u| *u);
    // "finished" once the report is kept, so a finished session always shows how it ended;
    // until then the manager's last word is still "stopping".
    let shown = match (&state, *session.done.borrow()) {
        (_, true) => "finished",
        (SessionState::Finished, false) => "stopping",
        (other, false) => other.as_str(),
    };
    SessionView {
        name: name.to_owned(),
        state: shown.to_owned(),
        pid: state.pid(),
        restarts: last.as_ref().map_or(runs.saturating_sub(1), |r| r.restarts),
        program: short(&session.def.program),
        last_exit: last.as_ref().map(exit_view),
        cpu_percent: None,
        rss_bytes: None,
        processes: None,
        health_summary: None,
        since: None,
        turns: usage.filter(|u| u.turns > 0).map(|u| u.turns),
        cost_usd: usage
            .filter(|u| u.turns > 0)
            .map(|u| (u.cost_usd * 1e6).round() / 1e6),
    }
}

/// `view` with what the event log knows now: the last sample, health and state change.
pub(crate) fn view_now(
    name: &str,
    session: &Session,
    events: &crate::events::EventLog,
) -> SessionView {
    let mut v = view(name, session);
    let now = events.now(name);
    v.cpu_percent = now.cpu_percent;
    v.rss_bytes = now.rss_bytes;
    v.processes = now.processes;
    v.health_summary = now.health;
    v.since = now.since;
    v
}

pub(crate) fn detail(
    name: &str,
    session: &Session,
    latest: crate::events::Latest,
) -> SessionDetail {
    SessionDetail {
        view: view(name, session),
        definition: session.def.to_json(true),
        claude_session_id: session
            .live
            .claude_session_id
            .lock()
            .ok()
            .and_then(|id| id.clone()),
        limits: session.limits.clone(),
        health: latest.health,
        last_sample: latest.sample,
    }
}
