//! The crate's OS touchpoints: process creation, pidfds, the `/proc` tree scan.

pub(crate) mod fds;
pub(crate) mod pidfd;
pub(crate) mod sandbox;
pub(crate) mod spawn;
pub(crate) mod tree;

/// Make this process a child subreaper: orphaned descendants of our children are re-parented to
/// us instead of init, so they stay visible (their parent pid is ours) until we reap them.
/// Set once this process became a subreaper through [`set_subreaper`]: every orphan zombie
/// re-parented here is then ours to reap.
pub(crate) static SUBREAPER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn set_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        SUBREAPER.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
