//! The settings table: every setting declared once. Its flag (`--disk-io`), variable
//! (`CLAUDE_PM_DISK_IO`) and TOML key (`disk_io`) are derived from the key; its parser turns text
//! into the typed value and writes it where it belongs; the range checks are the owning type's
//! own ([`claude_limits::ResourceLimits::validate`], [`claude_proc::RestartPolicy`]'s fields), so
//! no range is written twice.

use std::path::PathBuf;
use std::time::Duration;

use claude_auth::Delivery;
use claude_limits::{CgroupV2Root, LimitMode, ResourceLimits};
use claude_proc::RestartMode;

use crate::manager::ManagerConfig;
use crate::spec::{HealthSpec, Program, SessionSpec};
use crate::units::{parse_duration, parse_size, MAX_DURATION};

/// What a setting writes into: the session's spec and the manager's configuration.
pub(crate) struct Target<'a> {
    pub(crate) spec: &'a mut SessionSpec,
    pub(crate) manager: &'a mut ManagerConfig,
}

type Apply = fn(&mut Target<'_>, &str) -> Result<(), String>;

/// One setting as operators write it.
#[non_exhaustive]
pub struct Setting {
    /// The key in a config file (`disk_io`); the flag is the key with `-` (`--disk-io`), the
    /// variable `CLAUDE_PM_` and the key in upper case unless [`Setting::variable`] says
    /// otherwise.
    pub key: &'static str,
    /// What the value looks like in help (`SIZE`, `DUR`, `N`).
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Whether it may be given more than once (every value counts, in order).
    pub repeatable: bool,
    /// Its value may hold a secret (`--env TOKEN=...`): errors show only what is before `=`.
    pub secret_value: bool,
    variable: Option<&'static str>,
    apply: Apply,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.key)
            .field("value_name", &self.value_name)
            .field("repeatable", &self.repeatable)
            .finish_non_exhaustive()
    }
}

impl Setting {
    const fn new(
        key: &'static str,
        value_name: &'static str,
        help: &'static str,
        apply: Apply,
    ) -> Setting {
        Setting {
            key,
            value_name,
            help,
            repeatable: false,
            secret_value: false,
            variable: None,
            apply,
        }
    }

    const fn repeatable(mut self) -> Setting {
        self.repeatable = true;
        self
    }

    const fn secret_value(mut self) -> Setting {
        self.secret_value = true;
        self
    }

    const fn with_variable(mut self, name: &'static str) -> Setting {
        self.variable = Some(name);
        self
    }

    /// The long flag without dashes in front (`disk-io`).
    pub fn long(&self) -> String {
        self.key.replace('_', "-")
    }

    /// The flag as typed (`--disk-io`).
    pub fn flag(&self) -> String {
        format!("--{}", self.long())
    }

    /// The environment variable (`CLAUDE_PM_DISK_IO`).
    pub fn variable(&self) -> String {
        match self.variable {
            Some(name) => name.to_owned(),
            None => format!("CLAUDE_PM_{}", self.key.to_ascii_uppercase()),
        }
    }

    pub(crate) fn apply(&self, target: &mut Target<'_>, value: &str) -> Result<(), String> {
        (self.apply)(target, value)
    }

    /// `value` as it may be shown (errors, an API's view of a definition): what a secret
    /// value holds is hidden.
    pub fn shown_value(&self, value: &str) -> String {
        self.shown(value)
    }

    /// `value` as it may appear in an error message.
    pub(crate) fn shown(&self, value: &str) -> String {
        match (self.secret_value, value.split_once('=')) {
            (true, Some((name, _))) => format!("{name}=[hidden]"),
            (true, None) => "[hidden]".to_owned(),
            (false, _) => value.to_owned(),
        }
    }
}

