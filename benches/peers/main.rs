//! `bench-peers`: `claude-pm serve` against pm2 and supervisord in one run, each supervising the
//! same idle children (issue #14). `cargo xtask bench-peers` installs the peers under
//! `target/peers/`, builds claude-pm and this program in release mode, and runs it; the
//! results are in BENCHMARKS.md.
//!
//! Measured per manager, on the manager's own process (its children excluded):
//! - resident memory (VmRSS, and its anonymous and file-backed parts) with 100 and 500 idle
//!   `sleep` children, after a settle;
//! - CPU time per wall second with 500 (ours samples every tree at 1 Hz; the peers sample
//!   nothing);
//! - list and inspect latency through each one's own API with 500 (ours: HTTP on its Unix
//!   socket; supervisord: XML-RPC on its Unix socket; pm2: its Node API over its RPC socket);
//! - the restart gap: SIGKILL of a child to the replacement's first instruction of `main`,
//!   stamped by the replacement itself on the system's monotonic clock, with no restart delay;
//!   next to the same helper spawned directly (the floor every manager pays).
#![expect(
    clippy::disallowed_methods,
    reason = "a bench script: it starts the peers' daemons and its baseline children itself"
)]
#![expect(clippy::print_stdout, reason = "the bench reports to its user")]

mod dashboards;
mod managers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use managers::{Manager, Program};

type Result<T = ()> = std::result::Result<T, String>;

/// What the run was told.
struct Args {
    claude_pm: PathBuf,
    pm2: PathBuf,
    pm2_module: PathBuf,
    pm2_script: PathBuf,
    supervisord: PathBuf,
    work: PathBuf,
    quick: bool,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("stamp") {
        return stamp(argv.get(1));
    }
    if argv.first().map(String::as_str) == Some("dashboards") {
        let get = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .map(PathBuf::from)
        };
        let quick = argv.iter().any(|a| a == "--quick");
        let ran = match (get("--claude-pm"), get("--work")) {
            (Some(pm), Some(work)) => dashboards::run(&pm, &work, quick),
            _ => Err("dashboards needs --claude-pm PATH --work DIR".into()),
        };
        return match ran {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-peers dashboards: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match parse(&argv).and_then(|args| run(&args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-peers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The restart helper: append "PID MONOTONIC_NS" to the file, then wait to be killed.
fn stamp(file: Option<&String>) -> std::process::ExitCode {
    let ns = monotonic_ns();
    let Some(file) = file else {
        return std::process::ExitCode::from(2);
    };
    let line = format!("{} {ns}\n", std::process::id());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if written.is_err() {
        return std::process::ExitCode::from(1);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn parse(argv: &[String]) -> Result<Args> {
    let get = |flag: &str| -> Result<PathBuf> {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{flag} PATH is required"))
    };
    Ok(Args {
        claude_pm: get("--claude-pm")?,
        pm2: get("--pm2")?,
        pm2_module: get("--pm2-module")?,
        pm2_script: get("--pm2-script")?,
        supervisord: get("--supervisord")?,
        work: get("--work")?,
        quick: argv.iter().any(|a| a == "--quick"),
    })
}

/// One manager's figures.
#[derive(Default)]
struct Figures {
    rss_100: Option<Rss>,
    rss_500: Option<Rss>,
    cpu_500: Option<f64>,
    list: Option<Latency>,
    inspect: Option<Latency>,
    restart: Option<Latency>,
}

/// VmRSS and its parts, in KiB.
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

/// Median and 99th percentile, in milliseconds.
#[derive(Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    n: usize,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Option<Latency> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() - 1) as f64 * q).round() as usize;
            ms.get(i).copied().unwrap_or(f64::NAN)
        };
        Some(Latency {
            p50: at(0.5),
            p99: at(0.99),
            n: ms.len(),
        })
    }
}

fn run(args: &Args) -> Result {
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work).map_err(|e| format!("{}: {e}", args.work.display()))?;
    raise_nofile();
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let sleep = Program::new("/bin/sleep", &["100000"]);
    let stamps = args.work.join("stamps");
    let helper = Program::new(
        &me.display().to_string(),
        &["stamp", &stamps.display().to_string()],
    );
    let (settle, window, rounds, kills) = if args.quick {
        (Duration::from_secs(3), Duration::from_secs(10), 50, 10)
    } else {
        (Duration::from_secs(8), Duration::from_secs(30), 200, 30)
    };
    let floor = direct_spawn(&helper, &stamps, kills)?;
    let mut rows = Vec::new();
    for kind in managers::KINDS {
        println!("\n== {}", kind.label());
        let mut figures = Figures::default();
        let dir = args.work.join(kind.label());
        let mut m = Manager::start(kind, args, &dir.join("n100"), &sleep, 100)?;
        std::thread::sleep(settle);
        figures.rss_100 = rss(m.pid());
        m.stop()?;
        let mut m = Manager::start(kind, args, &dir.join("n500"), &sleep, 500)?;
        std::thread::sleep(settle);
        figures.rss_500 = rss(m.pid());
        figures.cpu_500 = cpu_per_second(m.pid(), window);
        let (list, inspect) = m.latency(rounds)?;
        figures.list = Latency::of(list);
        figures.inspect = Latency::of(inspect);
        m.stop()?;
        let _ = std::fs::remove_file(&stamps);
        let mut m = Manager::start(kind, args, &dir.join("restart"), &helper, kills)?;
        std::thread::sleep(Duration::from_secs(2));
        figures.restart = Latency::of(restart_gaps(&m, &stamps, kills)?);
        m.stop()?;
        rows.push((kind, figures));
    }
    report(&rows, floor.as_ref(), window);
    Ok(())
}

/// Let the managers (our children) open a descriptor or more per child.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `/proc/PID/status`'s VmRSS, RssAnon and RssFile.
fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Rss {
        total: kib("VmRSS:")?,
        anon: kib("RssAnon:")?,
        file: kib("RssFile:")?,
    })
}

