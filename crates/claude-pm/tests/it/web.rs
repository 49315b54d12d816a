//! The web dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver by fantoccini) against the real daemon on TCP: a wrong token is
//! refused and a right one signs in (an `HttpOnly`, `SameSite=Strict` cookie); a session created
//! through the API appears live; its CPU rises for a busy loop; its page shows the chart;
//! Stop ends the tree; the start form shows a bad memory value next to the field; a cookie
//! request without the CSRF token is refused; the Unix socket serves no dashboard. Screenshots
//! go to `target/screenshots/`, the first load's size and paint time to
//! `target/dashboard-load.json`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use claude_daemon::{Client, Method};
use claude_manager::proc::{spawn, Child, ProcessConfig};
use fantoccini::{ClientBuilder, Locator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{alive, pid_of, Served};

const TOKEN: &str = "dashboard-token-for-the-browser-test";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Chromedriver on a free port, once it answers.
async fn chromedriver() -> Option<(Child, u16)> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CLAUDE_PM_STRICT").is_none(),
            "{CHROMEDRIVER} or {CHROMIUM} is missing (.ci/run installs chromium and chromium-driver)"
        );
        eprintln!("skipped: no {CHROMEDRIVER} / {CHROMIUM}");
        return None;
    }
    let port = free_port();
    let config = ProcessConfig::builder(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .build()
        .unwrap();
    let child = spawn(&config).await.unwrap();
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some((child, port))
}

