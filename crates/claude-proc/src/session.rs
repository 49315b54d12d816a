//! Stream-json session I/O with the real CLI: user turns, control requests with ids and
//! timeouts, typed messages.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::child::{Child, ExitInfo};
use crate::config::{OutputMode, ProcessConfig, ProcessConfigBuilder, StdinMode};
use crate::control::{HostHandlers, PermissionHandler, Responder};
use crate::error::{Error, Result};
use crate::message::{parse_line, ControlResponse, ResultMessage, StreamMessage};
use crate::options::PermissionMode;
use crate::output::{OutputEvent, OutputReceiver};
use crate::stdin::ChildStdin;

/// The longest stream-json line read whole (tool results can be large).
pub const SESSION_MAX_LINE: usize = 16 * 1024 * 1024;

/// What the session's reader saw, in order (control responses go to their requests instead).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A parsed message.
    Message(StreamMessage),
    /// A line that is not a readable message (kept, with why).
    Malformed {
        /// The line, lossy UTF-8, cut to 4 KiB.
        line: String,
        /// Why it could not be read.
        error: String,
    },
    /// A line longer than [`SESSION_MAX_LINE`]; its bytes were counted and skipped.
    Oversized {
        /// Its length in bytes.
        bytes: usize,
    },
}

/// One finished turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Everything the CLI printed during the turn, before the result.
    pub events: Vec<SessionEvent>,
    /// The `result` message.
    pub result: ResultMessage,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<ControlResponse>>>>;

/// A stream-json session over a child's stdin and stdout.
#[derive(Debug)]
pub struct ClaudeSession {
    pid: u32,
    control: SessionControl,
    events: mpsc::Receiver<SessionEvent>,
}

/// The sending half of a [`ClaudeSession`]: user turns and control requests. Clonable, so a
/// health probe can ping the CLI while the owner of the session reads its events.
#[derive(Debug, Clone)]
pub struct SessionControl {
    stdin: ChildStdin,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    /// The run's exit, when the session was attached to its child: a request or turn cut
    /// short by the CLI's end reports that end and its stderr at once.
    exit: Option<tokio::sync::watch::Receiver<Option<ExitInfo>>>,
    /// Answers the CLI's own control requests.
    responder: Arc<Responder>,
}

/// How long a request cut short by the end of output waits for the CLI's exit to be known
/// (the tree is confirmed gone and reaped first; usually a few milliseconds).
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);

/// The CLI's arguments for a long-lived stream-json session: turns and control requests on
/// stdin, messages on stdout.
pub const STREAM_JSON_ARGS: [&str; 6] = [
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
];

impl ClaudeSession {
    /// A configuration for a long-lived stream-json session with the CLI at `binary`:
    /// `-p --input-format stream-json --output-format stream-json --verbose`, piped stdin,
    /// stdout framed in lines of up to [`SESSION_MAX_LINE`], stderr kept as a tail, and
    /// `CLAUDE_CODE_ENTRYPOINT=sdk-rs`. Add arguments and variables before `build`.
    pub fn config(binary: impl AsRef<Path>) -> ProcessConfigBuilder {
        ProcessConfig::builder(binary.as_ref())
            .args(STREAM_JSON_ARGS)
            .stdin(StdinMode::Piped)
            .stdout(OutputMode::Lines {
                max_line: SESSION_MAX_LINE,
            })
            .env("CLAUDE_CODE_ENTRYPOINT", "sdk-rs")
    }

    /// Take over the child's stdin and stdout. Fails if either was not piped or already taken.
    pub fn attach(child: &mut Child) -> Result<ClaudeSession> {
        let pid = child.pid();
        let stdin = child.take_stdin().ok_or(Error::InvalidValue {
            field: "stdin",
            value: "not piped (or already taken)".into(),
        })?;
        let stdout = child.take_stdout().ok_or(Error::InvalidValue {
            field: "stdout",
            value: "not framed in lines (or already taken)".into(),
        })?;
        let mut session = Self::from_streams(pid, stdin, stdout);
        session.control.exit = Some(child.exit_watch());
        Ok(session)
    }

