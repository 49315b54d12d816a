//! A stand-in OAuth token endpoint on 127.0.0.1 (Anthropic's cannot be reached from tests):
//! rotates refresh tokens, rejects a reused one with `invalid_grant`, and plays scripted faults.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the next request gets.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Rotate, if the refresh token is the current one.
    Normal,
    /// This status with `{"error": code}`.
    Status(u16, &'static str),
    /// 200 with a body that is not a token reply.
    Garbage,
    /// Wait this long before answering normally (past a client timeout, for example).
    Slow(Duration),
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// The one refresh token that is valid now.
    pub(crate) current: String,
    pub(crate) generation: u64,
    pub(crate) requests: u64,
    pub(crate) rotations: u64,
    pub(crate) invalid_grants: u64,
    pub(crate) script: VecDeque<Reply>,
    pub(crate) expires_in: u64,
}

pub(crate) struct TokenEndpoint {
    pub(crate) url: String,
    pub(crate) state: Arc<Mutex<State>>,
}

impl TokenEndpoint {
    /// Serve on 127.0.0.1 with `first_refresh` as the valid refresh token.
    pub(crate) fn start(first_refresh: &str) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/oauth/token", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            current: first_refresh.to_owned(),
            expires_in: 3600,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        TokenEndpoint { url, state }
    }

    pub(crate) fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let reply = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.script.pop_front().unwrap_or(Reply::Normal)
    };
    let (status, text) = match reply {
        Reply::Status(status, code) => (status, format!("{{\"error\":\"{code}\"}}")),
        Reply::Garbage => (200, "<html>not a token reply</html>".to_owned()),
        Reply::Slow(delay) => {
            std::thread::sleep(delay);
            rotate(state, &request)
        }
        Reply::Normal => rotate(state, &request),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn rotate(state: &Mutex<State>, request: &serde_json::Value) -> (u16, String) {
    let mut s = state.lock().unwrap();
    let offered = request["refresh_token"].as_str().unwrap_or_default();
    let well_formed =
        request["grant_type"] == "refresh_token" && request["client_id"] == "test-client";
    if !well_formed || offered != s.current {
        s.invalid_grants += 1;
        return (400, "{\"error\":\"invalid_grant\"}".to_owned());
    }
    s.generation += 1;
    s.rotations += 1;
    let g = s.generation;
    s.current = format!("sk-ant-ort01-rotated-{g}");
    let reply = serde_json::json!({
        "access_token": format!("sk-ant-oat01-access-generation-{g}"),
        "refresh_token": s.current,
        "expires_in": s.expires_in,
        "token_type": "Bearer",
    });
    (200, reply.to_string())
}
