//! In-process MCP servers: tools written in Rust that the CLI calls over the control protocol
//! (`mcp_message` carrying JSON-RPC), as the official SDKs' `sdk` MCP servers. The CLI learns
//! of a server from `--mcp-config` (`{"type": "sdk", "name": ...}`, see
//! [`crate::ClaudeOptions::sdk_mcp_servers`]) and finds its tools as `mcp__<server>__<tool>`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The MCP protocol version this host speaks (the one the official SDKs answer with).
const PROTOCOL_VERSION: &str = "2024-11-05";

/// One piece of a tool's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolContent {
    /// Text.
    Text(String),
    /// An image, base64-encoded.
    Image {
        /// The image's bytes in base64.
        data_base64: String,
        /// Its type (`image/png`).
        mime_type: String,
    },
}

/// A tool's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolOutput {
    /// What the model is given, in order.
    pub content: Vec<ToolContent>,
    /// The tool failed: the model is told so with `content`.
    pub is_error: bool,
}

impl ToolOutput {
    /// An answer of one text.
    pub fn text(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: vec![ToolContent::Text(text.into())],
            is_error: false,
        }
    }

    /// An answer of one image (`data_base64`, of type `mime_type` such as `image/png`).
    pub fn image(data_base64: impl Into<String>, mime_type: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: vec![ToolContent::Image {
                data_base64: data_base64.into(),
                mime_type: mime_type.into(),
            }],
            is_error: false,
        }
    }

    /// A failure the model is told about.
    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: vec![ToolContent::Text(text.into())],
            is_error: true,
        }
    }

    fn to_json(&self) -> Value {
        let content: Vec<Value> = self
            .content
            .iter()
            .map(|c| match c {
                ToolContent::Text(text) => json!({"type": "text", "text": text}),
                ToolContent::Image {
                    data_base64,
                    mime_type,
                } => json!({"type": "image", "data": data_base64, "mimeType": mime_type}),
            })
            .collect();
        let mut out = json!({ "content": content });
        if self.is_error {
            out["isError"] = true.into();
        }
        out
    }
}

/// A tool's code. An `Err` reaches the model as a failed tool call with its text.
#[async_trait]
pub trait ToolHandler: Send + Sync {
    /// Run the tool with `arguments_json` (a JSON object as text, as the model wrote it).
    async fn call(&self, arguments_json: String) -> std::result::Result<ToolOutput, String>;
}

/// A tool: its name, what it does, the JSON schema of its input, and its code.
#[derive(Clone)]
pub struct McpTool {
    name: String,
    description: String,
    input_schema: Value,
    handler: Arc<dyn ToolHandler>,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Names the CLI can put into `mcp__<server>__<tool>`: ASCII letters, digits, `_` and `-`.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            field,
            value: format!("{name:?}: use 1 to 64 ASCII letters, digits, '_' or '-'"),
        })
    }
}

impl McpTool {
    /// A tool `name` described by `description` whose input follows `input_schema_json` (a
    /// JSON schema object). Refused: a name the CLI cannot address, a schema that is not a
    /// JSON object.
    pub fn new(
        name: &str,
        description: &str,
        input_schema_json: &str,
        handler: Arc<dyn ToolHandler>,
    ) -> Result<McpTool> {
        check_name("MCP tool name", name)?;
        let input_schema = match serde_json::from_str::<Value>(input_schema_json) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(Error::InvalidValue {
                    field: "MCP tool input schema",
                    value: format!("{name}: not a JSON object"),
                })
            }
        };
        Ok(McpTool {
            name: name.to_owned(),
            description: description.to_owned(),
            input_schema,
            handler,
        })
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An MCP server living in this process: a name and its tools.
#[derive(Debug, Clone)]
pub struct McpServer {
    name: String,
    version: String,
    tools: Vec<McpTool>,
}

impl McpServer {
    /// An empty server `name` (what `--mcp-config` and the tools' `mcp__<name>__` prefix use).
    pub fn new(name: &str) -> Result<McpServer> {
        check_name("MCP server name", name)?;
        Ok(McpServer {
            name: name.to_owned(),
            version: "1.0.0".to_owned(),
            tools: Vec::new(),
        })
    }