    /// Build a session from streams taken elsewhere (for example a supervisor's [`crate::Run`]).
    pub fn from_streams(pid: u32, stdin: ChildStdin, stdout: OutputReceiver) -> ClaudeSession {
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(256);
        let responder = Arc::new(Responder::new(stdin.clone()));
        tokio::spawn(read_loop(
            stdout,
            Arc::clone(&pending),
            Arc::clone(&responder),
            tx,
        ));
        ClaudeSession {
            pid,
            control: SessionControl {
                stdin,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                exit: None,
                responder,
            },
            events: rx,
        }
    }

    /// A clonable handle for sending turns and control requests from elsewhere.
    pub fn control_handle(&self) -> SessionControl {
        self.control.clone()
    }

    /// The CLI's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next event, or `None` once the CLI's stdout has ended.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Send `text` and collect events until the turn's `result`.
    pub async fn turn(&mut self, text: &str) -> Result<Turn> {
        let sent = self.control.send_user(text).await;
        self.finish_turn(sent).await
    }

    /// Send a user message of content blocks (`blocks_json`, a JSON array: text, image,
    /// document blocks as the Messages API takes them) and collect events until the `result`.
    pub async fn turn_blocks(&mut self, blocks_json: &str) -> Result<Turn> {
        let sent = self.control.send_user_blocks(blocks_json).await;
        self.finish_turn(sent).await
    }

    async fn finish_turn(&mut self, sent: Result<()>) -> Result<Turn> {
        if let Err(e) = sent {
            return Err(self.control.write_failed("turn", e).await);
        }
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            if let SessionEvent::Message(StreamMessage::Result(result)) = event {
                return Ok(Turn { events, result });
            }
            events.push(event);
        }
        Err(self.control.ended("turn").await)
    }
}

/// Turns and control requests go through the session's [`SessionControl`]: `send_user`,
/// `control` (any subtype), the typed requests (`initialize`, `interrupt`,
/// `set_permission_mode`, `set_model`, ...), `close`.
impl std::ops::Deref for ClaudeSession {
    type Target = SessionControl;

    fn deref(&self) -> &SessionControl {
        &self.control
    }
}

impl SessionControl {
    /// Close stdin: the CLI finishes and exits with 0.
    pub async fn close(&self) {
        self.stdin.close().await;
    }

    /// Send a user turn.
    pub async fn send_user(&self, text: &str) -> Result<()> {
        self.send_user_content(text.into()).await
    }

    /// Send a user turn of content blocks (`blocks_json`, a JSON array of Messages API blocks:
    /// text, image, document). Refused before sending if it is not a JSON array.
    pub async fn send_user_blocks(&self, blocks_json: &str) -> Result<()> {
        match serde_json::from_str::<serde_json::Value>(blocks_json) {
            Ok(blocks @ serde_json::Value::Array(_)) => self.send_user_content(blocks).await,
            _ => Err(Error::InvalidValue {
                field: "user content blocks",
                value: "not a JSON array".into(),
            }),
        }
    }

    async fn send_user_content(&self, content: serde_json::Value) -> Result<()> {
        let msg = serde_json::json!({
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": null,
            "session_id": "default",
        });
        self.send_json(&msg).await
    }

    async fn send_json(&self, value: &serde_json::Value) -> Result<()> {
        let line = serde_json::to_vec(value).map_err(|source| Error::Encode { source })?;
        self.stdin.write_line(&line).await
    }

    /// Send a control request and wait for its response. `params_json`, if given, is a JSON
    /// object whose fields are added to the request next to `subtype`.
    pub async fn control(
        &self,
        subtype: &str,
        params_json: Option<&str>,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let request = match params_json {
            Some(text) => serde_json::from_str::<serde_json::Value>(text)
                .map_err(|source| Error::Encode { source })?,
            None => serde_json::json!({}),
        };
        self.request(subtype, request, timeout).await
    }

