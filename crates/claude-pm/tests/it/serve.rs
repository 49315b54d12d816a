//! `claude-pm serve`, the real daemon binary over its real socket: sessions from the config
//! file and from the API, the operator commands, raw HTTP, malformed requests, the peer
//! credential check, and the drain on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claude_daemon::{Client, Method};
use claude_manager::proc::{
    spawn, ChildSetup, EnvPolicy, HookError, HookInstance, OutputEvent, OutputMode, ProcessConfig,
    SpawnHook,
};

use crate::cli::{code, pm};

/// A running daemon with its state directory; its test drains it (SIGTERM) or kills it.
pub(crate) struct Served {
    pub(crate) child: claude_manager::proc::Child,
    pub(crate) dir: tempfile::TempDir,
}

impl Served {
    pub(crate) async fn start(config: &str, extra: &[&str]) -> Served {
        let dir = tempfile::Builder::new()
            .prefix("serve-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        std::fs::write(dir.path().join("pm.toml"), config).unwrap();
        Served::launch(dir, extra, &[]).await
    }

    /// [`Served::start`] with more variables in the daemon's environment.
    pub(crate) async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::Builder::new()
            .prefix("serve-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        std::fs::write(dir.path().join("pm.toml"), config).unwrap();
        Served::launch(dir, &[], env).await
    }

    /// A new daemon on the state directory (and config) of one that is gone.
    pub(crate) async fn restart(dir: tempfile::TempDir) -> Served {
        Served::launch(dir, &[], &[]).await
    }

    /// [`Served::restart`] with more variables in the daemon's environment.
    pub(crate) async fn restart_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Served {
        Served::launch(dir, &[], env).await
    }

    async fn launch(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Served {
        let file = dir.path().join("pm.toml");
        let state = dir.path().join("state");
        let mut args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            file.display().to_string(),
            "--state-dir".to_owned(),
            state.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
            .args(&args)
            .env_policy(EnvPolicy::Inherit)
            .stderr(OutputMode::lines())
            .grace(Duration::from_secs(20));
        let config = env
            .iter()
            .fold(config, |b, (k, v)| b.env(k, v))
            .build()
            .unwrap();
        let mut child = spawn(&config).await.unwrap();
        let mut err = child.take_stderr().unwrap();
        loop {
            match err.recv().await {
                Some(OutputEvent::Line(l)) if l.windows(12).any(|w| w == b"listening on") => break,
                Some(OutputEvent::Line(l)) if l.starts_with(b"claude-pm serve:") => {}
                other => panic!("the daemon did not start: {other:?}"),
            }
        }
        tokio::spawn(async move { while err.recv().await.is_some() {} });
        Served { child, dir }
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(claude_daemon::socket_path(&self.state()))
    }

    async fn cli(&self, args: &[&str]) -> (Vec<String>, String, i32) {
        let state = self.state().display().to_string();
        // The directory before anything else: `start`'s program follows its `--`.
        let mut all = vec![args[0], "--state-dir", &state];
        all.extend(&args[1..]);
        let (out, err, exit) = pm(&all, &[]).await;
        (out, err, code(&exit))
    }

    /// SIGKILL to the daemon alone; its directory and state directory for what follows.
    pub(crate) async fn kill(mut self) -> (tempfile::TempDir, PathBuf) {
        let pid = nix::unistd::Pid::from_raw(self.child.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.child.wait().await;
        let state = self.state();
        (self.dir, state)
    }

    /// SIGTERM: the daemon drains and exits 0.
    pub(crate) async fn drain(mut self) -> tempfile::TempDir {
        let pid = nix::unistd::Pid::from_raw(self.child.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code(&exit), 0);
        self.dir
    }
}

pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

const CONFIG: &str = "grace = \"2s\"\n\
    [[session]]\nname = \"sleeper\"\ncommand = [\"/bin/sleep\", \"1000\"]\n\
    [[session]]\nname = \"talker\"\ncommand = [\"/bin/sh\", \"-c\", \"echo hello; echo oops >&2; exec sleep 1000\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_created_listed_stopped_restarted_and_deleted() {
    let served = Served::start(CONFIG, &[]).await;
    // From the config file (started at boot, running once each has a pid), listed by the CLI
    // and by raw HTTP.
    pid_of(&served.client(), "sleeper").await;
    pid_of(&served.client(), "talker").await;
    let (out, err, status) = served.cli(&["ps"]).await;
    assert_eq!(status, 0, "{err}");
    assert!(
        out[1].starts_with("sleeper") && out[1].contains("running"),
        "{out:?}"
    );
    assert!(out[2].starts_with("talker"), "{out:?}");
    let list = served.client().list().await.unwrap();
    let pids: Vec<u32> = list.iter().filter_map(|s| s.pid).collect();
    assert_eq!(pids.len(), 2);
    // Kept output, both streams.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = served.client().logs("talker").await.unwrap();
        if logs.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logs.contains("hello") && logs.contains("oops"), "{logs:?}");
    // Created through the CLI, then through raw HTTP.
    let (_, err, status) = served
        .cli(&[
            "start",
            "--name",
            "extra",
            "--memory",
            "64M",
            "--",
            "/bin/sleep",
            "999",
        ])
        .await;
    assert_eq!(status, 0, "{err}");
    let body = br#"{"name": "raw", "command": ["/bin/sleep", "998"], "restart": "always"}"#;
    let (status, answer) = served
        .client()
        .request(Method::Post, "/v1/sessions", Some(body.to_vec()))
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer:?}");
    let detail = served.client().inspect("raw").await.unwrap();
    assert_eq!(detail.definition["restart"], "always");
    // Stop: the tree goes, the session stays listed as finished.
    let sleeper = list
        .iter()
        .find(|s| s.name == "sleeper")
        .and_then(|s| s.pid)
        .unwrap();
    let (_, err, status) = served.cli(&["stop", "sleeper"]).await;
    assert_eq!(status, 0, "{err}");
    wait_until(|| !alive(sleeper)).await;
    let mut stopped = served.client().inspect("sleeper").await.unwrap();
    for _ in 0..200 {
        if stopped.view.state == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stopped = served.client().inspect("sleeper").await.unwrap();
    }
    assert_eq!(stopped.view.state, "finished");
    assert_eq!(stopped.view.last_exit.unwrap().reason, "stopped");
    // Restart: a finished session starts again from its definition.
    let (_, err, status) = served.cli(&["restart", "sleeper"]).await;
    assert_eq!(status, 0, "{err}");
    let again = pid_of(&served.client(), "sleeper").await;
    assert_ne!(again, sleeper);
    // Delete: stopped and forgotten.
    let raw_pid = pid_of(&served.client(), "raw").await;
    let (status, _) = served
        .client()
        .request(Method::Delete, "/v1/sessions/raw", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(!alive(raw_pid));
    let (_, err, status) = served.cli(&["rm", "extra"]).await;
    assert_eq!(status, 0, "{err}");
    let (_, err, status) = served.cli(&["stop", "raw"]).await;
    assert_eq!(status, 125);
    assert!(err.contains("no session named \"raw\""), "{err}");
    // SIGTERM drains: every tree gone, the daemon exits 0.
    let left: Vec<u32> = served
        .client()
        .list()
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.pid)
        .collect();
    assert_eq!(left.len(), 2);
    served.drain().await;
    for pid in left {
        assert!(!alive(pid), "{pid} outlived the drain");
    }
}

