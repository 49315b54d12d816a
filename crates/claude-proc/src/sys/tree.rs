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
        let Ok(dir) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut buf = [0u8; 1024];
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.read_stat(pid, &mut buf))
            .collect()
    }

    fn read_stat(&self, pid: u32, buf: &mut [u8; 1024]) -> Option<Entry> {
        let mut path = self.0.clone();
        path.push(pid.to_string());
        path.push("stat");
        let mut file = std::fs::File::open(&path).ok()?;
        let n = std::io::Read::read(&mut file, buf).ok()?;
        parse_stat(buf.get(..n)?)
    }

    /// Zombie children of this process that belonged to `tree`: in its process group (the
    /// leader is unreaped, so the id is not reused) or seen as a member (`seen`: pid and start
    /// time). Orphans a subreaper adopted that died after the last scan; the leader excluded.
    pub(crate) fn adopted_zombies(&self, tree: &TreeId, seen: &[(u32, u64)]) -> Vec<u32> {
        let mut children = Vec::new();
        self.children_of(self_pid(), &mut children);
        let mut buf = [0u8; 1024];
        children
            .into_iter()
            .filter(|pid| *pid != tree.leader)
            .filter(|pid| match self.read_stat(*pid, &mut buf) {
                Some(e) => !e.alive && (e.pgrp == tree.leader || seen.contains(&(e.pid, e.start))),
                None => false,
            })
            .collect()
    }

    /// Zombie children of this process that no live tree owns. When this process is a
    /// subreaper, every orphan re-parented here is ours to reap; a zombie that died after its
    /// tree's monitor finished would otherwise stay forever.
    pub(crate) fn orphan_zombies(&self) -> Vec<u32> {
        // A leader not registered yet would look like an orphan: sweep another time.
        if SPAWNING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return Vec::new();
        }
        let leaders = live_leaders();
        let mut children = Vec::new();
        self.children_of(self_pid(), &mut children);
        let mut buf = [0u8; 1024];
        children
            .into_iter()
            .filter(|pid| !leaders.contains(pid))
            .filter(|pid| self.read_stat(*pid, &mut buf).is_some_and(|e| !e.alive))
            .collect()
    }

    /// The start time of `pid`, if it exists.
    pub(crate) fn start_time(&self, pid: u32) -> Option<u64> {
        let mut buf = [0u8; 1024];
        self.read_stat(pid, &mut buf).map(|e| e.start)
    }

    /// Whether `pid`'s environment holds `marker`. A process in the middle of `execve` shows
    /// an empty (or unreadable) environment for a moment; that answer is retried for up to
    /// ~5 ms rather than taken as "not ours" (the soak found orphans escaping through that
    /// window: a background child exec'ing just as its shell exits).
    fn environ_has(&self, pid: u32, marker: &[u8]) -> bool {
        let path: PathBuf = self.0.join(pid.to_string()).join("environ");
        for attempt in 0..20 {
            match std::fs::read(&path) {
                Ok(bytes) if !bytes.is_empty() => return environ_contains(&bytes, marker),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
                _ if attempt < 19 => std::thread::sleep(std::time::Duration::from_micros(250)),
                _ => {}
            }
        }
        false
    }

    /// Every live member of the tree except the leader and `exclude` (our own pid).
    ///
    /// Uses the kernel's per-task `children` lists when they exist: the tree is walked down from
    /// the leader, and orphans are looked for only among the children of the processes an
    /// orphan can be re-parented to (this process, its ancestors, init), so the cost grows with
    /// the tree, not with the host. Without `children` files, every process is read.
    pub(crate) fn scan(&self, tree: &TreeId, extra: &[u32], exclude: u32) -> Vec<Member> {
        if self.has_children_files() {
            self.scan_walk(tree, extra, exclude)
        } else {
            self.scan_global(tree, extra, exclude)
        }
    }

    fn has_children_files(&self) -> bool {
        let probe = || {
            let me = self_pid().to_string();
            self.0
                .join(&me)
                .join("task")
                .join(&me)
                .join("children")
                .exists()
        };
        if self.0.as_os_str() == "/proc" {
            static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            *AVAILABLE.get_or_init(probe)
        } else {
            probe()
        }
    }

    /// First-level children of `pid`, over all its threads.
    fn children_of(&self, pid: u32, out: &mut Vec<u32>) {
        let task = self.0.join(pid.to_string()).join("task");
        let Ok(threads) = std::fs::read_dir(task) else {
            return;
        };
        for thread in threads.filter_map(|t| t.ok()) {
            if let Ok(text) = std::fs::read_to_string(thread.path().join("children")) {
                out.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }

    /// Children of `pid`'s main thread only. An orphan is re-parented to the first live thread
    /// of its new reaper, which is the main thread unless that one has exited.
    fn main_thread_children(&self, pid: u32, out: &mut Vec<u32>) {
        let id = pid.to_string();
        let path = self.0.join(&id).join("task").join(&id).join("children");
        match std::fs::read_to_string(path) {
            Ok(text) => out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            ),
            // The main thread is gone: look at every thread.
            Err(_) => self.children_of(pid, out),
        }
    }

    /// This process and its ancestors up to init: where an orphan of the tree can end up.
    /// Computed once for the real `/proc`: the chain can only lose members (a dead ancestor's
    /// orphans go further up the same chain), so the first answer stays a superset.
    fn reapers(&self) -> Vec<u32> {
        if self.0.as_os_str() == "/proc" {
            static CHAIN: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
            return CHAIN.get_or_init(|| self.reapers_now()).clone();
        }
        self.reapers_now()
    }

    fn reapers_now(&self) -> Vec<u32> {
        let mut chain = vec![self_pid()];
        let mut buf = [0u8; 1024];
        let mut pid = self_pid();
        while pid > 1 && chain.len() < 64 {
            match self.read_stat(pid, &mut buf) {
                Some(e) if e.ppid > 0 => {
                    chain.push(e.ppid);
                    pid = e.ppid;
                }
                _ => break,
            }
        }
        if !chain.contains(&1) {
            chain.push(1);
        }
        chain
    }

    fn scan_walk(&self, tree: &TreeId, extra: &[u32], exclude: u32) -> Vec<Member> {
        let leaders = live_leaders();
        let reapers = self.reapers();
        let mut buf = [0u8; 1024];
        let mut roots = vec![tree.leader];
        roots.extend_from_slice(extra);
        let mut adopted = Vec::new();
        for reaper in &reapers {
            adopted.clear();
            self.main_thread_children(*reaper, &mut adopted);
            for &child in &adopted {
                if child == tree.leader || leaders.contains(&child) || reapers.contains(&child) {
                    continue;
                }
                let Some(entry) = self.read_stat(child, &mut buf) else {
                    continue;
                };
                // Older than the tree, or a zombie (its environment is gone; nothing to signal).
                if entry.start < tree.leader_start || !entry.alive {
                    continue;
                }
                // In the leader's process group (its id is stable while the leader is
                // unreaped), or carrying the tree's marker (setsid escapees).
                if entry.pgrp == tree.leader || self.environ_has(child, &tree.marker) {
                    roots.push(child);
                }
            }
        }
        let mut seen: Vec<u32> = Vec::new();
        let mut queue = roots;
        while let Some(pid) = queue.pop() {
            if seen.contains(&pid) {
                continue;
            }
            seen.push(pid);
            self.children_of(pid, &mut queue);
        }
        seen.into_iter()
            .filter(|pid| *pid != tree.leader && *pid != exclude)
            .filter_map(|pid| self.read_stat(pid, &mut buf))
            .filter(|e| e.alive)
            .map(|e| Member {
                pid: e.pid,
                start: e.start,
                ppid: e.ppid,
            })
            .collect()
    }

    /// The same answer as [`ProcRoot::scan`], by reading every process on the host.
    pub(crate) fn scan_global(&self, tree: &TreeId, extra: &[u32], exclude: u32) -> Vec<Member> {
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

/// The entry of `/proc/<pid>/stat` bytes, through the workspace's one stat parser.
fn parse_stat(bytes: &[u8]) -> Option<Entry> {
    let s = crate::proc_stat::parse_proc_stat(bytes).ok()?;
    Some(Entry {
        pid: s.pid,
        ppid: s.ppid,
        pgrp: s.pgrp,
        start: s.starttime,
        alive: s.alive(),
    })
}

/// Spawns between clone and [`register_leader`].
static SPAWNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Marks a spawn in flight until dropped.
pub(crate) struct SpawnInFlight;

impl SpawnInFlight {
    pub(crate) fn enter() -> Self {
        SPAWNING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SpawnInFlight
    }
}

impl Drop for SpawnInFlight {
    fn drop(&mut self) {
        SPAWNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn leader_registry() -> &'static std::sync::Mutex<Vec<u32>> {
    static LEADERS: std::sync::OnceLock<std::sync::Mutex<Vec<u32>>> = std::sync::OnceLock::new();
    LEADERS.get_or_init(Default::default)
}

/// Leaders of live trees of this process: never members of another tree, so never read.
fn live_leaders() -> Vec<u32> {
    leader_registry()
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default()
}

/// Record a live leader (until [`forget_leader`]).
pub(crate) fn register_leader(pid: u32) {
    if let Ok(mut leaders) = leader_registry().lock() {
        leaders.push(pid);
    }
}

/// The leader was reaped.
pub(crate) fn forget_leader(pid: u32) {
    if let Ok(mut leaders) = leader_registry().lock() {
        leaders.retain(|p| *p != pid);
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

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "builds a raw tree to compare the two scans"
    )]
    fn walk_and_global_scans_agree_on_a_real_tree() {
        use std::io::BufRead;
        let marker = format!("CLAUDE_PROC_TREE=scan-test-{}", std::process::id());
        let (name, value) = marker.split_once('=').unwrap();
        let script = "sleep 100 & setsid sh -c 'sleep 100 & exec sleep 100' & (setsid sleep 100 &); echo ready; wait";
        let mut leader = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .env(name, value)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(leader.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let root = ProcRoot::default();
        let tree = TreeId {
            leader: leader.id(),
            leader_start: root.start_time(leader.id()).unwrap(),
            marker: marker.into_bytes(),
        };
        let mut walk: Vec<u32> = root
            .scan_walk(&tree, &[], 0)
            .iter()
            .map(|m| m.pid)
            .collect();
        let mut global: Vec<u32> = root
            .scan_global(&tree, &[], 0)
            .iter()
            .map(|m| m.pid)
            .collect();
        walk.sort();
        global.sort();
        for m in root.scan_global(&tree, &[], 0) {
            root.signal(&m, libc::SIGKILL);
        }
        let _ = leader.kill();
        let _ = leader.wait();
        // sleep, setsid sh's child sleep, setsid sh (exec'd into sleep), the orphaned sleep.
        assert_eq!(global.len(), 4, "{global:?}");
        assert_eq!(walk, global);
    }
}
