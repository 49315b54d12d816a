//! The CLI's control requests to the host, answered by the session's [`HostHandlers`]: a
//! permission prompt (`can_use_tool`) by its [`PermissionHandler`], a hook (`hook_callback`)
//! by the [`HookCallback`] registered under that id at `initialize`, an MCP message
//! (`mcp_message`) by the in-process [`McpServer`] of that name; a `control_cancel_request`
//! cancels the pending answer, and every subtype this host does not serve gets an error reply
//! (as the official SDKs do), so the CLI is never left waiting on us.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::agent_hooks::{self, HookCallback, HookEvent, HookRegistration};
use crate::mcp::McpServer;
use crate::message::ControlRequest;
use crate::stdin::ChildStdin;

/// How long a handler may take by default before the CLI gets an error reply.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(60);

/// A permission prompt: the CLI asks whether a tool may run (`can_use_tool`; the session runs
/// with `--permission-prompts host`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermissionRequest {
    /// The tool (`Bash`, `Edit`, an MCP tool's `mcp__server__name`).
    pub tool_name: String,
    /// The tool's input, a JSON object as text.
    pub input_json: String,
    /// The id of the model's tool call.
    pub tool_use_id: Option<String>,
    /// The CLI's suggested permission updates (`permission_suggestions`), JSON text.
    pub suggestions_json: Option<String>,
    /// The path that made the CLI ask, if a path did.
    pub blocked_path: Option<String>,
}

/// The host's answer to a permission prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionDecision {
    /// Run the tool.
    Allow {
        /// The input to run it with instead of the model's (a JSON object as text).
        updated_input_json: Option<String>,
        /// Permission updates to apply (a JSON array as text, the CLI's format).
        updated_permissions_json: Option<String>,
    },
    /// Do not run it; the model is told `message`.
    Deny {
        /// What the model is told.
        message: String,
        /// Also stop the turn.
        interrupt: bool,
    },
}

impl PermissionDecision {
    /// Run the tool as the model asked.
    pub fn allow() -> PermissionDecision {
        PermissionDecision::Allow {
            updated_input_json: None,
            updated_permissions_json: None,
        }
    }

    /// Run the tool with `input_json` (a JSON object) instead of the model's input.
    pub fn allow_with_input(input_json: impl Into<String>) -> PermissionDecision {
        PermissionDecision::Allow {
            updated_input_json: Some(input_json.into()),
            updated_permissions_json: None,
        }
    }

    /// Refuse, telling the model `message`; the turn goes on.
    pub fn deny(message: impl Into<String>) -> PermissionDecision {
        PermissionDecision::Deny {
            message: message.into(),
            interrupt: false,
        }
    }

    /// Refuse and stop the turn.
    pub fn deny_and_interrupt(message: impl Into<String>) -> PermissionDecision {
        PermissionDecision::Deny {
            message: message.into(),
            interrupt: true,
        }
    }
}

/// Answers the CLI's permission prompts. An `Err` (its text) and an answer later than the
/// session's handler timeout both reach the CLI as an error reply.
#[async_trait]
pub trait PermissionHandler: Send + Sync {
    /// Decide on one prompt.
    async fn can_use_tool(&self, request: PermissionRequest) -> Result<PermissionDecision, String>;
}

/// What answers the CLI's control requests for a session: a permission handler, hooks, and
/// in-process MCP servers, each answer bounded by one timeout. Cheap to clone (shared
/// handlers), so one set can serve every run of a supervised session or every session of a
/// pool. Set it before `initialize`: the hooks are registered there.
#[derive(Clone)]
pub struct HostHandlers {
    permission: Option<Arc<dyn PermissionHandler>>,
    hooks: Vec<HookRegistration>,
    mcp_servers: Vec<Arc<McpServer>>,
    timeout: Duration,
}

