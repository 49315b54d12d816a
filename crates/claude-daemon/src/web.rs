//! The web dashboard, served with the API on the TCP listener only (never on the Unix socket
//! alone, never without the token): a login form that takes the daemon's token and sets an
//! `HttpOnly`, `SameSite=Strict` cookie; the page, its script and style embedded in the binary
//! (no CDN); the event stream as server-sent events. The API answers a browser signed in by the
//! cookie as it answers a bearer token, and a state-changing request of such a browser must
//! carry the page's CSRF token (`X-CSRF-Token`). Wrong tokens, in the form or as a bearer,
//! are counted per client address and a guesser is held back (`throttle.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};

use crate::daemon::Daemon;
use crate::events::Samples;
use crate::throttle::WrongTokens;
use crate::wire::ErrorBody;

const LOGIN_HTML: &str = include_str!("../web/login.html");
const APP_HTML: &str = include_str!("../web/app.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// The cookie that names a signed-in browser.
pub const COOKIE: &str = "claude_pm_session";
/// How long a sign-in lasts.
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Signed-in browsers kept at most (the oldest goes first).
const MAX_SIGN_INS: usize = 1024;

/// One signed-in browser.
struct SignIn {
    csrf: String,
    until: Instant,
}

/// What the dashboard's routes share: the token and the signed-in browsers.
pub(crate) struct Web {
    token: Arc<[u8]>,
    sign_ins: Mutex<HashMap<String, SignIn>>,
    wrong: WrongTokens,
}

/// How a try at the token went.
enum Attempt {
    /// Not checked: the address sent too many wrong ones; it may try again after this.
    HeldBack(Duration),
    Right,
    Wrong,
}

/// 32 random bytes as hex, from the kernel's generator.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` is `token`, in constant time in the token's content.
pub(crate) fn token_matches(given: &[u8], token: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

impl Web {
    /// The dashboard of `token`, holding back an address after `wrong_tokens` wrong ones in
    /// a row (0: never).
    pub(crate) fn new(token: Arc<[u8]>, wrong_tokens: u32) -> Arc<Web> {
        Arc::new(Web {
            token,
            sign_ins: Mutex::new(HashMap::new()),
            wrong: WrongTokens::new(wrong_tokens),
        })
    }

    fn sign_ins(&self) -> std::sync::MutexGuard<'_, HashMap<String, SignIn>> {
        self.sign_ins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CSRF token of the browser whose cookie `headers` carry, if it is signed in.
    fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers)?;
        let sign_ins = self.sign_ins();
        sign_ins
            .get(&id)
            .filter(|s| s.until > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// A new sign-in: its cookie value and CSRF token.
    fn sign_in(&self) -> Option<(String, String)> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let mut sign_ins = self.sign_ins();
        let now = Instant::now();
        sign_ins.retain(|_, s| s.until > now);
        if sign_ins.len() >= MAX_SIGN_INS {
            let oldest = sign_ins
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sign_ins.remove(&oldest);
            }
        }
        let until = Instant::now() + SIGN_IN_LIFETIME;
        sign_ins.insert(
            id.clone(),
            SignIn {
                csrf: csrf.clone(),
                until,
            },
        );
        Some((id, csrf))
    }

    /// `given` as a try at the token from `peer`: held back (and not checked) while `peer`
    /// has sent too many wrong ones, else right or wrong, and counted.
    fn attempt(&self, peer: IpAddr, given: &[u8]) -> Attempt {
        let now = Instant::now();
        if let Err(wait) = self.wrong.check(peer, now) {
            return Attempt::HeldBack(wait);
        }
        if token_matches(given, &self.token) {
            self.wrong.succeeded(peer);
            Attempt::Right
        } else {
            self.wrong.failed(peer, now);
            Attempt::Wrong
        }
    }

    fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.sign_ins().remove(&id);
        }
    }
}

/// The value of our cookie in a request's `Cookie` headers.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn login_page(status: StatusCode, error: &str) -> Response {
    html(status, LOGIN_HTML.replace("{{ERROR}}", error))
}

