//! Hooks registered with the CLI at `initialize` and called back by id (`hook_callback`): the
//! host's code runs before a tool (and at the CLI's other hook events) and can block the tool,
//! stop the session, or add context, as the official Agent SDKs' hook callbacks do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

/// A point in the CLI's work where a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HookEvent {
    /// Before a tool runs; can block it or change its input.
    PreToolUse,
    /// After a tool ran.
    PostToolUse,
    /// After a tool failed.
    PostToolUseFailure,
    /// A user turn arrived.
    UserPromptSubmit,
    /// The model finished a turn.
    Stop,
    /// A subagent started.
    SubagentStart,
    /// A subagent finished.
    SubagentStop,
    /// Before the conversation is compacted.
    PreCompact,
    /// The CLI shows a notification.
    Notification,
    /// The CLI is about to ask for a permission.
    PermissionRequest,
    /// The session started.
    SessionStart,
    /// The session is ending.
    SessionEnd,
}

impl HookEvent {
    /// The event's name in the CLI's protocol (`PreToolUse`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreToolUse => "PreToolUse",
            HookEvent::PostToolUse => "PostToolUse",
            HookEvent::PostToolUseFailure => "PostToolUseFailure",
            HookEvent::UserPromptSubmit => "UserPromptSubmit",
            HookEvent::Stop => "Stop",
            HookEvent::SubagentStart => "SubagentStart",
            HookEvent::SubagentStop => "SubagentStop",
            HookEvent::PreCompact => "PreCompact",
            HookEvent::Notification => "Notification",
            HookEvent::PermissionRequest => "PermissionRequest",
            HookEvent::SessionStart => "SessionStart",
            HookEvent::SessionEnd => "SessionEnd",
        }
    }
}

/// What the CLI tells a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookInput {
    /// The event (`hook_event_name`), as the CLI names it.
    pub event: String,
    /// The tool, for tool events.
    pub tool_name: Option<String>,
    /// The tool's input (a JSON object as text), for tool events.
    pub tool_input_json: Option<String>,
    /// The id of the model's tool call, for tool events.
    pub tool_use_id: Option<String>,
    /// The CLI's session id.
    pub session_id: Option<String>,
    /// Everything the CLI sent, JSON text (fields differ by event).
    pub input_json: String,
}

/// A hook's answer. [`HookOutput::proceed`] changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookOutput {
    /// Refuse what the event is about (a tool call for `PreToolUse`), with this reason for
    /// the model.
    pub block_reason: Option<String>,
    /// Let the tool run without a permission prompt (`PreToolUse`).
    pub allow_tool: bool,
    /// Run the tool with this input instead (`PreToolUse`, a JSON object as text).
    pub updated_input_json: Option<String>,
    /// End the session's work: `continue: false` with this reason.
    pub stop_reason: Option<String>,
    /// Text added to the model's context.
    pub additional_context: Option<String>,
    /// A message shown to the user.
    pub system_message: Option<String>,
}

impl HookOutput {
    /// Change nothing.
    pub fn proceed() -> HookOutput {
        HookOutput::default()
    }

    /// Block: for `PreToolUse` the tool does not run and the model is told `reason`.
    pub fn block(reason: impl Into<String>) -> HookOutput {
        HookOutput {
            block_reason: Some(reason.into()),
            ..HookOutput::default()
        }
    }

    /// `PreToolUse`: run the tool without asking for permission.
    pub fn allow_tool() -> HookOutput {
        HookOutput {
            allow_tool: true,
            ..HookOutput::default()
        }
    }

    /// Stop the session's work (`continue: false`), telling the user `reason`.
    pub fn stop(reason: impl Into<String>) -> HookOutput {
        HookOutput {
            stop_reason: Some(reason.into()),
            ..HookOutput::default()
        }
    }

    /// Also add `text` to the model's context.
    pub fn with_context(mut self, text: impl Into<String>) -> HookOutput {
        self.additional_context = Some(text.into());
        self
    }

    /// Also run the tool with `input_json` (a JSON object) instead of the model's input.
    pub fn with_input(mut self, input_json: impl Into<String>) -> HookOutput {
        self.updated_input_json = Some(input_json.into());
        self
    }

    /// Also show the user `message`.
    pub fn with_system_message(mut self, message: impl Into<String>) -> HookOutput {
        self.system_message = Some(message.into());
        self
    }

