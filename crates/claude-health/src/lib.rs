//! # claude-health
//!
//! Watching supervised processes through `/proc`: what each process of a tree uses, and (still
//! to come) probes and hang classification. It only reads; it never sends a signal: acting on
//! what it sees is the facade's job.
//!
//! ## Theory of operation
//!
//! [`Sampler::tree`] reads a process and every descendant, found through the kernel's per-task
//! `children` lists: state, CPU time, RSS, threads, open descriptors, storage IO bytes,
//! voluntary and involuntary context switches, and the wait channel where readable. Files are
//! read under an injectable [`ProcRoot`] and parsed from bytes with `procfs-core`, so fixture
//! directories test the same code. A process that vanishes between the listing and the read is
//! skipped, not an error; only a vanished root is [`Error::ProcessGone`].
//! [`TreeSample::rates_since`] turns two samples into CPU percent and IO and switch rates.
//!
//! ## Status
//!
//! **Issue #4 is in progress.** Done: the sampler and its measurements. Not yet: the
//! `HealthChecker` trait and status, probes (startup, liveness, readiness), resource thresholds,
//! hang classification, and the sampling benchmarks.
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

mod error;
mod sample;

pub use error::{Error, Result};
pub use sample::{
    context_switches, parse_stat, ProcRoot, ProcState, ProcessSample, Rates, Sampler, Stat, Totals,
    TreeSample,
};
