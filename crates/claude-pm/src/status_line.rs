//! The live status line on a terminal: state, pid, CPU%, RSS, processes, elapsed.
//!
//! The line has the terminal's bottom row to itself: a scroll region (DECSTBM) keeps the
//! child's output in the rows above, as apt's progress bar does. Every draw is one write that
//! saves the cursor, draws on the bottom row and restores the cursor, so the child's bytes
//! (even half a line) are never written over or split. At the end the region is reset and the
//! row cleared. The line is only used where the child cannot be an interactive program on the
//! same terminal (claude-pm's stdin is not a terminal).

use std::time::Instant;

use claude_manager::{EventKind, ManagerEvent};

/// Save the cursor (DECSC).
const SAVE: &str = "\x1b7";
/// Restore the cursor (DECRC).
const RESTORE: &str = "\x1b8";

/// The status line on stderr.
#[derive(Debug)]
pub(crate) struct StatusLine {
    /// The terminal's rows when the scroll region was set (0: given back).
    rows: u16,
}

/// The size of the terminal on stderr: (rows, columns).
fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills the struct we pass; zeroed is a valid winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row >= 3 && ws.ws_col >= 10).then_some((ws.ws_row, ws.ws_col))
}

impl StatusLine {
    /// Reserve the bottom row, before anything of the child's is on the screen (the new line
    /// that makes room must not land in the middle of the child's output). `None` when stderr's
    /// terminal has no usable size.
    pub(crate) fn start() -> Option<StatusLine> {
        let (rows, _) = size()?;
        let mut line = StatusLine { rows: 0 };
        let setup = line.region(rows);
        crate::output::stderr_raw(setup.as_bytes());
        Some(line)
    }

    /// Redraw for `event` if it changes what the line says.
    pub(crate) fn show(&mut self, event: &ManagerEvent, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        let line = match &event.kind {
            EventKind::State { to, .. } => format!(
                "[{}] {} pid {}  {:.1}s",
                event.session,
                to.as_str(),
                to.pid().map_or("-".into(), |p| p.to_string()),
                elapsed
            ),
            EventKind::Sample {
                cpu_percent,
                rss_bytes,
                processes,
                ..
            } => format!(
                "[{}] running  cpu {:>5.1}%  rss {:>6.1} MiB  procs {}  {:.1}s",
                event.session,
                cpu_percent,
                *rss_bytes as f64 / (1 << 20) as f64,
                processes,
                elapsed
            ),
            _ => return,
        };
        let Some((rows, cols)) = size() else {
            return;
        };
        if self.rows == 0 {
            return;
        }
        let mut out = String::new();
        if rows != self.rows {
            // Resized: the region follows the new bottom row.
            out.push_str(&self.region(rows));
        }
        let width = usize::from(cols).saturating_sub(1);
        let text: String = line.chars().take(width).collect();
        out.push_str(&format!("{SAVE}\x1b[{rows};1H\x1b[2K{text}{RESTORE}"));
        crate::output::stderr_raw(out.as_bytes());
    }

    /// The bytes that reserve the bottom row of a `rows`-row terminal: the first time, a new
    /// line makes room and the cursor goes back up into the region.
    fn region(&mut self, rows: u16) -> String {
        let first = self.rows == 0;
        self.rows = rows;
        let scroll = format!("{SAVE}\x1b[1;{}r{RESTORE}", rows - 1);
        if first {
            format!("\n{scroll}\x1b[1A")
        } else {
            scroll
        }
    }

    /// Give the bottom row back: reset the region and clear the row.
    pub(crate) fn clear(&mut self) {
        if self.rows == 0 {
            return;
        }
        let rows = size().map_or(self.rows, |(r, _)| r);
        crate::output::stderr_raw(format!("{SAVE}\x1b[r\x1b[{rows};1H\x1b[2K{RESTORE}").as_bytes());
        self.rows = 0;
    }
}

impl Drop for StatusLine {
    /// Whatever path claude-pm leaves by, the terminal gets its bottom row back.
    fn drop(&mut self) {
        self.clear();
    }
}
