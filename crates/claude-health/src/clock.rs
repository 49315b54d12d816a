//! One timer per sampling interval for a whole fleet of monitors.
//!
//! Monitors already wake on a shared grid of their interval ([`next_tick`]); each still had
//! its own timer, and with hundreds of them the runtime's timer wheel (one entry per monitor,
//! each in a different allocation) became the largest single cost of an idle fleet
//! (BENCHMARKS.md, issue #14). Monitors given the same [`SharedClock`] wait on one `watch`
//! channel instead, ticked by one task per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

type Hub = Mutex<HashMap<Duration, watch::Receiver<u64>>>;

/// A tick source monitors share (clone it into each monitor's [`crate::MonitorConfig`]).
/// Its ticker tasks run on the runtime of the first monitor of each interval and end once
/// the clock and its clones are dropped; a monitor whose ticker is gone (its runtime shut
/// down) falls back to a timer of its own.
#[derive(Debug, Clone, Default)]
pub struct SharedClock {
    hub: Arc<Hub>,
}

impl SharedClock {
    /// A clock with no tickers yet.
    pub fn new() -> SharedClock {
        SharedClock::default()
    }

    /// The ticks of `interval`'s grid, starting its ticker (on the current runtime) if none
    /// is running.
    pub(crate) fn subscribe(&self, interval: Duration) -> watch::Receiver<u64> {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = hub.get(&interval) {
            // A receiver whose sender is gone has an error for `has_changed`.
            if rx.has_changed().is_ok() {
                return rx.clone();
            }
        }
        let (tx, rx) = watch::channel(0u64);
        hub.insert(interval, rx.clone());
        tokio::spawn(tick(Arc::downgrade(&self.hub), tx, interval));
        rx
    }
}

/// Tick `tx` at every point of `interval`'s grid while the clock exists.
async fn tick(hub: Weak<Hub>, tx: watch::Sender<u64>, interval: Duration) {
    loop {
        tokio::time::sleep_until(next_tick(Instant::now(), interval)).await;
        if hub.strong_count() == 0 {
            return;
        }
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The first point of the process-wide grid of `interval` after `now` and at least half an
/// interval away: monitors with the same interval wake together, so a few hundred of them
/// cost one wake-up of the runtime per tick instead of one each (BENCHMARKS.md).
pub(crate) fn next_tick(now: Instant, interval: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = Instant::from_std(*EPOCH.get_or_init(std::time::Instant::now));
    let interval_ns = interval.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let ticks = since / interval_ns + 1;
    let at = u64::try_from(ticks.saturating_mul(interval_ns)).unwrap_or(u64::MAX);
    let floor = Instant::from_std(claude_proc::instant_after(now.into_std(), interval / 2));
    epoch
        .checked_add(Duration::from_nanos(at))
        .unwrap_or(floor)
        .max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monitors of one interval share one ticker; its ticks arrive on the grid; it ends
    /// with the clock.
    #[tokio::test(start_paused = true)]
    async fn one_ticker_per_interval_ticks_on_the_grid_and_ends_with_the_clock() {
        let clock = SharedClock::new();
        let second = Duration::from_secs(1);
        let mut a = clock.subscribe(second);
        let mut b = clock.subscribe(second);
        let _other = clock.subscribe(Duration::from_millis(250));
        assert_eq!(clock.hub.lock().unwrap().len(), 2);
        let start = Instant::now();
        for n in 1..=3u64 {
            a.changed().await.unwrap();
            b.changed().await.unwrap();
            assert_eq!(*a.borrow_and_update(), n);
            let _ = b.borrow_and_update();
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(2500) && elapsed <= Duration::from_millis(3500),
            "three ticks of a 1 s grid took {elapsed:?}"
        );
        drop(clock);
        // The ticker notices at its next tick and drops its sender.
        assert!(a.changed().await.is_err());
    }
}
