//! The crate's OS touchpoints: process creation, pidfds, the `/proc` tree scan.

pub(crate) mod pidfd;
pub(crate) mod spawn;
pub(crate) mod tree;

/// Make this process a child subreaper: orphaned descendants of our children are re-parented to
/// us instead of init, so they stay visible (their parent pid is ours) until we reap them.
pub(crate) fn set_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
