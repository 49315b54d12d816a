//! The soak: thousands of start/stop cycles of children that behave badly at random, through
//! the `ProcessManager`, then a count of everything that must not remain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use claude_manager::health::{ProcState, Sampler};
use claude_manager::proc::OutputMode;
use claude_manager::{ManagerConfig, ProcessManager, SessionSpec};

/// The misbehaviours, each a shell script.
pub const BEHAVIOURS: [(&str, &str); 6] = [
    ("exit_at_once", "exit 0"),
    ("crash_with_signal", "kill -SEGV $$"),
    ("ignore_sigterm", "trap '' TERM; sleep 30"),
    ("setsid_grandchild", "setsid sleep 30 & exit 0"),
    ("flood_stdout", "head -c 2000000 /dev/zero"),
    ("hold_stdout_after_exit", "sleep 30 & exit 0"),
];

/// How to soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Start/stop cycles.
    pub cycles: usize,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Seed of the random choices.
    pub seed: u64,
    /// Only this behaviour (an index into [`BEHAVIOURS`]), for narrowing a failure down.
    pub only: Option<usize>,
}

/// What the soak found. Every `*_left` must be empty and `zombies` zero.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Cycles run.
    pub cycles: usize,
    /// Faults injected, by behaviour.
    pub faults: BTreeMap<&'static str, usize>,
    /// Stops requested while the child ran.
    pub stops: usize,
    /// Zombie children of this process afterwards.
    pub zombies: usize,
    /// Live processes that carry this soak's marker afterwards (orphans).
    pub orphans_left: Vec<u32>,
    /// Descriptors of this process before and after.
    pub fds: (usize, usize),
    /// Cgroups this process created that still exist.
    pub cgroups_left: Vec<String>,
    /// Session directories that still exist.
    pub tempdirs_left: Vec<PathBuf>,
    /// This process's RSS (KiB) after warm-up and at the end.
    pub rss_kib: (u64, u64),
    /// Wall time.
    pub elapsed: Duration,
}

impl SoakReport {
    /// True when nothing is left behind and the descriptors are back where they were.
    pub fn clean(&self) -> bool {
        self.zombies == 0
            && self.orphans_left.is_empty()
            && self.cgroups_left.is_empty()
            && self.tempdirs_left.is_empty()
            && self.fds.1 <= self.fds.0
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_kib() -> u64 {
    Sampler::default()
        .process(std::process::id())
        .map_or(0, |p| p.rss_bytes >> 10)
}

/// The state of `pid`, if it exists.
fn state_of(pid: u32) -> Option<ProcState> {
    Sampler::default().process(pid).ok().map(|p| p.state)
}

fn zombie_children() -> usize {
    let me = std::process::id();
    let mut children = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                children.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    children
        .into_iter()
        .filter(|p| state_of(*p) == Some(ProcState::Zombie))
        .count()
}

fn marked_alive(marker: &str) -> Vec<u32> {
    let needle = marker.as_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle))
        })
        .filter(|pid| !matches!(state_of(*pid), Some(ProcState::Zombie) | None))
        .collect()
}

fn own_cgroups() -> Vec<String> {
    let prefix = format!("claude-{}-", std::process::id());
    let root = claude_manager::limits::CgroupV1Root::system();
    ["memory", "cpu", "pids", "blkio"]
        .iter()
        .filter_map(|c| root.own_dir(c).map(|d| (c, d)))
        .flat_map(|(c, d)| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(&prefix))
                .map(|n| format!("{c}/{n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn session_dirs(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

/// One cycle: start a misbehaving child, maybe stop it early, wait for its report.
async fn cycle(
    manager: &ProcessManager,
    name: String,
    marker: &str,
    behaviour: usize,
    rng: &mut fastrand::Rng,
) -> bool {
    let (_, script) = BEHAVIOURS[behaviour % BEHAVIOURS.len()];
    let mut spec = SessionSpec::command(name, "/bin/sh", ["-c", script]);
    let (key, value) = marker.split_once('=').unwrap_or((marker, ""));
    spec.env.push((key.into(), value.into()));
    spec.grace = Duration::from_millis(100);
    spec.stdout = OutputMode::Discard;
    spec.stderr = OutputMode::Discard;
    spec.health = None;
    // Every fourth cycle gets a pids cgroup and its own session directory.
    if rng.u8(..4) == 0 {
        spec.limits.max_pids = Some(64);
        spec.dirs.config_dir = true;
    }
    let Ok(mut handle) = manager.start(spec) else {
        return false;
    };
    let stop_early = rng.bool();
    if stop_early {
        tokio::time::sleep(Duration::from_millis(rng.u64(1..30))).await;
        let _ = handle.stop().await;
    } else {
        // Long-running ones are bounded by a stop after 60 ms.
        if tokio::time::timeout(Duration::from_millis(60), handle.wait())
            .await
            .is_err()
        {
            let _ = handle.stop().await;
        }
    }
    stop_early
}

/// Run the soak.
pub async fn run(config: SoakConfig) -> SoakReport {
    let soak_id = format!("{:08x}", fastrand::u32(..));
    let marker = format!("CLAUDE_PM_SOAK={soak_id}");
    let name_prefix = format!("soak{soak_id}");
    let dir_prefix = format!("claude-pm-{name_prefix}");
    let manager = std::sync::Arc::new(ProcessManager::new(ManagerConfig {
        max_live: config.concurrency,
        ..Default::default()
    }));
    let mut report = SoakReport {
        cycles: config.cycles,
        ..Default::default()
    };
    let started = Instant::now();
    // Warm up (runtime threads, allocator pools) before the baselines.
    let warmup = config.cycles.min(50);
    let mut rng = fastrand::Rng::with_seed(config.seed);
    for i in 0..warmup {
        cycle(
            &manager,
            format!("{name_prefix}-w{i}"),
            &marker,
            i,
            &mut rng,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let mut tasks = tokio::task::JoinSet::new();
    let mut faults: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..config.cycles {
        while tasks.len() >= config.concurrency {
            if let Some(Ok(stopped)) = tasks.join_next().await {
                report.stops += usize::from(stopped);
            }
        }
        let behaviour = config.only.unwrap_or_else(|| rng.usize(..BEHAVIOURS.len()));
        *faults.entry(BEHAVIOURS[behaviour].0).or_default() += 1;
        let manager = std::sync::Arc::clone(&manager);
        let marker = marker.clone();
        let name = format!("{name_prefix}-{i}");
        let seed = rng.u64(..);
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            cycle(&manager, name, &marker, behaviour, &mut rng).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        if let Ok(stopped) = result {
            report.stops += usize::from(stopped);
        }
    }
    drop(manager);
    // Give the runtime a moment to drop finished tasks' descriptors.
    let deadline = Instant::now() + Duration::from_secs(2);
    while open_fds() > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.faults = faults;
    report.fds = (fds_before, open_fds());
    report.rss_kib = (rss_before, rss_kib());
    report.zombies = zombie_children();
    report.orphans_left = marked_alive(&marker);
    report.cgroups_left = own_cgroups();
    report.tempdirs_left = session_dirs(&dir_prefix);
    report.elapsed = started.elapsed();
    report
}
