//! Operator settings from three places with one parser: a TOML file, `CLAUDE_PM_*`
//! variables, and command-line flags (flags over variables over the file). Every value is
//! checked where it is read, and an error names the key as the operator wrote it: `--memory`,
//! `CLAUDE_PM_MEMORY`, or `memory in /etc/claude-pm.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_auth::Delivery;
use claude_limits::LimitMode;
use claude_proc::RestartMode;

use crate::error::{Error, Result};
use crate::spec::{HealthSpec, SessionSpec};
use crate::units::{parse_duration, parse_size};

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
}

impl SettingsSource {
    fn key(&self, key: &str) -> String {
        match self {
            SettingsSource::File(path) => format!("{key} in {}", path.display()),
            SettingsSource::Env => format!("CLAUDE_PM_{}", key.to_ascii_uppercase()),
            SettingsSource::Flag => format!("--{}", key.replace('_', "-")),
        }
    }
}

/// The keys [`Settings::set`] knows (file keys; flags use `-`, variables `CLAUDE_PM_` and
/// upper case).
pub const SETTING_KEYS: &[&str] = &[
    "cpus",
    "memory",
    "disk_io",
    "pids",
    "nofile",
    "nice",
    "timeout",
    "grace",
    "restart",
    "max_restarts",
    "health_interval",
    "hang_after",
    "limits",
    "max_live",
    "claude_binary",
    "delivery",
    "env",
    "pass_env",
];

/// Operator settings, all optional; unset means the library default.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Settings {
    /// `--cpus CORES`.
    pub cpus: Option<f64>,
    /// `--memory SIZE`.
    pub memory: Option<u64>,
    /// `--disk-io SIZE` per second.
    pub disk_io: Option<u64>,
    /// `--pids N`.
    pub pids: Option<u64>,
    /// `--nofile N`.
    pub nofile: Option<u64>,
    /// `--nice N`.
    pub nice: Option<i32>,
    /// `--timeout DUR`.
    pub timeout: Option<Duration>,
    /// `--grace DUR`.
    pub grace: Option<Duration>,
    /// `--restart never|on-failure|always`.
    pub restart: Option<RestartMode>,
    /// `--max-restarts N`.
    pub max_restarts: Option<u32>,
    /// `--health-interval DUR`.
    pub health_interval: Option<Duration>,
    /// `--hang-after DUR`.
    pub hang_after: Option<Duration>,
    /// `--limits auto|cgroup|soft`.
    pub limits: Option<LimitMode>,
    /// The cap on live processes.
    pub max_live: Option<usize>,
    /// The claude binary.
    pub claude_binary: Option<PathBuf>,
    /// `env` or `fd`: how the credential reaches the child.
    pub delivery: Option<Delivery>,
    /// `--env KEY=VALUE`, in order.
    pub env: Vec<(String, String)>,
    /// `--pass-env KEY`, in order.
    pub pass_env: Vec<String>,
}