    async fn request(
        &self,
        subtype: &str,
        mut request: serde_json::Value,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let Some(obj) = request.as_object_mut() else {
            return Err(Error::InvalidValue {
                field: "control params",
                value: "not a JSON object".into(),
            });
        };
        obj.insert("subtype".into(), subtype.into());
        let request_id = format!("req_{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending_map().insert(request_id.clone(), tx);
        let msg = serde_json::json!({
            "type": "control_request",
            "request_id": request_id,
            "request": request,
        });
        if let Err(e) = self.send_json(&msg).await {
            self.pending_map().remove(&request_id);
            return Err(self.write_failed(subtype, e).await);
        }
        let response = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(self.ended(subtype).await),
            Err(_) => {
                self.pending_map().remove(&request_id);
                return Err(Error::ControlTimeout {
                    request_id,
                    subtype: subtype.to_owned(),
                    timeout,
                });
            }
        };
        if response.success {
            Ok(response)
        } else {
            Err(Error::ControlError {
                request_id,
                message: response.error.unwrap_or_else(|| "no message".into()),
            })
        }
    }

    /// Answer the CLI's permission prompts (`can_use_tool`; start the CLI with
    /// `ClaudeOptions::permission_prompts = Host`) with `handler`; an answer later than
    /// `timeout`, or an error of the handler, reaches the CLI as an error reply. Without a
    /// handler every prompt gets an error reply.
    pub fn set_permission_handler(&self, handler: Arc<dyn PermissionHandler>, timeout: Duration) {
        self.responder.set_permission_handler(handler, timeout);
    }

    /// Answer the CLI's control requests with `handlers` (permission prompts, hooks,
    /// in-process MCP servers). Set them before [`SessionControl::initialize`]: that is where
    /// the hooks are registered with the CLI.
    pub fn set_handlers(&self, handlers: HostHandlers) {
        self.responder.set_handlers(handlers);
    }

    /// The handlers answering the CLI's control requests.
    pub fn handlers(&self) -> HostHandlers {
        self.responder.handlers()
    }

    /// `initialize`, registering the session's hooks: answered in ~0.2 s after spawn without
    /// API traffic, so it doubles as a responsiveness ping (a repeat registers the same hooks
    /// again under the same ids).
    pub async fn initialize(&self, timeout: Duration) -> Result<ControlResponse> {
        let mut params = serde_json::json!({});
        if let Some(hooks) = self.responder.handlers().hooks_config() {
            params["hooks"] = hooks;
        }
        self.request("initialize", params, timeout).await
    }

    /// `interrupt` the running turn.
    pub async fn interrupt(&self, timeout: Duration) -> Result<ControlResponse> {
        self.control("interrupt", None, timeout).await
    }

    /// `set_permission_mode`: the mode from the next tool call on.
    pub async fn set_permission_mode(
        &self,
        mode: PermissionMode,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({"mode": mode.flag_value()});
        self.request("set_permission_mode", params, timeout).await
    }

    /// `set_model`: the model of the next request; `None` goes back to the default.
    pub async fn set_model(
        &self,
        model: Option<&str>,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({ "model": model });
        self.request("set_model", params, timeout).await
    }

    /// `set_max_thinking_tokens`: the thinking budget of the next requests; `None` clears it.
    pub async fn set_max_thinking_tokens(
        &self,
        tokens: Option<u32>,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({ "max_thinking_tokens": tokens });
        self.request("set_max_thinking_tokens", params, timeout)
            .await
    }

    /// `get_context_usage`: the context window's use by category (`response_json`).
    pub async fn get_context_usage(&self, timeout: Duration) -> Result<ControlResponse> {
        self.control("get_context_usage", None, timeout).await
    }

    /// `mcp_status`: the MCP servers and their connection state (`response_json`).
    pub async fn mcp_status(&self, timeout: Duration) -> Result<ControlResponse> {
        self.control("mcp_status", None, timeout).await
    }

    /// `mcp_reconnect`: reconnect the MCP server `server_name`.
    pub async fn mcp_reconnect(
        &self,
        server_name: &str,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({ "serverName": server_name });
        self.request("mcp_reconnect", params, timeout).await
    }