    /// The answer in the CLI's hook-output format for a hook of `event`.
    pub(crate) fn to_json(&self, event: &str) -> Result<Value, String> {
        let mut out = Map::new();
        let mut specific = Map::new();
        if let Some(reason) = &self.stop_reason {
            out.insert("continue".into(), false.into());
            out.insert("stopReason".into(), reason.clone().into());
        }
        if let Some(message) = &self.system_message {
            out.insert("systemMessage".into(), message.clone().into());
        }
        if let Some(reason) = &self.block_reason {
            out.insert("decision".into(), "block".into());
            out.insert("reason".into(), reason.clone().into());
        }
        if event == HookEvent::PreToolUse.as_str() {
            let decision = match (&self.block_reason, self.allow_tool) {
                (Some(reason), _) => Some(("deny", Some(reason.clone()))),
                (None, true) => Some(("allow", None)),
                (None, false) => None,
            };
            if let Some((decision, reason)) = decision {
                specific.insert("permissionDecision".into(), decision.into());
                if let Some(reason) = reason {
                    specific.insert("permissionDecisionReason".into(), reason.into());
                }
            }
            if let Some(text) = &self.updated_input_json {
                match serde_json::from_str::<Value>(text) {
                    Ok(v @ Value::Object(_)) => {
                        specific.insert("updatedInput".into(), v);
                    }
                    _ => return Err("the hook's updated input is not a JSON object".into()),
                }
            }
        }
        if let Some(text) = &self.additional_context {
            specific.insert("additionalContext".into(), text.clone().into());
        }
        if !specific.is_empty() {
            specific.insert("hookEventName".into(), event.into());
            out.insert("hookSpecificOutput".into(), Value::Object(specific));
        }
        Ok(Value::Object(out))
    }
}

/// A hook written in Rust. An `Err` (its text), or an answer later than the session's
/// handler timeout, reaches the CLI as an error reply.
#[async_trait]
pub trait HookCallback: Send + Sync {
    /// Run at one event.
    async fn call(&self, input: HookInput) -> Result<HookOutput, String>;
}

/// One hook: the event, the tool-name pattern it applies to (`Bash`, `Write|Edit`; `None` for
/// every tool), and its callback.
#[derive(Clone)]
pub(crate) struct HookRegistration {
    pub(crate) event: HookEvent,
    pub(crate) matcher: Option<String>,
    pub(crate) callback: Arc<dyn HookCallback>,
}

/// The callback id of the hook at `index` of a session's list.
pub(crate) fn callback_id(index: usize) -> String {
    format!("hook_{index}")
}

/// The index of the hook a callback id names (`hook_3` -> 3).
pub(crate) fn callback_index(id: &str) -> Option<usize> {
    id.strip_prefix("hook_")?.parse().ok()
}

/// The `hooks` field of `initialize`: per event, the matchers and their callback ids, with the
/// CLI's own timeout for each (the host's, rounded up to whole seconds: the host's own timeout
/// answers first).
pub(crate) fn initialize_config(hooks: &[HookRegistration], timeout: Duration) -> Value {
    let mut config = Map::new();
    for (index, hook) in hooks.iter().enumerate() {
        let entry = json!({
            "matcher": hook.matcher,
            "hookCallbackIds": [callback_id(index)],
            "timeout": timeout.as_millis().div_ceil(1000).max(1),
        });
        let list = config
            .entry(hook.event.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(entry);
        }
    }
    Value::Object(config)
}

/// The CLI's hook input, typed.
pub(crate) fn input_of(body: &Value) -> HookInput {
    let input = body.get("input").cloned().unwrap_or_else(|| json!({}));
    let str_of = |key: &str| input.get(key).and_then(Value::as_str).map(str::to_owned);
    HookInput {
        event: str_of("hook_event_name").unwrap_or_default(),
        tool_name: str_of("tool_name"),
        tool_input_json: input.get("tool_input").map(Value::to_string),
        tool_use_id: str_of("tool_use_id").or_else(|| {
            body.get("tool_use_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        session_id: str_of("session_id"),
        input_json: input.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_tool_use_block_is_a_deny_decision_with_its_reason() {
        let out = HookOutput::block("no rm").to_json("PreToolUse").unwrap();
        assert_eq!(out["decision"], "block");
        assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny");
        assert_eq!(
            out["hookSpecificOutput"]["permissionDecisionReason"],
            "no rm"
        );
        assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    }

    #[test]
    fn proceed_is_an_empty_object_and_stop_sets_continue_false() {
        assert_eq!(HookOutput::proceed().to_json("Stop").unwrap(), json!({}));
        let out = HookOutput::stop("enough").to_json("PostToolUse").unwrap();
        assert_eq!(out["continue"], false);
        assert_eq!(out["stopReason"], "enough");
        let bad = HookOutput::allow_tool()
            .with_input("[1]")
            .to_json("PreToolUse");
        assert!(bad.unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn initialize_lists_hooks_by_event_with_their_ids() {
        struct Nop;
        #[async_trait]
        impl HookCallback for Nop {
            async fn call(&self, _: HookInput) -> Result<HookOutput, String> {
                Ok(HookOutput::proceed())
            }
        }
        let hook = |event, matcher: Option<&str>| HookRegistration {
            event,
            matcher: matcher.map(str::to_owned),
            callback: Arc::new(Nop),
        };
        let hooks = [
            hook(HookEvent::PreToolUse, Some("Bash")),
            hook(HookEvent::Stop, None),
            hook(HookEvent::PreToolUse, None),
        ];
        let config = initialize_config(&hooks, Duration::from_millis(1500));
        assert_eq!(
            config["PreToolUse"],
            json!([{"matcher": "Bash", "hookCallbackIds": ["hook_0"], "timeout": 2},
                   {"matcher": null, "hookCallbackIds": ["hook_2"], "timeout": 2}])
        );
        assert_eq!(config["Stop"][0]["hookCallbackIds"], json!(["hook_1"]));
    }
}
