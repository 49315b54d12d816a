//! The HTTP side: one hyper connection task per client, routes for messages, token counting
//! and the OAuth token endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::behaviour::Behaviour;
use crate::reply;
use crate::state::{AuthSeen, Call, State};

type ReplyBody = BoxBody<Bytes, Infallible>;

/// Request bodies above this are refused (the CLI's largest requests are a few MB).
const MAX_BODY: usize = 64 << 20;

/// A body fed from a channel: a streamed reply whose events a task sends with pauses (or never).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ReplyBody> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn json_reply(status: StatusCode, value: &Value) -> Response<ReplyBody> {
    full(status, "application/json", value.to_string())
}

fn auth_of(req: &Request<Incoming>) -> Option<AuthSeen> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(key) = header("x-api-key") {
        return Some(AuthSeen::ApiKey(key));
    }
    header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .map(AuthSeen::Bearer)
}

/// Answer one request and record it.
pub(crate) async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let route = format!("{} {}", req.method(), req.uri().path());
    let auth = auth_of(&req);
    let beta = req
        .headers()
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let value = reply::error("invalid_request_error", "body unreadable or too large");
            return Ok(json_reply(StatusCode::PAYLOAD_TOO_LARGE, &value));
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let read = |f: fn(&Value) -> Vec<String>| parsed.as_ref().map(f).unwrap_or_default();
    let mut call = Call {
        route: route.clone(),
        auth: auth.clone(),
        model: None,
        stream: false,
        status: 200,
        beta,
        user_texts: read(crate::reply::user_texts),
        tools: read(crate::reply::tools_offered),
        tool_results: read(crate::reply::tool_results),
        image_data_lengths: parsed
            .as_ref()
            .map(crate::reply::image_data_lengths)
            .unwrap_or_default(),
    };
    let response = match route.as_str() {
        "POST /v1/messages" => messages(&state, parsed.as_ref(), auth.as_ref(), &mut call),
        "POST /v1/messages/count_tokens" => {
            let tokens = (body.len() as u64 / 4).max(1);
            json_reply(StatusCode::OK, &json!({ "input_tokens": tokens }))
        }
        "POST /v1/oauth/token" => token(&state, parsed.as_ref()),
        _ => json_reply(
            StatusCode::NOT_FOUND,
            &reply::error("not_found_error", "no such route on the stand-in"),
        ),
    };
    call.status = response.status().as_u16();
    tracing::debug!(route = %call.route, status = call.status, "stand-in answered");
    if let Ok(mut state) = state.lock() {
        state.calls.push(call);
    }
    Ok(response)
}

fn messages(
    state: &Mutex<State>,
    body: Option<&Value>,
    auth: Option<&AuthSeen>,
    call: &mut Call,
) -> Response<ReplyBody> {
    let Some(body) = body else {
        let value = reply::error("invalid_request_error", "body is not JSON");
        return json_reply(StatusCode::BAD_REQUEST, &value);
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-standin")
        .to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    call.model = Some(model.clone());
    call.stream = stream;
    let (behaviour, id) = match state.lock() {
        Ok(mut state) => {
            let id = state.calls.len() as u64 + 1;
            (state.behaviour_for(auth, &call.tools), id)
        }
        Err(_) => (Behaviour::Overloaded, 0),
    };
    if let Some((kind, message)) = behaviour.error() {
        let status = StatusCode::from_u16(behaviour.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = json_reply(status, &reply::error(kind, message));
        if let Behaviour::RateLimited { retry_after_secs } = behaviour {
            if let Ok(value) = retry_after_secs.to_string().parse() {
                response.headers_mut().insert("retry-after", value);
            }
        }
        return response;
    }
    let prompt = reply::last_user_text(body);
    let input_tokens = (prompt.len() as u64 / 4).max(1);
    // A scripted tool call, or a prompt `run: COMMAND` for the CLI's Bash tool; the tool's
    // answer is echoed.
    let tool = match &behaviour {
        Behaviour::ToolUse { name, input_json } => Some((name.clone(), input_json.clone())),
        _ => reply::tool_command(body).map(|c| ("Bash".to_owned(), reply::bash_input(&c))),
    }
    .filter(|_| stream);
    let text = match (&behaviour, reply::tool_output(body)) {
        (Behaviour::Reply { text: Some(text) }, _) => text.clone(),
        (_, Some(output)) => format!("tool output: {output}"),
        _ => reply::echo(&prompt),
    };
    if !stream {
        return json_reply(
            StatusCode::OK,
            &reply::message(id, &model, &text, input_tokens),
        );
    }
    let events = match &tool {
        Some((name, input)) => reply::tool_events(id, &model, (name, input), input_tokens),
        None => reply::events(id, &model, &text, input_tokens),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            match &behaviour {
                Behaviour::SlowStream { delay } => tokio::time::sleep(*delay).await,
                Behaviour::Stall if i > 0 => {
                    // Hold the stream open until the client goes away.
                    tx.closed().await;
                    return;
                }
                _ => {}
            }
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(ChannelBody(rx).boxed());
    if let Ok(value) = "text/event-stream".parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn token(state: &Mutex<State>, body: Option<&Value>) -> Response<ReplyBody> {
    let field = |name: &str| body.and_then(|b| b.get(name)).and_then(Value::as_str);
    if field("grant_type") != Some("refresh_token") {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type"}),
        );
    }
    let refreshed = field("refresh_token").and_then(|token| {
        state.lock().ok().and_then(|mut state| {
            state
                .refresh(token)
                .map(|login| (login, state.token_lifetime))
        })
    });
    match refreshed {
        Some((login, lifetime)) => json_reply(
            StatusCode::OK,
            &json!({
                "token_type": "Bearer",
                "access_token": login.access_token,
                "refresh_token": login.refresh_token,
                "expires_in": lifetime.as_secs().max(1),
                "scope": "user:inference",
            }),
        ),
        None => json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant",
                    "error_description": "refresh token unknown or already used"}),
        ),
    }
}

/// Accept connections on `listener` until the task is aborted; each connection is served on
/// its own task, all of them ended with the accept loop.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "stand-in accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "stand-in connection ended");
            }
        });
    }
}
