//! Waiting for and signalling one process through its pidfd: a recycled pid is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::status::RawExit;

/// Send `signal` through a pidfd. `Ok(false)` if the process is already gone (reaped).
pub(crate) fn send_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<bool> {
    // SAFETY: pidfd_send_signal on a descriptor we own; no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Open a pidfd for `pid` (for processes we did not create ourselves).
pub(crate) fn open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `waitid(P_PIDFD, pidfd, flags)` without rusage: the filled siginfo, or the OS error.
fn waitid(pidfd: &OwnedFd, flags: libc::c_int) -> std::io::Result<libc::siginfo_t> {
    // SAFETY: waitid on a pidfd we own with a zeroed siginfo we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(info)
    }
}

/// Read the exit status of an exited child without reaping it (`WNOWAIT`), or `None` while it
/// runs.
pub(crate) fn try_wait(pidfd: &OwnedFd) -> std::io::Result<Option<RawExit>> {
    let info = waitid(pidfd, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)?;
    // SAFETY: si_pid is valid for SIGCHLD siginfo filled by waitid; 0 means "still running".
    let pid = unsafe { info.si_pid() };
    if pid == 0 {
        return Ok(None);
    }
    // SAFETY: as above, si_status is valid when si_pid is set.
    let status = unsafe { info.si_status() };
    let exit = match info.si_code {
        libc::CLD_EXITED => RawExit {
            code: Some(status),
            signal: None,
        },
        libc::CLD_KILLED | libc::CLD_DUMPED => RawExit {
            code: None,
            signal: Some(status),
        },
        _ => return Ok(None),
    };
    Ok(Some(exit))
}

/// Reap an exited child and return the kernel's resource usage of it (`RUSAGE_BOTH`: the child
/// and the descendants it reaped), or `None` if it was not reaped (still running, or reaped
/// before). Raw `waitid`: glibc's wrapper has no rusage argument.
pub(crate) fn reap_with_usage(pidfd: &OwnedFd) -> Option<libc::rusage> {
    // SAFETY: waitid on a pidfd we own, with a zeroed siginfo and rusage we own.
    let (rc, info, usage) = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let mut usage: libc::rusage = std::mem::zeroed();
        let rc = libc::syscall(
            libc::SYS_waitid,
            libc::P_PIDFD,
            pidfd.as_raw_fd(),
            &mut info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOHANG,
            &mut usage as *mut libc::rusage,
        );
        (rc, info, usage)
    };
    // SAFETY: si_pid is valid for SIGCHLD siginfo filled by waitid; 0 means "still running".
    (rc == 0 && unsafe { info.si_pid() } != 0).then_some(usage)
}

/// The signal that stopped the child, while it is stopped (`WSTOPPED | WNOWAIT`: the state
/// stays reportable and exit statuses are untouched); `None` while it runs or once it is gone.
pub(crate) fn stop_signal(pidfd: &OwnedFd) -> Option<i32> {
    let info = waitid(pidfd, libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT).ok()?;
    // SAFETY: si_pid and si_status are valid for SIGCHLD siginfo filled by waitid.
    (unsafe { info.si_pid() } != 0 && info.si_code == libc::CLD_STOPPED)
        .then(|| unsafe { info.si_status() })
}

/// Whether the kernel said "core dumped" (needs a separate non-reaping query).
pub(crate) fn core_dumped(pidfd: &OwnedFd) -> bool {
    waitid(pidfd, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        .is_ok_and(|info| info.si_code == libc::CLD_DUMPED)
}