/// The pid of `name`'s live run, once it has one (a restarted session queues first).
pub(crate) async fn pid_of(client: &Client, name: &str) -> u32 {
    for _ in 0..200 {
        if let Some(pid) = client.inspect(name).await.unwrap().view.pid {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} did not start within 2 s");
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_naming_the_problem_and_the_daemon_keeps_serving() {
    let served = Served::start("", &[]).await;
    let client = served.client();
    let huge = format!(
        r#"{{"name": "h", "command": ["/bin/true"], "env": {{"A": "{}"}}}}"#,
        "x".repeat(70_000)
    );
    let cases: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (
            Method::Post,
            "/v1/sessions",
            b"{not json".to_vec(),
            400,
            "not JSON",
        ),
        (
            Method::Post,
            "/v1/sessions",
            b"[1, 2]".to_vec(),
            400,
            "JSON object",
        ),
        (Method::Post, "/v1/sessions", b"".to_vec(), 400, "not JSON"),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"command": ["/bin/true"]}"#.to_vec(),
            400,
            "name",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": 7, "command": ["/bin/true"]}"#.to_vec(),
            400,
            "must be a string",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "../../etc/passwd", "command": ["/bin/true"]}"#.to_vec(),
            400,
            "A-Z",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "a/b", "command": ["/bin/true"]}"#.to_vec(),
            400,
            "A-Z",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok"}"#.to_vec(),
            400,
            "command or claude",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": "true"}"#.to_vec(),
            400,
            "list of strings",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": [1]}"#.to_vec(),
            400,
            "list of strings",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "bogus": 1}"#.to_vec(),
            400,
            "unknown field",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "memory": "-1G"}"#.to_vec(),
            400,
            "memory",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "pids": -5}"#.to_vec(),
            400,
            "pids",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "timeout": {"s": 1}}"#.to_vec(),
            400,
            "string or a number",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/no/such/program"]}"#.to_vec(),
            400,
            "no/such/program",
        ),
        (
            Method::Post,
            "/v1/sessions",
            huge.into_bytes(),
            400,
            "larger than",
        ),
        (
            Method::Get,
            "/v1/sessions/nobody",
            Vec::new(),
            404,
            "no session named",
        ),
        (Method::Get, "/v1/sessions/..", Vec::new(), 400, "A-Z"),
        (
            Method::Post,
            "/v1/sessions/.hidden/restart",
            Vec::new(),
            400,
            "A-Z",
        ),
        (
            Method::Post,
            "/v1/sessions/nobody/stop",
            Vec::new(),
            404,
            "no session named",
        ),
        (
            Method::Delete,
            "/v1/sessions/nobody",
            Vec::new(),
            404,
            "no session named",
        ),
        (
            Method::Get,
            "/v2/anything",
            Vec::new(),
            404,
            "no such endpoint",
        ),
    ];
    let more: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (
            Method::Post,
            "/v1/sessions",
            format!(
                r#"{{"name": "{}", "command": ["/bin/true"]}}"#,
                "n".repeat(65)
            )
            .into_bytes(),
            400,
            "1 to 64",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": null, "command": ["/bin/true"]}"#.to_vec(),
            400,
            "must be a string",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "memory": ["1G"]}"#.to_vec(),
            400,
            "string or a number",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "env": {"A": [1]}}"#.to_vec(),
            400,
            "env",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "claude": [1]}"#.to_vec(),
            400,
            "list of strings",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"]} trailing"#.to_vec(),
            400,
            "not JSON",
        ),
        (
            Method::Post,
            "/v1/sessions",
            format!(
                r#"{{"name": "ok", "command": ["/bin/true"], "x": {}}}"#,
                "[".repeat(200) + &"]".repeat(200)
            )
            .into_bytes(),
            400,
            "not JSON",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "restart": "sometimes"}"#.to_vec(),
            400,
            "restart",
        ),
        (
            Method::Post,
            "/v1/sessions",
            br#"{"name": "ok", "command": ["/bin/true"], "state_dir": "/x"}"#.to_vec(),
            400,
            "daemon",
        ),
        (Method::Delete, "/v1/sessions", Vec::new(), 405, "method"),
        (
            Method::Post,
            "/v1/sessions/nobody",
            Vec::new(),
            405,
            "method",
        ),
        (Method::Get, "/v1/events?since=-1", Vec::new(), 400, "query"),
        (Method::Get, "/v1/events?bogus=1", Vec::new(), 400, "query"),
    ];
    let cases: Vec<_> = cases.into_iter().chain(more).collect();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (method, path, body, want, says) in cases {
        let (status, answer) = client.request(method, path, Some(body)).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, want, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
        if !says.is_empty() {
            let parsed: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            assert!(parsed["error"].is_string(), "{text}");
        }
    }
    let (status, _) = client.request(Method::Get, "/healthz", None).await.unwrap();
    assert_eq!(status, 200);
    assert!(client.list().await.unwrap().is_empty(), "nothing started");
    served.drain().await;
}

