//! Long stream-json lines through the real CLI 2.1.328 on the stand-in API: a user turn that
//! carries a 5 MB image, and an in-process MCP tool answering with one (which the CLI
//! recompresses and prints back as one line of more than 1 MiB, the limit of the official
//! SDKs' readers). A Claude session's lines pass whole up to its limit
//! (16 MiB by default); the same line under a 1 MiB limit is skipped and reported as
//! oversized, so the limit is what decides.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use claude_manager::proc::{
    HostHandlers, McpServer, McpTool, OutputMode, SessionEvent, StreamMessage, ToolHandler,
    ToolOutput,
};
use claude_manager::{ManagerConfig, ProcessManager};
use claude_testkit::{Behaviour, StandInApi};

use crate::permissions::{end, start_with};
use crate::SERIAL;

/// A valid RGB PNG of `side` x `side` pseudo-random pixels, stored without compression (so
/// its size is known: about 3 bytes a pixel).
fn png(side: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let row = side as usize * 3 + 1;
    let mut raw = vec![0u8; row * side as usize];
    let mut state = 0x2545_F491_u32;
    for (i, byte) in raw.iter_mut().enumerate() {
        // Each row starts with its filter byte: 0, none.
        if i % row != 0 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state.to_le_bytes()[0];
        }
    }
    // zlib of stored deflate blocks, then Adler-32.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A 5 MB image, base64.
fn five_mb_image() -> String {
    let bytes = png(1_300);
    assert!(bytes.len() > 5_000_000, "{}", bytes.len());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_carrying_a_5_mb_image_passes_whole() {
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let (h, mut session) = start_with(&api, &manager, dir.path(), |_| {}).await;
    let data = five_mb_image();
    let blocks = serde_json::json!([
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "what is in this picture?"},
    ]);
    let turn = session.turn_blocks(&blocks.to_string()).await.unwrap();
    assert!(!turn.result.is_error, "{:?}", turn.result);
    let images = api.image_data_lengths();
    // Measured: 6.76 MB of base64 in one line on the CLI's stdin; the CLI recompresses the
    // image to fit the API's limit (about 0.6 MB reached the stand-in).
    assert!(data.len() > 6_000_000);
    assert!(!images.is_empty(), "no image reached the API");
    end(h, session, &api).await;
}

/// Answers with the 5 MB image.
struct Camera(String);

#[async_trait]
impl ToolHandler for Camera {
    async fn call(&self, _arguments_json: String) -> Result<ToolOutput, String> {
        Ok(ToolOutput::image(self.0.clone(), "image/png"))
    }
}

/// One turn in which the model calls a tool answering with a 5 MB image, under `max_line`;
/// the sizes of the lines that were skipped as too long, and whether the CLI's echo of the
/// tool result came through.
async fn image_tool_turn(max_line: usize) -> (Vec<usize>, bool) {
    let api = StandInApi::start().await.unwrap();
    let manager = ProcessManager::new(ManagerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let schema = r#"{"type":"object","properties":{}}"#;
    let camera = Arc::new(Camera(five_mb_image()));
    let tool = McpTool::new("snap", "Take a picture", schema, camera).unwrap();
    let handlers = HostHandlers::new()
        .mcp_server(McpServer::new("camera").unwrap().tool(tool))
        .timeout(Duration::from_secs(30));
    let (h, mut session) = start_with(&api, &manager, dir.path(), |spec| {
        spec.handlers = handlers;
        spec.claude.allowed_tools = vec!["mcp__camera__snap".into()];
        spec.env.push(("ENABLE_TOOL_SEARCH".into(), "false".into()));
        spec.stdout = OutputMode::Lines { max_line };
    })
    .await;
    api.enqueue(Behaviour::tool_use("mcp__camera__snap", "{}"));
    let turn = session.turn("take a picture").await.unwrap();
    let mut oversized = Vec::new();
    let mut echoed = false;
    for event in &turn.events {
        match event {
            SessionEvent::Oversized { bytes } => oversized.push(*bytes),
            SessionEvent::Message(StreamMessage::User(_)) => echoed = true,
            _ => {}
        }
    }
    end(h, session, &api).await;
    (oversized, echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_result_line_of_5_mb_passes_whole_under_the_session_limit() {
    let _serial = SERIAL.lock().await;
    let (oversized, echoed) = image_tool_turn(claude_manager::proc::SESSION_MAX_LINE).await;
    assert!(oversized.is_empty(), "{oversized:?}");
    assert!(
        echoed,
        "the CLI's echo of the tool result did not come through"
    );
    // The same line under a 1 MiB limit is skipped whole and reported with its size (the CLI
    // recompresses an image above the API's limit first: measured, the 5 MB image comes back
    // as a line of about 1.3 MB).
    let (oversized, echoed) = image_tool_turn(1 << 20).await;
    assert!(oversized.iter().any(|b| *b > 1 << 20), "{oversized:?}");
    assert!(!echoed);
}
