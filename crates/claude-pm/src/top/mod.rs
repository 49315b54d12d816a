//! `claude-pm top`: a full-screen view of the daemon's sessions. It lists once, then follows
//! the event stream and redraws on events (and once a second for the uptimes); the selected
//! session's detail (limits, last exit, CPU and RSS of the last 15 minutes, log tail) is
//! fetched when it is opened and when that session reports. Keys stop, restart (each after a
//! confirmation) and follow logs. The terminal is restored on every way out: `q`, Ctrl-C,
//! SIGTERM, SIGHUP, an error, a panic.

mod draw;
mod fleet;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use claude_daemon::{Client, Samples};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::exit;
use crate::output::tell;
use fleet::{Effect, Fleet};

/// What the screen is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Table,
    Filter,
    /// Asking before an action on a session.
    Confirm(&'static str, String),
    Logs,
}

/// The opened session's detail.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detail {
    name: String,
    program: String,
    health: Option<String>,
    limits: Vec<(String, String)>,
    last_exit: Option<String>,
    cpu: Vec<u64>,
    rss: Vec<u64>,
    log_tail: Vec<String>,
}

/// The view's state.
pub(crate) struct Top {
    fleet: Fleet,
    selected: usize,
    detail: bool,
    detail_data: Option<Detail>,
    mode: Mode,
    message: Option<String>,
    log_lines: VecDeque<String>,
    log_name: Option<String>,
}

/// What wakes the loop.
enum Input {
    Key(KeyEvent),
    Resize,
    Record(Value),
    Listed(Vec<claude_daemon::wire::SessionView>),
    Detail(Box<Detail>),
    Log(String),
    Said(String),
    Quit,
}

const LOG_LINES: usize = 2000;

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Restores the terminal when dropped.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        crossterm::terminal::enable_raw_mode()?;
        let guard = Screen;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Run the view against `client` until the operator quits; the exit status.
pub(crate) async fn top(client: Client) -> u8 {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        tell!("claude-pm top: needs a terminal; for scripts use `claude-pm ps --json`");
        return exit::USAGE;
    }
    let (list, seq) = match client.list_with_seq().await {
        Ok(answer) => answer,
        Err(e) => {
            tell!("claude-pm top: {e}");
            return exit::USAGE;
        }
    };
    let screen = match Screen::enter() {
        Ok(s) => s,
        Err(e) => {
            tell!("claude-pm top: cannot take the terminal: {e}");
            return exit::USAGE;
        }
    };
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = match ratatui::Terminal::new(backend) {
        Ok(t) => t,
        Err(e) => {
            drop(screen);
            tell!("claude-pm top: {e}");
            return exit::USAGE;
        }
    };
    let mut top = Top {
        fleet: Fleet::default(),
        selected: 0,
        detail: false,
        detail_data: None,
        mode: Mode::Table,
        message: None,
        log_lines: VecDeque::new(),
        log_name: None,
    };
    top.fleet.load(list);
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = start_inputs(&client, &tx, seq);
    let result = run(&mut terminal, &mut top, &client, &tx, rx).await;
    for task in tasks {
        task.abort();
    }
    drop(terminal);
    drop(screen);
    match result {
        Ok(()) => 0,
        Err(e) => {
            tell!("claude-pm top: {e}");
            exit::USAGE
        }
    }
}

/// The key reader, the event follower (from the events after `seq`, the list's) and the
/// signal watcher.
fn start_inputs(
    client: &Client,
    tx: &mpsc::UnboundedSender<Input>,
    seq: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let keys = tx.clone();
    std::thread::spawn(move || loop {
        let input = match crossterm::event::read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => Input::Key(key),
            Ok(Event::Resize(..)) => Input::Resize,
            Ok(_) => continue,
            Err(_) => Input::Quit,
        };
        if keys.send(input).is_err() {
            return;
        }
    });
    let events = tx.clone();
    let follower = client.clone();
    let follow = tokio::spawn(async move {
        let result = follower
            .events(seq, true, Samples::Changed, |line| {
                if let Ok(record) = serde_json::from_str(line) {
                    let _ = events.send(Input::Record(record));
                }
            })
            .await;
        let why = match result {
            Ok(()) => "the daemon's event stream ended".to_owned(),
            Err(e) => format!("the event stream: {e}"),
        };
        let _ = events.send(Input::Said(why));
    });
    let quit = tx.clone();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = quit.send(Input::Quit);
    });
    vec![follow, signals]
}

