//! Drawing `claude-pm top`: the session table, the detail pane of the selected session, the
//! log view, and the line of keys.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Paragraph, Row as TableRow, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;

use super::fleet::{bytes, duration, Row};
use super::{Mode, Top};

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn state_style(state: &str) -> Style {
    match state {
        "running" => Style::default().fg(Color::Green),
        "backing_off" | "stopping" => Style::default().fg(Color::Yellow),
        "finished" => Style::default().fg(Color::DarkGray),
        _ => Style::default().fg(Color::Cyan),
    }
}

fn health_style(health: &str) -> Style {
    if health.starts_with("healthy") {
        Style::default()
    } else {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

/// The cells of one row.
fn cells(row: &Row, now: f64) -> TableRow<'static> {
    let health = row.health.clone().unwrap_or_else(|| "-".into());
    let short_health = health.split(':').next().unwrap_or("-").to_owned();
    TableRow::new(vec![
        Cell::from(row.name.clone()),
        Cell::from(row.state.clone()).style(state_style(&row.state)),
        Cell::from(dash(row.pid)),
        Cell::from(row.cpu.map_or_else(|| "-".into(), |c| format!("{c:.1}"))),
        Cell::from(row.rss.map_or_else(|| "-".into(), bytes)),
        Cell::from(dash(row.processes)),
        Cell::from(short_health.clone()).style(health_style(&short_health)),
        Cell::from(row.restarts.to_string()),
        Cell::from(dash(row.turns)),
        Cell::from(row.cost.map_or_else(|| "-".into(), |c| format!("${c:.2}"))),
        Cell::from(
            row.since
                .filter(|_| row.state == "running")
                .map_or_else(|| "-".into(), |s| duration(now - s)),
        ),
    ])
}

/// The whole screen.
pub(crate) fn screen(frame: &mut Frame<'_>, top: &mut Top) {
    let area = frame.area();
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(3), Constraint::Length(1)])
        .split(area);
    match top.mode {
        Mode::Logs => logs(frame, top, parts[0]),
        _ if top.detail => {
            let halves = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
                .split(parts[0]);
            table(frame, top, halves[0]);
            detail(frame, top, halves[1]);
        }
        _ => table(frame, top, parts[0]),
    }
    frame.render_widget(Paragraph::new(status_line(top)), parts[1]);
}

fn status_line(top: &Top) -> Line<'static> {
    let key = |k: &str| {
        Span::styled(
            k.to_owned(),
            Style::default().add_modifier(Modifier::REVERSED),
        )
    };
    match &top.mode {
        Mode::Confirm(action, name) => Line::from(vec![
            Span::raw(format!("{action} {name}? ")),
            key("y"),
            Span::raw(" yes  "),
            key("n"),
            Span::raw(" no"),
        ]),
        Mode::Filter => Line::from(format!("filter: {}_", top.fleet.filter)),
        Mode::Logs => Line::from(vec![
            key("Esc"),
            Span::raw(" back  "),
            key("q"),
            Span::raw(" quit"),
        ]),
        Mode::Table => {
            let mut spans = vec![
                key("↑↓"),
                Span::raw(" select "),
                key("Enter"),
                Span::raw(" detail "),
                key("s"),
                Span::raw(" stop "),
                key("r"),
                Span::raw(" restart "),
                key("l"),
                Span::raw(" logs "),
                key("o"),
                Span::raw(format!(" sort: {} ", top.fleet.sort.label())),
                key("/"),
                Span::raw(" filter "),
                key("q"),
                Span::raw(" quit"),
            ];
            if let Some(message) = &top.message {
                spans.push(Span::styled(
                    format!("  {message}"),
                    Style::default().fg(Color::Yellow),
                ));
            }
            Line::from(spans)
        }
    }
}

fn table(frame: &mut Frame<'_>, top: &mut Top, area: Rect) {
    let now = super::now_secs();
    let shown = top.fleet.shown();
    let rows: Vec<TableRow<'static>> = shown.iter().map(|r| cells(r, now)).collect();
    let count = rows.len();
    let header = TableRow::new(
        [
            "NAME", "STATE", "PID", "CPU%", "RSS", "PROCS", "HEALTH", "RESTARTS", "TURNS", "COST",
            "UPTIME",
        ]
        .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
    );
    let widths = [
        Constraint::Min(12),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let title = format!(" claude-pm top: {count} of {} sessions ", top.fleet.len());
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    if count > 0 {
        state.select(Some(top.selected.min(count - 1)));
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn detail(frame: &mut Frame<'_>, top: &Top, area: Rect) {
    let Some(detail) = &top.detail_data else {
        let p = Paragraph::new("loading ...").block(Block::default().borders(Borders::ALL));
        frame.render_widget(p, area);
        return;
    };
    let columns = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(45), Constraint::Percentage(55)])
        .split(area);
    let mut lines = vec![Line::from(Span::styled(
        detail.name.clone(),
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    lines.push(Line::from(format!("program: {}", detail.program)));
    lines.push(Line::from(format!(
        "health: {}",
        detail.health.clone().unwrap_or_else(|| "-".into())
    )));
    if detail.limits.is_empty() {
        lines.push(Line::from("limits: none"));
    }
    for (limit, mechanism) in &detail.limits {
        lines.push(Line::from(format!("limit {limit}: {mechanism}")));
    }
    lines.push(Line::from(format!(
        "last exit: {}",
        detail.last_exit.clone().unwrap_or_else(|| "-".into())
    )));
    let info = Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(Block::default().borders(Borders::ALL).title(" session "));
    frame.render_widget(info, columns[0]);

    let right = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Min(2),
        ])
        .split(columns[1]);
    let cpu_now = detail.cpu.last().copied().unwrap_or(0);
    let cpu = Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" CPU% (15 min), now {cpu_now} ")),
        )
        .data(&detail.cpu)
        .style(Style::default().fg(Color::Green));
    frame.render_widget(cpu, right[0]);
    let rss_now = detail.rss.last().copied().unwrap_or(0);
    let rss = Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" RSS (15 min), now {} ", bytes(rss_now))),
        )
        .data(&detail.rss)
        .style(Style::default().fg(Color::Magenta));
    frame.render_widget(rss, right[1]);
    frame.render_widget(
        tail(detail.log_tail.iter(), right[2], " log ".into()),
        right[2],
    );
}

/// The last of `lines` that fit inside `area`'s border, in a bordered paragraph.
fn tail<'a>(
    lines: impl ExactSizeIterator<Item = &'a String>,
    area: Rect,
    title: String,
) -> Paragraph<'static> {
    let height = usize::from(area.height.saturating_sub(2));
    let skip = lines.len().saturating_sub(height);
    let shown: Vec<Line<'static>> = lines.skip(skip).map(|l| Line::from(l.clone())).collect();
    Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title))
}

fn logs(frame: &mut Frame<'_>, top: &Top, area: Rect) {
    let title = format!(
        " logs of {} (following) ",
        top.log_name.clone().unwrap_or_default()
    );
    frame.render_widget(tail(top.log_lines.iter(), area, title), area);
}
