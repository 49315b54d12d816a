//! `bench-peers dashboards`: what open dashboards cost `claude-pm serve` with 500 sessions
//! (issue #16). The daemon's CPU per wall second with no dashboard, then with five signed-in
//! dashboards open: each loads what the page loads (the page, its script and style, the
//! session list) and then holds the event stream (server-sent events) and reads everything it
//! sends, as a browser does. The browsers' own rendering is not the daemon's cost and is left
//! out (five Chromiums would take the two cores the daemon is measured on).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Result;

const TOKEN: &str = "bench-dashboards-token-0000000000000000";

/// One HTTP/1.1 request on a new connection; the status and body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, Vec<u8>, String)> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an answer without headers")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, answer[split + 4..].to_vec(), head))
}

/// Sign in; the cookie header line.
fn sign_in(addr: &str) -> Result<String> {
    let body = format!("token={TOKEN}");
    let (status, _, head) = request(
        addr,
        "POST",
        "/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &body,
    )?;
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .ok_or(format!("no cookie from /login ({status})"))?;
    Ok(format!("Cookie: {cookie}\r\n"))
}

/// What one dashboard's first load transfers (page, script, style, list), bytes.
fn first_load(addr: &str, cookie: &str) -> Result<usize> {
    let mut total = 0;
    for path in ["/", "/assets/app.js", "/assets/app.css", "/v1/sessions"] {
        let (status, body, _) = request(addr, "GET", path, cookie, "")?;
        if status != 200 {
            return Err(format!("GET {path}: {status}"));
        }
        total += body.len();
    }
    Ok(total)
}

/// Hold the event stream, counting what arrives, until `stop`.
fn hold_stream(addr: String, cookie: String, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    let Ok(mut s) = TcpStream::connect(&addr) else {
        return;
    };
    let text = format!("GET /v1/events/stream HTTP/1.1\r\nHost: {addr}\r\n{cookie}Accept: text/event-stream\r\n\r\n");
    if s.write_all(text.as_bytes()).is_err() {
        return;
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Run the measurement; prints its table.
pub(crate) fn run(claude_pm: &Path, work: &Path, quick: bool) -> Result {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let (n, settle, window) = if quick {
        (100, Duration::from_secs(3), Duration::from_secs(10))
    } else {
        (500, Duration::from_secs(8), Duration::from_secs(30))
    };
    let config: String = (0..n)
        .map(|i| {
            format!("[[session]]\nname = \"s{i}\"\ncommand = [\"/bin/sleep\", \"100000\"]\n\n")
        })
        .collect();
    std::fs::write(work.join("pm.toml"), config).map_err(|e| format!("pm.toml: {e}"))?;
    let token = work.join("token");
    std::fs::write(&token, TOKEN).map_err(|e| format!("token: {e}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("token: {e}"))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = Command::new(claude_pm)
        .arg("serve")
        .arg("--config")
        .arg(work.join("pm.toml"))
        .arg("--state-dir")
        .arg(work.join("state"))
        .args(["--listen", &addr, "--token-file"])
        .arg(&token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start claude-pm serve: {e}"))?;
    let pid = daemon.id();
    let result = measure(&addr, pid, n, settle, window);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = daemon.wait();
    let (idle, open, load, streamed) = result?;
    println!(
        "\n| sessions | dashboards | daemon CPU (% of one core, {}s) |",
        window.as_secs()
    );
    println!("|---:|---:|---:|");
    println!("| {n} | 0 | {idle:.2} |");
    println!("| {n} | 5 | {open:.2} |");
    println!(
        "\nfirst load of one dashboard with {n} sessions: {load} bytes (page, script, style, list); \
         event stream: {:.0} bytes/s per dashboard",
        streamed as f64 / window.as_secs_f64() / 5.0
    );
    Ok(())
}

/// (CPU idle, CPU with 5 dashboards, first-load bytes, streamed bytes over the window).
fn measure(
    addr: &str,
    pid: u32,
    n: usize,
    settle: Duration,
    window: Duration,
) -> Result<(f64, f64, usize, u64)> {
    let start = Instant::now();
    loop {
        let up = request(
            addr,
            "GET",
            "/v1/sessions",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
            "",
        )
        .ok()
        .map(|(_, body, _)| {
            String::from_utf8_lossy(&body)
                .matches("\"running\"")
                .count()
        });
        if up.is_some_and(|c| c >= n) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("{n} sessions did not come up"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(settle);
    let idle = crate::cpu_per_second(pid, window).ok_or("the daemon's CPU time")?;
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut load = 0;
    let mut holders = Vec::new();
    for _ in 0..5 {
        let cookie = sign_in(addr)?;
        load = first_load(addr, &cookie)?;
        let (a, s, b) = (addr.to_owned(), Arc::clone(&stop), Arc::clone(&bytes));
        holders.push(std::thread::spawn(move || hold_stream(a, cookie, s, b)));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = bytes.load(Ordering::Relaxed);
    let open = crate::cpu_per_second(pid, window).ok_or("the daemon's CPU time")?;
    let streamed = bytes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        let _ = h.join();
    }
    Ok((idle, open, load, streamed))
}
