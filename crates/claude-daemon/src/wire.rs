//! What crosses the socket, shared by the server and the client commands so they cannot
//! drift: a session's definition (the keys of a `[[session]]` table, as JSON or TOML), the
//! views of sessions, and the error body.

use std::collections::BTreeMap;

use claude_manager::{setting, SessionSpec, Settings, SettingsSource};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A session's name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (never a
/// path, never an option).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Field {
            field: "name".into(),
            why: "must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with . or -".into(),
        })
    }
}

/// What a session runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgramDef {
    /// `command = ["program", "arg", ...]`.
    Command(Vec<String>),
    /// `claude = ["arg", ...]`: the Claude CLI with its credential injected.
    Claude(Vec<String>),
}

impl ProgramDef {
    /// Whether this is a Claude session taking turns on stdin (`--input-format stream-json`).
    pub fn is_stream_json(&self) -> bool {
        matches!(self, ProgramDef::Claude(args)
            if args.windows(2).any(|w| w == ["--input-format", "stream-json"]))
    }
}

/// A session's definition: its name, its program, and setting keys with their text values
/// (repeatable ones once per value), in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionDef {
    /// The unique name.
    pub name: String,
    /// What runs.
    pub program: ProgramDef,
    /// Setting keys and values as text.
    pub settings: Vec<(String, String)>,
}

/// Settings a session may not set: they belong to the daemon.
const DAEMON_ONLY: &[&str] = &["max_live", "state_dir"];

fn field(field: &str, why: impl Into<String>) -> Error {
    Error::Field {
        field: field.into(),
        why: why.into(),
    }
}

/// A scalar as a setting's text.
fn scalar(key: &str, v: &serde_json::Value) -> Result<String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(field(key, "must be a string or a number")),
    }
}

fn strings(key: &str, v: &serde_json::Value) -> Result<Vec<String>> {
    let items = v
        .as_array()
        .ok_or_else(|| field(key, "must be a list of strings"))?;
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_owned)
                .ok_or_else(|| field(key, "must be a list of strings"))
        })
        .collect()
}

impl SessionDef {
    /// Read a definition from a JSON object (an API request, or a `[[session]]` table turned
    /// into JSON): `name`, one of `command` / `claude`, then setting keys. Unknown keys, wrong
    /// types and bad values are refused, naming the field.
    pub fn from_json(value: &serde_json::Value) -> Result<SessionDef> {
        let object = value
            .as_object()
            .ok_or_else(|| field("(body)", "must be a JSON object"))?;
        let name = object
            .get("name")
            .ok_or_else(|| field("name", "is required"))?
            .as_str()
            .ok_or_else(|| field("name", "must be a string"))?
            .to_owned();
        check_name(&name)?;
        let program = match (object.get("command"), object.get("claude")) {
            (Some(c), None) => {
                let argv = strings("command", c)?;
                if argv.first().is_none_or(String::is_empty) {
                    return Err(field("command", "needs a program as its first item"));
                }
                ProgramDef::Command(argv)
            }
            (None, Some(c)) => ProgramDef::Claude(strings("claude", c)?),
            (Some(_), Some(_)) => return Err(field("command", "give command or claude, not both")),
            (None, None) => return Err(field("command", "one of command or claude is required")),
        };
        let mut settings = Vec::new();
        for (key, v) in object {
            if matches!(key.as_str(), "name" | "command" | "claude") {
                continue;
            }
            let Some(s) = setting(key) else {
                return Err(field(key, "unknown field"));
            };
            if DAEMON_ONLY.contains(&s.key) {
                return Err(field(key, "is the daemon's setting, not a session's"));
            }
            match v {
                serde_json::Value::Object(vars) if s.key == "env" => {
                    for (k, val) in vars {
                        settings.push(("env".to_owned(), format!("{k}={}", scalar(key, val)?)));
                    }
                }
                serde_json::Value::Array(items) if s.repeatable => {
                    for item in items {
                        settings.push((s.key.to_owned(), scalar(key, item)?));
                    }
                }
                _ => settings.push((s.key.to_owned(), scalar(key, v)?)),
            }
        }
        let def = SessionDef {
            name,
            program,
            settings,
        };
        def.spec(&Settings::default())?;
        Ok(def)
    }

