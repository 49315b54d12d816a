//! Children die when the manager dies, even by SIGKILL.
//!
//! The "manager" is this test binary re-executed in helper mode: it spawns children through
//! claude-proc, prints their pids and waits to be killed.

use std::time::{Duration, Instant};

use claude_proc::{spawn, OutputEvent, ProcessConfig};

use crate::support::*;

const HELPER_ENV: &str = "CLAUDE_PROC_TEST_HELPER";

/// Not a test of its own: the entry point of the helper process (does nothing otherwise).
#[tokio::test]
async fn helper_entry() {
    if std::env::var(HELPER_ENV).as_deref() != Ok("manager") {
        return;
    }
    let mut children = Vec::new();
    for _ in 0..5 {
        let config = ProcessConfig::builder("/bin/sleep")
            .arg("1000")
            .build()
            .unwrap();
        children.push(spawn(&config).await.unwrap());
    }
    let pids: Vec<String> = children.iter().map(|c| c.pid().to_string()).collect();
    println!("PIDS {}", pids.join(" "));
    tokio::time::sleep(Duration::from_secs(1000)).await;
}

/// Not a test of its own: the subreaper helper (does nothing otherwise).
#[tokio::test]
async fn subreaper_helper_entry() {
    if std::env::var(HELPER_ENV).as_deref() != Ok("subreaper") {
        return;
    }
    claude_proc::become_subreaper().unwrap();
    // The leader leaves an orphan behind (setsid, parent gone): it is re-parented to us.
    let config = sh("setsid sh -c 'echo $$; exec sleep 1000' & sleep 0.2; exit 0")
        .stdout(lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let orphan: u32 = read_lines(&mut out, 1).await[0].parse().unwrap();
    let info = child.wait().await.unwrap();
    let verdict = if !info.reason.success() {
        format!("FAIL leader {:?}", info.reason)
    } else if alive(orphan) {
        format!("FAIL orphan {orphan} alive")
    } else if is_zombie_child_of_us(orphan) {
        format!("FAIL orphan {orphan} left as our zombie")
    } else {
        "OK".to_owned()
    };
    println!("SUBREAPER {verdict}");
}

#[tokio::test]
async fn as_subreaper_adopted_orphans_are_killed_and_reaped() {
    let exe = std::env::current_exe().unwrap();
    let config = ProcessConfig::builder(exe)
        .args([
            "--exact",
            "parent_death::subreaper_helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "subreaper")
        .stdout(lines())
        .build()
        .unwrap();
    let mut helper = spawn(&config).await.unwrap();
    let mut out = helper.take_stdout().unwrap();
    let mut verdict = None;
    while let Some(event) = out.recv().await {
        if let OutputEvent::Line(l) = event {
            let line = String::from_utf8_lossy(&l).into_owned();
            if let Some((_, v)) = line.split_once("SUBREAPER ") {
                verdict = Some(v.to_owned());
            }
        }
    }
    assert_eq!(verdict.as_deref(), Some("OK"));
    assert!(helper.wait().await.unwrap().reason.success());
}

#[tokio::test]
async fn children_die_within_a_second_of_the_manager_being_sigkilled() {
    let exe = std::env::current_exe().unwrap();
    let config = ProcessConfig::builder(exe)
        .args([
            "--exact",
            "parent_death::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "manager")
        .stdout(lines())
        .build()
        .unwrap();
    let mut manager = spawn(&config).await.unwrap();
    let mut out = manager.take_stdout().unwrap();
    let pids: Vec<u32> = loop {
        match out.recv().await {
            Some(OutputEvent::Line(l)) => {
                let line = String::from_utf8_lossy(&l).into_owned();
                if let Some((_, rest)) = line.split_once("PIDS ") {
                    break rest.split(' ').map(|p| p.parse().unwrap()).collect();
                }
            }
            Some(_) => {}
            None => panic!("helper ended without printing its children"),
        }
    };
    assert_eq!(pids.len(), 5);
    assert!(pids.iter().all(|p| alive(*p)));
    // SIGKILL the manager: no cleanup code of its own can run.
    // SAFETY: kill(2) on the pid of a process this test started and has not reaped.
    let rc = unsafe { libc::kill(manager.pid() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let start = Instant::now();
    for pid in &pids {
        assert!(
            gone_within(*pid, Duration::from_secs(1).saturating_sub(start.elapsed())).await,
            "child {pid} outlived its killed manager by more than a second"
        );
    }
    eprintln!(
        "all children gone {:?} after the manager's SIGKILL",
        start.elapsed()
    );
    manager.wait().await.unwrap();
}
