//! Restart policy across real runs.

use std::time::Duration;

use claude_proc::{
    Backoff, GiveUpReason, Outcome, ProcessStatus, RestartMode, RestartPolicy, StopCause,
    Supervisor,
};

use crate::support::*;

fn policy(mode: RestartMode) -> RestartPolicy {
    RestartPolicy {
        mode,
        max_restarts: 3,
        window: Duration::from_secs(60),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            multiplier: 2.0,
        },
        reset_after: Duration::from_secs(60),
        breaker_threshold: 10,
        breaker_open_for: Duration::from_secs(60),
        rate_limit_pause: Duration::ZERO,
    }
}

fn backoff_delays(
    events: &mut tokio::sync::broadcast::Receiver<claude_proc::StatusEvent>,
) -> Vec<Duration> {
    let mut delays = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let ProcessStatus::BackingOff { delay, .. } = ev.to {
            delays.push(delay);
        }
    }
    delays
}

#[tokio::test]
async fn on_failure_restarts_until_the_window_limit() {
    let mut sup = Supervisor::start(
        sh("exit 1").build().unwrap(),
        policy(RestartMode::OnFailure),
    )
    .unwrap();
    let mut events = sup.events();
    let exit = sup.wait().await.unwrap();
    assert_eq!(
        exit.outcome,
        Outcome::GaveUp(GiveUpReason::TooManyRestarts {
            restarts: 3,
            window: Duration::from_secs(60)
        })
    );
    assert_eq!(exit.runs, 4);
    assert_eq!(exit.restarts, 3);
    let delays = backoff_delays(&mut events);
    assert_eq!(delays.len(), 3);
    // Full jitter under a growing, capped ceiling.
    for (i, d) in delays.iter().enumerate() {
        assert!(
            *d <= Duration::from_millis(20 << i).min(Duration::from_millis(100)),
            "{i}: {d:?}"
        );
    }
}

#[tokio::test]
async fn on_failure_does_not_restart_a_success() {
    let mut sup = Supervisor::start(
        sh("exit 0").build().unwrap(),
        policy(RestartMode::OnFailure),
    )
    .unwrap();
    let exit = sup.wait().await.unwrap();
    assert_eq!(exit.outcome, Outcome::Completed);
    assert_eq!(exit.runs, 1);
    assert!(exit.last.unwrap().reason.success());
}

#[tokio::test]
async fn never_runs_once() {
    let mut sup =
        Supervisor::start(sh("exit 5").build().unwrap(), policy(RestartMode::Never)).unwrap();
    let exit = sup.wait().await.unwrap();
    assert_eq!(exit.outcome, Outcome::Completed);
    assert_eq!(exit.runs, 1);
}

#[tokio::test]
async fn always_restarts_and_stop_ends_supervision() {
    let mut p = policy(RestartMode::Always);
    p.max_restarts = 1000;
    let mut sup = Supervisor::start(sh("sleep 0.05").build().unwrap(), p).unwrap();
    let first = sup.next_run().await.unwrap();
    let second = sup.next_run().await.unwrap();
    assert_eq!((first.number, second.number), (1, 2));
    assert_ne!(first.pid, second.pid);
    let exit = sup.stop().await.unwrap();
    assert_eq!(exit.outcome, Outcome::Stopped);
    assert_eq!(sup.status(), ProcessStatus::Stopped);
    let last = sup.next_run().await;
    while let Some(run) = sup.next_run().await {
        assert!(!alive(run.pid));
    }
    drop(last);
}

#[tokio::test]
async fn an_auth_failure_is_not_restarted_without_a_credential_to_refresh() {
    let mut sup = Supervisor::start(
        sh("sleep 100").build().unwrap(),
        policy(RestartMode::Always),
    )
    .unwrap();
    let run = sup.next_run().await.unwrap();
    sup.restart_with(StopCause::AuthFailed);
    let exit = sup.wait().await.unwrap();
    assert_eq!(exit.outcome, Outcome::GaveUp(GiveUpReason::AuthFailed));
    assert_eq!((exit.runs, exit.restarts), (1, 0));
    assert!(!alive(run.pid));
}

#[tokio::test]
async fn consecutive_failures_open_the_breaker_for_its_whole_period() {
    let mut p = policy(RestartMode::OnFailure);
    p.breaker_threshold = 2;
    p.breaker_open_for = Duration::from_secs(30);
    let mut sup = Supervisor::start(sh("exit 1").build().unwrap(), p).unwrap();
    let mut status = sup.watch_status();
    // The first failure backs off briefly; the second opens the breaker.
    let mut delays = Vec::new();
    loop {
        let s = status
            .wait_for(|s| matches!(s, ProcessStatus::BackingOff { .. }))
            .await
            .unwrap()
            .clone();
        if let ProcessStatus::BackingOff { delay, .. } = s {
            delays.push(delay);
        }
        if delays.len() == 2 {
            break;
        }
        status
            .wait_for(|s| !matches!(s, ProcessStatus::BackingOff { .. }))
            .await
            .unwrap();
    }
    assert!(delays[0] <= Duration::from_millis(20), "{delays:?}");
    assert!(delays[1] >= Duration::from_secs(30), "{delays:?}");
    let exit = sup.stop().await.unwrap();
    assert_eq!((exit.outcome, exit.runs), (Outcome::Stopped, 2));
}

#[tokio::test]
async fn a_stable_run_resets_the_backoff() {
    let mut p = policy(RestartMode::OnFailure);
    p.backoff = Backoff {
        initial: Duration::from_millis(30),
        max: Duration::from_secs(20),
        multiplier: 10.0,
    };
    p.reset_after = Duration::from_millis(100);
    p.max_restarts = 3;
    let mut sup = Supervisor::start(sh("sleep 0.15; exit 1").build().unwrap(), p).unwrap();
    let mut events = sup.events();
    let exit = sup.wait().await.unwrap();
    assert_eq!(exit.runs, 4);
    let delays = backoff_delays(&mut events);
    assert_eq!(delays.len(), 3);
    // Every run lasted past reset_after: each delay is drawn from the first ceiling again.
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(30)),
        "{delays:?}"
    );
}

#[tokio::test]
async fn a_program_that_vanished_is_a_spawn_failure_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("vanishes");
    std::fs::write(&prog, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = claude_proc::ProcessConfig::builder(&prog).build().unwrap();
    std::fs::remove_file(&prog).unwrap();
    let mut sup = Supervisor::start(config, policy(RestartMode::Always)).unwrap();
    let mut events = sup.events();
    let exit = sup.wait().await.unwrap();
    // Every attempt failed at execve, was reported as Failed, and was retried with backoff.
    assert!(matches!(
        exit.outcome,
        Outcome::GaveUp(GiveUpReason::TooManyRestarts { restarts: 3, .. })
    ));
    assert!(exit.last.is_none());
    let error = exit.last_error.unwrap();
    assert!(
        error.contains("vanishes") && error.contains("execve"),
        "{error}"
    );
    let mut failed = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev.to, ProcessStatus::Failed { .. }) {
            failed += 1;
        }
    }
    assert_eq!(failed, 4);
}
