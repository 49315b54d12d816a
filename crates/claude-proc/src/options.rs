//! Typed options of a Claude session, each mapped to the flag the pinned CLI (2.1.328) shows
//! in `claude --help` (and `--max-turns` and `--permission-prompt-tool`, which it accepts
//! without listing them), checked
//! before anything is spawned: a bad value or a combination the CLI would refuse or silently
//! misread is a typed error naming the options.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `--permission-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionMode {
    /// `manual`: ask for anything not allowed.
    Manual,
    /// `acceptEdits`: file edits are allowed.
    AcceptEdits,
    /// `auto`: the CLI's classifier decides.
    Auto,
    /// `plan`: read-only planning.
    Plan,
    /// `dontAsk`: deny whatever would prompt.
    DontAsk,
    /// `bypassPermissions`: no checks (sandboxes only).
    BypassPermissions,
}

impl PermissionMode {
    /// The CLI's name for the mode.
    pub fn flag_value(self) -> &'static str {
        match self {
            PermissionMode::Manual => "manual",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Auto => "auto",
            PermissionMode::Plan => "plan",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

/// `--permission-prompts`: who answers a permission prompt in print mode.
/// `Host` also passes `--permission-prompt-tool=stdio` (accepted by 2.1.328 though not listed
/// in its `--help`; what the official SDKs pass): without it the CLI denies what would prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionPrompts {
    /// `host`: the CLI sends `can_use_tool` to this process (answered by the session's
    /// `PermissionHandler`).
    Host,
    /// `none`: anything that would prompt is denied.
    None,
}

/// `--tools`: the built-in tools the session has.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tools {
    /// No built-in tool (`""`).
    None,
    /// The default set (`default`).
    Default,
    /// Exactly these (`Bash,Edit,Read`).
    Named(Vec<String>),
}

/// `--setting-sources`: which settings files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingSource {
    /// The user's settings.
    User,
    /// The project's shared settings.
    Project,
    /// The project's local settings.
    Local,
}

impl SettingSource {
    fn flag_value(self) -> &'static str {
        match self {
            SettingSource::User => "user",
            SettingSource::Project => "project",
            SettingSource::Local => "local",
        }
    }
}

/// `--effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effort {
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `xhigh`.
    XHigh,
    /// `max`.
    Max,
}

impl Effort {
    fn flag_value(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
            Effort::Max => "max",
        }
    }
}

/// How the conversation starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Conversation {
    /// A new one (with `session_id`, under that id).
    #[default]
    New,
    /// `--resume ID`: continue that conversation.
    Resume(String),
    /// `--continue`: the most recent one in the working directory.
    Continue,
}

/// What a service sets on a Claude session; everything `None`, empty or `false` leaves the
/// CLI's default. [`ClaudeOptions::to_args`] checks and maps them. `Debug` shows neither the
/// settings nor the MCP configurations (either can carry a credential), only that they are
/// there.
#[derive(Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ClaudeOptions {
    /// `--model`.
    pub model: Option<String>,
    /// `--fallback-model`, in order.
    pub fallback_models: Vec<String>,
    /// `--permission-mode`.
    pub permission_mode: Option<PermissionMode>,
    /// `--permission-prompts`.
    pub permission_prompts: Option<PermissionPrompts>,
    /// `--allowed-tools` (rules such as `Bash(git *)`).
    pub allowed_tools: Vec<String>,
    /// `--disallowed-tools`.
    pub disallowed_tools: Vec<String>,
    /// `--tools`.
    pub tools: Option<Tools>,
    /// `--system-prompt` (replaces the default).
    pub system_prompt: Option<String>,
    /// `--append-system-prompt`.
    pub append_system_prompt: Option<String>,
    /// `--max-turns` (at least 1).
    pub max_turns: Option<u32>,
    /// `--max-budget-usd` (positive).
    pub max_budget_usd: Option<f64>,
    /// `--json-schema`: a JSON object the result must match.
    pub json_schema: Option<String>,
    /// `--session-id` (a UUID).
    pub session_id: Option<String>,
    /// New, resumed or continued.
    pub conversation: Conversation,
    /// `--fork-session`: a resumed or continued conversation under a new id.
    pub fork_session: bool,
    /// `--no-session-persistence`: nothing saved; cannot be resumed later.
    pub no_session_persistence: bool,
    /// `--add-dir`.
    pub add_dirs: Vec<PathBuf>,
    /// `--mcp-config`: files or JSON strings.
    pub mcp_config: Vec<String>,
    /// In-process MCP servers (served by the session's [`crate::HostHandlers`]), by name: one
    /// more `--mcp-config` of `{"type": "sdk"}` servers.
    pub sdk_mcp_servers: Vec<String>,
    /// `--strict-mcp-config`: only the servers of `mcp_config` and `sdk_mcp_servers`.
    pub strict_mcp_config: bool,
    /// `--settings`: a file or a JSON object.
    pub settings: Option<String>,
    /// `--setting-sources` (an empty list reads none).
    pub setting_sources: Option<Vec<SettingSource>>,
    /// `--agents`: a JSON object of agent definitions.
    pub agents: Option<String>,
    /// `--include-partial-messages`.
    pub include_partial_messages: bool,
    /// `--effort`.
    pub effort: Option<Effort>,
}

