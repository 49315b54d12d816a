//! The event stream: every `ManagerEvent` numbered, the newest kept for readers that resume
//! (`?since=SEQ`), and streamed to followers. A reader that falls behind, or asks for events
//! older than those kept, gets an explicit `{"lagged": N}` record, never a silent gap.

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
    kept: Mutex<VecDeque<(u64, Bytes)>>,
    live: broadcast::Sender<(u64, Bytes)>,
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

impl EventLog {
    /// Number and keep `events` from now on (a task on the current runtime).
    pub(crate) fn start(mut events: broadcast::Receiver<ManagerEvent>) -> Arc<EventLog> {
        let (live, _) = broadcast::channel(4096);
        let log = Arc::new(EventLog {
            kept: Mutex::new(VecDeque::new()),
            live,
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
                        writer.note_latest(&event);
                        writer.history.note(&event);
                        writer.push(seq, line(seq, &event));
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

    fn note_latest(&self, event: &ManagerEvent) {
        use claude_manager::EventKind;
        let (is_sample, is_health) = match &event.kind {
            EventKind::Sample { .. } => (true, false),
            EventKind::Health(_) => (false, true),
            _ => return,
        };
        if let Ok(mut latest) = self.latest.lock() {
            let slot = match latest.get_mut(&event.session) {
                Some(entry) => entry,
                None => latest.entry(event.session.clone()).or_default(),
            };
            let value = Some(event.clone());
            if is_sample {
                slot.sample = value;
            } else if is_health {
                slot.health = value;
            }
        }
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
            let reasons: Vec<String> = status.reasons().iter().map(|r| r.to_string()).collect();
            now.health = Some(if reasons.is_empty() {
                status.name().to_owned()
            } else {
                format!("{}: {}", status.name(), reasons.join("; "))
            });
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

    fn push(&self, seq: u64, bytes: Bytes) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() == KEPT_EVENTS {
                kept.pop_front();
            }
            kept.push_back((seq, bytes.clone()));
        }
        let _ = self.live.send((seq, bytes));
    }

    /// The number of the newest kept event (0 before any): where "from now on" starts.
    pub(crate) fn last_seq(&self) -> u64 {
        self.kept
            .lock()
            .ok()
            .and_then(|k| k.back().map(|(seq, _)| *seq))
            .unwrap_or(0)
    }

    /// The kept events after `since`, led by a `lagged` record if some of those were not
    /// kept; and the number of the last one.
    fn after(&self, since: u64) -> (Vec<(Option<u64>, Bytes)>, u64) {
        let Ok(kept) = self.kept.lock() else {
            return (Vec::new(), since);
        };
        let mut out = Vec::new();
        let mut last = since;
        if let Some((oldest, _)) = kept.front() {
            if *oldest > since + 1 {
                out.push((None, lagged(oldest - since - 1)));
            }
        }
        for (seq, bytes) in kept.iter().filter(|(s, _)| *s > since) {
            out.push((Some(*seq), bytes.clone()));
            last = *seq;
        }
        (out, last)
    }

    /// A body of the events after `since` (NDJSON); with `follow`, then the live ones until
    /// the reader goes away.
    pub(crate) fn stream(self: &Arc<Self>, since: u64, follow: bool) -> ChannelBody {
        self.stream_framed(since, follow, |_, line| line)
    }

    /// [`EventLog::stream`] with each record framed by `frame` (given its number; `None` for
    /// a `lagged` record): server-sent events reuse the one stream.
    pub(crate) fn stream_framed(
        self: &Arc<Self>,
        since: u64,
        follow: bool,
        frame: fn(Option<u64>, Bytes) -> Bytes,
    ) -> ChannelBody {
        let (tx, rx) = mpsc::channel(256);
        // Subscribed before the kept ones are read, so nothing falls between the two.
        let mut live = self.live.subscribe();
        let (kept, mut last) = self.after(since);
        tokio::spawn(async move {
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
                    Ok((seq, _)) if seq <= last => continue,
                    Ok((seq, bytes)) => {
                        if seq > last + 1 {
                            let _ = tx.send(frame(None, lagged(seq - last - 1))).await;
                        }
                        last = seq;
                        frame(Some(seq), bytes)
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
            latest: Mutex::new(std::collections::HashMap::new()),
            history: crate::history::History::default(),
        }
    }

    /// A reader asking for events older than those kept is told how many it missed, first.
    #[test]
    fn a_resume_past_the_kept_events_is_told_what_it_missed() {
        let log = log();
        let n = KEPT_EVENTS as u64 + 5;
        for seq in 1..=n {
            log.push(seq, Bytes::from(format!("{{\"seq\":{seq}}}\n")));
        }
        let (records, last) = log.after(0);
        assert_eq!(records[0], (None, lagged(5)));
        assert_eq!(records.len(), KEPT_EVENTS + 1);
        assert_eq!(last, n);
        let (records, _) = log.after(n - 2);
        assert_eq!(records.len(), 2, "no lagged record when nothing was missed");
        assert_eq!(log.after(n).0.len(), 0);
    }

    /// A follower whose live feed overran gets one `lagged` record with the exact count.
    #[tokio::test]
    async fn a_slow_follower_gets_the_exact_gap() {
        let log = Arc::new(log());
        log.push(1, Bytes::from_static(b"{\"seq\":1}\n"));
        let mut body = log.stream(0, true);
        // Overrun the live channel (capacity 16) before the follower reads.
        for seq in 2..=40 {
            log.push(seq, Bytes::from(format!("{{\"seq\":{seq}}}\n")));
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