    /// The definition as the JSON object it is read from (secrets in `env` values hidden).
    pub fn to_json(&self, redact: bool) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("name".into(), self.name.clone().into());
        match &self.program {
            ProgramDef::Command(argv) => object.insert("command".into(), argv.clone().into()),
            ProgramDef::Claude(args) => object.insert("claude".into(), args.clone().into()),
        };
        let mut repeated: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (key, value) in &self.settings {
            let shown = match setting(key) {
                Some(s) if redact => s.shown_value(value),
                _ => value.clone(),
            };
            match setting(key) {
                Some(s) if s.repeatable => repeated.entry(s.key).or_default().push(shown),
                _ => {
                    object.insert(key.clone(), shown.into());
                }
            }
        }
        for (key, values) in repeated {
            object.insert(key.into(), values.into());
        }
        serde_json::Value::Object(object)
    }

    /// The session's spec: `defaults` (the daemon's own settings), then this definition's.
    /// Its stdio never is the daemon's: output is kept as lines, stdin is piped only for a
    /// stream-json Claude session.
    pub fn spec(&self, defaults: &Settings) -> Result<SessionSpec> {
        let mut spec = match &self.program {
            ProgramDef::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| field("command", "needs a program as its first item"))?;
                SessionSpec::command(self.name.clone(), program, args)
            }
            ProgramDef::Claude(args) => SessionSpec::claude(self.name.clone(), args.clone()),
        };
        let mut mine = Settings::default();
        for (key, value) in &self.settings {
            mine.set(key, value, &SettingsSource::Field)
                .map_err(|e| field(key, setting_why(&e)))?;
        }
        let mut manager = claude_manager::ManagerConfig::default();
        defaults
            .clone()
            .merged(mine)
            .apply(&mut spec, &mut manager)
            .map_err(Error::Settings)?;
        spec.stdout = claude_manager::proc::OutputMode::lines();
        spec.stderr = claude_manager::proc::OutputMode::lines();
        spec.stdin = if self.program.is_stream_json() {
            claude_manager::proc::StdinMode::Piped
        } else {
            claude_manager::proc::StdinMode::Null
        };
        Ok(spec)
    }
}

/// The why of a settings error, without the key (the field names it).
fn setting_why(e: &claude_manager::Error) -> String {
    match e {
        claude_manager::Error::Config { why, value, .. } => format!("{value:?}: {why}"),
        other => other.to_string(),
    }
}

/// How a run ended, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExitView {
    /// `exited`, `signaled`, `memory_limit`, `hung`, ...
    pub reason: String,
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if one ended it.
    pub signal: Option<i32>,
    /// More, for people.
    pub detail: String,
}

impl ExitView {
    /// An exit: `reason`, its code or signal, and `detail` for people.
    pub fn new(reason: &str, code: Option<i32>, signal: Option<i32>, detail: &str) -> ExitView {
        ExitView {
            reason: reason.to_owned(),
            code,
            signal,
            detail: detail.to_owned(),
        }
    }
}

/// One ended session run as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExitRecord {
    /// When, seconds since the epoch.
    pub ended_at: u64,
    /// How.
    pub exit: ExitView,
    /// Restarts before it.
    pub restarts: u32,
}

/// A session as `GET /v1/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionView {
    /// The name.
    pub name: String,
    /// `queued`, `starting`, `running`, `stopping`, `backing_off` or `finished`.
    pub state: String,
    /// The live leader's pid.
    pub pid: Option<u32>,
    /// Runs started after the first.
    pub restarts: u32,
    /// The program, as a short text (`claude -p ...`, `/bin/sleep 100`).
    pub program: String,
    /// How the session's last run ended, once it has.
    pub last_exit: Option<ExitView>,
    /// The tree's CPU use at the last sample, percent of one core.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// The tree's RSS at the last sample, bytes.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// Processes in the tree at the last sample.
    #[serde(default)]
    pub processes: Option<u64>,
    /// The health status (`healthy`, `unhealthy`, ...) and its reasons, as last reported, in
    /// one line.
    #[serde(default)]
    pub health_summary: Option<String>,
    /// When the session entered its state, seconds since the epoch (for uptimes).
    #[serde(default)]
    pub since: Option<f64>,
    /// Turns a Claude session's CLI finished, over all its runs (none yet: absent).
    #[serde(default)]
    pub turns: Option<u32>,
    /// What those turns cost, USD, as the CLI reported it.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// `GET /v1/sessions/{name}`: the view, the definition (secrets hidden) and the session's