impl Settings {
    /// Set `key` from its text `value`; the error names the key as `source` spells it.
    pub fn set(&mut self, key: &str, value: &str, source: &SettingsSource) -> Result<()> {
        let key = key.replace('-', "_");
        let bad = |why: String| Error::Config {
            key: source.key(&key),
            value: value.to_owned(),
            why,
        };
        let number = |min: u64| -> Result<u64> {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad("not a whole number".into()))?;
            if n < min {
                return Err(bad(format!("must be at least {min}")));
            }
            Ok(n)
        };
        let duration = || -> Result<Duration> {
            let d = parse_duration(value).map_err(bad)?;
            if d.is_zero() {
                return Err(bad("must be positive".into()));
            }
            Ok(d)
        };
        match key.as_str() {
            "cpus" => {
                let c: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("not a number of cores".into()))?;
                if !c.is_finite() || c < 0.01 {
                    return Err(bad("must be a number of cores >= 0.01".into()));
                }
                self.cpus = Some(c);
            }
            "memory" => {
                let m = parse_size(value).map_err(bad)?;
                if m < 16 << 20 {
                    return Err(bad("must be at least 16M".into()));
                }
                self.memory = Some(m);
            }
            "disk_io" => {
                let r = parse_size(value).map_err(bad)?;
                if r < 4096 {
                    return Err(bad("must be at least 4K per second".into()));
                }
                self.disk_io = Some(r);
            }
            "pids" => self.pids = Some(number(1)?),
            "nofile" => self.nofile = Some(number(16)?),
            "nice" => {
                let n: i32 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("not a whole number".into()))?;
                if !(-20..=19).contains(&n) {
                    return Err(bad("must be within -20..=19".into()));
                }
                self.nice = Some(n);
            }
            "timeout" => self.timeout = Some(duration()?),
            "grace" => self.grace = Some(duration()?),
            "health_interval" => self.health_interval = Some(duration()?),
            "hang_after" => self.hang_after = Some(duration()?),
            "restart" => {
                self.restart = Some(match value.trim() {
                    "never" => RestartMode::Never,
                    "on-failure" | "on_failure" => RestartMode::OnFailure,
                    "always" => RestartMode::Always,
                    _ => return Err(bad("must be never, on-failure or always".into())),
                })
            }
            "max_restarts" => {
                self.max_restarts =
                    Some(u32::try_from(number(0)?).map_err(|_| bad("too large".into()))?)
            }
            "limits" => {
                self.limits = Some(match value.trim() {
                    "auto" => LimitMode::Auto,
                    "cgroup" => LimitMode::Cgroup,
                    "soft" => LimitMode::Soft,
                    _ => return Err(bad("must be auto, cgroup or soft".into())),
                })
            }
            "max_live" => {
                self.max_live =
                    Some(usize::try_from(number(0)?).map_err(|_| bad("too large".into()))?)
            }
            "claude_binary" => {
                if value.trim().is_empty() {
                    return Err(bad("must not be empty".into()));
                }
                self.claude_binary = Some(PathBuf::from(value))
            }
            "delivery" => {
                self.delivery = Some(match value.trim() {
                    "env" => Delivery::Env,
                    "fd" => Delivery::Fd(3),
                    _ => return Err(bad("must be env or fd".into())),
                })
            }
            "env" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| bad("must be KEY=VALUE".into()))?;
                if !valid_var_name(k) {
                    return Err(bad(format!("{k:?} is not a variable name")));
                }
                self.env.push((k.to_owned(), v.to_owned()));
            }
            "pass_env" => {
                if !valid_var_name(value) {
                    return Err(bad("not a variable name".into()));
                }
                self.pass_env.push(value.to_owned());
            }
            _ => {
                return Err(Error::Config {
                    key: source.key(&key),
                    value: value.to_owned(),
                    why: format!("unknown setting (known: {})", SETTING_KEYS.join(", ")),
                })
            }
        }
        Ok(())
    }

    /// Read a TOML file: top-level keys of [`SETTING_KEYS`]; `env` may be a table or a list of
    /// `KEY=VALUE` strings, `pass_env` a list.
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        Settings::from_toml(&text, path)
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
        for (key, value) in &table {
            let scalar = |v: &toml::Value| -> Result<String> {
                match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    toml::Value::Float(f) => Ok(f.to_string()),
                    toml::Value::Boolean(b) => Ok(b.to_string()),
                    other => Err(Error::Config {
                        key: source.key(key),
                        value: other.to_string(),
                        why: "must be a string or a number".into(),
                    }),
                }
            };
            match (key.as_str(), value) {
                ("env", toml::Value::Table(vars)) => {
                    for (k, v) in vars {
                        s.set("env", &format!("{k}={}", scalar(v)?), &source)?;
                    }
                }
                ("env" | "pass_env" | "pass-env", toml::Value::Array(items)) => {
                    for item in items {
                        s.set(key, &scalar(item)?, &source)?;
                    }
                }
                _ => s.set(key, &scalar(value)?, &source)?,
            }
        }
        Ok(s)
    }

    /// Read `CLAUDE_PM_<KEY>` for every key but `env` and `pass_env` (`lookup` is
    /// `std::env::var` in production).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let mut s = Settings::default();
        for key in SETTING_KEYS
            .iter()
            .filter(|k| !matches!(**k, "env" | "pass_env"))
        {
            if let Some(value) = lookup(&format!("CLAUDE_PM_{}", key.to_ascii_uppercase())) {
                s.set(key, &value, &SettingsSource::Env)?;
            }
        }
        Ok(s)
    }

    /// `over`'s values where set, else ours; lists are concatenated (ours first).
    pub fn merged(mut self, over: Settings) -> Settings {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            cpus,
            memory,
            disk_io,
            pids,
            nofile,
            nice,
            timeout,
            grace,
            restart,
            max_restarts,
            health_interval,
            hang_after,
            limits,
            max_live,
            claude_binary,
            delivery
        );
        self.env.extend(over.env);
        self.pass_env.extend(over.pass_env);
        self
    }

    /// Write these settings into `spec` (unset ones leave it as it is).
    pub fn apply(&self, spec: &mut SessionSpec) {
        let l = &mut spec.limits;
        l.max_cpu = self.cpus.or(l.max_cpu);
        l.max_memory = self.memory.or(l.max_memory);
        l.max_disk_io = self.disk_io.or(l.max_disk_io);
        l.max_pids = self.pids.or(l.max_pids);
        l.max_open_files = self.nofile.or(l.max_open_files);
        l.nice = self.nice.or(l.nice);
        l.timeout = self.timeout.or(l.timeout);
        if let Some(mode) = self.limits {
            spec.limit_options.mode = mode;
        }
        if let Some(grace) = self.grace {
            spec.grace = grace;
        }
        if let Some(mode) = self.restart {
            spec.restart.mode = mode;
        }
        if let Some(n) = self.max_restarts {
            spec.restart.max_restarts = n;
        }
        if self.health_interval.is_some() || self.hang_after.is_some() {
            let health = spec.health.get_or_insert_with(HealthSpec::default);
            if let Some(interval) = self.health_interval {
                health.interval = interval;
            }
            if let Some(after) = self.hang_after {
                health.hang_after = Some(after);
            }
        }
        if let Some(delivery) = self.delivery {
            spec.delivery = delivery;
        }
        if let (Some(bin), crate::spec::Program::Claude { binary, .. }) =
            (&self.claude_binary, &mut spec.program)
        {
            *binary = Some(bin.clone());
        }
        spec.env
            .extend(self.env.iter().map(|(k, v)| (k.into(), v.into())));
        spec.pass_env.extend(self.pass_env.iter().map(Into::into));
    }
}