/// The settings of `claude-pm run`, `claude`, `doctor` and of every session of `serve`.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "cpus",
        "CORES",
        "CPU limit of the whole tree, in cores (0.5 = half a core)",
        |t, v| {
            let cores = parse_cores(v)?;
            limit(t, |l| l.max_cpu = Some(cores))
        },
    ),
    Setting::new(
        "memory",
        "SIZE",
        "Memory limit of the whole tree",
        |t, v| {
            let bytes = parse_size(v)?;
            limit(t, |l| l.max_memory = Some(bytes))
        },
    ),
    Setting::new(
        "disk_io",
        "SIZE",
        "Disk IO limit of the tree, bytes per second",
        |t, v| {
            let rate = parse_size(v)?;
            limit(t, |l| l.max_disk_io = Some(rate))
        },
    ),
    Setting::new("pids", "N", "Processes and threads in the tree", |t, v| {
        let n = parse_count(v)?;
        limit(t, |l| l.max_pids = Some(n))
    }),
    Setting::new("nofile", "N", "Open files per process", |t, v| {
        let n = parse_count(v)?;
        limit(t, |l| l.max_open_files = Some(n))
    }),
    Setting::new("nice", "N", "Nice value (-20..19)", |t, v| {
        let n: i32 = v
            .trim()
            .parse()
            .map_err(|_| "not a whole number".to_owned())?;
        limit(t, |l| l.nice = Some(n))
    }),
    Setting::new("timeout", "DUR", "Wall-clock limit of each run", |t, v| {
        let d = parse_positive_duration(v)?;
        limit(t, |l| l.timeout = Some(d))
    }),
    Setting::new("grace", "DUR", "SIGTERM-to-SIGKILL grace", |t, v| {
        t.spec.grace = parse_positive_duration(v)?;
        Ok(())
    }),
    Setting::new(
        "restart",
        "POLICY",
        "When a run is started again: never, on-failure or always",
        |t, v| {
            t.spec.restart.mode = choice(v, &RestartMode::ALL, |m| m.name())?;
            Ok(())
        },
    ),
    Setting::new(
        "max_restarts",
        "N",
        "Restarts allowed within the restart window (5 minutes)",
        |t, v| {
            let n = parse_count_up_to(v, u64::from(u32::MAX))?;
            t.spec.restart.max_restarts = u32::try_from(n).map_err(|_| too_large(u32::MAX))?;
            Ok(())
        },
    ),
    Setting::new(
        "restart_delay",
        "DUR",
        "Ceiling of the first restart's delay (random below it, doubling per failure up to 60s; 0s: at once)",
        |t, v| {
            let d = parse_duration(v)?;
            if d > t.spec.restart.backoff.max {
                let max = t.spec.restart.backoff.max.as_secs();
                return Err(format!("must be at most {max}s (the longest delay)"));
            }
            t.spec.restart.backoff.initial = d;
            Ok(())
        },
    ),
    Setting::new(
        "health_interval",
        "DUR",
        "How often the tree is sampled",
        |t, v| {
            let d = parse_positive_duration(v)?;
            t.spec
                .health
                .get_or_insert_with(HealthSpec::default)
                .interval = d;
            Ok(())
        },
    ),
    Setting::new(
        "hang_after",
        "DUR",
        "Hung after this long without output, CPU or IO progress (claude: during a turn)",
        |t, v| {
            let d = parse_positive_duration(v)?;
            t.spec
                .health
                .get_or_insert_with(HealthSpec::default)
                .hang_after = Some(d);
            Ok(())
        },
    ),
    Setting::new(
        "limits",
        "MODE",
        "How limits are enforced: auto, cgroup or soft",
        |t, v| {
            t.spec.limit_options.mode = choice(v, &LimitMode::ALL, |m| m.name())?;
            Ok(())
        },
    ),
    Setting::new(
        "cgroup_v2_parent",
        "DIR",
        "A delegated cgroup v2 directory to create each run's cgroup in",
        |t, v| {
            let dir = PathBuf::from(non_empty(v)?);
            if !dir.is_absolute() {
                return Err("must be an absolute path".into());
            }
            t.spec.limit_options.cgroup_v2 = Some(CgroupV2Root::new(dir));
            Ok(())
        },
    ),
    Setting::new(
        "max_live",
        "N",
        "Sessions with a live process at once; more wait their turn (0: no cap)",
        |t, v| {
            let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
            let n = parse_count_up_to(v, max)?;
            t.manager.max_live = usize::try_from(n).map_err(|_| too_large(max))?;
            Ok(())
        },
    ),
    Setting::new(
        "state_dir",
        "DIR",
        "claude-pm serve's state (socket, logs); the client commands find the socket there",
        |t, v| {
            let dir = PathBuf::from(non_empty(v)?);
            if !dir.is_absolute() {
                return Err("must be an absolute path".into());
            }
            t.manager.state_dir = Some(dir);
            Ok(())
        },
    ),
    Setting::new(
        "claude_binary",
        "PATH",
        "The claude binary (default: claude on PATH)",
        |t, v| {
            let path = PathBuf::from(non_empty(v)?);
            if let Program::Claude { binary, .. } = &mut t.spec.program {
                *binary = Some(path);
            }
            Ok(())
        },
    )
    .with_variable(claude_proc::CLAUDE_BIN_ENV),
    Setting::new(
        "delivery",
        "HOW",
        "How the credential reaches claude: env (a variable) or fd (descriptor 3)",
        |t, v| {
            t.spec.delivery = match v.trim() {
                "env" => Delivery::Env,
                "fd" => Delivery::Fd(3),
                _ => return Err("must be env or fd".into()),
            };
            Ok(())
        },
    ),
    Setting::new(
        "isolation",
        "LEVEL",
        "Keep each session from the host and the others: none, user (own uid) or sandbox (own uid and namespaces)",
        |t, v| {
            t.spec.isolation = v.parse().map_err(|_| "must be none, user or sandbox".to_owned())?;
            Ok(())
        },
    ),
    Setting::new(
        "uid_range",
        "FIRST-LAST",
        "Where isolated sessions' uids come from (default 61184-65519)",
        |t, v| {
            t.spec.uid_range = v.parse().map_err(|e| match e {
                claude_sandbox::Error::InvalidRange { why, .. } => why.to_owned(),
                other => other.to_string(),
            })?;
            Ok(())
        },
    ),
    Setting::new(
        "network",
        "NET",
        "A sandboxed session's network: host, or api (only ANTHROPIC_BASE_URL is reachable)",
        |t, v| {
            t.spec.network = v.parse().map_err(|_| "must be host or api".to_owned())?;
            Ok(())
        },
    ),
    Setting::new(
        "env",
        "KEY=VALUE",
        "Set a variable in the child (repeatable)",
        |t, v| {
            let (k, val) = v.split_once('=').ok_or("must be KEY=VALUE")?;
            if !valid_var_name(k) {
                return Err(format!("{k:?} is not a variable name"));
            }
            t.spec.env.push((k.into(), val.into()));
            Ok(())
        },
    )
    .repeatable()
    .secret_value(),
    Setting::new(
        "pass_env",
        "KEY",
        "Copy a variable from this environment into the child (repeatable)",
        |t, v| {
            if !valid_var_name(v) {
                return Err("not a variable name".into());
            }
            t.spec.pass_env.push(v.into());
            Ok(())
        },
    )
    .repeatable(),
];

