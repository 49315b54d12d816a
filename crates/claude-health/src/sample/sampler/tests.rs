//! The sampler against fixture `/proc` directories.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::sample::procdir::ProcRoot;

fn fixture(
    dir: &Path,
    pid: u32,
    ppid: u32,
    state: char,
    utime: u64,
    rss_pages: u64,
    children: &[u32],
) {
    let d = dir.join(pid.to_string());
    std::fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
    std::fs::create_dir_all(d.join("fd")).unwrap();
    for fd in 0..3 {
        std::fs::write(d.join("fd").join(fd.to_string()), "").unwrap();
    }
    std::fs::write(
        d.join("stat"),
        format!("{pid} (worker (x)) {state} {ppid} {pid} {pid} 0 -1 4194560 10 0 0 0 {utime} 50 0 0 20 0 3 0 1000 100000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("status"),
        format!("Name:\tworker\nState:\t{state} (x)\nPid:\t{pid}\nPPid:\t{ppid}\nThreads:\t3\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n"),
    )
    .unwrap();
    std::fs::write(d.join("io"), "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n").unwrap();
    std::fs::write(d.join("wchan"), "do_select").unwrap();
    let list: Vec<String> = children.iter().map(u32::to_string).collect();
    std::fs::write(
        d.join("task").join(pid.to_string()).join("children"),
        list.join(" "),
    )
    .unwrap();
}

#[test]
fn fixture_tree_is_summed_and_a_vanished_child_skipped() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), 10, 1, 'S', 100, 256, &[11, 12, 99]);
    fixture(dir.path(), 11, 10, 'R', 200, 512, &[13]);
    fixture(dir.path(), 12, 10, 'Z', 0, 0, &[]);
    fixture(dir.path(), 13, 11, 'D', 50, 128, &[]);
    // 99 is listed as a child but has no directory: it exited meanwhile.
    let sampler = Sampler::new(ProcRoot::new(dir.path()));
    let tree = sampler.tree(10).unwrap();
    assert_eq!(tree.totals.processes, 4);
    let ticks = sampler.ticks_per_sec;
    let expected_ticks = (100 + 50) + (200 + 50) + 50 + (50 + 50);
    assert_eq!(
        tree.totals.cpu_time,
        Duration::from_nanos(expected_ticks * 1_000_000_000 / ticks)
    );
    assert_eq!(tree.totals.rss_bytes, (256 + 512 + 128) * sampler.page_size);
    assert_eq!(tree.totals.read_bytes, 4 * 4096);
    assert_eq!(tree.totals.voluntary_switches, 28);
    assert_eq!(tree.totals.open_fds, 12);
    let root = tree.root().unwrap();
    assert_eq!(root.name, "worker (x)");
    assert_eq!(root.wchan.as_deref(), Some("do_select"));
    let states: Vec<ProcState> = tree.processes.iter().map(|p| p.state).collect();
    assert!(states.contains(&ProcState::Zombie) && states.contains(&ProcState::DiskSleep));
    assert!(matches!(
        sampler.tree(42),
        Err(Error::ProcessGone { pid: 42 })
    ));
}

#[test]
fn a_watch_rereads_kept_files_and_drops_what_left() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), 10, 1, 'S', 100, 256, &[11]);
    fixture(dir.path(), 11, 10, 'S', 10, 1, &[]);
    let sampler = Sampler::new(ProcRoot::new(dir.path()));
    let mut watch = sampler.watch(10);
    let first = watch.sample().unwrap();
    assert_eq!(first.totals.processes, 2);
    // Directory + stat, status, io, wchan for each (the fixtures have three threads, so
    // their children are listed per thread, not through a kept file).
    assert_eq!(watch.descriptors(), 10);
    // New content is seen through the kept descriptors; the child left the tree.
    fixture(dir.path(), 10, 1, 'R', 300, 256, &[]);
    let second = watch.sample().unwrap();
    assert_eq!(second.totals.processes, 1);
    assert_eq!(second.root().unwrap().state, ProcState::Running);
    assert_eq!(
        second.totals.cpu_time,
        Duration::from_nanos((300 + 50) * 1_000_000_000 / sampler.ticks_per_sec)
    );
    assert_eq!(second.totals, sampler.tree(10).unwrap().totals);
    assert_eq!(watch.descriptors(), 5);
}

#[test]
fn a_garbled_stat_is_a_parse_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), 10, 1, 'S', 1, 1, &[]);
    std::fs::write(dir.path().join("10").join("stat"), "10 (x) S").unwrap();
    match Sampler::new(ProcRoot::new(dir.path())).process(10) {
        Err(e @ Error::Parse { .. }) => assert!(e.to_string().contains("10/stat")),
        other => panic!("{other:?}"),
    }
}
