//! The HTTP API: axum's router, served connection by connection on the Unix socket after the
//! peer's credentials are checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::wire::{check_name, ErrorBody, SessionDef};

/// The largest request body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// Who may use the socket besides root: the daemon's own uid, and members of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// The daemon's effective uid.
    pub uid: u32,
    /// A group whose members may use it.
    pub group: Option<u32>,
}

impl Access {
    /// Root, `uid` and the members of `group` may use the socket.
    pub fn new(uid: u32, group: Option<u32>) -> Access {
        Access { uid, group }
    }

    /// Whether a peer of `uid`, primary `gid`, process `pid` may use the socket.
    pub fn permits(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == self.uid {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        gid == group || pid.is_some_and(|p| supplementary_groups(p).contains(&group))
    }
}

/// The supplementary groups of a process (`Groups:` of `/proc/<pid>/status`).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))?
                .to_owned();
            Some(
                line.split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// An error as a response: its status and `{"error", "field"}`.
struct ApiError(Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let field = match &self.0 {
            Error::Field { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: self.0.to_string(),
            field,
        };
        (status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

type Api<T> = std::result::Result<T, ApiError>;

fn named(name: &str) -> Api<()> {
    check_name(name).map_err(ApiError)
}

async fn create(
    State(d): State<Arc<Daemon>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Api<Response> {
    let body = body.map_err(|e| {
        let why = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!("larger than {MAX_BODY} bytes")
        } else {
            e.body_text()
        };
        ApiError(Error::Field {
            field: "(body)".into(),
            why,
        })
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::Field {
            field: "(body)".into(),
            why: format!("not JSON: {e}"),
        })
    })?;
    let def = SessionDef::from_json(&value)?;
    let detail = d.create(def)?;
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

/// The response header of `GET /v1/sessions` naming the newest event the list includes: a
/// follower that starts after it misses nothing between the two.
pub const EVENT_SEQ_HEADER: &str = "x-event-seq";

async fn list(State(d): State<Arc<Daemon>>) -> Response {
    // Read before the list is taken: events after this number may or may not be in it, and
    // replaying them over it is harmless; events before it are.
    let seq = d.events.last_seq();
    let mut response = Json(d.list()).into_response();
    if let Ok(value) = seq.to_string().parse() {
        response.headers_mut().insert(EVENT_SEQ_HEADER, value);
    }
    response
}

async fn inspect(State(d): State<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> Api<Response> {
    named(&name)?;
    Ok(Json(d.inspect(&name)?).into_response())
}

async fn history(State(d): State<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> Api<Response> {
    named(&name)?;
    Ok(Json(d.history(&name)?).into_response())
}

/// `?follow=true`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    follow: Option<bool>,
}

async fn logs(
    State(d): State<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    query: std::result::Result<
        axum::extract::Query<LogsQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Api<Response> {
    named(&name)?;
    let axum::extract::Query(q) = query.map_err(|e| {
        ApiError(Error::Field {
            field: "(query)".into(),
            why: e.body_text(),
        })
    })?;
    let body = d.follow_lines(&name, q.follow.unwrap_or(false))?;
    let mut response = Response::new(axum::body::Body::new(body));
    if let Ok(v) = "text/plain; charset=utf-8".parse() {
        response.headers_mut().insert("content-type", v);
    }
    Ok(response)
}

async fn turn(
    State(d): State<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Api<Response> {
    named(&name)?;
    let body = body.map_err(|e| {
        ApiError(Error::Field {
            field: "(body)".into(),
            why: e.body_text(),
        })
    })?;
    let text = crate::turns::turn_text(&body)?;
    let stream = d.turn(&name, text)?;
    let mut response = Response::new(axum::body::Body::new(stream));
    if let Ok(v) = "application/x-ndjson".parse() {
        response.headers_mut().insert("content-type", v);
    }
    Ok(response)
}

async fn stop(State(d): State<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> Api<Response> {
    named(&name)?;
    Ok((StatusCode::ACCEPTED, Json(d.stop(&name)?)).into_response())
}

async fn restart(State(d): State<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> Api<Response> {
    named(&name)?;
    Ok((StatusCode::ACCEPTED, Json(d.restart(&name)?)).into_response())
}

async fn delete(State(d): State<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> Api<Response> {
    named(&name)?;
    d.delete(&name).await?;
    Ok(Json(serde_json::json!({"deleted": name})).into_response())
}

/// `?since=SEQ&follow=true&samples=all|changed`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    since: Option<u64>,
    follow: Option<bool>,
    samples: Option<crate::events::Samples>,
}

async fn events(
    State(d): State<Arc<Daemon>>,
    query: std::result::Result<
        axum::extract::Query<EventsQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Api<Response> {
    let axum::extract::Query(q) = query.map_err(|e| {
        ApiError(Error::Field {
            field: "(query)".into(),
            why: e.body_text(),
        })
    })?;
    let body = d.events.stream(
        q.since.unwrap_or(0),
        q.follow.unwrap_or(false),
        q.samples.unwrap_or_default(),
    );
    let mut response = Response::new(axum::body::Body::new(body));
    if let Ok(v) = "application/x-ndjson".parse() {
        response.headers_mut().insert("content-type", v);
    }
    Ok(response)
}

async fn reload(State(d): State<Arc<Daemon>>) -> Api<Response> {
    Ok(Json(d.reload().await?).into_response())
}

async fn drain(State(d): State<Arc<Daemon>>) -> Response {
    d.drain().await;
    Json(serde_json::json!({"drained": true})).into_response()
}

async fn ready(State(d): State<Arc<Daemon>>) -> Response {
    if d.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], d.metrics()).into_response()
}

async fn not_allowed() -> Api<Response> {
    Err(ApiError(Error::Api {
        status: 405,
        message: "this endpoint does not take that method".into(),
    }))
}

async fn unknown() -> Api<Response> {
    Err(ApiError(Error::Api {
        status: 404,
        message: "no such endpoint".into(),
    }))
}

/// The API's routes over `daemon`.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/sessions", get(list).post(create))
        .route("/v1/sessions/{name}", get(inspect).delete(delete))
        .route("/v1/sessions/{name}/logs", get(logs))
        .route("/v1/sessions/{name}/history", get(history))
        .route("/v1/sessions/{name}/turns", post(turn))
        .route("/v1/sessions/{name}/stop", post(stop))
        .route("/v1/sessions/{name}/restart", post(restart))
        .route("/v1/reload", post(reload))
        .route("/v1/events", get(events))
        .route("/v1/drain", post(drain))
        .fallback(unknown)
        .method_not_allowed_fallback(not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(daemon)
}

/// Bind `<dir>/claude-pm.sock` (mode 0600, or 0660 with a group), replacing a stale socket
/// nobody listens on; refusing a path that is not a socket or one a daemon answers on.
pub async fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::io(
                format!("bind {}", path.display()),
                std::io::Error::other("a file that is not a socket is in the way"),
            ));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(Error::io(
                format!("bind {}", path.display()),
                std::io::Error::other("another daemon answers on this socket"),
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("restrict {}", path.display()), e))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| Error::io(format!("give {} to its group", path.display()), e))?;
    }
    Ok(listener)
}

/// Serve `router` on `listener` until the task is dropped: each connection's peer is checked
/// against `access` and answered 403 (and nothing else) if refused.
pub async fn serve(listener: UnixListener, router: Router, access: Access) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let cred = stream.peer_cred().ok();
        let allowed = cred.is_some_and(|c| access.permits(c.uid(), c.gid(), c.pid()));
        let app = if allowed {
            router.clone()
        } else {
            tracing::warn!(
                uid = cred.map(|c| c.uid()),
                "refused a client of the socket"
            );
            Router::new().fallback(|| async {
                (
                    StatusCode::FORBIDDEN,
                    Json(ErrorBody {
                        error: "this user may not use the daemon's socket".into(),
                        field: None,
                    }),
                )
            })
        };
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serve `daemon`'s API and its web dashboard on TCP. Every request of the API must carry
/// `Authorization: Bearer TOKEN` (compared in constant time) or come from a browser signed in
/// to the dashboard with that token (whose state-changing requests must carry the page's CSRF
/// token); anything else is answered 401 and nothing more. The dashboard is served here only.
/// A client address that sent `wrong_tokens` wrong tokens in a row (0: no count) gets one
/// more try every [`crate::WRONG_TOKEN_PAUSE`] and 429 until then.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    daemon: Arc<Daemon>,
    token: String,
    wrong_tokens: u32,
) {
    let web = crate::web::Web::new(Arc::from(token.into_bytes()), wrong_tokens);
    let gate = Arc::clone(&web);
    let app = router(Arc::clone(&daemon))
        .merge(crate::web::routes(daemon, web))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                crate::web::gate(Arc::clone(&gate), request, next)
            },
        ));
    // Each request knows its client's address: wrong tokens are counted per address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let _ = axum::serve(listener, app).await;
}

/// The state directory's default: `/var/lib/claude-pm` for root, `$XDG_STATE_HOME/claude-pm`
/// (or `~/.local/state/claude-pm`) otherwise.
pub fn default_state_dir(root: bool, var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if root {
        return PathBuf::from("/var/lib/claude-pm");
    }
    match (var("XDG_STATE_HOME"), var("HOME")) {
        (Some(x), _) if x.starts_with('/') => PathBuf::from(x).join("claude-pm"),
        (_, Some(home)) => PathBuf::from(home).join(".local/state/claude-pm"),
        _ => PathBuf::from("/tmp/claude-pm"),
    }
}

/// The socket in a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("claude-pm.sock")
}