async fn run(
    terminal: &mut ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>,
    top: &mut Top,
    client: &Client,
    tx: &mpsc::UnboundedSender<Input>,
    mut rx: mpsc::UnboundedReceiver<Input>,
) -> std::io::Result<()> {
    let mut log_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut detail_asked = Instant::now() - Duration::from_secs(60);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        terminal.draw(|frame| draw::screen(frame, top))?;
        let input = tokio::select! {
            input = rx.recv() => input.unwrap_or(Input::Quit),
            _ = tick.tick() => {
                // Samples that repeat are not streamed, so an idle session's detail (its
                // sparklines) is fetched again every 5 s as well.
                if top.detail && detail_asked.elapsed() > Duration::from_secs(5) {
                    detail_asked = Instant::now();
                    fetch_detail(client, tx, selected_name(top));
                }
                continue;
            }
        };
        let selected = selected_name(top);
        match input {
            Input::Quit => break,
            Input::Resize => {}
            Input::Record(record) => {
                let about = record
                    .get("session")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Effect::Unknown(_) = top.fleet.apply(&record) {
                    relist(client, tx);
                }
                // The opened session's detail follows its own events, at most every 2 s.
                let ours = about.is_some() && about == selected;
                if top.detail && ours && detail_asked.elapsed() > Duration::from_secs(2) {
                    detail_asked = Instant::now();
                    fetch_detail(client, tx, selected.clone());
                }
            }
            Input::Listed(list) => {
                let names: Vec<String> = list.iter().map(|v| v.name.clone()).collect();
                top.fleet.load(list);
                top.fleet.retain(&names);
            }
            Input::Detail(d) => top.detail_data = Some(*d),
            Input::Log(line) => {
                top.log_lines.push_back(line);
                if top.log_lines.len() > LOG_LINES {
                    top.log_lines.pop_front();
                }
            }
            Input::Said(message) => top.message = Some(message),
            Input::Key(key) => match on_key(top, key) {
                Action::Quit => break,
                Action::None => {}
                Action::Detail => {
                    detail_asked = Instant::now();
                    top.detail_data = None;
                    fetch_detail(client, tx, selected_name(top));
                }
                Action::Do(verb, name) => act(client, tx, verb, name),
                Action::FollowLogs(name) => {
                    top.log_lines.clear();
                    top.log_name = Some(name.clone());
                    log_task = Some(follow_logs(client, tx, name));
                }
                Action::StopLogs => {
                    if let Some(task) = log_task.take() {
                        task.abort();
                    }
                }
            },
        }
    }
    if let Some(task) = log_task {
        task.abort();
    }
    Ok(())
}

fn selected_name(top: &Top) -> Option<String> {
    let shown = top.fleet.shown();
    shown
        .get(top.selected.min(shown.len().saturating_sub(1)))
        .map(|r| r.name.clone())
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    None,
    Quit,
    Detail,
    Do(&'static str, String),
    FollowLogs(String),
    StopLogs,
}

/// Apply `key` to the view's state.
fn on_key(top: &mut Top, key: KeyEvent) -> Action {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl_c {
        return Action::Quit;
    }
    match top.mode.clone() {
        Mode::Confirm(verb, name) => {
            top.mode = Mode::Table;
            if key.code == KeyCode::Char('y') {
                return Action::Do(verb, name);
            }
            top.message = Some(format!("{verb} of {name} cancelled"));
            Action::None
        }
        Mode::Filter => {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => top.mode = Mode::Table,
                KeyCode::Backspace => {
                    top.fleet.filter.pop();
                }
                KeyCode::Char(c) => top.fleet.filter.push(c),
                _ => {}
            }
            top.selected = 0;
            Action::None
        }
        Mode::Logs => match key.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Backspace => {
                top.mode = Mode::Table;
                Action::StopLogs
            }
            _ => Action::None,
        },
        Mode::Table => table_key(top, key),
    }
}

