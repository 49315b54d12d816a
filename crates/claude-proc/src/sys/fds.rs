//! Descriptor helpers of the spawn: the parent's duplicates above the child's targets, and the
//! child's close-on-exec sweep.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};

/// The soft `RLIMIT_NOFILE` of this process (no descriptor can be at or above it), at most 2^20.
pub(crate) fn fd_ceiling() -> RawFd {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1 << 20;
    }
    RawFd::try_from(lim.rlim_cur.min(1 << 20)).unwrap_or(1 << 20)
}

pub(crate) fn dup_above(fd: &OwnedFd, floor: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if new < 0 {
        return Err(Error::last_os("duplicate a descriptor for the child"));
    }
    // SAFETY: `new` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Marks every descriptor from 3 up close-on-exec. Async-signal-safe: raw system calls only.
///
/// # Safety
/// Only for the child between clone and exec, whose descriptor table is its own.
pub(crate) unsafe fn close_inherited_on_exec(ceiling: RawFd) -> bool {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags in our own table.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    } == 0;
    if done {
        return true;
    }
    // SAFETY: errno of this thread.
    let errno = unsafe { *libc::__errno_location() };
    if errno != libc::ENOSYS && errno != libc::EINVAL {
        return false;
    }
    cloexec_each(3..ceiling);
    true
}

/// The fallback without `close_range`: close-on-exec on each descriptor of `fds` that exists.
/// Async-signal-safe.
fn cloexec_each(fds: std::ops::Range<RawFd>) {
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor that may not exist fails with EBADF, which is fine;
        // FD_CLOEXEC is the only descriptor flag, so nothing else is overwritten.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD reads the flags of a descriptor this test owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0);
        flags & libc::FD_CLOEXEC != 0
    }

    /// The fallback for kernels without `close_range` (never taken on this machine's kernel)
    /// marks the descriptors in its range and skips numbers that are not open.
    #[test]
    fn the_fcntl_fallback_marks_inherited_descriptors() {
        // SAFETY: open/fcntl/close on descriptors this test owns; only their flags are touched.
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            assert!(fd >= 3);
            let high = libc::fcntl(fd, libc::F_DUPFD, 300);
            assert!(high >= 300);
            assert!(!cloexec(fd) && !cloexec(high));
            // Ranges holding only these two (and numbers that are not open around `high`).
            cloexec_each(fd..fd + 1);
            cloexec_each(high - 2..high + 3);
            assert!(cloexec(fd) && cloexec(high));
            libc::close(fd);
            libc::close(high);
        }
    }
}
