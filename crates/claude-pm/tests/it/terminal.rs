//! claude-pm on a real terminal (a pty that is its controlling terminal): the child gets the
//! terminal, job control works as in a shell, the terminal's modes come back afterwards.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claude_manager::proc::{spawn, Child, EnvPolicy, ProcessConfig};

use crate::cli::code;

/// A pty whose output is collected in the background. It holds its own slave descriptor, so
/// the terminal is not hung up (and unread output dropped) when claude-pm's side closes.
pub(crate) struct Pty {
    master: std::fs::File,
    pub(crate) slave: String,
    seen: Arc<Mutex<Vec<u8>>>,
    _hold: std::fs::File,
}

impl Pty {
    pub(crate) fn open() -> Pty {
        let (master, slave) = crate::cli::open_pty();
        let hold = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&slave)
            .unwrap();
        let mut reader = master.try_clone().unwrap();
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let into = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            slave,
            seen,
            _hold: hold,
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    pub(crate) async fn wait_for(&self, what: &str, limit: Duration) {
        let start = Instant::now();
        while !self.text().contains(what) {
            assert!(start.elapsed() < limit, "no {what:?} in {:?}", self.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// What a terminal of `rows` x `cols` shows after everything written so far.
    pub(crate) fn screen(&self, rows: u16, cols: u16) -> String {
        let mut parser = vt100::Parser::new(rows, cols, 0);
        parser.process(&self.seen.lock().unwrap());
        parser.screen().contents()
    }

    /// Wait until the `rows` x `cols` screen shows `what`.
    pub(crate) async fn wait_on_screen(
        &self,
        what: &str,
        (rows, cols): (u16, u16),
        limit: Duration,
    ) {
        let start = Instant::now();
        while !self.screen(rows, cols).contains(what) {
            assert!(
                start.elapsed() < limit,
                "no {what:?} on the screen:\n{}",
                self.screen(rows, cols)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Give the terminal `rows` x `cols` (a new pty has no size; a full-screen view needs one).
    pub(crate) fn set_size(&self, rows: u16, cols: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass, on a descriptor we own.
        let set = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(set, 0);
    }

    /// The terminal's local modes, read through the slave side.
    pub(crate) fn local_modes(&self) -> libc::tcflag_t {
        // SAFETY: a zeroed termios is valid; tcgetattr fills the struct we pass.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let got = unsafe { libc::tcgetattr(self._hold.as_raw_fd(), &mut t) };
        assert_eq!(got, 0);
        t.c_lflag
    }
}

/// `claude-pm run ARGS -- sh -c SCRIPT` in a new session whose controlling terminal is `pty`
/// (as an interactive shell would start it), stdio on the terminal.
async fn on_terminal(pty: &Pty, args: &str, script: &str) -> Child {
    let line = format!(
        "exec setsid --wait --ctty \"$0\" run {args} -- sh -c '{script}' <{0} >{0} 2>{0}",
        pty.slave
    );
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", &line, env!("CARGO_BIN_EXE_claude-pm")])
        .env_policy(EnvPolicy::Inherit)
        .env_remove("CLAUDE_PM_LOG")
        .build()
        .unwrap();
    spawn(&config).await.unwrap()
}

/// The pid of claude-pm under `setsid --wait` (its only child).
fn claude_pm_under(setsid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{setsid}/task/{setsid}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.trim_start().chars().next())
        .unwrap_or('?')
}

/// A child that reads the terminal gets it: before, it was a background job, stopped by
/// SIGTTIN, judged unhealthy and killed a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_reading_the_terminal_gets_it() {
    let mut pty = Pty::open();
    let mut child = on_terminal(
        &pty,
        "--health-interval 100ms",
        "echo asking; read x; echo \"got $x\"",
    )
    .await;
    pty.wait_for("asking", Duration::from_secs(10)).await;
    // Well past a health interval: a SIGTTIN stop would have been acted on by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    pty.type_in(b"hello\n");
    let exit = child.wait().await.unwrap();
    assert_eq!(code(&exit), 0, "{:?}", pty.text());
    pty.wait_for("got hello", Duration::from_secs(5)).await;
}

/// Ctrl-Z suspends the child and claude-pm with it, as a shell job; nothing is judged
/// unhealthy meanwhile; SIGCONT (what `fg` sends) continues both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_z_suspends_the_child_and_sigcont_resumes_it() {
    let mut pty = Pty::open();
    let mut child = on_terminal(
        &pty,
        "--health-interval 100ms",
        "echo ready; sleep 1; echo done",
    )
    .await;
    pty.wait_for("ready", Duration::from_secs(10)).await;
    pty.type_in(&[0x1a]); // Ctrl-Z
    let pm = claude_pm_under(child.pid());
    let start = Instant::now();
    while state(pm) != 'T' {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "claude-pm did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Suspended longer than the child's own sleep: it must not have finished, nor been killed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!pty.text().contains("done"), "{:?}", pty.text());
    assert_eq!(state(pm), 'T');
    // SAFETY: kill on a pid of this test's own tree.
    unsafe {
        libc::kill(pm as i32, libc::SIGCONT);
    }
    let exit = child.wait().await.unwrap();
    assert_eq!(code(&exit), 0, "{:?}", pty.text());
    pty.wait_for("done", Duration::from_secs(5)).await;
    assert!(!pty.text().contains("unhealthy"), "{:?}", pty.text());
}

/// A child that changes the terminal's modes (`stty -echo`, as any full-screen program does)
/// may: it holds the terminal; and the modes are restored when the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_modes_come_back_after_the_child_changed_them() {
    let pty = Pty::open();
    assert_ne!(pty.local_modes() & libc::ECHO, 0);
    let mut child = on_terminal(&pty, "", "stty -echo && echo changed").await;
    let exit = child.wait().await.unwrap();
    assert_eq!(code(&exit), 0, "{:?}", pty.text());
    pty.wait_for("changed", Duration::from_secs(5)).await;
    assert_ne!(
        pty.local_modes() & libc::ECHO,
        0,
        "echo is still off after claude-pm ended"
    );
}
