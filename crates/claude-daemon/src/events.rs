//! The event stream: every `ManagerEvent` numbered, the newest kept for readers that resume
//! (`?since=SEQ`), and streamed to followers. A reader that falls behind, or asks for events
//! older than those kept, gets an explicit `{"lagged": N}` record, never a silent gap. A
//! reader that resumes after a number this daemon has not reached (numbers start afresh when
//! the daemon restarts: a script's `--since`) gets `{"reset": N}` (N the newest number now)
//! and the events after N, not silence until the numbers catch up. Server-sent events carry
//! the daemon's boot id with the number (`id: BOOT.SEQ`), so a browser reconnecting to a new
//! daemon is told `reset` however far the new numbers have come.
//!
//! A sample that shows what the session's last shown sample showed (the same processes, CPU
//! to 0.1 %, RSS within 1 %) is marked a repeat when it is numbered, once for every reader; a
//! reader that asks for changed samples only ([`Samples::Changed`], what the fleet views ask
//! for) skips repeats without a `lagged` record: 500 idle sessions then cost a dashboard
//! nothing a second instead of 500 events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use claude_manager::ManagerEvent;
use hyper::body::{Body, Frame};
use tokio::sync::{broadcast, mpsc};

/// Events kept for readers that resume.
pub const KEPT_EVENTS: usize = 10_000;

/// Which samples a reader of the event stream wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Samples {
    /// Every sample, once a second per session.
    #[default]
    All,
    /// Only a sample that changes what the session's last shown sample showed: its processes,
    /// its CPU to 0.1 %, or its RSS by more than 1 %.
    Changed,
}

impl Samples {
    /// The query value: `all` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Samples::All => "all",
            Samples::Changed => "changed",
        }
    }
}

/// One numbered event: its NDJSON line and whether it is a sample that repeats the last shown.
#[derive(Debug, Clone)]
struct Record {
    seq: u64,
    line: Bytes,
    repeat: bool,
}

/// A response body fed from a channel, one chunk per record.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The numbered events: the kept ones and the live feed; and each session's last sample and
/// health event, for inspect.
pub(crate) struct EventLog {
    kept: Mutex<VecDeque<Record>>,
    live: broadcast::Sender<Record>,
    /// This daemon's numbering: random, new at every start.
    pub(crate) boot: u64,
    latest: Mutex<std::collections::HashMap<String, LatestEvents>>,
    /// Each session's chart and state timeline.
    pub(crate) history: crate::history::History,
}

/// A session's last sample and health event as they came (JSON is made only when asked: a
/// fleet publishes hundreds of samples a second and inspect reads a few).
#[derive(Default)]
struct LatestEvents {
    sample: Option<ManagerEvent>,
    health: Option<ManagerEvent>,
    /// The last sample not marked a repeat: processes, CPU in tenths of a percent, RSS.
    shown: Option<(u64, i64, u64)>,
}

/// Whether a sample of `now` shows what `shown` showed.
fn repeats(shown: Option<(u64, i64, u64)>, now: (u64, i64, u64)) -> bool {
    let Some((processes, cpu, rss)) = shown else {
        return false;
    };
    processes == now.0 && cpu == now.1 && rss.abs_diff(now.2).saturating_mul(100) <= rss
}

/// A session's last sample and health event, as JSON.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latest {
    pub(crate) sample: Option<serde_json::Value>,
    pub(crate) health: Option<serde_json::Value>,
}

/// A session's numbers now (for the list).
#[derive(Debug, Clone, Default)]
pub(crate) struct Now {
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) processes: Option<u64>,
    pub(crate) health: Option<String>,
    pub(crate) since: Option<f64>,
}