/// Runs the child as `uid`:`gid`.
struct AsUser(u32, u32);

struct Nothing;

impl HookInstance for Nothing {}

impl SpawnHook for AsUser {
    fn name(&self) -> &str {
        "as-user"
    }
    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        setup.run_as(self.0, self.1);
        Ok(Box::new(Nothing))
    }
}

/// `claude-pm ps` against `state` as `uid`:`gid`: its exit status and stderr.
async fn ps_as(state: &Path, uid: u32, gid: u32) -> (i32, String) {
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_claude-pm"))
        .args(["ps", "--state-dir", &state.display().to_string()])
        .env_policy(EnvPolicy::Inherit)
        .stdout(OutputMode::Null)
        .stderr(OutputMode::lines())
        .cwd("/")
        .hook(Arc::new(AsUser(uid, gid)))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut err = child.take_stderr().unwrap();
    let mut text = String::new();
    while let Some(e) = err.recv().await {
        if let OutputEvent::Line(l) = e {
            text.push_str(&String::from_utf8_lossy(&l));
        }
    }
    (code(&child.wait().await.unwrap()), text)
}

/// A client under another uid is refused by the peer-credential check even when the socket's
/// file permissions would let it in; a member of the configured group is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_checks_its_peers_credentials() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let (stranger, member, group) = (3_960_001, 3_960_002, 3_960_100);
    let group_arg = group.to_string();
    let served = Served::start("", &["--socket-group", &group_arg]).await;
    let socket = claude_daemon::socket_path(&served.state());
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    // The file system alone keeps the stranger out...
    let (status, err) = ps_as(&served.state(), stranger, stranger).await;
    assert_eq!(status, 125);
    assert!(err.contains("Permission denied"), "{err}");
    // ... so open it up, as a careless operator might: the credential check still refuses.
    for (path, mode) in [
        (served.dir.path().to_path_buf(), 0o755),
        (served.state(), 0o755),
        (socket.clone(), 0o666),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (status, err) = ps_as(&served.state(), stranger, stranger).await;
    assert_eq!(status, 125);
    assert!(err.contains("may not use the daemon's socket"), "{err}");
    let (status, err) = ps_as(&served.state(), member, group).await;
    assert_eq!(status, 0, "{err}");
    served.drain().await;
}

