//! The daemon's config file: top-level settings are every session's defaults, and each
//! `[[session]]` table defines a session started at boot.

use std::collections::BTreeSet;
use std::path::Path;

use claude_manager::{Settings, MAX_CONFIG_BYTES, SESSION_TABLES};

use crate::error::{Error, Result};
use crate::wire::SessionDef;

/// What a config file says to the daemon.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DaemonConfig {
    /// The defaults of every session (and the daemon's own settings).
    pub settings: Settings,
    /// The `[[session]]` tables, in order.
    pub sessions: Vec<SessionDef>,
}

/// The text of a config file of at most [`MAX_CONFIG_BYTES`].
fn read_small(path: &Path) -> Result<String> {
    let bad = |why: String| Error::Config {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(bad(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))
}

/// Read `path`: its settings, and its sessions (names unique, each checked as an API request
/// would be, the error naming the table).
pub fn load(path: &Path) -> Result<DaemonConfig> {
    let bad = |why: String| Error::Config {
        path: path.to_path_buf(),
        why,
    };
    let text = read_small(path)?;
    let settings = Settings::from_toml(&text, path).map_err(Error::Settings)?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let mut sessions = Vec::new();
    let mut names = BTreeSet::new();
    if let Some(tables) = table.get(SESSION_TABLES) {
        let tables = tables
            .as_array()
            .ok_or_else(|| bad("session must be [[session]] tables".into()))?;
        for (i, t) in tables.iter().enumerate() {
            let json = serde_json::to_value(t).map_err(|e| bad(e.to_string()))?;
            let def = SessionDef::from_json(&json)
                .map_err(|e| bad(format!("[[session]] number {}: {e}", i + 1)))?;
            if !names.insert(def.name.clone()) {
                return Err(bad(format!("two sessions are named {:?}", def.name)));
            }
            sessions.push(def);
        }
    }
    Ok(DaemonConfig { settings, sessions })
}

/// One session's definition from a file of its own (`claude-pm start --config FILE`): a TOML
/// table (`name = ...`, `command = [...]`, settings), or a JSON object if the file is JSON.
pub fn definition_file(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let bad = |why: String| Error::Config {
        path: path.to_path_buf(),
        why,
    };
    let text = read_small(path)?;
    let value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.to_string()))?;
        serde_json::to_value(table).map_err(|e| bad(e.to_string()))?
    };
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(bad("must be one session's table".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_come_from_tables_and_bad_ones_name_their_table() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("pm.toml");
        let write = |text: &str| std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
        write("memory = \"1G\"\n[[session]]\nname = \"a\"\ncommand = [\"/bin/sleep\", \"9\"]\n[[session]]\nname = \"b\"\nclaude = [\"-p\", \"hi\"]\nrestart = \"always\"\n");
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.sessions.len(), 2);
        assert!(config.settings.contains("memory"));
        for (text, says) in [
            ("[[session]]\nname = \"a\"\ncommand = [\"x\"]\n[[session]]\nname = \"a\"\ncommand = [\"y\"]\n", "two sessions"),
            ("[[session]]\nname = \"a\"\ncommand = [\"x\"]\nmemory = \"lots\"\n", "[[session]] number 1: memory"),
            ("session = 3\n", "[[session]] tables"),
            ("[[session]]\ncommand = [\"x\"]\n", "name: is required"),
        ] {
            write(text);
            let err = load(&file).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