fn table_key(top: &mut Top, key: KeyEvent) -> Action {
    let count = top.fleet.shown().len();
    let selected = selected_name(top);
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => {
            top.selected = top.selected.min(count.saturating_sub(1)).saturating_sub(1);
        }
        KeyCode::Down | KeyCode::Char('j') => {
            top.selected = (top.selected + 1).min(count.saturating_sub(1));
        }
        KeyCode::Char('o') => top.fleet.sort = top.fleet.sort.next(),
        KeyCode::Char('/') => top.mode = Mode::Filter,
        KeyCode::Enter => {
            top.detail = !top.detail;
            if top.detail {
                return Action::Detail;
            }
        }
        KeyCode::Char('s') | KeyCode::Char('r') => {
            if let Some(name) = selected.clone() {
                let verb = if key.code == KeyCode::Char('s') {
                    "stop"
                } else {
                    "restart"
                };
                top.mode = Mode::Confirm(verb, name);
            }
        }
        KeyCode::Char('l') => {
            if let Some(name) = selected.clone() {
                top.mode = Mode::Logs;
                return Action::FollowLogs(name);
            }
        }
        _ => {}
    }
    if top.detail && selected_name(top) != selected {
        return Action::Detail;
    }
    Action::None
}

fn relist(client: &Client, tx: &mpsc::UnboundedSender<Input>) {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        if let Ok(list) = client.list().await {
            let _ = tx.send(Input::Listed(list));
        }
    });
}

fn act(client: &Client, tx: &mpsc::UnboundedSender<Input>, verb: &'static str, name: String) {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let result = match verb {
            "stop" => client.stop(&name).await,
            _ => client.restart(&name).await,
        };
        let said = match result {
            Ok(_) => format!("{verb} of {name} asked"),
            Err(e) => format!("{verb} of {name} failed: {e}"),
        };
        let _ = tx.send(Input::Said(said));
    });
}

fn follow_logs(
    client: &Client,
    tx: &mpsc::UnboundedSender<Input>,
    name: String,
) -> tokio::task::JoinHandle<()> {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let result = client
            .follow_logs(&name, |line| {
                let _ = tx.send(Input::Log(line.to_owned()));
            })
            .await;
        if let Err(e) = result {
            let _ = tx.send(Input::Log(format!("(the log stream ended: {e})")));
        }
    })
}

fn fetch_detail(client: &Client, tx: &mpsc::UnboundedSender<Input>, name: Option<String>) {
    let Some(name) = name else { return };
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let (Ok(inspect), Ok(history)) = (client.inspect(&name).await, client.history(&name).await)
        else {
            return;
        };
        let logs = client.logs(&name).await.unwrap_or_default();
        let view = &inspect.view;
        let detail = Detail {
            name: name.clone(),
            program: view.program.clone(),
            health: view.health_summary.clone().or_else(|| {
                inspect
                    .health
                    .as_ref()
                    .and_then(|h| h.get("status").and_then(Value::as_str).map(str::to_owned))
            }),
            limits: inspect
                .limits
                .iter()
                .map(|l| (l.limit.clone(), l.mechanism.clone()))
                .collect(),
            last_exit: view.last_exit.as_ref().map(|e| {
                let how = match (e.code, e.signal) {
                    (Some(code), _) => format!("code {code}"),
                    (None, Some(sig)) => claude_manager::proc::signal_name(sig)
                        .unwrap_or("a signal")
                        .to_owned(),
                    _ => String::new(),
                };
                format!("{} {how}: {}", e.reason, e.detail)
            }),
            cpu: history
                .points
                .iter()
                .map(|p| p.cpu_percent.max(0.0).round() as u64)
                .collect(),
            rss: history.points.iter().map(|p| p.rss_bytes).collect(),
            log_tail: {
                let lines: Vec<&str> = logs.lines().collect();
                let from = lines.len().saturating_sub(200);
                lines[from..].iter().map(|l| (*l).to_owned()).collect()
            },
        };
        let _ = tx.send(Input::Detail(Box::new(detail)));
    });
}