    /// Add `tool` (a tool of the same name is replaced).
    pub fn tool(mut self, tool: McpTool) -> McpServer {
        self.tools.retain(|t| t.name != tool.name);
        self.tools.push(tool);
        self
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name the CLI and the model use for this server's tool `tool`.
    pub fn qualified(&self, tool: &str) -> String {
        format!("mcp__{}__{tool}", self.name)
    }

    /// Answer one JSON-RPC message from the CLI.
    pub(crate) async fn handle(&self, message: &Value) -> Value {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let result = match method {
            "initialize" => json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": self.name, "version": self.version},
            }),
            "notifications/initialized" => json!({}),
            "tools/list" => {
                let tools: Vec<Value> = self
                    .tools
                    .iter()
                    .map(|t| {
                        json!({"name": t.name, "description": t.description,
                               "inputSchema": t.input_schema})
                    })
                    .collect();
                json!({ "tools": tools })
            }
            "tools/call" => match self.call(message.get("params")).await {
                Ok(result) => result,
                Err(error) => return rpc_error(id, -32602, &error),
            },
            other => return rpc_error(id, -32601, &format!("method {other:?} not found")),
        };
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }

    async fn call(&self, params: Option<&Value>) -> std::result::Result<Value, String> {
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .ok_or("tools/call without a tool name")?;
        let tool = self
            .tools
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no tool {name:?} on server {:?}", self.name))?;
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let output = match tool.handler.call(arguments.to_string()).await {
            Ok(output) => output,
            Err(text) => ToolOutput::error(text),
        };
        Ok(output.to_json())
    }
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The `--mcp-config` value that tells the CLI of in-process servers `names`.
pub(crate) fn sdk_config(names: &[String]) -> String {
    let servers: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"type": "sdk", "name": n})))
        .collect();
    json!({ "mcpServers": servers }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Add;

    #[async_trait]
    impl ToolHandler for Add {
        async fn call(&self, arguments_json: String) -> std::result::Result<ToolOutput, String> {
            let v: Value = serde_json::from_str(&arguments_json).map_err(|e| e.to_string())?;
            let (a, b) = (v["a"].as_i64(), v["b"].as_i64());
            match (a, b) {
                (Some(a), Some(b)) => Ok(ToolOutput::text((a + b).to_string())),
                _ => Err("a and b must be integers".into()),
            }
        }
    }

    fn server() -> McpServer {
        let schema =
            r#"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}"#;
        let tool = McpTool::new("add", "Adds two integers", schema, Arc::new(Add)).unwrap();
        McpServer::new("calc").unwrap().tool(tool)
    }

    #[tokio::test]
    async fn the_server_answers_initialize_list_and_call() {
        let s = server();
        let init = s
            .handle(&json!({"jsonrpc":"2.0","id":0,"method":"initialize"}))
            .await;
        assert_eq!(init["result"]["protocolVersion"], PROTOCOL_VERSION);
        let list = s
            .handle(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await;
        assert_eq!(list["result"]["tools"][0]["name"], "add");
        assert_eq!(list["result"]["tools"][0]["inputSchema"]["type"], "object");
        let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
                          "params":{"name":"add","arguments":{"a":2,"b":40}}});
        let answer = s.handle(&call).await;
        assert_eq!(answer["id"], 2);
        assert_eq!(answer["result"]["content"][0]["text"], "42");
        let bad = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
                         "params":{"name":"add","arguments":{"a":"x"}}});
        let answer = s.handle(&bad).await;
        assert_eq!(answer["result"]["isError"], true);
        let unknown = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"mul"}});
        assert_eq!(s.handle(&unknown).await["error"]["code"], -32602);
        let other = s
            .handle(&json!({"jsonrpc":"2.0","id":5,"method":"prompts/list"}))
            .await;
        assert_eq!(other["error"]["code"], -32601);
    }

    #[test]
    fn names_the_cli_cannot_address_are_refused() {
        assert!(McpServer::new("my server").is_err());
        assert!(McpServer::new("").is_err());
        let err = McpTool::new("add", "", "[]", Arc::new(Add)).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        assert_eq!(server().qualified("add"), "mcp__calc__add");
        assert_eq!(
            sdk_config(&["calc".into()]),
            r#"{"mcpServers":{"calc":{"name":"calc","type":"sdk"}}}"#
        );
    }
}