/// `reload` (and SIGHUP) apply the config file's difference: a removed session stops, a new one
/// starts, a changed one starts again from its new table; an API-made session is left alone.
/// `drain` stops everything and refuses new sessions while the daemon keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_difference_and_drain_stops_everything() {
    let table = |name: &str, secs: u32| {
        format!("[[session]]\nname = \"{name}\"\ncommand = [\"/bin/sleep\", \"{secs}\"]\n")
    };
    let served = Served::start(
        &format!("grace = \"2s\"\n{}{}", table("a", 1001), table("b", 1002)),
        &[],
    )
    .await;
    let client = served.client();
    let (_, err, status) = served
        .cli(&["start", "--name", "api", "--", "/bin/sleep", "1003"])
        .await;
    assert_eq!(status, 0, "{err}");
    let (a, b) = (pid_of(&client, "a").await, pid_of(&client, "b").await);
    let api = pid_of(&client, "api").await;
    let file = served.dir.path().join("pm.toml");
    std::fs::write(
        &file,
        format!("grace = \"2s\"\n{}{}", table("b", 2002), table("c", 1004)),
    )
    .unwrap();
    let (out, err, status) = served.cli(&["reload"]).await;
    assert_eq!(status, 0, "{err}");
    assert_eq!(out, ["started c; stopped a; restarted b; refused none"]);
    assert!(!alive(a) && !alive(b), "a and b's old tree are gone");
    let names: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["api", "b", "c"]);
    let detail = client.inspect("b").await.unwrap();
    assert_eq!(detail.definition["command"][1], "2002");
    assert_eq!(
        pid_of(&client, "api").await,
        api,
        "the API's session was left alone"
    );
    // A bad file changes nothing.
    std::fs::write(
        &file,
        "[[session]]\nname = \"z\"\ncommand = [\"/bin/true\"]\nmemory = \"lots\"\n",
    )
    .unwrap();
    let (_, err, status) = served.cli(&["reload"]).await;
    assert_eq!(status, 125);
    assert!(err.contains("memory"), "{err}");
    assert_eq!(client.list().await.unwrap().len(), 3);
    // SIGHUP does the same.
    std::fs::write(
        &file,
        format!(
            "grace = \"2s\"\n{}{}{}",
            table("b", 2002),
            table("c", 1004),
            table("d", 1005)
        ),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    for _ in 0..300 {
        if client.list().await.unwrap().iter().any(|s| s.name == "d") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pid_of(&client, "d").await;
    // Drain: every tree stopped, nothing new taken, the daemon still answers.
    let pids: Vec<u32> = client
        .list()
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.pid)
        .collect();
    assert_eq!(pids.len(), 4);
    let (_, err, status) = served.cli(&["drain"]).await;
    assert_eq!(status, 0, "{err}");
    assert!(pids.iter().all(|p| !alive(*p)));
    let (status, _) = client.request(Method::Get, "/readyz", None).await.unwrap();
    assert_eq!(status, 503);
    let (_, err, status) = served
        .cli(&["start", "--name", "late", "--", "/bin/true"])
        .await;
    assert_eq!(status, 125);
    assert!(err.contains("draining"), "{err}");
    served.drain().await;
}

/// Every event numbered; `--since` resumes after a number; a follower sees new events live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_numbered_resumable_and_followed() {
    let served = Served::start("", &[]).await;
    let client = served.client();
    let (_, err, status) = served
        .cli(&["start", "--name", "e1", "--", "/bin/sh", "-c", "exit 3"])
        .await;
    assert_eq!(status, 0, "{err}");
    for _ in 0..200 {
        if client.inspect("e1").await.unwrap().view.state == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (out, err, status) = served.cli(&["events"]).await;
    assert_eq!(status, 0, "{err}");
    let records: Vec<serde_json::Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "exit" && r["code"] == 3),
        "{out:?}"
    );
    let mid = seqs[seqs.len() / 2];
    let (resumed, _, _) = served.cli(&["events", "--since", &mid.to_string()]).await;
    assert_eq!(resumed.len(), seqs.iter().filter(|s| **s > mid).count());
    // A follower started now sees the next session's events as they happen.
    let socket = claude_daemon::socket_path(&served.state());
    let last = *seqs.last().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(async move {
        let _ = Client::new(socket)
            .events(last, true, claude_daemon::Samples::All, |l| {
                let _ = tx.send(l.to_owned());
            })
            .await;
    });
    let (_, err, status) = served
        .cli(&["start", "--name", "e2", "--", "/bin/true"])
        .await;
    assert_eq!(status, 0, "{err}");
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["seq"].as_u64(), Some(last + 1));
    assert_eq!(first["session"], "e2");
    follower.abort();
    // The list names the newest event it includes: the events after it are the ones since.
    for _ in 0..200 {
        if client.inspect("e2").await.unwrap().view.state == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (listed, seq) = client.list_with_seq().await.unwrap();
    assert!(listed.iter().any(|v| v.name == "e2"), "{listed:?}");
    let (_, err, status) = served
        .cli(&["start", "--name", "e3", "--", "/bin/true"])
        .await;
    assert_eq!(status, 0, "{err}");
    let mut after = Vec::new();
    client
        .events(seq, false, claude_daemon::Samples::All, |l| {
            after.push(serde_json::from_str::<serde_json::Value>(l).unwrap())
        })
        .await
        .unwrap();
    assert_eq!(after[0]["seq"].as_u64(), Some(seq + 1), "{after:?}");
    assert_eq!(after[0]["session"], "e3", "{after:?}");
    let (status, answer) = client
        .request(Method::Get, "/v1/events?since=x", None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer:?}");
    served.drain().await;
}