/// One event as its NDJSON line: `{"seq": N, "event": ..., ...}`.
fn line(seq: u64, event: &ManagerEvent) -> Bytes {
    let mut value = event.to_json();
    if let Some(object) = value.as_object_mut() {
        object.insert("seq".into(), seq.into());
    }
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn lagged(count: u64) -> Bytes {
    Bytes::from(format!("{{\"lagged\":{count}}}\n"))
}

fn reset(newest: u64) -> Bytes {
    Bytes::from(format!("{{\"reset\":{newest}}}\n"))
}

impl EventLog {
    /// Number and keep `events` from now on (a task on the current runtime).
    pub(crate) fn start(mut events: broadcast::Receiver<ManagerEvent>) -> Arc<EventLog> {
        let (live, _) = broadcast::channel(4096);
        let mut boot = [0u8; 8];
        if getrandom::fill(&mut boot).is_err() {
            // The start time is as good for telling two daemons apart.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            boot = (nanos as u64).to_le_bytes();
        }
        let log = Arc::new(EventLog {
            kept: Mutex::new(VecDeque::new()),
            live,
            // 52 bits: the id stays exact wherever a script reads it as a JSON number.
            boot: u64::from_le_bytes(boot) >> 12,
            latest: Mutex::new(std::collections::HashMap::new()),
            history: crate::history::History::default(),
        });
        let writer = Arc::clone(&log);
        tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                match events.recv().await {
                    Ok(event) => {
                        seq += 1;
                        let repeat = writer.note_latest(&event);
                        writer.history.note(&event);
                        writer.push(Record {
                            seq,
                            line: line(seq, &event),
                            repeat,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // The manager's buffer overran: the numbers say so to every reader.
                        seq += n;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        log
    }

    /// Keep `event` if it is a sample or a health event; whether it is a sample that repeats
    /// the session's last shown one.
    fn note_latest(&self, event: &ManagerEvent) -> bool {
        use claude_manager::EventKind;
        let shows = match &event.kind {
            EventKind::Sample {
                cpu_percent,
                rss_bytes,
                processes,
                ..
            } => Some((*processes, (cpu_percent * 10.0).round() as i64, *rss_bytes)),
            EventKind::Health(_) => None,
            _ => return false,
        };
        let Ok(mut latest) = self.latest.lock() else {
            return false;
        };
        let slot = match latest.get_mut(&event.session) {
            Some(entry) => entry,
            None => latest.entry(event.session.clone()).or_default(),
        };
        let value = Some(event.clone());
        let Some(shows) = shows else {
            slot.health = value;
            return false;
        };
        slot.sample = value;
        let repeat = repeats(slot.shown, shows);
        if !repeat {
            slot.shown = Some(shows);
        }
        repeat
    }

    /// Drop what is kept of a deleted session (a name used again starts afresh).
    pub(crate) fn forget(&self, session: &str) {
        if let Ok(mut latest) = self.latest.lock() {
            latest.remove(session);
        }
        self.history.forget(session);
    }

    /// `session`'s last sample, health status and state change, as numbers.
    pub(crate) fn now(&self, session: &str) -> Now {
        use claude_manager::EventKind;
        let mut now = Now {
            since: self.history.state_since(session),
            ..Now::default()
        };
        let Ok(latest) = self.latest.lock() else {
            return now;
        };
        let Some(entry) = latest.get(session) else {
            return now;
        };
        if let Some(EventKind::Sample {
            cpu_percent,
            rss_bytes,
            processes,
            ..
        }) = entry.sample.as_ref().map(|e| &e.kind)
        {
            now.cpu_percent = Some((cpu_percent * 10.0).round() / 10.0);
            now.rss_bytes = Some(*rss_bytes);
            now.processes = Some(*processes);
        }
        if let Some(EventKind::Health(status)) = entry.health.as_ref().map(|e| &e.kind) {
            now.health = Some(status.to_string());
        }
        now
    }

    /// `session`'s last sample and health event.
    pub(crate) fn latest(&self, session: &str) -> Latest {
        self.latest
            .lock()
            .ok()
            .and_then(|l| {
                l.get(session).map(|e| Latest {
                    sample: e.sample.as_ref().map(ManagerEvent::to_json),
                    health: e.health.as_ref().map(ManagerEvent::to_json),
                })
            })
            .unwrap_or_default()
    }

    fn push(&self, record: Record) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() == KEPT_EVENTS {
                kept.pop_front();
            }
            kept.push_back(record.clone());
        }
        let _ = self.live.send(record);
    }

    /// The number of the newest kept event (0 before any): where "from now on" starts.
    pub(crate) fn last_seq(&self) -> u64 {
        self.kept
            .lock()
            .ok()
            .and_then(|k| k.back().map(|r| r.seq))
            .unwrap_or(0)
    }

    /// The kept events after `since` (without repeated samples if `samples` says so), led by
    /// a `lagged` record if some of those were not kept; and the number of the last one.
    fn after(&self, since: u64, samples: Samples) -> (Vec<(Option<u64>, Bytes)>, u64) {
        let Ok(kept) = self.kept.lock() else {
            return (Vec::new(), since);
        };
        let mut out = Vec::new();
        let mut last = since;
        if let Some(oldest) = kept.front() {
            if oldest.seq > since + 1 {
                out.push((None, lagged(oldest.seq - since - 1)));
            }
        }
        for record in kept.iter().filter(|r| r.seq > since) {
            last = record.seq;
            if !(record.repeat && samples == Samples::Changed) {
                out.push((Some(record.seq), record.line.clone()));
            }
        }
        (out, last)
    }

    /// A body of the events after `since` (NDJSON); with `follow`, then the live ones until
    /// the reader goes away.
    pub(crate) fn stream(
        self: &Arc<Self>,
        since: u64,
        follow: bool,
        samples: Samples,
    ) -> ChannelBody {
        self.stream_framed(since, follow, samples, |_, line| line)
    }

    /// [`EventLog::stream`] with each record framed by `frame` (given its number; `None` for
    /// a `lagged` record): server-sent events reuse the one stream.
    pub(crate) fn stream_framed(
        self: &Arc<Self>,
        since: u64,
        follow: bool,
        samples: Samples,
        frame: impl Fn(Option<u64>, Bytes) -> Bytes + Send + 'static,
    ) -> ChannelBody {
        let (tx, rx) = mpsc::channel(256);
        // Subscribed before the kept ones are read, so nothing falls between the two.
        let mut live = self.live.subscribe();
        let newest = self.last_seq();
        let renumbered = (since > newest).then(|| reset(newest));
        let (kept, mut last) = self.after(since.min(newest), samples);
        tokio::spawn(async move {
            if let Some(record) = renumbered {
                if tx.send(frame(None, record)).await.is_err() {
                    return;
                }
            }
            for (seq, bytes) in kept {
                if tx.send(frame(seq, bytes)).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                let record = match live.recv().await {
                    Ok(r) if r.seq <= last => continue,
                    Ok(r) => {
                        if r.seq > last + 1 {
                            let _ = tx.send(frame(None, lagged(r.seq - last - 1))).await;
                        }
                        last = r.seq;
                        if r.repeat && samples == Samples::Changed {
                            continue;
                        }
                        frame(Some(r.seq), r.line)
                    }
                    // The next record's number shows the gap, and the lagged record says it.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(record).await.is_err() {
                    return;
                }
            }
        });
        ChannelBody(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> EventLog {
        EventLog {
            kept: Mutex::new(VecDeque::new()),
            live: broadcast::channel(16).0,
            boot: 1,
            latest: Mutex::new(std::collections::HashMap::new()),
            history: crate::history::History::default(),
        }
    }

    fn record(seq: u64, repeat: bool) -> Record {
        Record {
            seq,
            line: Bytes::from(format!("{{\"seq\":{seq}}}\n")),
            repeat,
        }
    }

    /// A repeat is measured against the last shown sample, so a slow creep is shown once it
    /// adds up to more than 1 %.
    #[test]
    fn a_repeat_is_what_the_last_shown_sample_showed() {
        let shown = Some((3, 5, 100_000_000));
        assert!(repeats(shown, (3, 5, 100_900_000)));
        assert!(!repeats(shown, (3, 5, 101_100_000)), "RSS up 1.1 %");
        assert!(!repeats(shown, (3, 6, 100_000_000)), "CPU up 0.1 %");
        assert!(!repeats(shown, (4, 5, 100_000_000)), "a new process");
        assert!(!repeats(None, (3, 5, 100_000_000)), "the first is shown");
    }

    /// A reader of changed samples skips the repeats, kept and live, without a `lagged`
    /// record; a reader of all samples gets them.
    #[tokio::test]
    async fn repeats_are_skipped_for_readers_of_changes_only() {
        let log = Arc::new(log());
        for (seq, repeat) in [(1, false), (2, true), (3, false)] {
            log.push(record(seq, repeat));
        }
        let seqs = |records: Vec<(Option<u64>, Bytes)>| -> Vec<Option<u64>> {
            records.into_iter().map(|(seq, _)| seq).collect()
        };
        assert_eq!(seqs(log.after(0, Samples::Changed).0), [Some(1), Some(3)]);
        assert_eq!(
            seqs(log.after(0, Samples::All).0),
            [Some(1), Some(2), Some(3)]
        );
        let mut body = log.stream(3, true, Samples::Changed);
        for (seq, repeat) in [(4, true), (5, true), (6, false)] {
            log.push(record(seq, repeat));
        }
        let next = body.0.recv().await.unwrap_or_default();
        assert_eq!(
            next,
            record(6, false).line,
            "no lagged record for skipped repeats"
        );
    }

    /// A reader resuming after a number not reached yet (an earlier daemon's) is told the
    /// newest number and gets what follows it.
    #[tokio::test]
    async fn a_resume_past_the_newest_is_reset_to_it() {
        let log = Arc::new(log());
        for seq in 1..=3 {
            log.push(record(seq, false));
        }
        let mut body = log.stream(12_345, true, Samples::All);
        log.push(record(4, false));
        let first = body.0.recv().await.unwrap_or_default();
        assert_eq!(first, reset(3));
        let next = body.0.recv().await.unwrap_or_default();
        assert_eq!(next, record(4, false).line);
    }

    /// A reader asking for events older than those kept is told how many it missed, first.
    #[test]
    fn a_resume_past_the_kept_events_is_told_what_it_missed() {
        let log = log();
        let n = KEPT_EVENTS as u64 + 5;
        for seq in 1..=n {
            log.push(record(seq, false));
        }
        let (records, last) = log.after(0, Samples::All);
        assert_eq!(records[0], (None, lagged(5)));
        assert_eq!(records.len(), KEPT_EVENTS + 1);
        assert_eq!(last, n);
        let (records, _) = log.after(n - 2, Samples::All);
        assert_eq!(records.len(), 2, "no lagged record when nothing was missed");
        assert_eq!(log.after(n, Samples::All).0.len(), 0);
    }

    /// A follower whose live feed overran gets one `lagged` record with the exact count.
    #[tokio::test]
    async fn a_slow_follower_gets_the_exact_gap() {
        let log = Arc::new(log());
        log.push(record(1, false));
        let mut body = log.stream(0, true, Samples::All);
        // Overrun the live channel (capacity 16) before the follower reads.
        for seq in 2..=40 {
            log.push(record(seq, false));
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match body.0.recv().await {
                Some(b) => seen.push(String::from_utf8_lossy(&b).into_owned()),
                None => break,
            }
        }
        assert_eq!(seen[0], "{\"seq\":1}\n");
        assert!(seen[1].starts_with("{\"lagged\":"), "{seen:?}");
        let missed: u64 = seen[1]
            .trim_end()
            .trim_start_matches("{\"lagged\":")
            .trim_end_matches('}')
            .parse()
            .unwrap_or(0);
        let next: u64 = seen[2]
            .trim_end()
            .trim_start_matches("{\"seq\":")
            .trim_end_matches('}')
            .parse()
            .unwrap_or(0);
        assert_eq!(1 + missed + 1, next, "{seen:?}");
    }
}