async fn index(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match web.csrf_of(&headers) {
        Some(csrf) => html(StatusCode::OK, APP_HTML.replace("{{CSRF}}", &csrf)),
        None => login_page(StatusCode::OK, ""),
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// The client's address (the TCP listener records it on every connection).
fn peer_of(peer: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Whole seconds to wait, rounded up, at least one.
fn seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// What a held-back address is told, after "too many".
fn held_back(wait: Duration) -> String {
    format!(
        "wrong tokens from this address; try again in {} s",
        seconds(wait)
    )
}

fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    if let Ok(value) = seconds(wait).to_string().parse() {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn login(
    State(web): State<Arc<Web>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let peer = peer_of(peer.as_ref().map(|Extension(c)| c));
    let given = form.map(|Form(f)| f.token).unwrap_or_default();
    match web.attempt(peer, given.trim().as_bytes()) {
        Attempt::Right => {}
        Attempt::HeldBack(wait) => {
            let why = format!("Too many {}.", held_back(wait));
            return with_retry_after(login_page(StatusCode::TOO_MANY_REQUESTS, &why), wait);
        }
        Attempt::Wrong => {
            tracing::warn!(%peer, "a dashboard sign-in with a wrong token");
            return login_page(StatusCode::UNAUTHORIZED, "That is not the daemon's token.");
        }
    }
    let Some((id, _)) = web.sign_in() else {
        return login_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No random bytes for a sign-in; try again.",
        );
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SIGN_IN_LIFETIME.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[derive(serde::Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let allowed = web
        .csrf_of(&headers)
        .is_some_and(|csrf| token_matches(given.as_bytes(), csrf.as_bytes()));
    if allowed {
        web.sign_out(&headers);
    }
    let cleared = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cleared)], Redirect::to("/")).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `?since=SEQ&samples=all|changed` of the event stream (changed samples by default: the
/// dashboard holds the last shown values).
#[derive(serde::Deserialize)]
struct StreamQuery {
    since: Option<u64>,
    samples: Option<Samples>,
}

/// One NDJSON record as a server-sent event, `BOOT.SEQ` as the event's id.
fn sse_frame(boot: u64, seq: Option<u64>, line: bytes::Bytes) -> bytes::Bytes {
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    bytes::Bytes::from(match seq {
        Some(seq) => format!("id: {boot}.{seq}\ndata: {text}\n\n"),
        None => format!("data: {text}\n\n"),
    })
}

/// Where a `Last-Event-ID` resumes: its number if this daemon gave it (`BOOT.SEQ`, our boot),
/// past every number otherwise (an earlier daemon's: the stream starts with `reset`).
fn resume_after(last_event_id: &str, boot: u64) -> u64 {
    match last_event_id.split_once('.') {
        Some((b, seq)) if b.parse() == Ok(boot) => seq.parse().unwrap_or(u64::MAX),
        _ => u64::MAX,
    }
}

/// The event stream as server-sent events: each record one `data:` line, from now on (or
/// after `since`; a browser reconnecting sends `Last-Event-ID`).
async fn event_stream(
    State(daemon): State<Arc<Daemon>>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let boot = daemon.events.boot;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| resume_after(v, boot));
    let since = last_id
        .or(query.since)
        .unwrap_or_else(|| daemon.events.last_seq());
    let body = Body::new(daemon.events.stream_framed(
        since,
        true,
        query.samples.unwrap_or(Samples::Changed),
        move |seq, line| sse_frame(boot, seq, line),
    ));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's own routes (the page, sign-in, assets, the event stream).
pub(crate) fn routes(daemon: Arc<Daemon>, web: Arc<Web>) -> Router {
    let pages = Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .with_state(web);
    let stream = Router::new()
        .route("/v1/events/stream", get(event_stream))
        .with_state(daemon);
    pages.merge(stream)
}

/// Paths anyone may ask for: the sign-in page and what it needs.
fn public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/login" | "/logout" | "/assets/app.css" | "/assets/app.js"
    )
}

fn refuse(status: StatusCode, error: &str) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            error: error.to_owned(),
            field: None,
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = "Bearer".parse() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Every TCP request: the public pages pass; otherwise the bearer token, or a signed-in
/// browser (whose state-changing requests must carry its CSRF token).
pub(crate) async fn gate(web: Arc<Web>, request: Request, next: Next) -> Response {
    if public(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if let Some(given) = given {
        let peer = peer_of(request.extensions().get::<ConnectInfo<SocketAddr>>());
        match web.attempt(peer, given) {
            Attempt::Right => return next.run(request).await,
            Attempt::HeldBack(wait) => {
                let why = format!("too many {}", held_back(wait));
                return with_retry_after(refuse(StatusCode::TOO_MANY_REQUESTS, &why), wait);
            }
            Attempt::Wrong => tracing::warn!(%peer, "a request with a wrong bearer token"),
        }
    }
    let Some(csrf) = web.csrf_of(request.headers()) else {
        return refuse(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    };
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let carried = request
        .headers()
        .get("x-csrf-token")
        .is_some_and(|v| token_matches(v.as_bytes(), csrf.as_bytes()));
    if !safe && !carried {
        return refuse(
            StatusCode::FORBIDDEN,
            "this request needs the page's CSRF token (X-CSRF-Token)",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_empty_is_none() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; claude_pm_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "claude_pm_session=".parse().unwrap());
        assert_eq!(cookie(&h), None);
        assert!(random_hex().is_some_and(|h| h.len() == 64));
        assert!(!token_matches(b"abc", b"abcd"));
        assert!(token_matches(b"abcd", b"abcd"));
    }

    #[test]
    fn a_record_becomes_one_event_with_its_number() {
        let framed = sse_frame(42, Some(7), bytes::Bytes::from("{\"seq\":7}\n"));
        assert_eq!(&framed[..], b"id: 42.7\ndata: {\"seq\":7}\n\n");
        let lagged = sse_frame(42, None, bytes::Bytes::from("{\"lagged\":3}\n"));
        assert_eq!(&lagged[..], b"data: {\"lagged\":3}\n\n");
        // Our own id resumes after its number; another daemon's, or nonsense, after all.
        assert_eq!(resume_after("42.7", 42), 7);
        assert_eq!(resume_after("41.7", 42), u64::MAX);
        assert_eq!(resume_after("7", 42), u64::MAX);
        assert_eq!(resume_after("42.x", 42), u64::MAX);
    }

    #[test]
    fn sign_ins_are_bounded_and_give_their_csrf_token() {
        let web = Web::new(Arc::from(&b"t"[..]), 0);
        let (id, csrf) = web.sign_in().unwrap();
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, format!("{COOKIE}={id}").parse().unwrap());
        assert_eq!(web.csrf_of(&h), Some(csrf));
        for _ in 0..MAX_SIGN_INS + 10 {
            web.sign_in();
        }
        assert!(web.sign_ins().len() <= MAX_SIGN_INS);
        web.sign_out(&h);
        assert_eq!(web.csrf_of(&h), None);
    }
}
