//! Escape attempts by one tenant's real CLI (its Bash tool, driven by the stand-in's
//! `run: COMMAND` prompt) against another tenant's live session, at each isolation level. Every
//! attempt must succeed without isolation (so the probe is real) and fail in the sandbox;
//! docs/SECURITY.md is the table of these rows, and a test there checks the two agree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_manager::{ExitKind, IsolationLevel, ManagerConfig, ProcessManager, UidRange};
use claude_testkit::StandInApi;

use crate::claude::{api_key, lines_of, one_shot, stream_session};
use crate::SERIAL;

/// Each row: name, what it tries, and the shell test that succeeds if the escape works. `$V`
/// is the victim's claude pid (as the host sees it), `$VCFG` its config directory, `$VWD` its
/// working directory, `$STATE` a file of the manager's, `$CREDS` the credentials file the
/// manager reads for the victim, `$SUID` a setuid-root copy of `id`, `$VTMP` the victim's
/// per-session directory under /tmp, `$SVC` the port of a service on the host's loopback.
/// The sandbox runs with `network = api`.
pub(crate) const ATTEMPTS: &[(&str, &str, &str)] = &[
    ("environ", "read another session's environment (its API key)", "tr '\\0' '\\n' < /proc/$V/environ | grep -q victim-key-MARK"),
    ("cmdline", "read another session's command line (its system prompt)", "tr '\\0' ' ' < /proc/$V/cmdline | grep -q victim-prompt-MARK"),
    ("fds", "list another session's open descriptors", "ls /proc/$V/fd | grep -q ."),
    ("config_dir", "list another session's config directory", "ls $VCFG | grep -q ."),
    ("transcript", "read another session's transcript", "grep -rq victim-turn-MARK $VCFG/projects"),
    ("credentials", "read the credentials file the manager keeps for another tenant", "grep -q victim-oauth-MARK $CREDS"),
    ("workdir_read", "read a file in another session's working directory", "grep -q victim-secret-MARK $VWD/secret.txt"),
    ("workdir_write", "write a file into another session's working directory", "echo pwned > $VWD/pwned"),
    ("manager_files", "read the manager's own state", "grep -q manager-state-MARK $STATE"),
    ("session_tmp", "learn that another session exists from its directory under /tmp", "test -d $VTMP"),
    ("signal", "signal another session's process", "kill -0 $V"),
    ("ptrace", "ptrace-level access to another session's memory (/proc/PID/mem)", "a=$(head -1 /proc/$V/maps | cut -d- -f1) && dd if=/proc/$V/mem of=/dev/null bs=4096 count=1 skip=$((0x$a / 4096)) 2>/dev/null"),
    ("see_processes", "see other processes at all", "test -d /proc/$V"),
    ("write_host", "write outside its own directories", "touch /usr/local/escape-probe && rm -f /usr/local/escape-probe"),
    ("setuid", "gain root through a setuid binary", "test \"$($SUID -u)\" = 0"),
    ("loopback", "reach a host loopback service other than the API", "exec 3<>/dev/tcp/127.0.0.1/$SVC"),
    ("leave_behind", "leave a process running after the session's stop", "env -i setsid sh -c 'sleep 3917.25 &' </dev/null >/dev/null 2>&1"),
];

/// The rows a level leaves open (every other row it blocks): the sandbox none; its own uid
/// shares the host's `/proc`, `/tmp` and network; no isolation blocks nothing.
pub(crate) fn open_at(level: IsolationLevel) -> Vec<&'static str> {
    match level {
        IsolationLevel::Sandbox => Vec::new(),
        IsolationLevel::User => vec!["cmdline", "session_tmp", "see_processes", "loopback"],
        _ => ATTEMPTS.iter().map(|(name, _, _)| *name).collect(),
    }
}

fn network_for(level: IsolationLevel) -> claude_manager::Network {
    match level {
        IsolationLevel::Sandbox => claude_manager::Network::Api,
        _ => claude_manager::Network::Host,
    }
}

fn script(vars: &[(&str, String)]) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        s.push_str(&format!("{k}='{v}'\n"));
    }
    for (name, _, test) in ATTEMPTS {
        s.push_str(&format!(
            "if ( {test} ) >/dev/null 2>&1; then echo {name}=ESCAPED; else echo {name}=blocked; fi\n"
        ));
    }
    s
}

/// The host's pids of processes whose command line starts with `sleep 3917.25`.
fn leftovers() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\x003917.25"))
        })
        .collect()
}

/// The victim's claude process: the leader, or under a sandbox the init's only child.
fn claude_pid(leader: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
        .unwrap_or_default();
    let is_claude = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("victim-prompt-MARK"))
    };
    if is_claude(leader) {
        return leader;
    }
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p| is_claude(*p))
        .unwrap_or(leader)
}

