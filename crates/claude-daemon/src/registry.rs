//! The embedded registry: `<state_dir>/registry.db`, SQLite in WAL mode (an operator can open
//! it with `sqlite3`). It keeps the definitions of sessions created through the API (the
//! config file's are the file's), and every finished session's report. Each change is one
//! transaction, so a daemon killed at any moment leaves the last committed state, readable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::wire::{ExitView, SessionDef};

/// The registry's file in a state directory.
pub fn registry_path(state_dir: &Path) -> PathBuf {
    state_dir.join("registry.db")
}

/// The open registry.
pub struct Registry {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

fn db_error(path: &Path, op: &str, e: rusqlite::Error) -> Error {
    Error::Io {
        op: format!("{op} ({})", path.display()),
        source: std::io::Error::other(e.to_string()),
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sessions (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS claude_sessions (
        session TEXT NOT NULL,
        session_id TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (session, session_id)
    );
    CREATE TABLE IF NOT EXISTS reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session TEXT NOT NULL,
        ended_at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        code INTEGER,
        signal INTEGER,
        restarts INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Registry {
    /// Open (creating) the registry at `path`, in WAL mode, mode 0600.
    pub fn open(path: &Path) -> Result<Registry> {
        let conn = Connection::open(path).map_err(|e| db_error(path, "open the registry", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| db_error(path, "prepare the registry", e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        Ok(Registry {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(&self, op: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|e| db_error(&self.path, op, e))
    }

    /// Keep an API-made session's definition (secrets included: the file is the daemon's own,
    /// mode 0600 in a 0700 directory).
    pub fn put(&self, def: &SessionDef) -> Result<()> {
        let text = def.to_json(false).to_string();
        self.with("record a session", |c| {
            c.execute(
                "INSERT OR REPLACE INTO sessions (name, definition, created_at) VALUES (?1, ?2, ?3)",
                params![def.name, text, now()],
            )
            .map(|_| ())
        })
    }

    /// Forget a session: its definition and the Claude conversations it had (a new session of
    /// the same name starts its own).
    pub fn remove(&self, name: &str) -> Result<()> {
        self.with("forget a session", |c| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            let done = c
                .execute("DELETE FROM sessions WHERE name = ?1", params![name])
                .and_then(|_| {
                    c.execute(
                        "DELETE FROM claude_sessions WHERE session = ?1",
                        params![name],
                    )
                });
            match done {
                Ok(_) => c.execute_batch("COMMIT"),
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    /// Every kept definition, oldest first; a row that no longer reads as a definition (a
    /// setting renamed since) is returned as its name and why.
    pub fn definitions(&self) -> Result<Vec<std::result::Result<SessionDef, (String, String)>>> {
        let rows: Vec<(String, String)> = self.with("read the sessions", |c| {
            let mut stmt =
                c.prepare("SELECT name, definition FROM sessions ORDER BY created_at, name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .map(|(name, text)| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|v| SessionDef::from_json(&v).map_err(|e| e.to_string()))
                    .map_err(|why| (name, why))
            })
            .collect())
    }

    /// Keep a finished session's report.
    pub fn report(&self, name: &str, exit: &ExitView, restarts: u32) -> Result<()> {
        self.with("record a report", |c| {
            c.execute(
                "INSERT INTO reports (session, ended_at, reason, code, signal, restarts, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    name,
                    now(),
                    exit.reason,
                    exit.code,
                    exit.signal,
                    restarts,
                    exit.detail
                ],
            )
            .map(|_| ())
        })
    }

    /// The last `limit` reports of `name`, newest first: when each ended (seconds since the
    /// epoch), how, and after how many restarts.
    pub fn reports(&self, name: &str, limit: u32) -> Result<Vec<crate::wire::ExitRecord>> {
        self.with("read reports", |c| {
            let mut stmt = c.prepare(
                "SELECT ended_at, reason, code, signal, restarts, detail FROM reports
                 WHERE session = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![name, limit], |r| {
                let reason: String = r.get(1)?;
                let detail: String = r.get(5)?;
                Ok(crate::wire::ExitRecord {
                    ended_at: r.get::<_, i64>(0).map(|t| u64::try_from(t).unwrap_or(0))?,
                    exit: ExitView::new(&reason, r.get(2)?, r.get(3)?, &detail),
                    restarts: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// SQLite's own check of the file (`PRAGMA integrity_check`): `ok`, or what is wrong.
    pub fn integrity(&self) -> Result<String> {
        self.with("check the registry", |c| {
            c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        })
    }

    /// Keep a Claude session id `name`'s CLI reported (the id a resume would need); one seen
    /// again becomes the latest.
    pub fn claude_session(&self, name: &str, session_id: &str) -> Result<()> {
        self.with("record a Claude session id", |c| {
            c.execute(
                "INSERT OR REPLACE INTO claude_sessions (session, session_id, seen_at) VALUES (?1, ?2, ?3)",
                params![name, session_id, now()],
            )
            .map(|_| ())
        })
    }

    /// The Claude session ids kept for `name`, oldest first.
    pub fn claude_sessions(&self, name: &str) -> Result<Vec<String>> {
        self.with("read Claude session ids", |c| {
            let mut stmt = c.prepare(
                "SELECT session_id FROM claude_sessions WHERE session = ?1 ORDER BY seen_at, rowid",
            )?;
            let rows = stmt.query_map(params![name], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// How many reports are kept for `name`.
    pub fn report_count(&self, name: &str) -> Result<u64> {
        self.with("count reports", |c| {
            c.query_row(
                "SELECT COUNT(*) FROM reports WHERE session = ?1",
                params![name],
                |r| r.get(0),
            )
        })
    }
}