impl std::fmt::Debug for ClaudeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |given: bool| {
            if given {
                "(given, not shown)"
            } else {
                "(none)"
            }
        };
        f.debug_struct("ClaudeOptions")
            .field("model", &self.model)
            .field("fallback_models", &self.fallback_models)
            .field("permission_mode", &self.permission_mode)
            .field("permission_prompts", &self.permission_prompts)
            .field("allowed_tools", &self.allowed_tools)
            .field("disallowed_tools", &self.disallowed_tools)
            .field("tools", &self.tools)
            .field("system_prompt", &self.system_prompt)
            .field("append_system_prompt", &self.append_system_prompt)
            .field("max_turns", &self.max_turns)
            .field("max_budget_usd", &self.max_budget_usd)
            .field("json_schema", &self.json_schema)
            .field("session_id", &self.session_id)
            .field("conversation", &self.conversation)
            .field("fork_session", &self.fork_session)
            .field("no_session_persistence", &self.no_session_persistence)
            .field("add_dirs", &self.add_dirs)
            .field("mcp_config", &hidden(!self.mcp_config.is_empty()))
            .field("sdk_mcp_servers", &self.sdk_mcp_servers)
            .field("strict_mcp_config", &self.strict_mcp_config)
            .field("settings", &hidden(self.settings.is_some()))
            .field("setting_sources", &self.setting_sources)
            .field("agents", &self.agents)
            .field("include_partial_messages", &self.include_partial_messages)
            .field("effort", &self.effort)
            .finish()
    }
}

fn invalid(option: &'static str, why: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        why: why.into(),
    }
}

fn text(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.contains('\0') {
        return Err(invalid(field, "must not contain a NUL byte"));
    }
    Ok(())
}

fn json_object(field: &'static str, value: &str) -> Result<()> {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(field, "must be a JSON object")),
        Err(e) => Err(invalid(field, format!("is not JSON: {e}"))),
    }
}

/// Whether `s` is a UUID in its hyphenated form (what `--session-id` accepts).
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8usize, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

impl ClaudeOptions {
    /// Check every value and combination.
    pub fn validate(&self) -> Result<()> {
        self.validate_values()?;
        let resumed = self.conversation != Conversation::New;
        if self.fork_session && !resumed {
            return Err(invalid(
                "fork_session",
                "forks a resumed or continued conversation: set resume or continue",
            ));
        }
        if self.session_id.is_some() && resumed && !self.fork_session {
            return Err(invalid(
                "session_id with resume/continue",
                "a resumed conversation keeps its id; a new id needs fork_session",
            ));
        }
        if self.strict_mcp_config && self.mcp_config.is_empty() && self.sdk_mcp_servers.is_empty() {
            return Err(invalid(
                "strict_mcp_config",
                "would leave no MCP server: give mcp_config or sdk_mcp_servers",
            ));
        }
        if let Some(tool) = self
            .allowed_tools
            .iter()
            .find(|t| self.disallowed_tools.contains(t))
        {
            return Err(invalid(
                "allowed_tools",
                format!("{tool:?} is also in disallowed_tools"),
            ));
        }
        if self.system_prompt.is_some() && self.append_system_prompt.is_some() {
            return Err(invalid(
                "system_prompt and append_system_prompt",
                "append to the default prompt or replace it, not both",
            ));
        }
        Ok(())
    }

    fn validate_values(&self) -> Result<()> {
        let texts = [
            ("model", &self.model),
            ("system_prompt", &self.system_prompt),
            ("append_system_prompt", &self.append_system_prompt),
            ("settings", &self.settings),
        ];
        for (field, value) in texts {
            if let Some(v) = value {
                text(field, v)?;
            }
        }
        let lists = [
            ("fallback_models", &self.fallback_models),
            ("allowed_tools", &self.allowed_tools),
            ("disallowed_tools", &self.disallowed_tools),
            ("mcp_config", &self.mcp_config),
        ];
        for (field, list) in lists {
            list.iter().try_for_each(|v| text(field, v))?;
        }
        if let Some(Tools::Named(names)) = &self.tools {
            if names.is_empty() {
                return Err(invalid("tools", "an empty list: use Tools::None"));
            }
            names.iter().try_for_each(|v| text("tools", v))?;
        }
        for name in &self.sdk_mcp_servers {
            if crate::mcp::check_name("sdk_mcp_servers", name).is_err() {
                return Err(invalid(
                    "sdk_mcp_servers",
                    format!("{name:?}: use 1 to 64 ASCII letters, digits, '_' or '-'"),
                ));
            }
        }
        if self.max_turns == Some(0) {
            return Err(invalid("max_turns", "must be at least 1"));
        }
        if let Some(usd) = self.max_budget_usd {
            if !usd.is_finite() || usd <= 0.0 {
                return Err(invalid(
                    "max_budget_usd",
                    format!("{usd} is not a positive amount"),
                ));
            }
        }
        if let Some(schema) = &self.json_schema {
            json_object("json_schema", schema)?;
        }
        if let Some(agents) = &self.agents {
            json_object("agents", agents)?;
        }
        if let Some(settings) = &self.settings {
            if settings.trim_start().starts_with('{') {
                json_object("settings", settings)?;
            }
        }
        if let Some(id) = &self.session_id {
            if !is_uuid(id) {
                return Err(invalid("session_id", format!("{id:?} is not a UUID")));
            }
        }
        if let Conversation::Resume(id) = &self.conversation {
            text("resume", id)?;
        }
        for dir in &self.add_dirs {
            if dir.as_os_str().is_empty() {
                return Err(invalid("add_dirs", "an empty path"));
            }
        }
        Ok(())
    }