fn environ_var(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

/// Files of the host the attacker aims at, under a world-searchable directory that is not
/// /tmp (a sandbox's /tmp is private, which would hide them for the wrong reason).
struct Stage {
    root: tempfile::TempDir,
    /// The port of a loopback service of the host's (it accepts and says nothing).
    service: u16,
}

impl Stage {
    fn new() -> Stage {
        let root = tempfile::Builder::new()
            .prefix("isolation-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let service = listener.local_addr().unwrap().port();
        std::thread::spawn(move || for _ in listener.incoming() {});
        let stage = Stage { root, service };
        for (dir, file, text, mode) in [
            ("victim", "secret.txt", "victim-secret-MARK\n", 0o644),
            ("attacker", "readme", "attacker\n", 0o644),
            ("state", "manager.toml", "manager-state-MARK\n", 0o600),
            ("creds", ".credentials.json", "victim-oauth-MARK\n", 0o600),
        ] {
            let d = stage.path(dir);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(d.join(file), text).unwrap();
            std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let suid = stage.path("suid-id");
        std::fs::copy("/usr/bin/id", &suid).unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        stage
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// Run the attempts at `level`: a victim stream session with one turn behind it, then an
/// attacker one-shot whose Bash tool runs every attempt. Returns each row's outcome.
async fn attempts_at(
    level: IsolationLevel,
    stage: &Stage,
    api: &StandInApi,
) -> BTreeMap<String, bool> {
    let manager = ProcessManager::new(ManagerConfig {
        lease_dir: stage.path("leases"),
        ..ManagerConfig::default()
    });
    let range = UidRange::new(3_910_000, 3_910_099).unwrap();

    let mut victim = stream_session(api, "victim").await;
    if let claude_manager::Program::Claude { args, .. } = &mut victim.program {
        args.extend(["--append-system-prompt".into(), "victim-prompt-MARK".into()]);
    }
    victim.credentials = Some(api_key("sk-ant-api03-victim-key-MARK-000000000000"));
    victim.cwd = Some(stage.path("victim"));
    victim.isolation = level;
    victim.uid_range = range;
    victim.network = network_for(level);
    let mut vh = manager.start(victim).unwrap();
    let vrun = vh.next_run().await.unwrap();
    let mut session = vrun.session.unwrap();
    session.initialize(Duration::from_secs(30)).await.unwrap();
    session.turn("victim-turn-MARK").await.unwrap();
    let v = claude_pid(vrun.pid);
    let vcfg = environ_var(v, "CLAUDE_CONFIG_DIR").unwrap();
    let vtmp = Path::new(&vcfg).parent().unwrap().display().to_string();

    let vars = [
        ("V", v.to_string()),
        ("VCFG", vcfg),
        ("VWD", stage.path("victim").display().to_string()),
        (
            "STATE",
            stage.path("state/manager.toml").display().to_string(),
        ),
        (
            "CREDS",
            stage.path("creds/.credentials.json").display().to_string(),
        ),
        ("SUID", stage.path("suid-id").display().to_string()),
        ("VTMP", vtmp),
        ("SVC", stage.service.to_string()),
    ];
    let prompt = format!("run: {}", script(&vars));
    let mut attacker = one_shot(api, "attacker", &prompt).await;
    if let claude_manager::Program::Claude { args, .. } = &mut attacker.program {
        args.extend(["--allowedTools".into(), "Bash".into()]);
    }
    attacker.credentials = Some(api_key("sk-ant-api03-attacker-key-000000000000"));
    attacker.cwd = Some(stage.path("attacker"));
    attacker.isolation = level;
    attacker.uid_range = range;
    attacker.network = network_for(level);
    let mut ah = manager.start(attacker).unwrap();
    let mut arun = ah.next_run().await.unwrap();
    let lines = lines_of(&mut arun).await;
    let report = ah.wait().await.unwrap();
    assert_eq!(
        (report.reason, report.code),
        (ExitKind::Exited, Some(0)),
        "{report:?}"
    );
    let result = lines
        .iter()
        .find(|l| l["type"] == "result")
        .and_then(|l| l["result"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut outcome = BTreeMap::new();
    for line in result.trim_start_matches("tool output: ").lines() {
        if let Some((name, how)) = line.split_once('=') {
            outcome.insert(name.to_owned(), how == "ESCAPED");
        }
    }
    // What the attacker left must have survived its session's end to count.
    let left = leftovers();
    outcome.insert("leave_behind".into(), !left.is_empty());
    for pid in left {
        // Only this test's own escapee (its unique argument), by pid.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(stage.path("victim/pwned"));
    session.close().await;
    let vreport = vh.wait().await.unwrap();
    assert_eq!(vreport.reason, ExitKind::Exited, "{vreport:?}");
    assert!(
        ATTEMPTS
            .iter()
            .all(|(name, _, _)| outcome.contains_key(*name)),
        "{result}"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_escape_works_without_isolation_and_fails_in_the_sandbox() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let api = StandInApi::start().await.unwrap();
    let stage = Stage::new();
    let mut table = Vec::new();
    for level in [
        IsolationLevel::None,
        IsolationLevel::User,
        IsolationLevel::Sandbox,
    ] {
        let outcome = attempts_at(level, &stage, &api).await;
        for (name, _, _) in ATTEMPTS {
            let escaped = outcome[*name];
            let blocked = !open_at(level).contains(name);
            table.push(format!(
                "{level} {name} {}",
                if escaped { "escaped" } else { "blocked" }
            ));
            assert_eq!(escaped, !blocked, "{level}: {name} (all: {outcome:?})");
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// docs/SECURITY.md's table has exactly the rows the attack test runs, with the outcome the
/// test asserts at each level.
#[test]
fn the_security_table_matches_the_attempts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SECURITY.md");
    let text = std::fs::read_to_string(path).unwrap();
    let rows: BTreeMap<String, Vec<String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (name, rest) = l.split_once('`')?;
            let cells: Vec<String> = rest.split('|').map(|c| c.trim().to_owned()).collect();
            Some((name.to_owned(), cells))
        })
        .collect();
    let names: Vec<&str> = ATTEMPTS.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>().len(),
        names.len()
    );
    for (name, what, _) in ATTEMPTS {
        let cells = rows
            .get(*name)
            .unwrap_or_else(|| panic!("SECURITY.md lacks {name}"));
        // cells: "", attempt, none, user, sandbox, what stops it
        let shown = cells[1].replace('`', "");
        assert!(shown.starts_with(what), "{name}: {shown:?} is not {what:?}");
        for (i, level) in [
            IsolationLevel::None,
            IsolationLevel::User,
            IsolationLevel::Sandbox,
        ]
        .into_iter()
        .enumerate()
        {
            let want = if open_at(level).contains(name) {
                "escapes"
            } else {
                "blocked"
            };
            assert_eq!(cells[2 + i], want, "{name} at {level}");
        }
    }
    assert!(ATTEMPTS.len() >= 15);
}

/// A sandboxed session keeps its limits, sampling and hang detection: a memory hog is killed by
/// its cgroup and reported as the memory limit; samples count the init and the program; a
/// silent program with work in flight is judged hung and its tree stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_sampling_and_hang_detection_hold_in_the_sandbox() {
    if !claude_testkit::running_as_root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stage = Stage::new();
    let manager = ProcessManager::new(ManagerConfig {
        lease_dir: stage.path("leases"),
        ..ManagerConfig::default()
    });
    let sandboxed = |spec: &mut claude_manager::SessionSpec| {
        spec.cwd = Some(stage.path("attacker"));
        spec.isolation = IsolationLevel::Sandbox;
        spec.uid_range = UidRange::new(3_910_200, 3_910_209).unwrap();
    };

    let mut hog = claude_manager::SessionSpec::command(
        "hog",
        "/bin/dd",
        ["if=/dev/zero", "of=/dev/null", "bs=600M", "count=1"],
    );
    sandboxed(&mut hog);
    hog.limits.max_memory = Some(200 << 20);
    hog.stderr = claude_manager::proc::OutputMode::Null;
    let report = manager.start(hog).unwrap().wait().await.unwrap();
    assert_eq!(
        (report.reason, report.signal),
        (ExitKind::MemoryLimit, Some(9)),
        "{report:?}"
    );

    let mut silent = claude_manager::SessionSpec::command("silent", "/bin/sh", ["-c", "sleep 100"]);
    sandboxed(&mut silent);
    silent.health = Some(claude_manager::HealthSpec {
        interval: Duration::from_millis(100),
        hang_after: Some(Duration::from_millis(1500)),
        ..claude_manager::HealthSpec::default()
    });
    let mut events = manager.subscribe();
    let mut h = manager.start(silent).unwrap();
    let run = h.next_run().await.unwrap();
    run.signals.set_in_flight(true);
    let report = h.wait().await.unwrap();
    assert_eq!(report.reason, ExitKind::Hung, "{report:?}");
    let mut most = 0;
    while let Ok(e) = events.try_recv() {
        if let claude_manager::EventKind::Sample { processes, .. } = e.kind {
            most = most.max(processes);
        }
    }
    assert!(most >= 2, "samples see the init and the program: {most}");
    assert!(crate::gone(run.pid));
}