/// A reader of changed samples only (what `top` and the dashboard ask for) is not sent the
/// samples of an idle session that repeat its last shown one, and sees no `lagged` record for
/// them; a reader of all samples gets one a second; a busy session's changing samples reach
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_changed_samples_skip_an_idle_sessions_repeats() {
    let served = Served::start("", &[]).await;
    let client = served.client();
    for (name, script) in [("idle", "exec sleep 100"), ("busy", "while :; do :; done")] {
        let (_, err, status) = served
            .cli(&["start", "--name", name, "--", "/bin/sh", "-c", script])
            .await;
        assert_eq!(status, 0, "{err}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let read = |samples| {
        let client = served.client();
        async move {
            let mut records = Vec::new();
            client
                .events(0, false, samples, |l| {
                    records.push(serde_json::from_str::<serde_json::Value>(l).unwrap())
                })
                .await
                .unwrap();
            records
        }
    };
    let count = |records: &[serde_json::Value], name: &str| {
        records
            .iter()
            .filter(|r| r["event"] == "sample" && r["session"] == name)
            .count()
    };
    let all = read(claude_daemon::Samples::All).await;
    let changed = read(claude_daemon::Samples::Changed).await;
    assert!(count(&all, "idle") >= 4, "{all:?}");
    assert!(count(&changed, "idle") <= 2, "{changed:?}");
    assert!(count(&changed, "busy") >= 1, "{changed:?}");
    assert!(
        changed.iter().all(|r| r.get("lagged").is_none()),
        "{changed:?}"
    );
    // Everything but the repeats is the same in both.
    let not_samples = |records: &[serde_json::Value]| {
        records
            .iter()
            .filter(|r| r["event"] != "sample")
            .map(|r| r["seq"].as_u64())
            .collect::<Vec<_>>()
    };
    assert_eq!(not_samples(&all), not_samples(&changed));
    let (status, answer) = client
        .request(Method::Get, "/v1/events?samples=some", None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer:?}");
    served.drain().await;
}

/// A turn through the API against the real CLI on the stand-in: the turn's records come back
/// as NDJSON, ending with the result; a second turn continues the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_through_the_api_streams_the_real_clis_answer() {
    let _serial = crate::SERIAL.lock().await;
    let api = claude_testkit::StandInApi::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let served = Served::start_with_env(&chat_config(&api, home.path()).await, &[CHAT_KEY]).await;
    let client = served.client();
    pid_of(&client, "chat").await;
    let mut results = Vec::new();
    for text in ["ping", "and again"] {
        results.push(chat_turn(&client, text).await);
    }
    assert_eq!(results[0]["result"], "pong");
    assert_eq!(results[1]["result"], "stand-in reply to: and again");
    // The list counts the session's turns and their cost (what top and the dashboard show).
    let listed = client.list().await.unwrap();
    let chat = listed.iter().find(|v| v.name == "chat").unwrap();
    assert_eq!(chat.turns, Some(2), "{chat:?}");
    let reported = results[1]["total_cost_usd"].as_f64().unwrap();
    assert!(
        chat.cost_usd
            .is_some_and(|c| (c - reported).abs() < 1e-6 && c > 0.0),
        "{chat:?} against {reported}"
    );
    assert_eq!(results[0]["session_id"], results[1]["session_id"]);
    // The CLI's session id is shown and kept (what a resume would need).
    let id = results[0]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        client
            .inspect("chat")
            .await
            .unwrap()
            .claude_session_id
            .as_deref(),
        Some(id.as_str())
    );
    // Not for another kind of session, nor with a bad body.
    let (_, err, status) = served
        .cli(&["start", "--name", "plain", "--", "/bin/sleep", "100"])
        .await;
    assert_eq!(status, 0, "{err}");
    for (path, body, want) in [
        ("/v1/sessions/plain/turns", r#"{"text": "hi"}"#, 409),
        ("/v1/sessions/chat/turns", r#"{"text": ""}"#, 400),
        ("/v1/sessions/chat/turns", r#"{"text": 1}"#, 400),
        (
            "/v1/sessions/chat/turns",
            r#"{"text": "hi", "model": "x"}"#,
            400,
        ),
        ("/v1/sessions/nobody/turns", r#"{"text": "hi"}"#, 404),
    ] {
        let (status, answer) = client
            .request(Method::Post, path, Some(body.as_bytes().to_vec()))
            .await
            .unwrap();
        assert_eq!(status, want, "{path} {body}: {answer:?}");
    }
    let state = served.state();
    let _dir = served.drain().await;
    let registry = claude_daemon::Registry::open(&claude_daemon::registry_path(&state)).unwrap();
    assert_eq!(registry.claude_sessions("chat").unwrap(), [id]);
}

/// A turn whose CLI is killed before the result ends with an error record saying so (not a
/// stream that just stops). The next turn lands on the restarted run, which fails to resume
/// the unfinished conversation: the daemon sends it to the run after (a new conversation)
/// and the caller gets a `retry` record and that run's answer, not the failed run's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_whose_cli_dies_ends_with_an_error_and_the_next_survives_a_failed_resume() {
    let _serial = crate::SERIAL.lock().await;
    let api = claude_testkit::StandInApi::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = chat_config(&api, home.path()).await.replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nrestart = \"on-failure\"\nrestart_delay = \"0s\"\n",
    );
    let served = Served::start_with_env(&config, &[CHAT_KEY]).await;
    let client = served.client();
    let pid = pid_of(&client, "chat").await;
    api.set_default(claude_testkit::Behaviour::Stall);
    let before = api.message_calls().len();
    let body = serde_json::to_vec(&serde_json::json!({ "text": "hang on" })).unwrap();
    let turn = {
        let client = served.client();
        tokio::spawn(async move {
            client
                .request(Method::Post, "/v1/sessions/chat/turns", Some(body))
                .await
                .unwrap()
        })
    };
    for _ in 0..500 {
        if api.message_calls().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        api.message_calls().len() > before,
        "the turn reached the API"
    );
    // SAFETY: kill(2) of the session's CLI, a process this test's daemon started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (status, answer) = tokio::time::timeout(Duration::from_secs(10), turn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    let records = records_of(&answer);
    let last = records.last().unwrap();
    assert_eq!(last["type"], "error", "{records:?}");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("ended before the turn's result")),
        "{records:?}"
    );
    api.set_default(claude_testkit::Behaviour::Reply { text: None });
    let mut restarted = false;
    for _ in 0..100 {
        let new_pid = client.inspect("chat").await.unwrap().view.pid;
        if new_pid.is_some_and(|p| p != pid) {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restarted, "the session did not restart in 10 s");
    // The restarted run resumes the conversation, which 2.1.328 cannot load (its only turn
    // never finished): it fails before the turn, and the turn goes to the next run.
    let records = chat_records(&client, "and now").await;
    let retry = records.iter().find(|r| r["type"] == "retry");
    assert!(
        retry.is_some_and(|r| r["failed"]["subtype"] == "error_during_execution"),
        "{records:?}"
    );
    let last = records.last().unwrap();
    assert_eq!(last["type"], "result", "{records:?}");
    assert_eq!(last["result"], "stand-in reply to: and now", "{records:?}");
    assert_eq!(
        records.iter().filter(|r| r["type"] == "result").count(),
        1,
        "the failed run's result is not passed on as the turn's: {records:?}"
    );
    served.drain().await;
}

