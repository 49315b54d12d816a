//! Operator settings from three places with one table ([`SETTINGS`]): a TOML file,
//! `CLAUDE_PM_*` variables, and command-line flags, in that order (a later value of a setting
//! replaces an earlier one; repeatable ones add up). Every value is checked when it is read, by
//! the same code that applies it, and an error names the key as the operator wrote it:
//! `--memory`, `CLAUDE_PM_MEMORY`, or `memory in /etc/claude-pm.toml`.

mod table;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use table::{setting, Setting, SETTINGS};

use crate::error::{Error, Result};
use crate::manager::ManagerConfig;
use crate::spec::SessionSpec;
use table::Target;

/// The largest config file read (a config file is a few hundred bytes; `/dev/zero` is not one).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The key of a config file's `[[session]]` tables (sessions of `claude-pm serve`), which
/// [`Settings::from_toml`] leaves to the daemon.
pub const SESSION_TABLES: &str = "session";

/// Where a value came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsSource {
    /// A key of this TOML file.
    File(PathBuf),
    /// A `CLAUDE_PM_*` variable.
    Env,
    /// A command-line flag.
    Flag,
    /// A field of an API request or of a `[[session]]` table (a JSON or TOML key).
    Field,
}

impl SettingsSource {
    /// How `setting` is spelled in this source.
    fn name(&self, setting: &Setting) -> String {
        match self {
            SettingsSource::File(path) => format!("{} in {}", setting.key, path.display()),
            SettingsSource::Env => setting.variable(),
            SettingsSource::Flag => setting.flag(),
            SettingsSource::Field => format!("field {:?}", setting.key),
        }
    }

    /// A key no setting has, as written.
    fn unknown(&self, key: &str) -> String {
        match self {
            SettingsSource::File(path) => format!("{key} in {}", path.display()),
            SettingsSource::Env => key.to_owned(),
            SettingsSource::Flag => format!("--{key}"),
            SettingsSource::Field => format!("field {key:?}"),
        }
    }
}

#[derive(Clone, PartialEq)]
struct Value {
    setting: &'static Setting,
    text: String,
    source: SettingsSource,
}

impl PartialEq for Setting {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

/// Settings as given, checked, in the order they apply. Unset means the library default.
#[derive(Clone, PartialEq, Default)]
pub struct Settings {
    values: Vec<Value>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|v| {
                format!(
                    "{}={}",
                    v.setting.key,
                    if v.setting.secret_value {
                        v.setting.shown(&v.text)
                    } else {
                        v.text.clone()
                    }
                )
            }))
            .finish()
    }
}

impl Settings {
    /// Set `key` (`disk_io` or `disk-io`) from its text `value`, checked now; the error names
    /// the key as `source` spells it.
    pub fn set(&mut self, key: &str, value: &str, source: &SettingsSource) -> Result<()> {
        let Some(setting) = setting(key) else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
            return Err(Error::Config {
                key: source.unknown(key),
                value: value.to_owned(),
                why: format!("unknown setting (known: {})", known.join(", ")),
            });
        };
        // Checked by the code that applies it, on a scratch spec.
        let mut spec = SessionSpec::claude("settings", Vec::<String>::new());
        let mut manager = ManagerConfig::default();
        let mut target = Target {
            spec: &mut spec,
            manager: &mut manager,
        };
        setting
            .apply(&mut target, value)
            .map_err(|why| config_error(setting, value, source, why))?;
        self.values.push(Value {
            setting,
            text: value.to_owned(),
            source: source.clone(),
        });
        Ok(())
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        let key = key.replace('-', "_");
        self.values.iter().any(|v| v.setting.key == key)
    }

    /// These settings, then `over`'s (later values win; repeatable ones add up).
    pub fn merged(mut self, over: Settings) -> Settings {
        self.values.extend(over.values);
        self
    }

    /// Write these settings into `spec` and `manager`, in order (unset ones leave them as
    /// they are).
    pub fn apply(&self, spec: &mut SessionSpec, manager: &mut ManagerConfig) -> Result<()> {
        let mut target = Target { spec, manager };
        for v in &self.values {
            v.setting
                .apply(&mut target, &v.text)
                .map_err(|why| config_error(v.setting, &v.text, &v.source, why))?;
        }
        Ok(())
    }

    /// Read a TOML file of at most [`MAX_CONFIG_BYTES`]: top-level keys of [`SETTINGS`];
    /// `env` may be a table or a list of `KEY=VALUE` strings, `pass_env` a list.
    pub fn from_file(path: &Path) -> Result<Settings> {
        Settings::from_toml(&read_config(path)?, path)
    }

    /// [`Settings::from_file`] over text already read; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| Error::ConfigSyntax {
                    path: path.to_path_buf(),
                    why: e.to_string().trim().to_owned(),
                })?;
        let source = SettingsSource::File(path.to_path_buf());
        let mut s = Settings::default();
        // `[[session]]` tables define `claude-pm serve`'s sessions; they are read there.
        for (key, value) in table.iter().filter(|(k, _)| k.as_str() != SESSION_TABLES) {
            s.set_toml(key, value, &source)?;
        }
        Ok(s)
    }

    fn set_toml(&mut self, key: &str, value: &toml::Value, source: &SettingsSource) -> Result<()> {
        let scalar = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(Error::Config {
                    key: source.unknown(key),
                    value: other.to_string(),
                    why: "must be a string or a number".into(),
                }),
            }
        };
        let repeatable = setting(key).is_some_and(|s| s.repeatable);
        match value {
            toml::Value::Table(vars) if key == "env" => {
                for (k, v) in vars {
                    self.set("env", &format!("{k}={}", scalar(v)?), source)?;
                }
                Ok(())
            }
            toml::Value::Array(items) if repeatable => {
                for item in items {
                    self.set(key, &scalar(item)?, source)?;
                }
                Ok(())
            }
            _ => self.set(key, &scalar(value)?, source),
        }
    }

    /// Read every setting's variable (`lookup` is `std::env::var_os` in production). A value
    /// that is not UTF-8 is refused, naming the variable; repeatable settings have no variable.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Settings> {
        let mut s = Settings::default();
        for setting in SETTINGS.iter().filter(|s| !s.repeatable) {
            let name = setting.variable();
            let Some(value) = lookup(&name) else {
                continue;
            };
            let value = value.into_string().map_err(|raw| Error::Config {
                key: name.clone(),
                value: raw.to_string_lossy().into_owned(),
                why: "not valid UTF-8".into(),
            })?;
            s.set(setting.key, &value, &SettingsSource::Env)?;
        }
        Ok(s)
    }
}

fn config_error(setting: &Setting, value: &str, source: &SettingsSource, why: String) -> Error {
    Error::Config {
        key: source.name(setting),
        value: setting.shown(value),
        why,
    }
}

/// The file's text, refusing anything larger than [`MAX_CONFIG_BYTES`] or not UTF-8.
fn read_config(path: &Path) -> Result<String> {
    use std::io::Read;
    let failed = |source| Error::ConfigFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::ConfigSyntax {
            path: path.to_path_buf(),
            why: format!(
                "larger than {} KiB: not a config file",
                MAX_CONFIG_BYTES >> 10
            ),
        });
    }
    String::from_utf8(bytes).map_err(|_| Error::ConfigSyntax {
        path: path.to_path_buf(),
        why: "not valid UTF-8".into(),
    })
}

#[cfg(test)]
mod tests;
