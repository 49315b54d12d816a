//! The bodies the stand-in answers with, in the shapes the CLI accepts (see
//! `shared/CLAUDE_CLI.md`): server-sent events for a streamed reply, one JSON message otherwise.

use serde_json::{json, Value};

/// The text of the last user message of a messages request body (a string, or the last text
/// block of a content array).
pub(crate) fn last_user_text(body: &Value) -> String {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(last) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match last.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .rev()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .find_map(|b| b.get("text").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The text of every user message (a string content, or its text blocks joined), in order.
pub(crate) fn user_texts(body: &Value) -> Vec<String> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Vec::new();
    };
    messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
        .collect()
}

/// The last message's content blocks, if it is a user message with an array of blocks.
fn last_user_blocks(body: &Value) -> Option<&Vec<Value>> {
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    last.get("content")?.as_array()
}

/// The text of one `tool_result` block's content (a string, or its text parts joined).
fn result_text(result: &Value) -> String {
    match result.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Every `tool_result` block of the last user message, as text.
pub(crate) fn tool_results(body: &Value) -> Vec<String> {
    last_user_blocks(body)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(result_text)
                .collect()
        })
        .unwrap_or_default()
}

/// The output of the tool the last user message answers (its first `tool_result` block).
pub(crate) fn tool_output(body: &Value) -> Option<String> {
    tool_results(body).into_iter().next()
}

/// The names of the tools the request offers.
pub(crate) fn tools_offered(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The length of the base64 data of every image block anywhere in the messages (also inside
/// tool results).
pub(crate) fn image_data_lengths(body: &Value) -> Vec<usize> {
    fn walk(v: &Value, out: &mut Vec<usize>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("image") {
                    let data = map.get("source").and_then(|s| s.get("data"));
                    if let Some(data) = data.and_then(Value::as_str) {
                        out.push(data.len());
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(messages) = body.get("messages") {
        walk(messages, &mut out);
    }
    out
}

/// The shell command to ask the CLI's Bash tool to run: a prompt `run: COMMAND`, when the
/// request offers the Bash tool and is not already the tool's answer.
pub(crate) fn tool_command(body: &Value) -> Option<String> {
    if tool_output(body).is_some() {
        return None;
    }
    let offers_bash = tools_offered(body).iter().any(|t| t == "Bash");
    let prompt = last_user_text(body);
    let command = prompt.trim().strip_prefix("run: ")?;
    offers_bash.then(|| command.to_owned())
}

/// The input of a Bash tool call that runs `command`.
pub(crate) fn bash_input(command: &str) -> String {
    json!({"command": command, "description": "stand-in tool call"}).to_string()
}

/// The events of a streamed reply that asks for the tool `name` with `input_json`.
pub(crate) fn tool_events(
    id: u64,
    model: &str,
    (name, input_json): (&str, &str),
    input_tokens: u64,
) -> Vec<String> {
    let content = (
        json!({"type": "tool_use", "id": format!("toolu_standin_{id}"), "name": name, "input": {}}),
        json!({"type": "input_json_delta", "partial_json": input_json}),
    );
    frames(
        id,
        model,
        input_tokens,
        content,
        "tool_use",
        output_tokens(input_json),
    )
}

/// The deterministic echo: `pong` for a ping, else the first words of the prompt.
pub(crate) fn echo(prompt: &str) -> String {
    let prompt = prompt.trim();
    if prompt.eq_ignore_ascii_case("ping") {
        return "pong".into();
    }
    let snippet: String = prompt.chars().take(60).collect();
    format!("stand-in reply to: {snippet}")
}

/// Output tokens charged for `text` (about four characters a token, at least one).
fn output_tokens(text: &str) -> u64 {
    (text.len() as u64 / 4).max(1)
}

/// The whole message, for a non-streamed request.
pub(crate) fn message(id: u64, model: &str, text: &str, input_tokens: u64) -> Value {
    json!({
        "id": format!("msg_standin_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens(text)},
    })
}

/// The six events of one streamed message whose only content block starts as `block`, gets
/// `delta`, and stops for `stop_reason`; each `event: NAME\ndata: JSON\n\n`.
fn frames(
    id: u64,
    model: &str,
    input_tokens: u64,
    (block, delta): (Value, Value),
    stop_reason: &str,
    output_tokens: u64,
) -> Vec<String> {
    let start = json!({"type": "message_start", "message": {
        "id": format!("msg_standin_{id}"), "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}});
    let frames = [
        ("message_start", start),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                   "usage": {"output_tokens": output_tokens}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    frames
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// The events of a streamed reply of `text`.
pub(crate) fn events(id: u64, model: &str, text: &str, input_tokens: u64) -> Vec<String> {
    let content = (
        json!({"type": "text", "text": ""}),
        json!({"type": "text_delta", "text": text}),
    );
    frames(
        id,
        model,
        input_tokens,
        content,
        "end_turn",
        output_tokens(text),
    )
}

/// An API error body.
pub(crate) fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_found_in_either_content_shape() {
        let plain = json!({"messages": [{"role": "user", "content": "ping"}]});
        assert_eq!(echo(&last_user_text(&plain)), "pong");
        let blocks = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>"},
                {"type": "text", "text": "say hi"}]}]});
        assert_eq!(echo(&last_user_text(&blocks)), "stand-in reply to: say hi");
        assert_eq!(last_user_text(&json!({"messages": 3})), "");
    }

    #[test]
    fn a_stream_is_six_events_in_order() {
        let events = events(1, "m", "pong", 5);
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.lines().next().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "event: message_start",
                "event: content_block_start",
                "event: content_block_delta",
                "event: content_block_stop",
                "event: message_delta",
                "event: message_stop"
            ]
        );
        assert!(events.iter().all(|e| e.ends_with("\n\n")));
        assert!(events[2].contains("\"pong\""));
    }
}
