//! Everything claude-pm itself prints goes through here, so a closed or full stdout or stderr
//! is an outcome, never a panic (`println!` panics on `EPIPE` and `ENOSPC`).
//!
//! A failed write to stdout is remembered: [`exit_status`] turns it into the status a shell
//! expects (141 for a reader that went away, as if SIGPIPE had ended us; 1 with a message for
//! any other error, as `ls > /dev/full` does). A failed write to stderr has nowhere to be
//! reported and is dropped.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};

/// The errno of the first failed write to stdout (0: none).
static STDOUT_FAILED: AtomicI32 = AtomicI32::new(0);

/// `EPIPE`'s errno on Linux.
const EPIPE: i32 = 32;

/// Print a line to stdout (see the module docs for errors).
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::stdout_line(format_args!($($arg)*)) };
}

/// Print a line to stderr, dropped if stderr is gone.
macro_rules! tell {
    ($($arg:tt)*) => { $crate::output::stderr_line(format_args!($($arg)*)) };
}

pub(crate) use {say, tell};

pub(crate) fn stdout_line(args: fmt::Arguments<'_>) {
    if STDOUT_FAILED.load(Ordering::Relaxed) != 0 {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        let errno = e.raw_os_error().unwrap_or(-1);
        let _ = STDOUT_FAILED.compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Write `bytes` to stdout as they are (a child's output passing through); false once stdout
/// failed (the error is remembered as for [`stdout_line`]).
pub(crate) fn stdout_bytes(bytes: &[u8]) -> bool {
    if STDOUT_FAILED.load(Ordering::Relaxed) != 0 {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(-1);
            let _ = STDOUT_FAILED.compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
            false
        }
    }
}

pub(crate) fn stderr_line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Write `bytes` to stderr as they are (the status line), dropped if stderr is gone.
pub(crate) fn stderr_raw(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|()| err.flush());
}

/// The status to exit with: `status`, unless writing to stdout failed (141 when the reader went
/// away, 1 after a message for any other error).
pub(crate) fn exit_status(status: u8) -> u8 {
    match STDOUT_FAILED.load(Ordering::Relaxed) {
        0 => status,
        EPIPE => crate::exit::READER_GONE,
        errno => {
            tell!(
                "claude-pm: cannot write to stdout: {}",
                std::io::Error::from_raw_os_error(errno)
            );
            if status == 0 {
                1
            } else {
                status
            }
        }
    }
}