async fn browser(port: u16) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut builder = ClientBuilder::new(connector);
    builder.capabilities(caps);
    builder
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of `css`, once it satisfies `ok` (within 15 s).
async fn text_when(c: &fantoccini::Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(text) = e.text().await {
                if ok(&text) {
                    return text;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{css} never matched; the page: {}",
            c.source()
                .await
                .unwrap_or_default()
                .chars()
                .take(3000)
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Type `text` into the element `css`.
async fn type_into(c: &fantoccini::Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Click the element `css`.
async fn click(c: &fantoccini::Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Load the page afresh; what the browser measured: bytes of the page and each resource, and
/// the first table paint after navigation start.
async fn measure_load(c: &fantoccini::Client, url: &str) -> serde_json::Value {
    c.goto(url).await.unwrap();
    text_when(c, "#stream-state", |t| t == "live").await;
    text_when(c, "#summary", |t| t.contains("sessions")).await;
    let start = Instant::now();
    while c
        .execute("return window.__firstTablePaint;", vec![])
        .await
        .unwrap()
        .is_null()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the table was never painted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.execute(
        "const nav = performance.getEntriesByType('navigation')[0]; \
         const res = performance.getEntriesByType('resource'); \
         return {document: nav.transferSize, resources: res.map(r => [r.name, r.transferSize]), \
                 first_table_paint_ms: window.__firstTablePaint};",
        vec![],
    )
    .await
    .unwrap()
}

/// The status of `POST path` sent with only `cookie` (no CSRF token).
async fn post_with_cookie(addr: &str, path: &str, cookie: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_sessions_live_and_stops_one() {
    let _serial = crate::SERIAL.lock().await;
    let Some((mut driver, driver_port)) = chromedriver().await else {
        return;
    };
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let file = token_file.display().to_string();
    let served = Served::start("", &["--listen", &addr, "--token-file", &file]).await;
    let api = Client::tcp(&addr, TOKEN);
    let url = format!("http://{addr}/");
    let c = browser(driver_port).await;

    // A wrong token: refused, no cookie.
    c.goto(&url).await.unwrap();
    type_into(&c, "#login-token", "not-the-token").await;
    click(&c, "#login-submit").await;
    text_when(&c, "#login-error", |t| t.contains("not the daemon's token")).await;
    assert!(c.get_all_cookies().await.unwrap().is_empty());

    // The right one: the app, its cookie HttpOnly and SameSite=Strict, the stream live.
    type_into(&c, "#login-token", TOKEN).await;
    click(&c, "#login-submit").await;
    text_when(&c, "#stream-state", |t| t == "live").await;
    let cookie = c.get_named_cookie(claude_daemon::COOKIE).await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    let cookie_header = format!("{}={}", cookie.name(), cookie.value());

    // Created through the API: the row appears without a reload, its CPU rises.
    let busy = serde_json::json!({"name": "busy", "command": ["/bin/sh", "-c", "while :; do :; done"], "grace": "1s"});
    api.create(&busy).await.unwrap();
    let busy_pid = pid_of(&served.client(), "busy").await;
    text_when(&c, r#"tr[data-name="busy"] td.state"#, |t| t == "running").await;
    let cpu = text_when(&c, r#"tr[data-name="busy"] td.cpu"#, |t| {
        t.parse::<f64>().is_ok_and(|v| v > 50.0)
    })
    .await;
    eprintln!("busy loop at {cpu} % in the table");
    std::fs::write(
        screenshots().join("dashboard-table.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    // Without the page's CSRF token a signed-in cookie cannot change anything.
    assert_eq!(
        post_with_cookie(&addr, "/v1/sessions/busy/restart", &cookie_header).await,
        403
    );
    assert_eq!(
        post_with_cookie(
            &addr,
            "/v1/sessions/busy/restart",
            "claude_pm_session=forged"
        )
        .await,
        401
    );

    // Its page: the chart, then Stop ends the tree.
    click(&c, r#"tr[data-name="busy"]"#).await;
    text_when(&c, "#session-name", |t| t == "busy").await;
    text_when(&c, "#chart-now", |t| t.starts_with("now")).await;
    std::fs::write(
        screenshots().join("dashboard-session.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    click(&c, "#stop").await;
    text_when(&c, "#session-state", |t| t == "finished").await;
    // The end is listed with its reason, from the registry.
    text_when(&c, "#session-exits li", |t| t.contains("stopped")).await;
    let start = Instant::now();
    while alive(busy_pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the busy loop still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The start form: a bad memory value is shown next to its field; nothing starts.
    c.goto(&format!("{url}#/")).await.unwrap();
    click(&c, "#start-box summary").await;
    type_into(&c, "#start-name", "bad-mem").await;
    type_into(&c, "#start-command", "/bin/sleep 100").await;
    type_into(&c, "#start-memory", "lots").await;
    click(&c, "#start-submit").await;
    let error = text_when(&c, r#".field-error[data-field="memory"]"#, |t| {
        !t.is_empty()
    })
    .await;
    assert!(error.contains("memory"), "{error}");
    let (status, _) = api
        .request(Method::Get, "/v1/sessions/bad-mem", None)
        .await
        .unwrap();
    assert_eq!(status, 404);

    // The first load, as the browser measured it; then again with 500 sessions, and the
    // page's frame rate while their samples stream in (recorded, not asserted: speed is
    // measured, never a timed assert).
    let one = measure_load(&c, &url).await;
    for i in 0..499 {
        let def = serde_json::json!({"name": format!("idle-{i:03}"), "command": ["/bin/sleep", "4321"], "grace": "1s"});
        api.create(&def).await.unwrap();
    }
    let many = measure_load(&c, &url).await;
    text_when(&c, "#summary", |t| t.starts_with("500 sessions")).await;
    let rows = c
        .find_all(Locator::Css("#sessions tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows, 100, "a page of the table holds 100 rows");
    let fps = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; let n = 0; const t0 = performance.now(); \
             function f() { n++; if (performance.now() - t0 < 3000) requestAnimationFrame(f); \
             else done(n / ((performance.now() - t0) / 1000)); } requestAnimationFrame(f);",
            vec![],
        )
        .await
        .unwrap();
    let load =
        serde_json::json!({"one_session": one, "sessions_500": many, "fps_500_streaming": fps});
    eprintln!("first load: {load}");
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-load.json"),
        load.to_string(),
    )
    .unwrap();
    c.close().await.unwrap();

    // The Unix socket has the API, not the dashboard.
    let (status, _) = served
        .client()
        .request(Method::Get, "/", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    driver.stop().await.unwrap();
    let _dir = served.drain().await;
}