    /// The CLI arguments (each `--flag` or `--flag=value`), after
    /// [`ClaudeOptions::validate`].
    pub fn to_args(&self) -> Result<Vec<String>> {
        self.validate()?;
        let mut args = Vec::new();
        // `--flag=value`, one token: the CLI's parser leaves a dash-leading value of an option
        // whose value is optional (`--resume`) unbound, to be read as a flag of its own; the
        // equals form always binds it, so no value can inject a flag.
        let mut flag = |name: &str, value: Option<String>| match value {
            Some(v) => args.push(format!("{name}={v}")),
            None => args.push(name.to_owned()),
        };
        if let Some(m) = &self.model {
            flag("--model", Some(m.clone()));
        }
        if !self.fallback_models.is_empty() {
            flag("--fallback-model", Some(self.fallback_models.join(",")));
        }
        if let Some(mode) = self.permission_mode {
            flag("--permission-mode", Some(mode.flag_value().into()));
        }
        match self.permission_prompts {
            // The host is this process: the CLI asks over stdio (`can_use_tool`), as the
            // official SDKs have it ask; without `--permission-prompt-tool` it denies instead.
            Some(PermissionPrompts::Host) => {
                flag("--permission-prompts", Some("host".into()));
                flag("--permission-prompt-tool", Some("stdio".into()));
            }
            Some(PermissionPrompts::None) => flag("--permission-prompts", Some("none".into())),
            None => {}
        }
        if !self.allowed_tools.is_empty() {
            flag("--allowed-tools", Some(self.allowed_tools.join(",")));
        }
        if !self.disallowed_tools.is_empty() {
            flag("--disallowed-tools", Some(self.disallowed_tools.join(",")));
        }
        match &self.tools {
            Some(Tools::None) => flag("--tools", Some(String::new())),
            Some(Tools::Default) => flag("--tools", Some("default".into())),
            Some(Tools::Named(names)) => flag("--tools", Some(names.join(","))),
            None => {}
        }
        if let Some(p) = &self.system_prompt {
            flag("--system-prompt", Some(p.clone()));
        }
        if let Some(p) = &self.append_system_prompt {
            flag("--append-system-prompt", Some(p.clone()));
        }
        if let Some(n) = self.max_turns {
            flag("--max-turns", Some(n.to_string()));
        }
        if let Some(usd) = self.max_budget_usd {
            flag("--max-budget-usd", Some(usd.to_string()));
        }
        if let Some(schema) = &self.json_schema {
            flag("--json-schema", Some(schema.clone()));
        }
        if let Some(id) = &self.session_id {
            flag("--session-id", Some(id.clone()));
        }
        match &self.conversation {
            Conversation::New => {}
            Conversation::Resume(id) => flag("--resume", Some(id.clone())),
            Conversation::Continue => flag("--continue", None),
        }
        if self.fork_session {
            flag("--fork-session", None);
        }
        if self.no_session_persistence {
            flag("--no-session-persistence", None);
        }
        for dir in &self.add_dirs {
            flag("--add-dir", Some(dir.display().to_string()));
        }
        let sdk = (!self.sdk_mcp_servers.is_empty())
            .then(|| crate::mcp::sdk_config(&self.sdk_mcp_servers));
        for config in self.mcp_config.iter().cloned().chain(sdk) {
            flag("--mcp-config", Some(config));
        }
        if self.strict_mcp_config {
            flag("--strict-mcp-config", None);
        }
        if let Some(s) = &self.settings {
            flag("--settings", Some(s.clone()));
        }
        if let Some(sources) = &self.setting_sources {
            let names: Vec<&str> = sources.iter().map(|s| s.flag_value()).collect();
            flag("--setting-sources", Some(names.join(",")));
        }
        if let Some(agents) = &self.agents {
            flag("--agents", Some(agents.clone()));
        }
        if self.include_partial_messages {
            flag("--include-partial-messages", None);
        }
        if let Some(e) = self.effort {
            flag("--effort", Some(e.flag_value().into()));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests;
