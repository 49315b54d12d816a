//! `claude-pm serve` and the operator commands that talk to it over its socket.

use std::path::PathBuf;
use std::sync::Arc;

use claude_daemon::{Client, Daemon, Samples};
use claude_manager::{ManagerConfig, ProcessManager, SessionSpec, Settings, SettingsSource};

use crate::cli::{DaemonArgs, SettingsArgs};
use crate::exit;
use crate::output::{say, tell};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The state directory: the flag, `CLAUDE_PM_STATE_DIR`, or the default for this user.
fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("CLAUDE_PM_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| claude_daemon::default_state_dir(is_root(), &|k| std::env::var(k).ok()))
}

/// A token file's token: only its owner may read it, and it is not empty.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("token file {shown}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "token file {shown}: other users may read it (chmod 600)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("token file {shown}: {e}"))?;
    let token = text.trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(format!(
            "token file {shown}: must hold one token, without spaces"
        ));
    }
    Ok(token)
}

/// The client the operator commands use: `--url` with a token, else the socket.
fn client(args: &DaemonArgs) -> Result<Client, u8> {
    let Some(url) = &args.url else {
        return Ok(Client::new(claude_daemon::socket_path(&state_dir(
            args.state_dir.clone(),
        ))));
    };
    let addr = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    if addr.contains('/') || addr.is_empty() {
        return Err(usage(&format!("--url {url}: expected http://HOST:PORT")));
    }
    let token = match (&args.token_file, std::env::var("CLAUDE_PM_TOKEN")) {
        (Some(path), _) => read_token(path).map_err(|e| usage(&e))?,
        (None, Ok(token)) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => return Err(usage("--url needs --token-file or CLAUDE_PM_TOKEN")),
    };
    Ok(Client::tcp(addr, token))
}

/// A failed request: the daemon's message (or why it could not be asked), status 125.
fn refused(e: &claude_daemon::Error) -> u8 {
    tell!("claude-pm: {e}");
    exit::USAGE
}

/// `--log-size`: at least 4 KiB.
fn log_cap(text: &str) -> Result<u64, u8> {
    match claude_manager::parse_size(text) {
        Ok(bytes) if bytes >= 4096 => Ok(bytes),
        Ok(_) => Err(usage(&format!(
            "invalid --log-size: {text:?} (at least 4K)"
        ))),
        Err(why) => Err(usage(&format!("invalid --log-size: {text:?} ({why})"))),
    }
}

/// `serve`'s TCP flags: `--listen`, `--token-file`, `--token-attempts`.
pub(crate) struct Tcp {
    pub(crate) listen: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) token_attempts: u32,
}

/// `--listen` and `--token-file`: the TCP address and its token, if asked for.
fn tcp_option(tcp: Tcp) -> Result<Option<(String, String)>, u8> {
    match (tcp.listen, tcp.token_file) {
        (None, None) => Ok(None),
        (Some(listen), Some(file)) => {
            let addr = if listen.contains(':') {
                listen
            } else {
                format!("127.0.0.1:{listen}")
            };
            read_token(&file)
                .map(|token| Some((addr, token)))
                .map_err(|e| usage(&e))
        }
        (Some(_), None) => Err(usage(
            "--listen needs --token-file: every TCP request must carry its token",
        )),
        (None, Some(_)) => Err(usage("--token-file is for --listen")),
    }
}

/// What the daemon starts from: its manager's configuration, the file's settings and
/// sessions, and the variables and flags that stay over the file's settings across reloads.
struct Startup {
    manager: ManagerConfig,
    file_settings: Settings,
    overrides: Settings,
    sessions: Vec<claude_daemon::wire::SessionDef>,
}

fn startup(settings: &SettingsArgs) -> Result<Startup, u8> {
    let failed = |e: claude_manager::Error| usage(&claude_manager::describe_error(&e));
    // The file is read once: its settings and its sessions.
    let (file_settings, sessions) = match &settings.config {
        Some(path) => {
            let config = claude_daemon::load(path).map_err(|e| usage(&e.to_string()))?;
            (config.settings, config.sessions)
        }
        None => (Settings::default(), Vec::new()),
    };
    let mut overrides = Settings::from_env(&|k| std::env::var_os(k)).map_err(failed)?;
    for (key, value) in &settings.values {
        overrides
            .set(key, value, &SettingsSource::Flag)
            .map_err(failed)?;
    }
    let mut manager = ManagerConfig::default();
    let mut scratch = SessionSpec::command("serve", "/bin/true", [""; 0]);
    file_settings
        .clone()
        .merged(overrides.clone())
        .apply(&mut scratch, &mut manager)
        .map_err(failed)?;
    Ok(Startup {
        manager,
        file_settings,
        overrides,
        sessions,
    })
}