/// The setting called `key` (`disk_io` or `disk-io`).
pub fn setting(key: &str) -> Option<&'static Setting> {
    let key = key.replace('-', "_");
    SETTINGS.iter().find(|s| s.key == key)
}

/// Write into the limits, then check them with their own validation (the one place ranges
/// live); only the why of its error is kept, the caller names the key.
fn limit(t: &mut Target<'_>, put: impl FnOnce(&mut ResourceLimits)) -> Result<(), String> {
    put(&mut t.spec.limits);
    t.spec.limits.validate().map_err(|e| match e {
        claude_limits::Error::InvalidLimit { why, .. } => why,
        other => other.to_string(),
    })
}

fn parse_cores(v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .map_err(|_| "not a number of cores".to_owned())
}

/// A whole number up to `max`; one with too many digits is named too large with that bound.
fn parse_count_up_to(v: &str, max: u64) -> Result<u64, String> {
    let t = v.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a whole number".to_owned());
    }
    match t.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(too_large(max)),
    }
}

fn parse_count(v: &str) -> Result<u64, String> {
    parse_count_up_to(v, u64::MAX)
}

fn too_large(max: impl std::fmt::Display) -> String {
    format!("too large (at most {max})")
}

fn parse_positive_duration(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        return Err("must be positive".into());
    }
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most {} days",
            MAX_DURATION.as_secs() / (24 * 3600)
        ));
    }
    Ok(d)
}

fn non_empty(v: &str) -> Result<&str, String> {
    if v.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(v)
}

/// One of `all` by its name.
fn choice<T: Copy>(v: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    let v = v.trim().replace('_', "-");
    all.iter().copied().find(|m| name(*m) == v).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|m| name(*m)).collect();
        match names.split_last() {
            Some((last, rest)) => format!("must be {} or {last}", rest.join(", ")),
            None => "no value is accepted".into(),
        }
    })
}

pub(crate) fn valid_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