    /// `mcp_toggle`: enable or disable the MCP server `server_name`.
    pub async fn mcp_toggle(
        &self,
        server_name: &str,
        enabled: bool,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({ "serverName": server_name, "enabled": enabled });
        self.request("mcp_toggle", params, timeout).await
    }

    /// `rewind_files`: the files the session changed back to their state at the user message
    /// `user_message_id` (needs the CLI's file checkpointing).
    pub async fn rewind_files(
        &self,
        user_message_id: &str,
        timeout: Duration,
    ) -> Result<ControlResponse> {
        let params = serde_json::json!({ "user_message_id": user_message_id });
        self.request("rewind_files", params, timeout).await
    }

    /// `stop_task`: stop the background task `task_id` (from a task notification).
    pub async fn stop_task(&self, task_id: &str, timeout: Duration) -> Result<ControlResponse> {
        let params = serde_json::json!({ "task_id": task_id });
        self.request("stop_task", params, timeout).await
    }

    /// A write to the CLI's stdin failed: its end, if that is why (a closed pipe).
    async fn write_failed(&self, during: &str, error: Error) -> Error {
        if !matches!(error, Error::StdinWrite { .. }) {
            return error;
        }
        match self.ended(during).await {
            Error::SessionClosed => error,
            ended => ended,
        }
    }

    /// Why `during` was cut short: the CLI's exit and stderr once known (waiting briefly for
    /// the tree to be confirmed gone), [`Error::SessionClosed`] for a session without a child.
    async fn ended(&self, during: &str) -> Error {
        let Some(mut rx) = self.exit.clone() else {
            return Error::SessionClosed;
        };
        let waited = tokio::time::timeout(EXIT_REPORT_WAIT, rx.wait_for(Option::is_some)).await;
        match waited
            .ok()
            .and_then(|r| r.ok().and_then(|info| info.clone()))
        {
            Some(info) => Error::SessionEnded {
                pid: info.pid,
                during: during.to_owned(),
                reason: info.reason,
                stderr_tail: info.stderr_tail,
            },
            None => Error::SessionClosed,
        }
    }

    fn pending_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<ControlResponse>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn read_loop(
    mut stdout: OutputReceiver,
    pending: Pending,
    responder: Arc<Responder>,
    tx: mpsc::Sender<SessionEvent>,
) {
    let mut oversized = 0usize;
    while let Some(event) = stdout.recv().await {
        let out = match event {
            OutputEvent::Line(line) | OutputEvent::Unterminated(line) => match parse_line(&line) {
                Ok(StreamMessage::ControlResponse(response)) => {
                    let waiter = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&response.request_id);
                    match waiter {
                        Some(waiter) => {
                            let _ = waiter.send(response);
                            continue;
                        }
                        None => SessionEvent::Message(StreamMessage::ControlResponse(response)),
                    }
                }
                Ok(StreamMessage::ControlRequest(request)) => {
                    // Answered in a task of its own; the caller still sees it.
                    responder.serve(request.clone());
                    SessionEvent::Message(StreamMessage::ControlRequest(request))
                }
                Ok(StreamMessage::ControlCancel { request_id }) => {
                    responder.cancel(&request_id);
                    SessionEvent::Message(StreamMessage::ControlCancel { request_id })
                }
                Ok(message) => SessionEvent::Message(message),
                Err(error) => {
                    let cut = line.get(..4096).unwrap_or(&line);
                    SessionEvent::Malformed {
                        line: String::from_utf8_lossy(cut).into_owned(),
                        error: error.to_string(),
                    }
                }
            },
            OutputEvent::Oversized { fragment, end } => {
                oversized += fragment.len();
                if !end {
                    continue;
                }
                SessionEvent::Oversized {
                    bytes: std::mem::take(&mut oversized),
                }
            }
            OutputEvent::Chunk(_) => continue,
        };
        if tx.send(out).await.is_err() {
            // Nobody reads events any more; keep routing control responses.
            continue;
        }
    }
    // End of output: waiters get `SessionClosed`; answers still being worked out are dropped.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    responder.abort_all();
}