pub(crate) async fn serve(
    settings: SettingsArgs,
    socket_group: Option<u32>,
    tcp: Tcp,
    log_size: &str,
) -> u8 {
    let token_attempts = tcp.token_attempts;
    let (tcp, start, log_cap) = match (tcp_option(tcp), startup(&settings), log_cap(log_size)) {
        (Ok(tcp), Ok(start), Ok(cap)) => (tcp, start, cap),
        (Err(code), _, _) | (_, Err(code), _) | (_, _, Err(code)) => return code,
    };
    let dir = state_dir(start.manager.state_dir.clone());
    if let Err(e) = make_state_dir(&dir, socket_group) {
        return usage(&format!(
            "cannot use the state directory {}: {e}",
            dir.display()
        ));
    }
    let _ = claude_manager::proc::become_subreaper();
    if let Err(e) = claude_manager::start_watchdog().await {
        tell!("claude-pm: the watchdog did not start ({e}); a SIGKILLed daemon may leave trees");
    }
    let socket = claude_daemon::socket_path(&dir);
    let listener = match claude_daemon::bind(&socket, socket_group).await {
        Ok(l) => l,
        Err(e) => return usage(&e.to_string()),
    };
    let tcp_listener = match &tcp {
        Some((addr, _)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => return usage(&format!("cannot listen on {addr}: {e}")),
        },
        None => None,
    };
    let logs = dir.join("logs");
    if let Err(e) = make_state_dir(&logs, socket_group) {
        return usage(&format!("cannot use {}: {e}", logs.display()));
    }
    let registry = match claude_daemon::Registry::open(&claude_daemon::registry_path(&dir)) {
        Ok(r) => Arc::new(r),
        Err(e) => return usage(&e.to_string()),
    };
    // Sandboxed sessions must not see the daemon's own state: it is hidden from their view.
    let mut manager_config = start.manager;
    manager_config.state_dir = Some(dir.clone());
    let manager = Arc::new(ProcessManager::new(manager_config));
    let daemon = Arc::new(
        Daemon::new(
            manager,
            start.file_settings,
            start.overrides,
            settings.config.clone(),
        )
        .with_registry(registry)
        .with_log_files(logs, log_cap)
        .with_session_dirs(dir.join("sessions")),
    );
    let (restored, started) = start_sessions(&daemon, start.sessions);
    let access = claude_daemon::Access::new(nix::unistd::geteuid().as_raw(), socket_group);
    let server = tokio::spawn(claude_daemon::serve(
        listener,
        claude_daemon::router(Arc::clone(&daemon)),
        access,
    ));
    if let (Some(listener), Some((addr, token))) = (tcp_listener, tcp) {
        tokio::spawn(claude_daemon::serve_tcp(
            listener,
            Arc::clone(&daemon),
            token,
            token_attempts,
        ));
        tell!("claude-pm serve: also on http://{addr} (bearer token required; the dashboard at /)");
    }
    tell!(
        "claude-pm serve: listening on {}; {started} sessions started from the config file, {restored} from the registry",
        socket.display()
    );
    wait_for_stop_signal(&daemon).await;
    tell!("claude-pm serve: draining");
    daemon.drain().await;
    server.abort();
    let _ = std::fs::remove_file(&socket);
    tell!("claude-pm serve: every session stopped; exiting");
    0
}

/// The registry's sessions, then the config file's; how many of each started.
fn start_sessions(
    daemon: &Daemon,
    sessions: Vec<claude_daemon::wire::SessionDef>,
) -> (usize, usize) {
    let (restored, refused) = daemon.restore();
    for why in refused {
        tell!("claude-pm: a kept session was not started again: {why}");
    }
    let mut started = 0;
    for def in sessions {
        let name = def.name.clone();
        match daemon.create_configured(def) {
            Ok(_) => started += 1,
            Err(e) => tell!("claude-pm: session {name:?} not started: {e}"),
        }
    }
    (restored.len(), started)
}

fn usage(message: &str) -> u8 {
    tell!("claude-pm: {message}");
    exit::USAGE
}

/// Create the state directory, mode 0700 (0750 with a socket group).
fn make_state_dir(dir: &std::path::Path, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = if group.is_some() { 0o750 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(dir, None, Some(gid))?;
    }
    Ok(())
}

