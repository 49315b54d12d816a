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

/// A small tmpfs mounted for one test and unmounted when dropped, also on failure.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(bytes: usize) -> Option<SmallFs> {
        let dir = tempfile::tempdir().ok()?;
        let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).ok()?;
        let options = std::ffi::CString::new(format!("size={bytes},mode=0700")).ok()?;
        // SAFETY: mount(2) with valid C strings; the target is a directory we own.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        (rc == 0).then_some(SmallFs(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.0.path().as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2(2) of the mount this value made.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn a_full_disk_fails_the_update_and_keeps_the_old_file() {
    let Some(fs) = SmallFs::mount(64 * 1024) else {
        assert!(
            std::env::var_os("CLAUDE_PM_STRICT").is_none(),
            "cannot mount a tmpfs (needs CAP_SYS_ADMIN)"
        );
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    };
    let file = CredentialsFile::new(fs.0.path().join(".credentials.json"));
    file.update(|_| {
        Ok(OAuthLogin::new(
            Secret::new(String::from("sk-ant-oat01-full-disk-before-000000")),
            Some(Secret::new(String::from(
                "sk-ant-ort01-full-disk-before-000000",
            ))),
            None,
        ))
    })
    .unwrap();
    let before = std::fs::read(file.path()).unwrap();
    // Fill the file system.
    let filler = vec![7u8; 4096];
    let mut fill = std::fs::File::create(fs.0.path().join("filler")).unwrap();
    while std::io::Write::write_all(&mut fill, &filler).is_ok() {}
    drop(fill);
    let err = file
        .update(|login| {
            let mut login = login.unwrap();
            login.access_token = Secret::new(format!("sk-ant-oat01-{}", "x".repeat(2000)));
            Ok(login)
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("failed to ") && text.contains(".credentials.json"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        before,
        "the old file was damaged"
    );
    let names: Vec<String> = std::fs::read_dir(fs.0.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    eprintln!("full disk: {text}");
}
