//! Measurements of real processes, each against what the process is known to do.

use std::io::Write;
use std::time::{Duration, Instant};

use claude_health::{Error, ProcState, Sampler};
use claude_proc::{spawn, Child, OutputEvent, OutputMode, ProcessConfig, StdinMode};

use crate::SERIAL;

const HELPER_ENV: &str = "CLAUDE_HEALTH_TEST_HELPER";
const MIB: u64 = 1 << 20;

/// Not a test of its own: the entry point of helper processes (does nothing otherwise).
#[test]
fn helper_entry() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut out = std::io::stdout();
    match mode.as_str() {
        "hold300" => {
            println!("before");
            out.flush().unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let held = vec![7u8; (300 * MIB) as usize];
            println!("after {}", held.len());
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs(100));
            drop(held);
        }
        writer if writer.starts_with("write:") => {
            // write:DIR: 1 MiB every 50 ms (20 MiB/s), paced by absolute deadlines.
            let dir = &writer["write:".len()..];
            let mut file = std::fs::File::create(format!("{dir}/out")).unwrap();
            let block = vec![1u8; MIB as usize];
            println!("writing");
            out.flush().unwrap();
            let start = Instant::now();
            for i in 1..=400u32 {
                file.write_all(&block).unwrap();
                let next = start + Duration::from_millis(50) * i;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
        _ => {}
    }
}

