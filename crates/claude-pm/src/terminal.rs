//! Job control for a child on claude-pm's terminal, done the way a shell does it.
//!
//! claude-proc starts every child in its own process group, so without help a child that reads
//! the terminal or changes its modes is a background job: the kernel stops it with `SIGTTIN` or
//! `SIGTTOU`. When stdin is a terminal, claude-pm therefore
//! - puts the run's process group in the terminal's foreground while claude-pm itself is there,
//!   and saves the terminal's modes first;
//! - when the child is stopped by job control (Ctrl-Z sends it `SIGTSTP`; a read from the
//!   background sends `SIGTTIN`), takes the terminal back, restores its modes and stops itself,
//!   so the user's shell sees the job stopped;
//! - when continued (`fg`, `bg`, `SIGCONT`), hands the terminal back if it is in the foreground
//!   again and continues the child's group;
//! - passes a `SIGTSTP` sent to claude-pm on to the child's group;
//! - takes the terminal back and restores its modes when the session ends.
//!
//! Calls that change the terminal from the background are made with `SIGTTOU` blocked on the
//! calling thread, which the kernel allows.

use nix::sys::signal::{kill, killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{getpgrp, isatty, tcgetpgrp, tcsetpgrp, Pid};

/// claude-pm's terminal (its stdin), when it has one.
pub(crate) struct Terminal {
    own_group: Pid,
    /// The modes to restore, saved before any child ran.
    saved: Option<Termios>,
}

impl Terminal {
    /// Stdin's terminal, if stdin is one (claude-pm may be in its background now); its modes
    /// are saved for [`Terminal::take_back`].
    pub(crate) fn of_stdin() -> Option<Terminal> {
        if !isatty(0).unwrap_or(false) {
            return None;
        }
        Some(Terminal {
            own_group: getpgrp(),
            saved: tcgetattr(std::io::stdin()).ok(),
        })
    }

    /// Whether claude-pm's group is the terminal's foreground group now (then a run may take
    /// it: [`claude_manager::SessionSpec::foreground_terminal`]).
    pub(crate) fn in_foreground(&self) -> bool {
        tcgetpgrp(std::io::stdin()).is_ok_and(|group| group == self.own_group)
    }

    /// Give the terminal to process group `group` if claude-pm holds it now.
    fn hand_to(&self, group: u32) {
        let Ok(group) = libc::pid_t::try_from(group) else {
            return;
        };
        if self.in_foreground() {
            let _ = tcsetpgrp(std::io::stdin(), Pid::from_raw(group));
        }
    }

    /// Take the terminal back from a child that holds it and restore the modes saved at the
    /// start (a child may have left it without echo, in raw mode).
    pub(crate) fn take_back(&self) {
        with_sigttou_blocked(|| {
            if let Ok(foreground) = tcgetpgrp(std::io::stdin()) {
                // Only from a run of ours (alive or gone): never from a job the shell put in
                // front since.
                if foreground != self.own_group
                    && foreground.as_raw() > 0
                    && ours_or_gone(foreground)
                {
                    let _ = tcsetpgrp(std::io::stdin(), self.own_group);
                }
            }
            if let Some(modes) = &self.saved {
                let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, modes);
            }
        });
    }

    /// The child's group was stopped by job control: take the terminal back and stop claude-pm
    /// too, so the shell sees the job stopped. Returns once claude-pm is continued.
    pub(crate) fn suspend(&self) {
        self.take_back();
        stop_self();
    }

    /// claude-pm was continued: give the terminal back to `group` if claude-pm is in the
    /// foreground (after `fg`, not `bg`), then continue the group.
    pub(crate) fn resume(&self, group: u32) {
        self.hand_to(group);
        continue_group(group);
    }
}

/// Whether process group `group` is led by a child of this process (a run's leader), or its
/// leader is gone (a run that ended).
fn ours_or_gone(group: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{group}/stat")) {
        Err(_) => true,
        Ok(stat) => claude_manager::proc::parse_proc_stat(stat.as_bytes())
            .is_ok_and(|s| s.ppid == std::process::id()),
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.take_back();
    }
}

/// Stop claude-pm itself (`SIGSTOP`); returns once it is continued.
pub(crate) fn stop_self() {
    let _ = kill(Pid::this(), Signal::SIGSTOP);
}

/// Send `SIGCONT` to process group `group`.
pub(crate) fn continue_group(group: u32) {
    signal_group(group, Signal::SIGCONT);
}

/// Send `signal` to process group `group` (a live run's: its leader is unreaped while the run
/// is live, so the group cannot be another's).
pub(crate) fn signal_group(group: u32, signal: Signal) {
    if let Ok(group) = libc::pid_t::try_from(group) {
        let _ = killpg(Pid::from_raw(group), signal);
    }
}

/// Run `f` with `SIGTTOU` blocked on this thread, so a terminal call from the background does
/// not stop claude-pm.
fn with_sigttou_blocked(f: impl FnOnce()) {
    let mut block = SigSet::empty();
    block.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old)).is_ok();
    f();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