/// last output lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub view: SessionView,
    /// The definition it was created from, `env` values hidden.
    pub definition: serde_json::Value,
    /// For a Claude session: the session id its CLI last reported (kept in the registry).
    #[serde(default)]
    pub claude_session_id: Option<String>,
    /// Each limit and what enforces it on this host (a limit enforced two ways is listed twice).
    #[serde(default)]
    pub limits: Vec<LimitView>,
    /// The last health event (`status`, `reasons`), once there is one.
    #[serde(default)]
    pub health: Option<serde_json::Value>,
    /// The last sample of the tree (`cpu_percent`, `rss_bytes`, IO, `processes`).
    #[serde(default)]
    pub last_sample: Option<serde_json::Value>,
}

/// A limit and its mechanism, as inspect shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LimitView {
    /// `memory`, `pids`, `cpu`, ...
    pub limit: String,
    /// `cgroup-v1`, `rlimit`, `soft`, ...
    pub mechanism: String,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Sessions new in the file, started.
    pub started: Vec<String>,
    /// Sessions gone from the file, stopped and forgotten.
    pub stopped: Vec<String>,
    /// Sessions whose definition changed, started again from the new one.
    pub restarted: Vec<String>,
    /// Sessions that could not be started, each with why.
    pub refused: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    /// `started c; stopped a; restarted b; refused none` (a refused one with why).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| match names {
            [] => "none".to_owned(),
            _ => names.join(", "),
        };
        write!(
            f,
            "started {}; stopped {}; restarted {}; refused {}",
            list(&self.started),
            list(&self.stopped),
            list(&self.restarted),
            list(&self.refused)
        )
    }
}

/// Every error response: what is wrong and, for a bad request, the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// What is wrong, for people.
    pub error: String,
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_are_read_or_refused_naming_the_field() {
        let def = SessionDef::from_json(&json!({
            "name": "worker-1", "command": ["/bin/sleep", "100"], "memory": "256M",
            "restart": "always", "env": {"A": "1"}, "pass_env": ["HOME"]
        }))
        .unwrap();
        assert_eq!(
            def.program,
            ProgramDef::Command(vec!["/bin/sleep".into(), "100".into()])
        );
        assert!(def.settings.contains(&("env".into(), "A=1".into())));
        assert_eq!(def.to_json(true)["env"], json!(["A=[hidden]"]));
        for (body, field_name, says) in [
            (json!([1]), "(body)", "JSON object"),
            (json!({"command": ["x"]}), "name", "required"),
            (json!({"name": "../etc", "command": ["x"]}), "name", "A-Z"),
            (
                json!({"name": "-rf", "command": ["x"]}),
                "name",
                "not start",
            ),
            (json!({"name": 5, "command": ["x"]}), "name", "string"),
            (json!({"name": "a"}), "command", "required"),
            (json!({"name": "a", "command": []}), "command", "program"),
            (
                json!({"name": "a", "command": "sleep"}),
                "command",
                "list of strings",
            ),
            (
                json!({"name": "a", "command": ["x"], "claude": []}),
                "command",
                "not both",
            ),
            (
                json!({"name": "a", "command": ["x"], "colour": "red"}),
                "colour",
                "unknown field",
            ),
            (
                json!({"name": "a", "command": ["x"], "memory": "-5M"}),
                "memory",
                "-5M",
            ),
            (
                json!({"name": "a", "command": ["x"], "memory": [1]}),
                "memory",
                "string or a number",
            ),
            (
                json!({"name": "a", "command": ["x"], "max_live": 3}),
                "max_live",
                "daemon",
            ),
        ] {
            match SessionDef::from_json(&body) {
                Err(Error::Field { field, why }) => {
                    assert_eq!(field, field_name, "{body}: {why}");
                    assert!(why.contains(says), "{body}: {why}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