/// utime + stime of `pid` (all its threads) in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of `pid` per second of wall time over `window`, in percent of one core.
fn cpu_per_second(pid: u32, window: Duration) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, w0) = (cpu_ticks(pid)?, Instant::now());
    std::thread::sleep(window);
    let (t1, w1) = (cpu_ticks(pid)?, Instant::now());
    Some((t1.saturating_sub(t0) as f64 / hz) / (w1 - w0).as_secs_f64() * 100.0)
}

/// The stamped lines so far: (pid, ns).
fn read_stamps(file: &Path) -> Vec<(u32, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, ns) = l.split_once(' ')?;
            Some((pid.parse().ok()?, ns.parse().ok()?))
        })
        .collect()
}

/// Wait (up to 15 s) for a stamp from a pid not in `seen`.
fn next_stamp(file: &Path, seen: &[(u32, u64)]) -> Option<(u32, u64)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(new) = read_stamps(file)
            .into_iter()
            .find(|(pid, _)| !seen.iter().any(|(p, _)| p == pid))
        {
            return Some(new);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// The floor: the helper spawned directly, from the spawn call to its stamp, `n` times.
fn direct_spawn(helper: &Program, stamps: &Path, n: usize) -> Result<Option<Latency>> {
    let _ = std::fs::remove_file(stamps);
    let mut gaps = Vec::new();
    for _ in 0..n {
        let seen = read_stamps(stamps);
        let t0 = monotonic_ns();
        let mut child = std::process::Command::new(&helper.argv[0])
            .args(&helper.argv[1..])
            .spawn()
            .map_err(|e| format!("spawn the helper: {e}"))?;
        let stamp = next_stamp(stamps, &seen);
        let _ = child.kill();
        let _ = child.wait();
        let (_, ns) = stamp.ok_or("the helper never stamped")?;
        gaps.push(ns.saturating_sub(t0) as f64 / 1e6);
    }
    Ok(Latency::of(gaps))
}

/// Kill each of `n` children of `m` once (SIGKILL), each time timing the replacement's stamp.
fn restart_gaps(m: &Manager, stamps: &Path, n: usize) -> Result<Vec<f64>> {
    let mut gaps = Vec::new();
    let mut killed = Vec::new();
    for _ in 0..n {
        let seen = read_stamps(stamps);
        let victim = seen
            .iter()
            .map(|(pid, _)| *pid)
            .find(|pid| !killed.contains(pid) && m.children().contains(pid))
            .ok_or("no live child left to kill")?;
        killed.push(victim);
        let t0 = monotonic_ns();
        // SAFETY: kill(2) on a pid this bench read from the manager's own children list.
        unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
        let (pid, ns) = next_stamp(stamps, &seen)
            .ok_or_else(|| format!("{}: no replacement for a killed child", m.kind.label()))?;
        killed.push(pid);
        gaps.push(ns.saturating_sub(t0) as f64 / 1e6);
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(gaps)
}

fn report(rows: &[(managers::Kind, Figures)], floor: Option<&Latency>, window: Duration) {
    let mib = |r: Option<Rss>| {
        r.map_or("n/a".into(), |r| {
            format!(
                "{:.1} MiB ({:.1} anon + {:.1} file)",
                r.total as f64 / 1024.0,
                r.anon as f64 / 1024.0,
                r.file as f64 / 1024.0
            )
        })
    };
    let per_child = |f: &Figures| match (f.rss_100, f.rss_500) {
        (Some(a), Some(b)) => format!(
            "{:.0} KiB ({:.0} anon)",
            (b.total as f64 - a.total as f64) / 400.0,
            (b.anon as f64 - a.anon as f64) / 400.0
        ),
        _ => "n/a".into(),
    };
    let lat = |l: Option<Latency>| {
        l.map_or("n/a".into(), |l| {
            format!("{:.2} / {:.2} ms (n={})", l.p50, l.p99, l.n)
        })
    };
    println!("\n| manager | RSS at 100 | RSS at 500 | per extra child | CPU at 500 ({}s) | list p50 / p99 | inspect p50 / p99 | restart gap p50 / p99 |", window.as_secs());
    println!("|---|---|---|---|---:|---|---|---|");
    for (kind, f) in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.label(),
            mib(f.rss_100),
            mib(f.rss_500),
            per_child(f),
            f.cpu_500
                .map_or("n/a".into(), |c| format!("{c:.2} % of a core")),
            lat(f.list),
            lat(f.inspect),
            lat(f.restart),
        );
    }
    println!(
        "| (the helper spawned directly) | | | | | | | {} |",
        lat(floor.copied())
    );
}
