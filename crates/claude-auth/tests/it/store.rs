//! The credentials file under concurrency and crashes, across real processes.

use std::path::Path;
use std::time::Duration;

use claude_auth::{CredentialsFile, OAuthLogin, Secret};
use claude_proc::{spawn, ProcessConfig};

const HELPER_ENV: &str = "CLAUDE_AUTH_TEST_HELPER";

/// One rotation: the refresh token carries a counter; read it, write counter + 1. Without the
/// lock and the re-read under it, concurrent processes lose increments.
fn rotate(file: &CredentialsFile, payload: &str) {
    file.update(|login| {
        let mut login = login.unwrap();
        let n: u64 = login
            .refresh_token
            .as_ref()
            .and_then(|r| r.expose().strip_prefix("sk-ant-ort01-"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        login.refresh_token = Some(Secret::new(format!("sk-ant-ort01-{}", n + 1)));
        login.access_token = Secret::new(format!("sk-ant-oat01-{}{payload}", n + 1));
        Ok(login)
    })
    .unwrap();
}

fn counter(path: &Path) -> u64 {
    let login = OAuthLogin::parse(&std::fs::read(path).unwrap(), path).unwrap();
    login.refresh_token.unwrap().expose()["sk-ant-ort01-".len()..]
        .parse()
        .unwrap()
}

fn seed(dir: &Path) -> CredentialsFile {
    let file = CredentialsFile::new(dir.join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new("sk-ant-oat01-0"),
            Some(Secret::new("sk-ant-ort01-0")),
            None,
        ))
    })
    .unwrap();
    file
}

/// Not a test of its own: the entry point of helper processes (does nothing otherwise).
#[test]
fn helper_entry() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (mode, rounds, path) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let file = CredentialsFile::new(path);
    let rounds: u64 = rounds.parse().unwrap();
    // A large payload makes every write take long enough to be killed in the middle.
    let payload = if mode == "big" {
        "x".repeat(2 << 20)
    } else {
        String::new()
    };
    for _ in 0..rounds {
        rotate(&file, &payload);
    }
}

fn helper(mode: &str, rounds: u64, path: &Path) -> ProcessConfig {
    ProcessConfig::builder(std::env::current_exe().unwrap())
        .args(["--exact", "store::helper_entry", "--test-threads=1"])
        .env(HELPER_ENV, format!("{mode}:{rounds}:{}", path.display()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_rotating_one_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = seed(dir.path());
    let rounds = 300;
    let mut a = spawn(&helper("small", rounds, file.path())).await.unwrap();
    let mut b = spawn(&helper("small", rounds, file.path())).await.unwrap();
    // And this process rotates too, at the same time.
    let mine = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..rounds {
                rotate(&file, "");
            }
        })
    };
    assert!(a.wait().await.unwrap().reason.success());
    assert!(b.wait().await.unwrap().reason.success());
    mine.await.unwrap();
    assert_eq!(counter(file.path()), 3 * rounds, "rotations were lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_write_leaves_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = seed(dir.path());
    let mut last = 0;
    for round in 0..15u64 {
        let mut writer = spawn(&helper("big", 1000, file.path())).await.unwrap();
        // Kill at a different moment each round.
        tokio::time::sleep(Duration::from_millis(30 + round * 17)).await;
        // SAFETY: kill(2) on a process this test started and has not reaped.
        let rc = unsafe { libc::kill(writer.pid() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        writer.wait().await.unwrap();
        // Old or new, never torn; and the counter never goes back.
        let now = counter(file.path());
        assert!(now >= last, "counter went back from {last} to {now}");
        last = now;
    }
    assert!(last > 0, "the writer never completed a rotation");
    // Killed writers leave at most their temporary file; the lock is released by the kernel.
    rotate(&file, "");
    assert_eq!(counter(file.path()), last + 1);
}