async fn helper(mode: &str) -> (Child, claude_proc::OutputReceiver) {
    let config = ProcessConfig::builder(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sampler::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .stdin(StdinMode::Piped)
        .stdout(OutputMode::lines())
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let out = child.take_stdout().unwrap();
    (child, out)
}

async fn wait_for(out: &mut claude_proc::OutputReceiver, word: &str) {
    while let Some(event) = out.recv().await {
        if let OutputEvent::Line(l) = event {
            if String::from_utf8_lossy(&l).contains(word) {
                return;
            }
        }
    }
    panic!("helper ended before printing {word}");
}

fn sh(script: &str) -> ProcessConfig {
    ProcessConfig::builder("/bin/sh")
        .args(["-c", script])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_measures_one_core() {
    let _serial = SERIAL.lock().await;
    let mut child = spawn(&sh("while :; do :; done")).await.unwrap();
    let sampler = Sampler::default();
    // The kernel's own clock of the task's time on a CPU, in nanoseconds: the reference the
    // sampler's percentage must match, however busy the machine is.
    let on_cpu = |pid: u32| -> f64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, ref_before) = (sampler.tree(child.pid()).unwrap(), on_cpu(child.pid()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, ref_after) = (sampler.tree(child.pid()).unwrap(), on_cpu(child.pid()));
    let cpu = after.rates_since(&before).cpu_percent;
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let reference = (ref_after - ref_before) / 1e9 / secs * 100.0;
    child.stop().await.unwrap();
    // One core on an idle machine; whatever the scheduler gave it on a loaded one.
    assert!(reference > 30.0, "the loop barely ran ({reference:.1}%)");
    assert!(
        (cpu - reference).abs() <= 10.0,
        "busy loop measured {cpu:.1}% of a core, the kernel says {reference:.1}%"
    );
    assert_eq!(after.root().unwrap().state, ProcState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_megabytes_measure_within_five_percent() {
    let _serial = SERIAL.lock().await;
    let (mut child, mut out) = helper("hold300").await;
    let stdin = child.take_stdin().unwrap();
    wait_for(&mut out, "before").await;
    let sampler = Sampler::default();
    let before = sampler.tree(child.pid()).unwrap().totals.rss_bytes;
    stdin.write_line(b"go").await.unwrap();
    wait_for(&mut out, "after").await;
    let after = sampler.tree(child.pid()).unwrap().totals.rss_bytes;
    child.stop().await.unwrap();
    let held = after.saturating_sub(before) as f64;
    let expected = (300 * MIB) as f64;
    assert!(
        (held - expected).abs() <= expected * 0.05,
        "measured {:.1} MiB held, expected 300",
        held / MIB as f64
    );
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_rate_measures_within_ten_percent() {
    let _serial = SERIAL.lock().await;
    // On the target directory's disk, not a tmpfs: only storage writes are counted.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (mut child, mut out) = helper(&format!("write:{}", dir.path().display())).await;
    wait_for(&mut out, "writing").await;
    let sampler = Sampler::default();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sampler.tree(child.pid()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sampler.tree(child.pid()).unwrap();
    child.stop().await.unwrap();
    let rate = after.rates_since(&before).write_bytes_per_sec / MIB as f64;
    assert!(
        (18.0..=22.0).contains(&rate),
        "writer measured {rate:.2} MiB/s, expected 20"
    );
}

#[tokio::test]
async fn a_tree_of_three_is_summed() {
    let mut child = spawn(&sh("sleep 100 & sleep 100 & echo started; wait"))
        .await
        .unwrap();
    let sampler = Sampler::default();
    let mut tree = sampler.tree(child.pid()).unwrap();
    let sleeps =
        |t: &claude_health::TreeSample| t.processes.iter().filter(|p| p.name == "sleep").count();
    for _ in 0..200 {
        if tree.totals.processes == 3 && sleeps(&tree) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        tree = sampler.tree(child.pid()).unwrap();
    }
    assert_eq!(tree.totals.processes, 3);
    let names: Vec<&str> = tree.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "sleep").count(),
        2,
        "{names:?}"
    );
    assert_eq!(tree.totals.threads, 3);
    assert!(tree.totals.rss_bytes >= tree.processes.iter().map(|p| p.rss_bytes).max().unwrap());
    assert!(tree.totals.open_fds >= 3);
    child.stop().await.unwrap();
}

#[tokio::test]
async fn stopped_and_zombie_processes_are_seen() {
    // The sleep that replaces sh never reaps its child: a zombie below it.
    let mut child = spawn(&sh("sleep 0.05 & exec sleep 100")).await.unwrap();
    let sampler = Sampler::default();
    let mut zombie = false;
    for _ in 0..100 {
        let tree = sampler.tree(child.pid()).unwrap();
        if tree.processes.iter().any(|p| p.state == ProcState::Zombie) {
            zombie = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(zombie, "the unreaped child was not seen as a zombie");
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let rc = unsafe { libc::kill(child.pid() as i32, libc::SIGSTOP) };
    assert_eq!(rc, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        sampler.process(child.pid()).unwrap().state,
        ProcState::Stopped
    );
    // SAFETY: as above.
    unsafe { libc::kill(child.pid() as i32, libc::SIGCONT) };
    let pid = child.pid();
    child.stop().await.unwrap();
    assert!(matches!(sampler.tree(pid), Err(Error::ProcessGone { .. })));
}

/// Descriptors of this test process that point into `/proc/<pid>/` for any of `pids`.
fn descriptors_into(pids: &[u32]) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            pids.iter()
                .any(|p| t == format!("/proc/{p}") || t.starts_with(&format!("/proc/{p}/")))
        })
        .count()
}

#[tokio::test]
async fn a_watch_follows_the_tree_and_gives_back_its_descriptors() {
    let mut child = spawn(&sh("sleep 1 & sleep 100 & echo started; wait"))
        .await
        .unwrap();
    let sampler = Sampler::default();
    let mut watch = sampler.watch(child.pid());
    let mut tree = watch.sample().unwrap();
    // Settled: both children are `sleep` inside their nanosleep (the loader, which opens and
    // closes files, is done), so descriptor counts hold still between the reads below.
    let settled = |t: &claude_health::TreeSample| {
        t.totals.processes == 3
            && t.processes.iter().skip(1).all(|p| {
                p.name == "sleep" && p.wchan.as_deref().is_some_and(|w| w.contains("nanosleep"))
            })
    };
    for _ in 0..400 {
        if settled(&tree) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        tree = watch.sample().unwrap();
    }
    assert!(settled(&tree), "{:?}", tree.processes);
    assert_eq!(tree.totals.processes, 3, "{:?}", tree.processes);
    let pids: Vec<u32> = tree.processes.iter().map(|p| p.pid).collect();
    // Directory + stat, status, io, wchan and children per process, really open.
    assert_eq!(watch.descriptors(), 18);
    assert_eq!(descriptors_into(&pids), 18);
    // The same figures as a fresh read (CPU may tick in between; the rest is steady).
    let fresh = sampler.tree(child.pid()).unwrap();
    assert_eq!(fresh.totals.processes, 3);
    assert_eq!(fresh.totals.open_fds, tree.totals.open_fds);
    assert_eq!(fresh.totals.threads, tree.totals.threads);
    // The short sleep exits and is reaped: the watch lets go of it.
    for _ in 0..400 {
        tree = watch.sample().unwrap();
        if tree.totals.processes == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tree.totals.processes, 2);
    assert_eq!(watch.descriptors(), 12);
    assert_eq!(descriptors_into(&pids), 12);
    child.stop().await.unwrap();
    assert!(matches!(watch.sample(), Err(Error::ProcessGone { .. })));
    assert_eq!(watch.descriptors(), 0);
    assert_eq!(descriptors_into(&pids), 0);
}

#[tokio::test]
async fn open_descriptors_match_a_listing() {
    // Five descriptors beyond the standard three.
    let mut child = spawn(&sh("exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null; echo ready; exec sleep 100"))
        .await
        .unwrap();
    let sampler = Sampler::default();
    let listed = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
            .unwrap()
            .count() as u64
    };
    // The dynamic loader of `sleep` opens and closes files right after the
    // exec, so compare only once `sleep` is in its nanosleep: from then on
    // its descriptor table does not change.
    let mut settled = None;
    for _ in 0..400 {
        let sample = sampler.process(child.pid()).unwrap();
        let in_nanosleep = sample
            .wchan
            .as_deref()
            .is_some_and(|w| w.contains("nanosleep"));
        if sample.name == "sleep" && sample.state == ProcState::Sleeping && in_nanosleep {
            settled = Some(sample);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let settled = settled.expect("sleep never reached its nanosleep");
    let listing = listed();
    let again = sampler.process(child.pid()).unwrap().open_fds;
    assert_eq!(settled.open_fds, Some(listing));
    assert_eq!(again, Some(listing));
    // 0, 1, 2 and the five the shell opened; nothing this process inherited.
    assert_eq!(listing, 8);
    child.stop().await.unwrap();
}