/// Until SIGTERM or SIGINT; each SIGHUP meanwhile reloads the config file.
async fn wait_for_stop_signal(daemon: &Daemon) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match daemon.reload().await {
                Ok(r) => tell!("claude-pm serve: reloaded: {r}"),
                Err(e) => tell!("claude-pm serve: reload refused, nothing changed: {e}"),
            },
        }
    }
}

pub(crate) async fn events(args: &DaemonArgs, follow: bool, since: u64) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client
        .events(since, follow, Samples::All, |line| say!("{line}"))
        .await
    {
        Ok(()) => 0,
        Err(e) => refused(&e),
    }
}

pub(crate) async fn reload(args: &DaemonArgs) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.reload().await {
        Ok(r) => {
            say!("{r}");
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn drain(args: &DaemonArgs) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.drain().await {
        Ok(()) => {
            say!("drained: every session stopped; the daemon takes no new ones");
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn top(args: &DaemonArgs) -> u8 {
    match client(args) {
        Ok(client) => crate::top::top(client).await,
        Err(code) => code,
    }
}

pub(crate) async fn ps(args: &DaemonArgs, json: bool) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let list = match client.list().await {
        Ok(list) => list,
        Err(e) => return refused(&e),
    };
    if json {
        say!("{}", serde_json::to_string(&list).unwrap_or_default());
        return 0;
    }
    say!(
        "{:<20} {:<12} {:>7} {:>8}  {:<24} program",
        "name",
        "state",
        "pid",
        "restarts",
        "last exit"
    );
    for s in list {
        let last = s
            .last_exit
            .map_or(String::from("-"), |e| match (e.code, e.signal) {
                (Some(code), _) => format!("{} ({code})", e.reason),
                (None, Some(sig)) => format!(
                    "{} ({})",
                    e.reason,
                    claude_manager::proc::signal_name(sig).unwrap_or("a signal")
                ),
                _ => e.reason,
            });
        say!(
            "{:<20} {:<12} {:>7} {:>8}  {:<24} {}",
            s.name,
            s.state,
            s.pid.map_or("-".into(), |p| p.to_string()),
            s.restarts,
            last,
            s.program
        );
    }
    0
}

pub(crate) async fn start(
    mut daemon: DaemonArgs,
    name: Option<String>,
    claude: bool,
    settings: &SettingsArgs,
    program: Vec<String>,
) -> u8 {
    let mut def = match &settings.config {
        Some(path) => match claude_daemon::definition_file(path) {
            Ok(def) => def,
            Err(e) => return usage(&e.to_string()),
        },
        None => serde_json::Map::new(),
    };
    if let Some(name) = name {
        def.insert("name".into(), name.into());
    }
    if claude {
        def.remove("command");
        def.insert("claude".into(), program.into());
    } else if !program.is_empty() {
        def.remove("claude");
        def.insert("command".into(), program.into());
    } else if !def.contains_key("command") && !def.contains_key("claude") {
        return usage("start needs a program after -- (or --claude, or --config FILE)");
    }
    for (key, value) in &settings.values {
        if *key == "state_dir" {
            daemon.state_dir = Some(PathBuf::from(value));
            continue;
        }
        let repeatable = claude_manager::setting(key).is_some_and(|s| s.repeatable);
        if repeatable {
            let entry = def
                .entry(key.to_string())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(items) = entry {
                items.push(value.clone().into());
            }
        } else {
            def.insert(key.to_string(), value.clone().into());
        }
    }
    let client = match client(&daemon) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.create(&serde_json::Value::Object(def)).await {
        Ok(detail) => {
            say!("{} {}", detail.view.name, detail.view.state);
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn stop(args: &DaemonArgs, name: &str) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.stop(name).await {
        Ok(v) => {
            say!("{} stopping", v.name);
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn restart(args: &DaemonArgs, name: &str) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.restart(name).await {
        Ok(v) => {
            say!("{} restarting", v.name);
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn rm(args: &DaemonArgs, name: &str) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.delete(name).await {
        Ok(()) => {
            say!("{name} removed");
            0
        }
        Err(e) => refused(&e),
    }
}

pub(crate) async fn logs(args: &DaemonArgs, name: &str, follow: bool) -> u8 {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if follow {
        return match client.follow_logs(name, |line| say!("{line}")).await {
            Ok(()) => 0,
            Err(e) => refused(&e),
        };
    }
    match client.logs(name).await {
        Ok(text) => {
            for line in text.lines() {
                say!("{line}");
            }
            0
        }
        Err(e) => refused(&e),
    }
}