/// The daemon's credential for the `chat` session of [`chat_config`].
pub(crate) const CHAT_KEY: (&str, &str) = (
    "ANTHROPIC_API_KEY",
    "sk-ant-api03-daemon-turns-000000000000",
);

/// A config with one stream-json session `chat` of the real CLI on `api`, its HOME `home`.
pub(crate) async fn chat_config(api: &claude_testkit::StandInApi, home: &Path) -> String {
    let cli = claude_testkit::pinned_cli().await.unwrap();
    let mut config = format!(
        "claude_binary = {:?}\n[[session]]\nname = \"chat\"\n",
        cli.display().to_string()
    );
    config.push_str("claude = [\"-p\", \"--input-format\", \"stream-json\", \"--output-format\", \"stream-json\", \"--verbose\"]\n");
    config.push_str("[session.env]\n");
    for (k, v) in claude_testkit::offline_env(&api.base_url()) {
        config.push_str(&format!("{k} = {v:?}\n"));
    }
    config.push_str(&format!("HOME = {:?}\n", home.display().to_string()));
    config
}

/// A turn's NDJSON answer, one value per record.
fn records_of(answer: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(answer)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every record of one turn of `text` through `POST /v1/sessions/chat/turns`.
pub(crate) async fn chat_records(client: &Client, text: &str) -> Vec<serde_json::Value> {
    let body = serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap();
    let (status, answer) = client
        .request(Method::Post, "/v1/sessions/chat/turns", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer:?}");
    records_of(&answer)
}

/// One turn of `text` through `POST /v1/sessions/chat/turns`: its `result` record.
pub(crate) async fn chat_turn(client: &Client, text: &str) -> serde_json::Value {
    let records = chat_records(client, text).await;
    let last = records.last().unwrap();
    assert_eq!(last["type"], "result", "{records:?}");
    assert!(
        records.iter().any(|r| r["type"] == "assistant"),
        "{records:?}"
    );
    last.clone()
}

/// A token file only its owner may read, holding `token`: its directory (removed when
/// dropped) and its path.
fn token_file(token: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = file.display().to_string();
    (dir, path)
}

/// A free port on 127.0.0.1, as `127.0.0.1:PORT`.
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// One HTTP/1.1 request over TCP from `source` (any 127.0.0.0/8 address is this machine's):
/// the status and the whole answer.
async fn http_from(source: &str, addr: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn get_with_token(path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
}

fn login_with(token: &str) -> String {
    let body = format!("token={token}");
    format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The first server-sent event of `/v1/events/stream?QUERY` (with `Last-Event-ID` if given):
/// its `id` (if any) and `data`.
async fn first_sse(addr: &str, token: &str, query: &str, last: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let last = last.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "GET /v1/events/stream?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{last}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            // Chunked: the event's own lines are whole once "data: ...\n\n" is in.
            if let Some(at) = text.find("data: ") {
                if let Some(end) = text[at..].find("\n\n") {
                    let head = &text[..at + end];
                    let id = head
                        .lines()
                        .filter_map(|l| l.strip_prefix("id: "))
                        .next_back()
                        .unwrap_or("")
                        .to_owned();
                    return (id, text[at + 6..at + end].to_owned());
                }
            }
        }
    })
    .await;
    event.unwrap_or_else(|_| panic!("no event within 10 s"))
}

/// The dashboard's event stream names its daemon in each id (`BOOT.SEQ`): a browser resuming
/// with its own daemon's id gets what follows; one resuming with an earlier daemon's id (after
/// a restart, however far the new numbers have come) gets `{"reset": N}` first and lists again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resuming_with_another_daemons_event_id_is_told_to_reset() {
    let (_token_dir, file) = token_file("sse-token");
    let addr = free_addr();
    let served = Served::start("", &["--listen", &addr, "--token-file", &file]).await;
    for name in ["r1", "r2"] {
        let (_, err, status) = served
            .cli(&["start", "--name", name, "--", "/bin/true"])
            .await;
        assert_eq!(status, 0, "{err}");
    }
    let (id, data) = first_sse(&addr, "sse-token", "since=0&samples=all", None).await;
    let (boot, seq) = id.split_once('.').unwrap();
    assert_eq!(seq, "1", "{id} {data}");
    let ours = format!("{boot}.1");
    let (next, _) = first_sse(&addr, "sse-token", "", Some(&ours)).await;
    assert_eq!(
        next,
        format!("{boot}.2"),
        "our own id resumes after its number"
    );
    let boot: u64 = boot.parse().unwrap();
    let earlier = format!("{}.1", boot ^ 1);
    let (id, data) = first_sse(&addr, "sse-token", "", Some(&earlier)).await;
    assert_eq!(id, "", "{data}");
    let reset: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert!(reset["reset"].as_u64().is_some_and(|n| n >= 2), "{data}");
    served.drain().await;
}