fn valid_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_as_the_operator_wrote_it() {
        let mut s = Settings::default();
        let e = s.set("memory", "lots", &SettingsSource::Flag).unwrap_err();
        assert!(
            e.to_string().contains("--memory") && e.to_string().contains("\"lots\""),
            "{e}"
        );
        let e = s.set("disk-io", "1", &SettingsSource::Env).unwrap_err();
        assert!(e.to_string().contains("CLAUDE_PM_DISK_IO"), "{e}");
        let file = SettingsSource::File("/etc/pm.toml".into());
        let e = s.set("timeout", "30", &file).unwrap_err();
        assert!(
            e.to_string().contains("timeout in /etc/pm.toml") && e.to_string().contains("unit"),
            "{e}"
        );
        let e = s.set("colour", "red", &file).unwrap_err();
        assert!(e.to_string().contains("unknown setting"), "{e}");
        assert!(s
            .set("restart", "sometimes", &SettingsSource::Flag)
            .is_err());
        assert!(s.set("nice", "30", &SettingsSource::Flag).is_err());
        assert!(s.set("cpus", "NaN", &SettingsSource::Flag).is_err());
        assert!(s.set("env", "1BAD=x", &SettingsSource::Flag).is_err());
        assert!(s.set("env", "novalue", &SettingsSource::Flag).is_err());
    }

    #[test]
    fn file_env_and_flags_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pm.toml");
        std::fs::write(
            &path,
            "memory = \"2G\"\ncpus = 1.5\ntimeout = \"10m\"\nrestart = \"on-failure\"\npass_env = [\"TERM\"]\n[env]\nFOO = \"bar\"\n",
        )
        .unwrap();
        let file = Settings::from_file(&path).unwrap();
        assert_eq!(file.memory, Some(2 << 30));
        assert_eq!(file.cpus, Some(1.5));
        assert_eq!(file.env, vec![("FOO".to_owned(), "bar".to_owned())]);
        let env =
            Settings::from_env(&|k| (k == "CLAUDE_PM_MEMORY").then(|| "300M".to_owned())).unwrap();
        let mut flags = Settings::default();
        flags.set("timeout", "30s", &SettingsSource::Flag).unwrap();
        let all = file.merged(env).merged(flags);
        assert_eq!(all.memory, Some(300 << 20));
        assert_eq!(all.timeout, Some(Duration::from_secs(30)));
        assert_eq!(all.restart, Some(RestartMode::OnFailure));
        let mut spec = SessionSpec::command("t", "/bin/true", Vec::<String>::new());
        all.apply(&mut spec);
        assert_eq!(spec.limits.max_memory, Some(300 << 20));
        assert_eq!(spec.limits.max_cpu, Some(1.5));
        assert_eq!(spec.restart.mode, RestartMode::OnFailure);
        // Broken files name the file and the problem.
        std::fs::write(&path, "memory = [1, 2]\n").unwrap();
        let e = Settings::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("memory in") && e.contains("string or a number"),
            "{e}"
        );
        std::fs::write(&path, "memory = \n").unwrap();
        assert!(matches!(
            Settings::from_file(&path),
            Err(Error::ConfigSyntax { .. })
        ));
        assert!(matches!(
            Settings::from_file(&dir.path().join("missing.toml")),
            Err(Error::ConfigFile { .. })
        ));
    }
}
