//! Chaos: the manager killed outright, mid-run and mid-refresh.

use std::time::{Duration, Instant};

use claude_proc::{spawn, OutputEvent, OutputMode, ProcessConfig, StdinMode};

fn alive(pid: u32) -> bool {
    use claude_manager::health::{ProcState, Sampler};
    Sampler::default()
        .process(pid)
        .is_ok_and(|p| !matches!(p.state, ProcState::Zombie | ProcState::Other(_)))
}

/// Live processes carrying a tree marker of manager `owner`.
fn marked_by(owner: u32) -> Vec<u32> {
    let needle = format!("CLAUDE_PROC_TREE={owner}-");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv.starts_with(needle.as_bytes()))
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Cgroups named for manager `owner` beneath this test's own cgroups.
fn cgroups_of(owner: u32) -> Vec<String> {
    let root = claude_manager::limits::CgroupV1Root::system();
    let prefix = format!("claude-{owner}-");
    ["memory", "cpu", "pids", "blkio"]
        .iter()
        .filter_map(|c| root.own_dir(c))
        .flat_map(|d| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn start_manager() -> (claude_proc::Child, u32) {
    let config = ProcessConfig::builder(env!("CARGO_BIN_EXE_chaos-manager"))
        .stdin(StdinMode::Piped)
        .stdout(OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = out.recv().await {
            if let OutputEvent::Line(l) = e {
                if l.starts_with(b"ready") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the chaos manager did not get ready");
    let pid = child.pid();
    (child, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_manager_takes_its_whole_trees_with_it_and_a_new_one_starts_clean() {
    let _serial = crate::SERIAL.lock().await;
    let (mut manager, pid) = start_manager().await;
    let tree = marked_by(pid);
    // 20 sessions x (shell-exec'd sleep, background sleep, setsid sleep), plus the watchdog.
    assert!(tree.len() >= 60, "{} processes: {tree:?}", tree.len());
    assert!(!cgroups_of(pid).is_empty());
    // SAFETY: kill(2) on the manager this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let _ = manager.wait().await;
    while tree.iter().any(|p| alive(*p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "still alive 1 s after the manager died: {:?}",
            tree.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_gone = killed.elapsed();
    while !cgroups_of(pid).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "cgroups left: {:?}",
            cgroups_of(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "chaos: {} processes gone {:?} after SIGKILL, cgroups removed after {:?}",
        tree.len(),
        all_gone,
        killed.elapsed()
    );
    // A new manager starts, runs its 20 sessions and stops them cleanly.
    let (mut again, pid2) = start_manager().await;
    assert!(marked_by(pid2).len() >= 60);
    again.take_stdin().unwrap().close().await;
    let exit = again.wait().await.unwrap();
    assert!(exit.reason.success(), "{exit:?}");
    let start = Instant::now();
    while !marked_by(pid2).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            marked_by(pid2)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cgroups_of(pid2).is_empty(), "{:?}", cgroups_of(pid2));
}

/// Not a test of its own: with `CHAOS_REFRESH=<credentials file>|<token url>` it refreshes
/// that login in a loop until killed (does nothing otherwise).
#[test]
fn refresh_helper_entry() {
    let Ok(spec) = std::env::var("CHAOS_REFRESH") else {
        return;
    };
    let (path, url) = spec.split_once('|').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use claude_manager::auth::{
            CredentialsFile, OAuthTokenManager, RefreshConfig, TokenManager,
        };
        let manager =
            OAuthTokenManager::new(CredentialsFile::new(path), RefreshConfig::new(url, "chaos"))
                .unwrap();
        println!("refreshing");
        loop {
            if manager.refresh_token().await.is_err() {
                // A spent refresh token (the kill landed between the endpoint's rotation and
                // the rename): nothing more to refresh.
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_during_refreshes_leaves_a_valid_credentials_file() {
    use claude_manager::auth::{OAuthLogin, Secret};
    let _serial = crate::SERIAL.lock().await;
    let api = claude_testkit::StandInApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".credentials.json");
    let mut rotated = 0;
    let mut torn = 0;
    let kills = 20;
    for i in 0..kills {
        let login = api.issue_login(Duration::from_secs(3600)).unwrap();
        let fresh = OAuthLogin::new(
            Secret::new(login.access_token.clone()),
            Some(Secret::new(login.refresh_token.clone())),
            None,
        );
        std::fs::write(&path, fresh.to_bytes()).unwrap();
        let config = ProcessConfig::builder(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "chaos::refresh_helper_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "CHAOS_REFRESH",
                format!("{}|{}", path.display(), api.token_url()),
            )
            .stdout(OutputMode::lines())
            .build()
            .unwrap();
        let mut helper = spawn(&config).await.unwrap();
        let mut out = helper.take_stdout().unwrap();
        let started = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(e) = out.recv().await {
                // libtest prints the test's name on the same line first.
                if matches!(e, OutputEvent::Line(ref l) if l.ends_with(b"refreshing")) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            started,
            Ok(true),
            "kill {i}: the helper did not start refreshing"
        );
        // Somewhere inside a refresh: each takes a few milliseconds here.
        tokio::time::sleep(Duration::from_millis(5 + (i * 7) % 60)).await;
        // SAFETY: kill(2) on the helper this test started.
        unsafe { libc::kill(helper.pid() as i32, libc::SIGKILL) };
        let _ = helper.wait().await;
        let bytes = std::fs::read(&path).unwrap();
        let stored = OAuthLogin::parse(&bytes, &path)
            .unwrap_or_else(|e| panic!("kill {i}: the credentials file is not valid: {e}"));
        assert!(stored.refresh_token.is_some(), "kill {i}: no refresh token");
        rotated += usize::from(stored.access_token.expose() != login.access_token);
        // A kill between the temporary file and the rename leaves the temporary (with a
        // secret in it); the next update under the lock removes it.
        let stray = || -> Vec<String> {
            std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".credentials.json" && !n.ends_with(".lock"))
                .collect()
        };
        if !stray().is_empty() {
            torn += 1;
            claude_manager::auth::CredentialsFile::new(&path)
                .update(|login| {
                    login.ok_or(claude_manager::auth::Error::NoCredential {
                        looked: String::new(),
                    })
                })
                .unwrap();
            assert!(stray().is_empty(), "kill {i}: {:?}", stray());
        }
    }
    eprintln!(
        "chaos: {kills} kills during refreshes, {} refreshes answered, {rotated} files rotated, \
         {torn} temporary files left and removed by the next update; every file valid",
        api.refreshes()
    );
    assert!(api.refreshes() > 0, "no refresh happened before the kills");
}
