//! Finding and signalling every process of one tree.
//!
//! A tree is: the leader's process group, everything whose parent chain reaches the leader, and
//! everything carrying the tree's marker variable (so a descendant that called `setsid` and was
//! orphaned to init is still found), plus what hooks report (cgroup members). Each member is
//! signalled through a pidfd opened after checking its start time, so a pid recycled between the
//! scan and the signal is never hit.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::sys::pidfd;

/// Identity of one tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeId {
    pub(crate) leader: u32,
    /// The leader's start time in clock ticks since boot (from `/proc/<pid>/stat`).
    pub(crate) leader_start: u64,
    /// `CLAUDE_PROC_TREE=<id>` as it appears in `/proc/<pid>/environ`.
    pub(crate) marker: Vec<u8>,
}

/// One process of the tree, other than the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) ppid: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    start: u64,
    alive: bool,
}

/// The `/proc` to read; tests may point it elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct ProcRoot(pub(crate) PathBuf);

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot(PathBuf::from("/proc"))
    }
}

impl ProcRoot {
    fn entries(&self) -> Vec<Entry> {
        let Ok(all) = procfs::process::all_processes_with_root(&self.0) else {
            return Vec::new();
        };
        all.filter_map(|p| p.ok())
            .filter_map(|p| p.stat().ok())
            .filter_map(|stat| {
                Some(Entry {
                    pid: u32::try_from(stat.pid).ok()?,
                    ppid: u32::try_from(stat.ppid).unwrap_or(0),
                    pgrp: u32::try_from(stat.pgrp).unwrap_or(0),
                    start: stat.starttime,
                    alive: !matches!(stat.state, 'Z' | 'X' | 'x'),
                })
            })
            .collect()
    }

    /// The start time of `pid`, if it exists.
    pub(crate) fn start_time(&self, pid: u32) -> Option<u64> {
        procfs::process::Process::new_with_root(self.0.join(pid.to_string()))
            .ok()?
            .stat()
            .ok()
            .map(|s| s.starttime)
    }

    fn environ_has(&self, pid: u32, marker: &[u8]) -> bool {
        let path: PathBuf = self.0.join(pid.to_string()).join("environ");
        match std::fs::read(&path) {
            Ok(bytes) => environ_contains(&bytes, marker),
            Err(_) => false,
        }
    }

    /// Every live member of the tree except the leader and `exclude` (our own pid).
    pub(crate) fn scan(&self, tree: &TreeId, extra: &[u32], exclude: u32) -> Vec<Member> {
        let entries = self.entries();
        let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            children.entry(e.ppid).or_default().push(i);
        }
        let mut member = vec![false; entries.len()];
        // Descendants by parent chain.
        let mut stack = vec![tree.leader];
        while let Some(parent) = stack.pop() {
            if let Some(kids) = children.get(&parent) {
                for &i in kids {
                    if let (Some(flag), Some(e)) = (member.get_mut(i), entries.get(i)) {
                        if !*flag {
                            *flag = true;
                            stack.push(e.pid);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (e, is_member) in entries.iter().zip(member) {
            if e.pid == tree.leader || e.pid == exclude || !e.alive {
                continue;
            }
            let found = is_member
                || e.pgrp == tree.leader
                || extra.contains(&e.pid)
                || (e.start >= tree.leader_start && self.environ_has(e.pid, &tree.marker));
            if found {
                out.push(Member {
                    pid: e.pid,
                    start: e.start,
                    ppid: e.ppid,
                });
            }
        }
        out
    }

    /// Signal `member` if it is still the process that was scanned. Returns whether it was hit.
    pub(crate) fn signal(&self, member: &Member, signal: i32) -> bool {
        let Ok(fd) = pidfd::open(member.pid) else {
            return false;
        };
        // The pidfd now pins one process; make sure it is the one we scanned.
        if self.start_time(member.pid) != Some(member.start) {
            return false;
        }
        pidfd::send_signal(&fd, signal).unwrap_or(false)
    }
}

/// Whether a NUL-separated environment block holds exactly `entry`.
pub(crate) fn environ_contains(block: &[u8], entry: &[u8]) -> bool {
    block.split(|b| *b == 0).any(|item| item == entry)
}

/// Signal a whole process group (only while its leader is unreaped, so the id is not reused).
pub(crate) fn signal_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with a negative pid signals a group; no memory is involved.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Reap `pid` if it is a zombie child of ours (an orphan adopted as subreaper).
pub(crate) fn reap_adopted(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let mut status = 0;
    // SAFETY: waitpid on one specific pid with WNOHANG.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

/// Our own pid.
pub(crate) fn self_pid() -> u32 {
    std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn environ_match_is_exact() {
        let block = b"A=1\0CLAUDE_PROC_TREE=abc\0B=2\0";
        assert!(environ_contains(block, b"CLAUDE_PROC_TREE=abc"));
        assert!(!environ_contains(block, b"CLAUDE_PROC_TREE=ab"));
        assert!(!environ_contains(
            b"XCLAUDE_PROC_TREE=abc\0",
            b"CLAUDE_PROC_TREE=abc"
        ));
    }

    #[test]
    fn fake_proc_root_scan_finds_group_chain_and_marker() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: u32, ppid: u32, pgrp: u32, start: u64, state: char, env: &[u8]| {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let stat = format!(
                "{pid} (x y) {state} {ppid} {pgrp} {pgrp} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
            );
            std::fs::write(d.join("stat"), stat).unwrap();
            std::fs::write(d.join("environ"), env).unwrap();
        };
        write(100, 1, 100, 500, 'S', b""); // leader
        write(101, 100, 100, 510, 'S', b""); // child in group
        write(102, 101, 102, 520, 'S', b""); // setsid grandchild, parent alive
        write(103, 1, 103, 530, 'S', b"CLAUDE_PROC_TREE=t1\0"); // orphan with marker
        write(104, 1, 104, 530, 'S', b"CLAUDE_PROC_TREE=t2\0"); // other tree
        write(105, 1, 105, 400, 'S', b"CLAUDE_PROC_TREE=t1\0"); // older than leader: not ours
        write(106, 100, 100, 540, 'Z', b""); // zombie: not alive
        let root = ProcRoot(dir.path().to_path_buf());
        let tree = TreeId {
            leader: 100,
            leader_start: 500,
            marker: b"CLAUDE_PROC_TREE=t1".to_vec(),
        };
        let mut pids: Vec<u32> = root.scan(&tree, &[], 0).iter().map(|m| m.pid).collect();
        pids.sort();
        assert_eq!(pids, vec![101, 102, 103]);
    }

    proptest! {
        #[test]
        fn environ_contains_never_panics(block in proptest::collection::vec(any::<u8>(), 0..256),
                                         entry in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = environ_contains(&block, &entry);
        }
    }
}