/// The attack: a guessable token (a four-digit PIN, the operator's choice) guessed in order
/// over TCP, bearer and sign-in form alike. With counting off (`--token-attempts 0`) the
/// guesser is in at the 43rd try. By default the first ten wrong tries are 401 and every
/// later one, the right guess included, is 429 with `Retry-After`; the sign-in form from that
/// address is 429 too; another address with the right token, and a browser signed in before
/// the attack (even from the guesser's address), still get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_token_is_held_back_per_address() {
    let (_token_dir, file) = token_file("0042");
    for attempts in ["0", "10"] {
        let addr = free_addr();
        let args = ["--listen", &addr, "--token-file", &file];
        let served =
            Served::start("", &[&args[..], &["--token-attempts", attempts]].concat()).await;
        // A browser signs in from the guesser's address before the attack.
        let (status, answer) = http_from("127.0.0.3", &addr, &login_with("0042")).await;
        assert_eq!(status, 303, "{answer}");
        let cookie = answer
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_owned();
        let mut statuses = Vec::new();
        let mut answers = Vec::new();
        for n in 0..60 {
            let guess = format!("{n:04}");
            let (status, answer) =
                http_from("127.0.0.3", &addr, &get_with_token("/v1/sessions", &guess)).await;
            statuses.push(status);
            answers.push(answer);
            if status == 200 {
                break;
            }
        }
        if attempts == "0" {
            assert_eq!(statuses.len(), 43, "{statuses:?}");
            assert!(statuses[..42].iter().all(|s| *s == 401), "{statuses:?}");
            assert_eq!(statuses[42], 200, "without the count the guess gets in");
            served.drain().await;
            continue;
        }
        assert_eq!(statuses.len(), 60, "the guesser never got in: {statuses:?}");
        assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
        assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
        let held = &answers[42];
        assert!(
            held.contains("too many wrong tokens from this address"),
            "{held}"
        );
        let wait: u64 = held
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!((1..=6).contains(&wait), "{held}");
        assert!(!held.contains("0042"), "the token is not echoed");
        let (status, answer) = http_from("127.0.0.3", &addr, &login_with("0042")).await;
        assert_eq!(status, 429, "the sign-in form is held back too: {answer}");
        assert!(answer.contains("Too many wrong tokens"), "{answer}");
        let (status, _) =
            http_from("127.0.0.4", &addr, &get_with_token("/v1/sessions", "0042")).await;
        assert_eq!(status, 200, "another address is not held back");
        let signed_in = format!(
            "GET /v1/sessions HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = http_from("127.0.0.3", &addr, &signed_in).await;
        assert_eq!(
            status, 200,
            "a signed-in browser is not an attempt: {answer}"
        );
        served.drain().await;
    }
}

/// On TCP every request needs the bearer token: none or a wrong one is 401 and changes
/// nothing; the right one works, also for the operator commands (`--url`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_requests_need_the_token() {
    let (_token_dir, file) = token_file("s3cr3t-token-for-the-test");
    let addr = free_addr();
    let served = Served::start("", &["--listen", &addr, "--token-file", &file]).await;
    let body = br#"{"name": "t", "command": ["/bin/sleep", "100"]}"#.to_vec();
    for token in [
        "",
        "wrong-token-of-other-length",
        "s3cr3t-token-for-the-tesT",
    ] {
        let (status, answer) = Client::tcp(&addr, token)
            .request(Method::Post, "/v1/sessions", Some(body.clone()))
            .await
            .unwrap();
        assert_eq!(status, 401, "{token:?}: {answer:?}");
        assert!(
            !String::from_utf8_lossy(&answer).contains("s3cr3t"),
            "the token is not echoed"
        );
    }
    assert!(
        served.client().list().await.unwrap().is_empty(),
        "nothing was created"
    );
    let right = Client::tcp(&addr, "s3cr3t-token-for-the-test");
    let (status, _) = right
        .request(Method::Post, "/v1/sessions", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let url = format!("http://{addr}");
    let (out, err, exit) = pm(&["ps", "--url", &url, "--token-file", &file], &[]).await;
    assert_eq!(code(&exit), 0, "{err}");
    assert!(out.iter().any(|l| l.starts_with("t ")), "{out:?}");
    // A token file others may read is refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, err, exit) = pm(&["ps", "--url", &url, "--token-file", &file], &[]).await;
    assert_eq!(code(&exit), 125);
    assert!(err.contains("other users may read it"), "{err}");
    served.drain().await;
}

