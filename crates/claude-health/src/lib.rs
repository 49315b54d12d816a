//! # claude-health
//!
//! Watching supervised processes through `/proc`: what each process of a tree uses, whether it
//! answers, and whether it is working, waiting or wedged. It only reads; it never sends a
//! signal: acting on a status is the facade's job.
//!
//! ## Theory of operation
//!
//! [`Sampler::tree`] reads a process and every descendant, found through the kernel's per-task
//! `children` lists: state, CPU time, RSS, threads, open descriptors, storage IO bytes,
//! voluntary and involuntary context switches, and the wait channel where readable. Files are
//! read under an injectable [`ProcRoot`] and parsed from bytes, so fixture directories test the
//! same code. A process that vanishes between the listing and the read is skipped, not an
//! error; only a vanished root is [`Error::ProcessGone`]. [`TreeSample::rates_since`] turns two
//! samples into CPU percent and IO and switch rates.
//!
//! [`HealthMonitor`] (the [`HealthChecker`]) samples every [`MonitorConfig::interval`] and
//! publishes a [`HealthStatus`]: liveness (a stopped or zombie root is unhealthy, zombie
//! descendants degrade), [`Thresholds`] (tree RSS, CPU while idle, descriptor growth), the
//! [`HangDetector`]'s verdict, and [`Probe`]s with Kubernetes semantics ([`ProbeSpec`]: initial
//! delay, period, timeout, failure and success thresholds; startup gates the others, liveness
//! failing is unhealthy, readiness failing degrades). Handlers run in registration order on a
//! separate task, once per change, so a slow handler never delays sampling. The loop ends by
//! itself when the process is gone, after publishing [`HealthReason::Exited`]. Every reason is
//! a [`HealthReason`] variant, so callers act on what happened (hung, stopped, over RSS) and
//! never on a message's wording. `stat` is parsed by claude-proc's [`claude_proc::parse_proc_stat`],
//! the same parser the stop path uses.
//!
//! **Hangs.** Progress is output the facade reports ([`Signals::record_output`]), CPU above a
//! floor, or storage IO. With work in flight ([`Signals::set_in_flight`]) and no progress for
//! [`HangConfig::hang_after`], the tree is [`Activity::Hung`]; before that it is waiting; a
//! root in D state for [`HangConfig::disk_sleep_after`] is stuck; with nothing in flight it is
//! idle, never hung.
//!
//! ## Caveats
//!
//! Probes run inside the monitoring loop, each bounded by its timeout: a probe that takes its
//! whole timeout delays the next sample by as much. The monitor samples through a
//! [`TreeWatch`], which keeps each process's `/proc` files open between samples (one `pread`
//! per file): ~7 us per idle process on this project's VMs, and 500 idle monitors at 1 Hz cost
//! ~0.74 % of a core (BENCHMARKS.md). That costs descriptors: 3 or 4 per watched process.
//!
//! ## Example
//!
//! ```no_run
//! use claude_health::Sampler;
//!
//! # fn demo(pid: u32) -> claude_health::Result<()> {
//! let sampler = Sampler::default();
//! let before = sampler.tree(pid)?;
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! let after = sampler.tree(pid)?;
//! let rates = after.rates_since(&before);
//! println!("{} processes, {:.0}% CPU, {} MiB", after.totals.processes, rates.cpu_percent,
//!          after.totals.rss_bytes >> 20);
//! # Ok(())
//! # }
//! ```

mod checker;
mod clock;
mod error;
mod hang;
mod probe;
mod sample;
mod signals;
mod status;

pub use checker::{
    HealthChange, HealthChecker, HealthHandler, HealthMonitor, MonitorConfig, Observation,
    Thresholds,
};
pub use clock::SharedClock;
pub use error::{Error, Result};
pub use hang::{Activity, HangConfig, HangDetector};
pub use probe::{Probe, ProbeRole, ProbeRunner, ProbeSpec, ProbeVerdict};
pub use sample::{
    context_switches, io_bytes, CpuLedger, Fields, ProcRoot, ProcState, ProcessSample, Rates,
    Sampler, Totals, TreeSample, TreeWatch,
};
pub use signals::Signals;
pub use status::{HealthReason, HealthStatus};