impl Default for HostHandlers {
    fn default() -> Self {
        HostHandlers {
            permission: None,
            hooks: Vec::new(),
            mcp_servers: Vec::new(),
            timeout: DEFAULT_HANDLER_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for HostHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.mcp_servers.iter().map(|s| s.name()).collect();
        f.debug_struct("HostHandlers")
            .field("permission_handler", &self.permission.is_some())
            .field("hooks", &self.hooks.len())
            .field("mcp_servers", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HostHandlers {
    /// No handlers: every control request from the CLI gets an error reply.
    pub fn new() -> HostHandlers {
        HostHandlers::default()
    }

    /// Answer permission prompts (`can_use_tool`) with `handler`.
    pub fn permission(mut self, handler: Arc<dyn PermissionHandler>) -> HostHandlers {
        self.permission = Some(handler);
        self
    }

    /// Run `callback` at `event`, for tools matching `matcher` (`Bash`, `Write|Edit`; `None`
    /// for all).
    pub fn hook(
        mut self,
        event: HookEvent,
        matcher: Option<&str>,
        callback: Arc<dyn HookCallback>,
    ) -> HostHandlers {
        self.hooks.push(HookRegistration {
            event,
            matcher: matcher.map(str::to_owned),
            callback,
        });
        self
    }

    /// Serve `server`'s tools to the CLI (which must be told of it:
    /// [`crate::ClaudeOptions::sdk_mcp_servers`] names it). A server of the same name is
    /// replaced.
    pub fn mcp_server(mut self, server: McpServer) -> HostHandlers {
        self.mcp_servers.retain(|s| s.name() != server.name());
        self.mcp_servers.push(Arc::new(server));
        self
    }

    /// How long any one answer may take (default 60 s); a later one is an error reply.
    pub fn timeout(mut self, timeout: Duration) -> HostHandlers {
        self.timeout = timeout;
        self
    }

    /// The names of the in-process MCP servers.
    pub fn mcp_server_names(&self) -> Vec<String> {
        self.mcp_servers
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    }

    /// The `hooks` field of `initialize` (`None` without hooks).
    pub(crate) fn hooks_config(&self) -> Option<Value> {
        (!self.hooks.is_empty()).then(|| agent_hooks::initialize_config(&self.hooks, self.timeout))
    }
}

/// Serves the CLI's control requests for one session.
pub(crate) struct Responder {
    stdin: ChildStdin,
    handlers: Mutex<HostHandlers>,
    /// Answers under way, by the CLI's request id (for `control_cancel_request`).
    inflight: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("handlers", &self.handlers())
            .finish_non_exhaustive()
    }
}

impl Responder {
    pub(crate) fn new(stdin: ChildStdin) -> Responder {
        Responder {
            stdin,
            handlers: Mutex::new(HostHandlers::default()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn handlers(&self) -> HostHandlers {
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_handlers(&self, handlers: HostHandlers) {
        *self.handlers.lock().unwrap_or_else(|p| p.into_inner()) = handlers;
    }

    pub(crate) fn set_permission_handler(
        &self,
        handler: Arc<dyn PermissionHandler>,
        timeout: Duration,
    ) {
        let mut handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        handlers.permission = Some(handler);
        handlers.timeout = timeout;
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer `request` (in a task of its own: the reader goes on reading).
    pub(crate) fn serve(self: &Arc<Self>, request: ControlRequest) {
        let handlers = self.handlers();
        let this = Arc::clone(self);
        let id = request.request_id.clone();
        // Held across the spawn, so the task's own removal (it may finish at once) comes after
        // this insertion and no finished answer stays listed.
        let mut inflight = self.inflight();
        let task = tokio::spawn(async move {
            let reply = answer(&request, &handlers).await;
            this.inflight().remove(&request.request_id);
            this.reply(&request.request_id, reply).await;
        });
        inflight.insert(id, task.abort_handle());
    }

    /// The CLI withdrew request `id`: stop answering it.
    pub(crate) fn cancel(&self, id: &str) {
        if let Some(task) = self.inflight().remove(id) {
            task.abort();
        }
    }

    /// The session's output ended: no answer can matter any more.
    pub(crate) fn abort_all(&self) {
        for (_, task) in self.inflight().drain() {
            task.abort();
        }
    }

    async fn reply(&self, id: &str, reply: Result<Value, String>) {
        let response = match reply {
            Ok(body) => json!({"subtype": "success", "request_id": id, "response": body}),
            Err(error) => json!({"subtype": "error", "request_id": id, "error": error}),
        };
        let line = json!({"type": "control_response", "response": response}).to_string();
        if let Err(e) = self.stdin.write_line(line.as_bytes()).await {
            tracing::debug!(error = %e, request_id = id, "a control reply could not be written");
        }
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn json_object(text: &str, what: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!(
            "the permission handler's {what} is not a JSON object"
        )),
    }
}

/// The error reply for a `what` that took longer than `timeout` (seconds for people).
fn late(what: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64();
    format!("the {what} did not answer within {secs:.1} s")
}

/// The answer to one control request from the CLI, as the reply's body or its error.
async fn answer(request: &ControlRequest, handlers: &HostHandlers) -> Result<Value, String> {
    let body: Value = serde_json::from_str(&request.request_json).unwrap_or_default();
    let timeout = handlers.timeout;
    match request.subtype.as_str() {
        "can_use_tool" => match &handlers.permission {
            Some(handler) => permission(&body, handler.as_ref(), timeout).await,
            None => Err("this host has no permission handler".to_owned()),
        },
        "hook_callback" => {
            let id = str_of(&body, "callback_id").unwrap_or_default();
            let hook = agent_hooks::callback_index(&id)
                .and_then(|i| handlers.hooks.get(i))
                .ok_or_else(|| format!("no hook is registered under the id {id:?}"))?;
            let input = agent_hooks::input_of(&body);
            let event = input.event.clone();
            let output = tokio::time::timeout(timeout, hook.callback.call(input))
                .await
                .map_err(|_| late("hook", timeout))??;
            output.to_json(&event)
        }
        "mcp_message" => {
            let name = str_of(&body, "server_name").unwrap_or_default();
            let message = body.get("message").cloned().unwrap_or_default();
            let server = handlers
                .mcp_servers
                .iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| format!("no in-process MCP server is named {name:?}"))?;
            let response = tokio::time::timeout(timeout, server.handle(&message))
                .await
                .map_err(|_| late("MCP tool", timeout))?;
            Ok(json!({ "mcp_response": response }))
        }
        other => Err(format!("unsupported control request subtype: {other}")),
    }
}

/// The handler's answer to one prompt, as the reply's body.
async fn permission(
    body: &Value,
    handler: &dyn PermissionHandler,
    timeout: Duration,
) -> Result<Value, String> {
    let input = body.get("input").cloned().unwrap_or_else(|| json!({}));
    let prompt = PermissionRequest {
        tool_name: str_of(body, "tool_name").unwrap_or_default(),
        input_json: input.to_string(),
        tool_use_id: str_of(body, "tool_use_id"),
        suggestions_json: body.get("permission_suggestions").map(Value::to_string),
        blocked_path: str_of(body, "blocked_path"),
    };
    let decision = tokio::time::timeout(timeout, handler.can_use_tool(prompt))
        .await
        .map_err(|_| late("permission handler", timeout))??;
    match decision {
        PermissionDecision::Allow {
            updated_input_json,
            updated_permissions_json,
        } => {
            let input = match updated_input_json {
                Some(text) => json_object(&text, "input")?,
                None => input,
            };
            let mut allow = json!({"behavior": "allow", "updatedInput": input});
            if let Some(text) = updated_permissions_json {
                let permissions: Value = serde_json::from_str(&text)
                    .map_err(|_| "the permission handler's permissions are not JSON".to_owned())?;
                allow["updatedPermissions"] = permissions;
            }
            Ok(allow)
        }
        PermissionDecision::Deny { message, interrupt } => {
            Ok(json!({"behavior": "deny", "message": message, "interrupt": interrupt}))
        }
    }
}