/// `logs -f` (and `?follow=true`) streams a session's kept lines, then each new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_followed_as_they_are_written() {
    let served = Served::start("", &[]).await;
    let client = served.client();
    let script =
        "echo first; read go < /dev/null; sleep 0.3; echo second; sleep 0.3; echo third; sleep 100";
    let (_, err, status) = served
        .cli(&["start", "--name", "w", "--", "/bin/sh", "-c", script])
        .await;
    assert_eq!(status, 0, "{err}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = client.clone();
    let task = tokio::spawn(async move {
        let _ = follower
            .follow_logs("w", |l| {
                let _ = tx.send(l.to_owned());
            })
            .await;
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(line)) => seen.push(line),
            other => panic!("{other:?} after {seen:?}"),
        }
    }
    assert_eq!(seen, ["first", "second", "third"]);
    task.abort();
    let (status, answer) = client
        .request(Method::Get, "/v1/sessions/w/logs?tail=5", None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer:?}");
    served.drain().await;
}

/// Each session's output also goes to `<state>/logs/NAME.log`, rotated at `--log-size` with
/// three old files kept: a chatty session cannot fill the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_at_their_cap() {
    let served = Served::start("", &["--log-size", "4K"]).await;
    let script = "i=0; while [ $i -lt 2000 ]; do echo \"line $i of a chatty session\"; i=$((i+1)); done; echo done";
    let (_, err, status) = served
        .cli(&["start", "--name", "chatty", "--", "/bin/sh", "-c", script])
        .await;
    assert_eq!(status, 0, "{err}");
    let logs = served.state().join("logs");
    let newest = logs.join("chatty.log");
    for _ in 0..300 {
        if std::fs::read_to_string(&newest).is_ok_and(|t| t.ends_with("done\n")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    );
    assert!(files.iter().all(|(_, size)| *size <= 4096), "{files:?}");
    assert!(std::fs::read_to_string(&newest)
        .unwrap()
        .ends_with("done\n"));
    let (_, err, exit) = pm(&["serve", "--log-size", "12"], &[]).await;
    assert_eq!(code(&exit), 125);
    assert!(err.contains("--log-size"), "{err}");
    served.drain().await;
}

/// A session from a spec file (`start --config FILE`); inspect shows its limits and their
/// mechanisms, its last sample and health; `/metrics` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_limits_samples_and_health_and_metrics_count_sessions() {
    let served = Served::start("", &[]).await;
    let spec = served.dir.path().join("probe.toml");
    std::fs::write(
        &spec,
        "name = \"probe\"\ncommand = [\"/bin/sleep\", \"100\"]\nmemory = \"64M\"\nnofile = 256\nhealth_interval = \"100ms\"\n",
    )
    .unwrap();
    let file = spec.display().to_string();
    let (_, err, status) = served.cli(&["start", "--config", &file]).await;
    assert_eq!(status, 0, "{err}");
    let client = served.client();
    let mut detail = client.inspect("probe").await.unwrap();
    // The first sample may catch the leader before its exec (no RSS of its own yet).
    let sampled = |d: &claude_daemon::wire::SessionDetail| {
        d.last_sample
            .as_ref()
            .is_some_and(|s| s["rss_bytes"].as_u64().is_some_and(|r| r > 0))
    };
    for _ in 0..300 {
        if sampled(&detail) && detail.health.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        detail = client.inspect("probe").await.unwrap();
    }
    let limits: Vec<(&str, &str)> = detail
        .limits
        .iter()
        .map(|l| (l.limit.as_str(), l.mechanism.as_str()))
        .collect();
    assert!(
        limits.iter().any(|(l, m)| *l == "memory" && !m.is_empty()),
        "{limits:?}"
    );
    assert!(limits.contains(&("open_files", "rlimit")), "{limits:?}");
    let sample = detail.last_sample.clone().unwrap();
    assert!(sample["rss_bytes"].as_u64().unwrap() > 0, "{sample}");
    assert_eq!(detail.health.clone().unwrap()["event"], "health");
    // The list carries the numbers a fleet view shows; the history, its chart and timeline.
    let listed = client.list().await.unwrap();
    let row = listed.iter().find(|v| v.name == "probe").unwrap();
    assert!(row.rss_bytes.is_some_and(|r| r > 0), "{row:?}");
    assert!(
        row.processes.is_some() && row.cpu_percent.is_some(),
        "{row:?}"
    );
    assert!(
        row.health_summary.is_some() && row.since.is_some(),
        "{row:?}"
    );
    let history = client.history("probe").await.unwrap();
    assert_eq!(history.step_seconds, claude_daemon::HISTORY_STEP_SECS);
    assert!(
        history.points.iter().any(|p| p.rss_bytes > 0),
        "{history:?}"
    );
    assert!(
        history.states.iter().any(|s| s.to == "running"),
        "{history:?}"
    );
    let (status, _) = client
        .request(Method::Get, "/v1/sessions/nobody/history", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, metrics) = client.request(Method::Get, "/metrics", None).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("claude_pm_") && !l.starts_with('#')),
        "{metrics}"
    );
    // A spec file that is not one session's table is refused, naming what is wrong.
    std::fs::write(&spec, "[[session]]\nname = \"x\"\n").unwrap();
    let (_, err, status) = served.cli(&["start", "--config", &file]).await;
    assert_eq!(status, 125);
    assert!(err.contains("needs a program"), "{err}");
    std::fs::write(&spec, "name = [").unwrap();
    let (_, err, status) = served.cli(&["start", "--config", &file]).await;
    assert_eq!(status, 125);
    assert!(err.contains("probe.toml"), "{err}");
    served.drain().await;
}
