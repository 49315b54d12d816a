//! `claude-pm top` on a real pseudo-terminal against the real daemon: rows for live sessions,
//! a session created meanwhile appears, a stop from the keyboard (after its confirmation) ends
//! the tree, and the terminal is restored afterwards; without a terminal it refuses.

use std::time::{Duration, Instant};

use claude_manager::proc::{spawn, Child, EnvPolicy, ProcessConfig};

use crate::cli::{code, pm};
use crate::serve::{alive, pid_of, Served};
use crate::terminal::Pty;

fn sleeper(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "command": ["/bin/sleep", "4321"], "grace": "1s"})
}

/// `claude-pm top` of `served` in a new session whose controlling terminal is `pty`.
async fn top_on(pty: &Pty, served: &Served) -> Child {
    let line = format!(
        "exec setsid --wait --ctty \"$0\" top --state-dir {} <{1} >{1} 2>{1}",
        served.state().display(),
        pty.slave
    );
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", &line, env!("CARGO_BIN_EXE_claude-pm")])
        .env_policy(EnvPolicy::Inherit)
        .build()
        .unwrap();
    spawn(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_live_sessions_stops_one_from_the_keyboard_and_restores_the_terminal() {
    let _serial = crate::SERIAL.lock().await;
    let served = Served::start("", &[]).await;
    let client = served.client();
    client.create(&sleeper("alpha-one")).await.unwrap();
    client.create(&sleeper("beta-two")).await.unwrap();
    let alpha = pid_of(&client, "alpha-one").await;
    pid_of(&client, "beta-two").await;

    let mut pty = Pty::open();
    pty.set_size(SIZE.0, SIZE.1);
    let modes_before = pty.local_modes();
    let mut top = top_on(&pty, &served).await;
    let t = Duration::from_secs(10);
    const SIZE: (u16, u16) = (40, 140);
    pty.wait_on_screen("alpha-one", SIZE, t).await;
    pty.wait_on_screen("beta-two", SIZE, t).await;
    pty.wait_on_screen("running", SIZE, t).await;

    // Created through the API while top runs: it appears from the event stream.
    client.create(&sleeper("gamma-three")).await.unwrap();
    pty.wait_on_screen("gamma-three", SIZE, t).await;

    // The detail pane of the selected row (alpha-one, first by name), then its log view.
    pty.type_in(b"\r");
    pty.wait_on_screen("CPU% (15 min)", SIZE, t).await;
    pty.wait_on_screen("program: /bin/sleep 4321", SIZE, t)
        .await;
    pty.type_in(b"\r");
    pty.type_in(b"l");
    pty.wait_on_screen("logs of alpha-one (following)", SIZE, t)
        .await;
    pty.type_in(b"q");
    // A stop that is not confirmed does nothing.
    pty.type_in(b"s");
    pty.wait_on_screen("stop alpha-one?", SIZE, t).await;
    pty.type_in(b"n");
    pty.wait_on_screen("stop of alpha-one cancelled", SIZE, t)
        .await;
    assert!(alive(alpha));
    // Confirmed, it stops the tree.
    pty.type_in(b"s");
    pty.wait_on_screen("stop alpha-one? ", SIZE, t).await;
    pty.type_in(b"y");
    let start = Instant::now();
    while alive(alpha) {
        assert!(start.elapsed() < t, "alpha-one is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pty.wait_on_screen("finished", SIZE, t).await;
    assert_eq!(
        client.inspect("alpha-one").await.unwrap().view.state,
        "finished"
    );
    assert_eq!(
        client.inspect("beta-two").await.unwrap().view.state,
        "running"
    );

    pty.type_in(b"q");
    let exit = tokio::time::timeout(t, top.wait()).await.unwrap().unwrap();
    assert_eq!(code(&exit), 0, "{:?}", pty.text());
    // The alternate screen was left and the terminal's modes are as they were. top's last
    // bytes can still be on their way through the pty to our reader when it has exited.
    pty.wait_for("\x1b[?1049l", t).await;
    assert_eq!(pty.local_modes(), modes_before);
    let _dir = served.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_top_refuses_and_points_at_ps_json() {
    let (_, err, exit) = pm(&["top", "--state-dir", "/nonexistent-claude-pm"], &[]).await;
    assert_eq!(code(&exit), 125);
    assert!(
        err.contains("needs a terminal") && err.contains("ps --json"),
        "{err}"
    );
}

/// A resize redraws at the new size; Ctrl-C leaves at once with the terminal restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_follows_a_resize_and_ctrl_c_restores_the_terminal() {
    let _serial = crate::SERIAL.lock().await;
    let served = Served::start("", &[]).await;
    let client = served.client();
    client.create(&sleeper("resized-one")).await.unwrap();
    pid_of(&client, "resized-one").await;
    let mut pty = Pty::open();
    pty.set_size(30, 120);
    let modes_before = pty.local_modes();
    let mut top = top_on(&pty, &served).await;
    let t = Duration::from_secs(10);
    pty.wait_on_screen("resized-one", (30, 120), t).await;
    // Narrower: the kernel tells top (SIGWINCH), which draws its frame at the new width.
    pty.set_size(20, 90);
    pty.wait_on_screen("1 of 1 sessions ─", (20, 90), t).await;
    let screen = pty.screen(20, 90);
    let frame = screen.lines().next().unwrap_or_default().to_owned();
    assert_eq!(frame.chars().count(), 90, "{screen}");
    pty.type_in(&[0x03]);
    let exit = tokio::time::timeout(t, top.wait()).await.unwrap().unwrap();
    assert_eq!(code(&exit), 0, "{:?}", pty.text());
    assert_eq!(pty.local_modes(), modes_before);
    let _dir = served.drain().await;
}
